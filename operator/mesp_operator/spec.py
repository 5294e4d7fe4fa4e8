"""The MespPolicy resource as the operator sees it: its API coordinates, a plain view of one object,
and its spec validated into a PolicySpec.

The CRD (charts/mesp/crds/) checks most of a spec; parse_spec re-checks what a schema cannot (and
what an older CRD may have let through). Its defaults are PolicySpec's; a test checks that the CRD's
`default:` values and its `spec.approach` enum agree with them and with mesp_core's APPROACHES.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from mesp_core.forecasting.approaches import APPROACHES
from mesp_operator.errors import PolicyError
from mesp_operator.forecast import MAX_COLD_START_COST
from mesp_operator.settings import OperatorSettings

GROUP = "mesp.dev"
VERSION = "v1alpha1"
PLURAL = "mesppolicies"
KIND = "MespPolicy"
MODES = ("Off", "ForecastOnly", "Active")
ACTUATIONS = ("Auto", "Revision", "Template")
CONDITION_TYPES = ("Ready", "ModelLoaded", "MetricsAvailable", "Actuated")


@dataclasses.dataclass(frozen=True)
class PolicyObject:
    """What the loop needs from one MespPolicy (built from the watch index or a GET)."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    annotations: Mapping[str, str]
    status: Mapping[str, Any]
    deleting: bool = False
    created: str = ""   # metadata.creationTimestamp (RFC 3339: sorts by time as text)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "PolicyObject":
        meta = body.get("metadata") or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
            annotations=dict(meta.get("annotations") or {}),
            status=dict(body.get("status") or {}),
            deleting=bool(meta.get("deletionTimestamp")),
            created=str(meta.get("creationTimestamp") or ""),
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """A validated spec; the defaults here are the ones parse_spec applies to absent fields."""

    service: str
    mode: str = "ForecastOnly"
    actuation: str = "Auto"
    horizon: int = 60
    lead: int = 2
    hold: int = 2
    cold_start_cost: float | None = None  # None: the operator's --cold-start-cost
    quantile: float | None = None         # an expert's override of the cost's critical fractile
    capacity: float | None = None
    request_duration_ms: float | None = None  # None: measured by Prometheus, else decisions.DEFAULT_REQUEST_DURATION_MS
    min_scale: int | None = None
    max_scale: int | None = None
    cooldown: int = 2
    hysteresis: int = 0
    # The template damping defaults are the operator's settings (--template-cooldown-seconds and
    # --template-hysteresis), so parse_spec always passes them.
    template_cooldown: int = dataclasses.field(kw_only=True)
    template_hysteresis: int = dataclasses.field(kw_only=True)
    template_raise_headroom: float = 1.0
    approach: str = "moe"
    promql: str | None = None


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PolicySpec)}


def _get_int(spec, path, default, low=None, high=None):
    node = spec
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return default
    if isinstance(node, bool) or not isinstance(node, (int, float)) or int(node) != node:
        raise PolicyError(f"spec.{path} must be an integer, got {node!r}")
    node = int(node)
    if (low is not None and node < low) or (high is not None and node > high):
        raise PolicyError(f"spec.{path} must be in [{low}, {high}], got {node}")
    return node


def _get_number(spec, path, default, low, high, low_inclusive=True):
    node = spec
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return default
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        raise PolicyError(f"spec.{path} must be a number, got {node!r}")
    if node < low or node > high or (node == low and not low_inclusive):
        raise PolicyError(f"spec.{path} must be in {'[' if low_inclusive else '('}{low}, {high}], got {node}")
    return float(node)


def _get_choice(spec, key, choices):
    value = spec.get(key, _DEFAULTS[key])
    if value not in choices:
        raise PolicyError(f"spec.{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def parse_spec(spec: Mapping[str, Any], settings: OperatorSettings, model_horizon_limit: int = 1440) -> PolicySpec:
    """Validate a MespPolicy spec; PolicyError names the field and the rule."""
    if not isinstance(spec, Mapping):
        raise PolicyError("spec must be an object")
    service = spec.get("service")
    if not isinstance(service, str) or not service:
        raise PolicyError("spec.service must name a Knative Service in the policy's namespace")
    mode = _get_choice(spec, "mode", MODES)
    actuation = _get_choice(spec, "actuation", ACTUATIONS)
    approach = _get_choice(spec, "approach", APPROACHES)
    min_scale = _get_int(spec, "minScale", _DEFAULTS["min_scale"], 0, 100000)
    max_scale = _get_int(spec, "maxScale", _DEFAULTS["max_scale"], 1, 100000)
    if min_scale is not None and max_scale is not None and min_scale > max_scale:
        raise PolicyError(f"spec.minScale ({min_scale}) must not exceed spec.maxScale ({max_scale})")
    promql = spec.get("promql")
    if promql is not None and (not isinstance(promql, str) or not promql.strip()):
        raise PolicyError("spec.promql must be a non-empty PromQL string")
    return PolicySpec(
        service=service,
        mode=mode,
        actuation=actuation,
        horizon=_get_int(spec, "horizonMinutes", _DEFAULTS["horizon"], 1, model_horizon_limit),
        lead=_get_int(spec, "leadMinutes", _DEFAULTS["lead"], 0, 120),
        hold=_get_int(spec, "holdMinutes", _DEFAULTS["hold"], 0, 120),
        cold_start_cost=_get_number(spec, "coldStartCost", _DEFAULTS["cold_start_cost"], 0.0, MAX_COLD_START_COST,
                                    low_inclusive=False),
        quantile=_get_number(spec, "quantile", _DEFAULTS["quantile"], 0.0, 0.999, low_inclusive=False),
        capacity=_get_number(spec, "capacityPerInstance", _DEFAULTS["capacity"], 0.0, 1e9, low_inclusive=False),
        request_duration_ms=_get_number(spec, "requestDurationMs", _DEFAULTS["request_duration_ms"], 0.0, 3.6e6,
                                        low_inclusive=False),
        min_scale=min_scale,
        max_scale=max_scale,
        cooldown=_get_int(spec, "scaleDown.cooldownMinutes", _DEFAULTS["cooldown"], 0, 1440),
        hysteresis=_get_int(spec, "scaleDown.hysteresis", _DEFAULTS["hysteresis"], 0, 100000),
        template_cooldown=_get_int(spec, "template.cooldownMinutes", settings.template_cooldown_minutes, 0, 1440),
        template_hysteresis=_get_int(spec, "template.hysteresis", settings.template_hysteresis, 0, 100000),
        template_raise_headroom=_get_int(spec, "template.raiseHeadroomPercent",
                                         round(_DEFAULTS["template_raise_headroom"] * 100), 0, 1000) / 100.0,
        approach=approach,
        promql=promql,
    )
