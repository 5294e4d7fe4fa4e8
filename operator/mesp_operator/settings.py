"""The operator's settings: one typed object, read from flags and MESP_* environment variables and
validated once at start-up (never at import time), so a bad value stops the operator with one clear line.

Precedence: command-line flag > environment variable > default. Each setting is declared once, as a
field of OperatorSettings with its default and --help text; its flag, its MESP_* variable and how
their text is converted follow from the field's name and type.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlparse

from mesp_core.policy import DEFAULT_COLD_START_COST
from mesp_operator.errors import SettingsError
from mesp_operator.forecast import MAX_COLD_START_COST
from mesp_operator.prometheus import AUTO, PRESET_CHOICES

ACTUATION_SUPPORT_CHOICES = ("auto", "revision", "template")
MODEL_BACKEND_CHOICES = ("auto", "numpy", "torch")  # mesp_core.forecasting.numpy_nets.BACKENDS
_ENV_PREFIX = "MESP_"
_NAME_PART = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")  # fits a Lease name


def _setting(default, help_text: str, *, flag: str | None = None):
    """A settings field with its --help text (the default is appended to it); `flag` when the flag is
    not --<field-name>. The environment variable is MESP_ + the flag's name (--model -> MESP_MODEL)."""
    return dataclasses.field(default=default, metadata={"help": help_text, "flag": flag})


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    model_path: Path | None = _setting(
        None, "model artifact directory (default: the model shipped with MESP, trained on the real Azure sample)",
        flag="--model")
    kubeconfig: Path | None = _setting(
        None, "kubeconfig file (default: in-cluster service account, else $KUBECONFIG or ~/.kube/config)")
    prometheus_url: str = _setting("http://127.0.0.1:9090", "Prometheus base URL")
    prometheus_timeout_seconds: float = _setting(10.0, "timeout of one Prometheus query")
    metrics_preset: str = _setting(
        AUTO, f"PromQL preset: {', '.join(PRESET_CHOICES)}; auto picks the one whose metric family Prometheus holds")
    promql: str | None = _setting(
        None, "cluster-wide PromQL replacing the preset; must return per-minute counts labelled by the "
        "preset's namespace and service labels (so it needs a named --metrics-preset)")
    loop_interval_seconds: float = _setting(60.0, "seconds between two reconcile loops over all policies")
    context_minutes: int | None = _setting(
        None, "trailing minutes of history fed to the model (default: the model's input size)")
    cold_start_cost: float = _setting(
        DEFAULT_COLD_START_COST, "how many idle instance-minutes one avoided cold start is worth: floors are "
        "sized at the forecast's C/(1+C) quantile; a MespPolicy's coldStartCost (or quantile) overrides it")
    stale_plan_seconds: float = _setting(600.0, "how long to keep the last plan when Prometheus fails")
    max_scale_cap: int = _setting(100, "cap used when neither policy nor Service sets max-scale")
    revision_annotations: str = _setting(
        "auto", "auto|revision|template: whether annotating Revisions works (Knative >= 1.21); "
        "auto reads the installed Knative version")
    template_cooldown_seconds: float = _setting(
        600.0, "Template mode default: seconds before a template floor may drop after a change, also the "
        "look-ahead one raise covers, rounded up to whole minutes")
    template_hysteresis: int = _setting(1, "default minimum decrease of the template floor")
    write_concurrency: int = _setting(8, "parallel API writes per loop")
    status_refresh_seconds: float = _setting(
        600.0, "a policy's status is written when something other than the clock changed it (plan, min-scale, "
        "conditions, ...), and at least this often (each policy between half of it and all of it); "
        "0: every loop")
    namespaces: tuple[str, ...] = _setting(
        (), "watch only this namespace (repeatable; env: comma-separated MESP_NAMESPACE; default: all)",
        flag="--namespace")
    shards: int = _setting(
        0, "split the MespPolicies into this many shards, each acted on by one replica at a time through a "
        "coordination.k8s.io Lease; every replica of a fleet must use the same count; 0: no Leases, this "
        "process acts on every policy (run one replica only)")
    replica_id: str | None = _setting(None, "this replica's name in the shard Leases (default: $POD_NAME, "
                                      "else host name and process id)")
    lease_namespace: str | None = _setting(None, "namespace of the shard Leases (default: $POD_NAMESPACE, "
                                           "else default)")
    lease_name: str = _setting("mesp-operator", "prefix of the Lease names (<prefix>-shard-<i>-of-<shards>, "
                               "<prefix>-member-<replica>)")
    lease_duration_seconds: float = _setting(
        30.0, "a replica that stops renewing loses its shards after this long (renewed every third of it)")
    metrics_port: int = _setting(9102, "port of the operator's /metrics, 0 disables")
    metrics_address: str = _setting("0.0.0.0", "bind address of /metrics")
    liveness_endpoint: str | None = _setting(None, "kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    model_backend: str = _setting(
        "auto", "auto|numpy|torch: what runs the model's networks; auto serves with numpy (no torch import, "
        "~0.5 GB less memory) when every expert family in the model has a numpy forward, else with torch")
    torch_threads: int = _setting(1, "threads of the model's math: torch's intra-op threads, or numpy's BLAS "
                                     "threads when numpy serves the model")
    clock_start: float | None = _setting(
        None, "run on a replayed clock that starts at this unix time (demos and tests: a past day in "
        "Prometheus replayed; default: the wall clock)")
    clock_speed: float = _setting(1.0, "how many times faster than the wall clock the replayed clock runs "
                                       "(with --clock-start)")
    clock_anchor: float | None = _setting(
        None, "the wall-clock unix time at which the replayed clock reads --clock-start (default: when "
        "the operator starts)")
    verbose: bool = _setting(False, "debug logging")

    @property
    def template_cooldown_minutes(self) -> int:
        return int(math.ceil(self.template_cooldown_seconds / 60.0))


