"""The operator's settings: one typed object, read from flags and MESP_* environment variables and
validated once at start-up (never at import time), so a bad value stops the operator with one clear line.

Precedence: command-line flag > environment variable > default.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlparse

from mesp_operator.errors import SettingsError
from mesp_operator.prometheus import PRESETS

ACTUATION_SUPPORT_CHOICES = ("auto", "revision", "template")


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    model_path: Path | None = None              # None: the default artifact shipped with mesp_core
    kubeconfig: Path | None = None              # None: in-cluster config, else $KUBECONFIG / ~/.kube/config
    prometheus_url: str = "http://127.0.0.1:9090"
    prometheus_timeout_seconds: float = 10.0
    metrics_preset: str = "knative-legacy"      # see mesp_operator.prometheus.PRESETS
    promql: str | None = None                   # cluster-wide query replacing the preset's
    loop_interval_seconds: float = 60.0
    context_minutes: int | None = None          # trailing window fed to the model (default: model's input size)
    stale_plan_seconds: float = 600.0           # keep the last plan this long when metrics fail
    max_scale_cap: int = 100                    # cap when neither the policy nor the Service sets max-scale
    revision_annotations: str = "auto"          # does the cluster propagate Revision annotations (Knative >= 1.21)?
    template_cooldown_seconds: float = 600.0    # Template mode default: no template decrease sooner than this
    template_hysteresis: int = 1                # default: lower the template floor only by at least this much
    write_concurrency: int = 8                  # parallel API writes per loop
    namespaces: tuple[str, ...] = ()            # empty: cluster-wide
    metrics_port: int = 9102                    # the operator's own /metrics (0 disables)
    metrics_address: str = "0.0.0.0"
    liveness_endpoint: str | None = None        # e.g. http://0.0.0.0:8081/healthz (kopf's probe)
    torch_threads: int = 1
    verbose: bool = False

    @property
    def template_cooldown_minutes(self) -> int:
        return int(math.ceil(self.template_cooldown_seconds / 60.0))


_ENV_PREFIX = "MESP_"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mesp operator",
        description="Run the MESP operator: forecasts each MespPolicy's Knative Service and sets its min-scale ahead of peaks. "
        "Every flag can also be given as an environment variable MESP_<FLAG> (e.g. MESP_PROMETHEUS_URL).",
    )
    a = p.add_argument
    a("--model", dest="model_path", help="model artifact directory (default: the model shipped with MESP, trained on the real Azure sample)")
    a("--kubeconfig", help="kubeconfig file (default: in-cluster service account, else $KUBECONFIG or ~/.kube/config)")
    a("--prometheus-url", help="Prometheus base URL (default http://127.0.0.1:9090)")
    a("--prometheus-timeout-seconds", type=float, help="timeout of one Prometheus query (default 10)")
    a("--metrics-preset", help=f"PromQL preset: {', '.join(sorted(PRESETS))} (default knative-legacy)")
    a("--promql", help="cluster-wide PromQL replacing the preset; must return per-minute counts labelled by "
      "the preset's namespace and service labels")
    a("--loop-interval-seconds", type=float, help="seconds between two reconcile loops over all policies (default 60)")
    a("--context-minutes", type=int, help="trailing minutes of history fed to the model (default: the model's input size)")
    a("--stale-plan-seconds", type=float, help="how long to keep the last plan when Prometheus fails (default 600)")
    a("--max-scale-cap", type=int, help="cap used when neither policy nor Service sets max-scale (default 100)")
    a("--revision-annotations", help="auto|revision|template: whether annotating Revisions works (Knative >= 1.21); "
      "auto reads the installed Knative version (default auto)")
    a("--template-cooldown-seconds", type=float, help="Template mode default: seconds before a template floor may "
      "drop after a change, also the look-ahead one raise covers (default 600; rounded up to whole minutes)")
    a("--template-hysteresis", type=int, help="default minimum decrease of the template floor (default 1)")
    a("--write-concurrency", type=int, help="parallel API writes per loop (default 8)")
    a("--namespace", dest="namespaces", action="append",
      help="watch only this namespace (repeatable; env: comma-separated MESP_NAMESPACE; default: all)")
    a("--metrics-port", type=int, help="port of the operator's /metrics (default 9102, 0 disables)")
    a("--metrics-address", help="bind address of /metrics (default 0.0.0.0)")
    a("--liveness-endpoint", help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    a("--torch-threads", type=int, help="torch intra-op threads for the model (default 1)")
    a("--verbose", action="store_true", default=None, help="debug logging")
    return p


# Environment names follow the flags (--model -> MESP_MODEL, --namespace -> MESP_NAMESPACE).
_ENV_NAMES = {"model_path": "MODEL", "namespaces": "NAMESPACE"}


def _env_value(env: Mapping[str, str], name: str):
    raw = env.get(_ENV_PREFIX + _ENV_NAMES.get(name, name.upper()))
    if raw is None or raw == "":
        return None
    return raw


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

    fields = {f.name: f for f in dataclasses.fields(OperatorSettings)}
    values: dict = {}
    for name, field in fields.items():
        value = getattr(args, name, None)
        if value is None:
            raw = _env_value(env, name)
            if raw is not None:
                value = _convert_env(name, raw, field)
        if value is not None:
            values[name] = value
    return validate(OperatorSettings(**_coerce(values)))


def _convert_env(name: str, raw: str, field: dataclasses.Field):
    default = field.default
    try:
        if name == "namespaces":
            return tuple(ns.strip() for ns in raw.split(",") if ns.strip())
        if name == "verbose":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if name in ("context_minutes",):
            return int(raw)
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        return raw
    except ValueError:
        raise SettingsError(f"{_ENV_PREFIX}{_ENV_NAMES.get(name, name.upper())}={raw!r} is not a valid value") from None


def _coerce(values: dict) -> dict:
    if "model_path" in values and values["model_path"] is not None:
        values["model_path"] = Path(values["model_path"]).expanduser()
    if values.get("kubeconfig") is not None:
        values["kubeconfig"] = Path(values["kubeconfig"]).expanduser()
    if "namespaces" in values:
        values["namespaces"] = tuple(values["namespaces"])
    return values


def validate(s: OperatorSettings) -> OperatorSettings:
    def bad(flag: str, why: str):
        raise SettingsError(f"--{flag.replace('_', '-')}: {why}")

    url = urlparse(s.prometheus_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        bad("prometheus_url", f"{s.prometheus_url!r} is not an http(s) URL")
    for name in ("prometheus_timeout_seconds", "loop_interval_seconds", "stale_plan_seconds"):
        value = getattr(s, name)
        if not math.isfinite(value) or value <= 0:
            bad(name, f"must be a positive number of seconds, got {value}")
    if not 0 <= s.template_cooldown_seconds <= 86400:
        bad("template_cooldown_seconds", "must be between 0 and 86400")
    if s.metrics_preset not in PRESETS:
        bad("metrics_preset", f"unknown preset {s.metrics_preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    if s.promql is not None and not s.promql.strip():
        bad("promql", "must not be empty")
    if s.context_minutes is not None and not 60 <= s.context_minutes <= 14 * 1440:
        bad("context_minutes", f"must be between 60 and {14 * 1440}, got {s.context_minutes}")
    if s.max_scale_cap < 1:
        bad("max_scale_cap", "must be >= 1")
    if s.revision_annotations not in ACTUATION_SUPPORT_CHOICES:
        bad("revision_annotations", f"must be one of {', '.join(ACTUATION_SUPPORT_CHOICES)}")
    if s.template_hysteresis < 0:
        bad("template_hysteresis", "must be >= 0")
    if not 1 <= s.write_concurrency <= 128:
        bad("write_concurrency", "must be between 1 and 128")
    if not 0 <= s.metrics_port <= 65535:
        bad("metrics_port", "must be a TCP port (0 disables)")
    if not 1 <= s.torch_threads <= 64:
        bad("torch_threads", "must be between 1 and 64")
    if s.model_path is not None:
        if not s.model_path.is_dir():
            bad("model", f"{s.model_path} is not a directory")
        if not (s.model_path / "manifest.json").is_file():
            bad("model", f"{s.model_path} has no manifest.json (not a MESP model artifact)")
    if s.kubeconfig is not None and not s.kubeconfig.is_file():
        bad("kubeconfig", f"{s.kubeconfig} does not exist")
    if s.liveness_endpoint is not None and not urlparse(s.liveness_endpoint).netloc:
        bad("liveness_endpoint", f"{s.liveness_endpoint!r} is not a URL like http://0.0.0.0:8081/healthz")
    return s
