"""The MespPolicy spec: defaults, validation messages, the view of one object, and the CRD that
documents the same spec (charts/mesp/crds/) agreeing with parse_spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mesp_core.forecasting.approaches import APPROACHES
from mesp_operator.errors import PolicyError
from mesp_operator.settings import OperatorSettings
from mesp_operator.spec import ACTUATIONS, MODES, PolicyObject, parse_spec

SETTINGS = OperatorSettings()
CRD = Path(__file__).resolve().parents[3] / "charts" / "mesp" / "crds" / "mesppolicies.mesp.dev.yaml"


def test_spec_defaults():
    spec = parse_spec({"service": "fn"}, SETTINGS)
    assert (spec.mode, spec.actuation, spec.horizon, spec.lead, spec.approach) == ("ForecastOnly", "Auto", 60, 2, "moe")
    # Unset: the floor is sized from the operator's --cold-start-cost, with no quantile override.
    assert spec.cold_start_cost is None and spec.quantile is None
    assert spec.template_cooldown == SETTINGS.template_cooldown_minutes
    assert spec.capacity is None and spec.min_scale is None
    assert spec.request_duration_ms is None  # absent: measured from Prometheus, else the default


@pytest.mark.parametrize("spec,message", [
    ({}, "spec.service must name a Knative Service"),
    ({"service": "fn", "mode": "On"}, "spec.mode must be one of Off, ForecastOnly, Active, got 'On'"),
    ({"service": "fn", "actuation": "Pods"}, "spec.actuation must be one of Auto, Revision, Template"),
    ({"service": "fn", "quantile": 1.0}, "spec.quantile must be in (0.0, 0.999], got 1.0"),
    ({"service": "fn", "quantile": "high"}, "spec.quantile must be a number, got 'high'"),
    ({"service": "fn", "coldStartCost": 0}, "spec.coldStartCost must be in (0.0, 1000000.0], got 0"),
    ({"service": "fn", "coldStartCost": -5}, "spec.coldStartCost must be in (0.0, 1000000.0], got -5"),
    ({"service": "fn", "coldStartCost": "high"}, "spec.coldStartCost must be a number, got 'high'"),
    ({"service": "fn", "coldStartCost": True}, "spec.coldStartCost must be a number, got True"),
    ({"service": "fn", "coldStartCost": float("nan")}, "spec.coldStartCost must be a number, got nan"),
    ({"service": "fn", "coldStartCost": 1e7}, "spec.coldStartCost must be in (0.0, 1000000.0], got 10000000.0"),
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


def test_a_cold_start_cost_and_a_quantile_are_read_as_given():
    spec = parse_spec({"service": "fn", "coldStartCost": 25, "quantile": 0.8}, SETTINGS)
    assert (spec.cold_start_cost, spec.quantile) == (25.0, 0.8)
    assert parse_spec({"service": "fn", "coldStartCost": 0.5}, SETTINGS).cold_start_cost == 0.5  # below 1 is allowed
    # An explicit null is the same as leaving the field out.
    assert parse_spec({"service": "fn", "quantile": None, "coldStartCost": None}, SETTINGS) == \
        parse_spec({"service": "fn"}, SETTINGS)


def test_the_policy_view_reads_deletion_generation_and_key():
    policy = PolicyObject.from_body({"metadata": {"namespace": "a", "name": "p", "uid": "u", "generation": 3,
                                                  "deletionTimestamp": "2026-01-01T00:00:00Z"},
                                     "spec": {"service": "fn"}})
    assert policy.deleting and policy.generation == 3 and policy.key == ("a", "p")

# --- the CRD -----------------------------------------------------------------------------------------


def _spec_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _defaults(schema: dict) -> dict:
    """What the API server fills into a spec that names only its service and the nested objects."""
    filled = {}
    for key, prop in schema.get("properties", {}).items():
        if "default" in prop:
            filled[key] = prop["default"]
        elif prop.get("type") == "object":
            nested = _defaults(prop)
            if nested:
                filled[key] = nested
    return filled


def _bounded(schema: dict, prefix: str = ""):
    for key, prop in schema.get("properties", {}).items():
        if prop.get("type") == "object":
            yield from _bounded(prop, f"{prefix}{key}.")
        elif "minimum" in prop or "maximum" in prop:
            yield prefix + key, prop


def _spec_with(path: str, value) -> dict:
    spec = node = {"service": "fn"}
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return spec


def test_the_crd_offers_the_approaches_modes_and_actuations_the_operator_knows():
    properties = _spec_schema()["properties"]
    assert tuple(properties["approach"]["enum"]) == APPROACHES
    assert tuple(properties["mode"]["enum"]) == MODES
    assert tuple(properties["actuation"]["enum"]) == ACTUATIONS


def test_the_crd_defaults_are_parse_specs_defaults():
    defaulted = {"service": "fn", **_defaults(_spec_schema())}
    assert {"mode", "actuation", "horizonMinutes", "approach", "scaleDown", "template"} <= set(defaulted)
    # Neither sizing field has a default: an unset one means the operator's cost decides.
    assert "quantile" not in defaulted and "coldStartCost" not in defaulted
    assert parse_spec(defaulted, SETTINGS) == parse_spec({"service": "fn"}, SETTINGS)


def test_the_crd_bounds_are_parse_specs_bounds():
    """Every minimum and maximum the CRD states: parse_spec accepts the bound and rejects what lies past it."""
    bounded = dict(_bounded(_spec_schema()))
    assert {"horizonMinutes", "quantile", "coldStartCost", "minScale", "scaleDown.cooldownMinutes",
            "template.hysteresis"} <= set(bounded)
    for path, prop in bounded.items():
        integer = prop["type"] == "integer"
        if "minimum" in prop:
            low = prop["minimum"]
            inside, outside = (low + (1 if integer else 1e-6), low) if prop.get("exclusiveMinimum") \
                else (low, low - (1 if integer else 1e-6))
            parse_spec(_spec_with(path, inside), SETTINGS)
            with pytest.raises(PolicyError, match=f"spec.{path} must be in"):
                parse_spec(_spec_with(path, outside), SETTINGS)
        if "maximum" in prop:
            high = prop["maximum"]
            parse_spec(_spec_with(path, high), SETTINGS)
            with pytest.raises(PolicyError, match=f"spec.{path} must be in"):
                parse_spec(_spec_with(path, high + (1 if integer else high * 1e-4)), SETTINGS)


def _version() -> dict:
    (version,) = yaml.safe_load(CRD.read_text())["spec"]["versions"]
    return version


def test_every_status_field_the_operator_writes_is_in_the_crd():
    """The API server prunes status fields its schema lacks: a new one (status.sizing) would vanish."""
    from mesp_operator.status import Outcome, build_status
    from mesp_operator.store import PolicyMemory

    policy = PolicyObject.from_body({"metadata": {"namespace": "a", "name": "p"}, "spec": {"service": "fn"}})
    written = build_status(Outcome(policy), PolicyMemory(), None, None, None, None, now=0.0)
    declared = _version()["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(written) <= set(declared), sorted(set(written) - set(declared))


def test_every_printer_column_reads_a_declared_field():
    schema = _version()["schema"]["openAPIV3Schema"]
    columns = {c["name"]: c["jsonPath"] for c in _version()["additionalPrinterColumns"]}
    assert columns["Sizing"] == ".status.sizing"
    for name, path in columns.items():
        if path.startswith(".metadata."):  # ObjectMeta: the API server's own schema
            continue
        node = schema
        for part in re.sub(r"\[\?\(.*?\)\]", "", path).lstrip(".").split("."):  # filters: the list itself
            if node.get("type") == "array":
                node = node["items"]
            assert part in node.get("properties", {}), f"column {name}: {path} is not in the schema"
            node = node["properties"][part]
