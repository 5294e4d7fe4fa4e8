"""The MespPolicy spec: defaults, validation messages, the view of one object."""

from __future__ import annotations

import pytest

from mesp_operator.errors import PolicyError
from mesp_operator.settings import OperatorSettings
from mesp_operator.spec import PolicyObject, parse_spec

SETTINGS = OperatorSettings()


def test_spec_defaults():
    spec = parse_spec({"service": "fn"}, SETTINGS)
    assert (spec.mode, spec.actuation, spec.horizon, spec.lead, spec.quantile, spec.approach) == \
        ("ForecastOnly", "Auto", 60, 2, 0.9, "moe")
    assert spec.template_cooldown == SETTINGS.template_cooldown_minutes
    assert spec.capacity is None and spec.min_scale is None
    assert spec.request_duration_ms is None  # absent: measured from Prometheus, else the default


@pytest.mark.parametrize("spec,message", [
    ({}, "spec.service must name a Knative Service"),
    ({"service": "fn", "mode": "On"}, "spec.mode must be one of Off, ForecastOnly, Active, got 'On'"),
    ({"service": "fn", "actuation": "Pods"}, "spec.actuation must be one of Auto, Revision, Template"),
    ({"service": "fn", "quantile": 1.0}, "spec.quantile must be in (0.0, 0.999], got 1.0"),
    ({"service": "fn", "quantile": "high"}, "spec.quantile must be a number, got 'high'"),
    ({"service": "fn", "horizonMinutes": 2.5}, "spec.horizonMinutes must be an integer, got 2.5"),
    ({"service": "fn", "minScale": 4, "maxScale": 3}, "spec.minScale (4) must not exceed spec.maxScale (3)"),
    ({"service": "fn", "capacityPerInstance": 0}, "spec.capacityPerInstance must be in (0.0,"),
    ({"service": "fn", "scaleDown": {"cooldownMinutes": -1}}, "spec.scaleDown.cooldownMinutes must be in [0, 1440]"),
    ({"service": "fn", "promql": "  "}, "spec.promql must be a non-empty PromQL string"),
])
def test_bad_specs_are_named_precisely(spec, message):
    with pytest.raises(PolicyError) as info:
        parse_spec(spec, SETTINGS)
    assert str(info.value).startswith(message)


def test_the_policy_view_reads_deletion_generation_and_key():
    policy = PolicyObject.from_body({"metadata": {"namespace": "a", "name": "p", "uid": "u", "generation": 3,
                                                  "deletionTimestamp": "2026-01-01T00:00:00Z"},
                                     "spec": {"service": "fn"}})
    assert policy.deleting and policy.generation == 3 and policy.key == ("a", "p")