def _value_type(hint):
    """The type a setting's text converts to: `int | None` -> int."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [t for t in typing.get_args(hint) if t is not type(None)]
    return hint


_FIELDS = {f.name: f for f in dataclasses.fields(OperatorSettings)}
_TYPES = {name: _value_type(hint) for name, hint in typing.get_type_hints(OperatorSettings).items()}


def _flag(name: str) -> str:
    return _FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


def _env_name(name: str) -> str:
    return _ENV_PREFIX + _flag(name)[2:].replace("-", "_").upper()


def _help(field: dataclasses.Field) -> str:
    """The field's help with its default appended, where the default is a value worth showing."""
    text, default = field.metadata["help"], field.default
    if default is None or isinstance(default, bool) or default == ():
        return text
    return f"{text} (default {default:g})" if isinstance(default, float) else f"{text} (default {default})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mesp operator",
        description="Run the MESP operator: forecasts each MespPolicy's Knative Service and sets its min-scale ahead of peaks. "
        "Every flag can also be given as an environment variable MESP_<FLAG> (e.g. MESP_PROMETHEUS_URL).",
    )
    for name, field in _FIELDS.items():
        kind = _TYPES[name]
        if kind is bool:
            p.add_argument(_flag(name), dest=name, action="store_true", default=None, help=_help(field))
        elif kind == tuple[str, ...]:
            p.add_argument(_flag(name), dest=name, action="append", help=_help(field))
        else:  # paths stay text until _coerce (which expands ~)
            p.add_argument(_flag(name), dest=name, type=kind if kind in (int, float) else None, help=_help(field))
    return p


def parse_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> OperatorSettings:
    """Build and validate settings. Raises SettingsError with one line on any bad value."""
    env = os.environ if env is None else env
    parser = _parser()
    try:
        args = parser.parse_args(list(argv or []))
    except SystemExit as exc:  # argparse already printed its own message (or --help)
        if exc.code in (0, None):
            raise
        raise SettingsError("invalid command-line arguments (see the usage above)") from exc

    values: dict = {}
    for name in _FIELDS:
        value = getattr(args, name, None)
        if value is None:
            raw = env.get(_env_name(name))
            if raw:
                value = _convert_env(name, raw)
        if value is not None:
            values[name] = value
    return validate(OperatorSettings(**_coerce(values)))


def _convert_env(name: str, raw: str):
    kind = _TYPES[name]
    try:
        if kind == tuple[str, ...]:
            return tuple(ns.strip() for ns in raw.split(",") if ns.strip())
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if kind in (int, float):
            return kind(raw)
        return raw
    except ValueError:
        raise SettingsError(f"{_env_name(name)}={raw!r} is not a valid value") from None


def _coerce(values: dict) -> dict:
    for name in ("model_path", "kubeconfig"):
        if values.get(name) is not None:
            values[name] = Path(values[name]).expanduser()
    if "namespaces" in values:
        values["namespaces"] = tuple(values["namespaces"])
    return values


def validate(s: OperatorSettings) -> OperatorSettings:
    def bad(name: str, why: str):
        raise SettingsError(f"{_flag(name)}: {why}")

    url = urlparse(s.prometheus_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        bad("prometheus_url", f"{s.prometheus_url!r} is not an http(s) URL")
    for name in ("prometheus_timeout_seconds", "loop_interval_seconds", "stale_plan_seconds"):
        value = getattr(s, name)
        if not math.isfinite(value) or value <= 0:
            bad(name, f"must be a positive number of seconds, got {value}")
    if not math.isfinite(s.cold_start_cost) or not 0 < s.cold_start_cost <= MAX_COLD_START_COST:
        bad("cold_start_cost", f"must be a number of idle instance-minutes in (0, {MAX_COLD_START_COST:g}], "
            f"got {s.cold_start_cost}")
    if not 0 <= s.template_cooldown_seconds <= 86400:
        bad("template_cooldown_seconds", "must be between 0 and 86400")
    if s.metrics_preset not in PRESET_CHOICES:
        bad("metrics_preset", f"unknown preset {s.metrics_preset!r}; choose one of {', '.join(PRESET_CHOICES)}")
    if s.promql is not None and not s.promql.strip():
        bad("promql", "must not be empty")
    if s.promql is not None and s.metrics_preset == AUTO:
        bad("promql", "name the preset whose namespace and service labels the query returns with "
                      "--metrics-preset (auto cannot tell from a query of yours)")
    if s.context_minutes is not None and not 60 <= s.context_minutes <= 14 * 1440:
        bad("context_minutes", f"must be between 60 and {14 * 1440}, got {s.context_minutes}")
    if s.max_scale_cap < 1:
        bad("max_scale_cap", "must be >= 1")
    if s.revision_annotations not in ACTUATION_SUPPORT_CHOICES:
        bad("revision_annotations", f"must be one of {', '.join(ACTUATION_SUPPORT_CHOICES)}")
    if s.template_hysteresis < 0:
        bad("template_hysteresis", "must be >= 0")
    if not math.isfinite(s.status_refresh_seconds) or not 0 <= s.status_refresh_seconds <= 86400:
        bad("status_refresh_seconds", f"must be between 0 and 86400 seconds, got {s.status_refresh_seconds}")
    if not 1 <= s.write_concurrency <= 128:
        bad("write_concurrency", "must be between 1 and 128")
    if not 0 <= s.shards <= 1024:
        bad("shards", "must be between 0 (no sharding) and 1024")
    if not 3 <= s.lease_duration_seconds <= 3600:
        bad("lease_duration_seconds", "must be between 3 and 3600 seconds")
    for name in ("replica_id", "lease_namespace", "lease_name"):
        value = getattr(s, name)
        if value is not None and not _NAME_PART.match(value):
            bad(name, f"{value!r} must be lowercase letters, digits, '-' or '.' (at most 63)")
    if not 0 <= s.metrics_port <= 65535:
        bad("metrics_port", "must be a TCP port (0 disables)")
    if s.model_backend not in MODEL_BACKEND_CHOICES:
        bad("model_backend", f"must be one of {', '.join(MODEL_BACKEND_CHOICES)}")
    if not 1 <= s.torch_threads <= 64:
        bad("torch_threads", "must be between 1 and 64")
    if s.clock_start is not None and not (math.isfinite(s.clock_start) and s.clock_start > 0):
        bad("clock_start", "must be a unix time in seconds")
    if not (math.isfinite(s.clock_speed) and 0 < s.clock_speed <= 3600):
        bad("clock_speed", "must be above 0 and at most 3600")
    if s.clock_speed != 1.0 and s.clock_start is None:
        bad("clock_speed", "needs --clock-start (the wall clock runs at its own speed)")
    if s.clock_anchor is not None and (s.clock_start is None or not math.isfinite(s.clock_anchor)):
        bad("clock_anchor", "needs --clock-start, and must be a unix time in seconds")
    if s.model_path is not None:
        if not s.model_path.is_dir():
            bad("model_path", f"{s.model_path} is not a directory")
        if not (s.model_path / "manifest.json").is_file():
            bad("model_path", f"{s.model_path} has no manifest.json (not a MESP model artifact)")
    if s.kubeconfig is not None and not s.kubeconfig.is_file():
        bad("kubeconfig", f"{s.kubeconfig} does not exist")
    if s.liveness_endpoint is not None and not urlparse(s.liveness_endpoint).netloc:
        bad("liveness_endpoint", f"{s.liveness_endpoint!r} is not a URL like http://0.0.0.0:8081/healthz")
    return s
