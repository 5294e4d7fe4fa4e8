"""The floor stage (mesp_core.offline.floor_training): trained on fit functions, chosen on validation ones."""

import json
import shutil

import numpy as np
import pytest

from mesp_core import load_model
from mesp_core.forecasting.artifact import ArtifactError, sha256_file
from mesp_core.forecasting.floors import ALL_CLUSTERS, FLOOR_HEAD_FILE
from mesp_core.offline.floor_training import FloorConfig, add_floor_stage, describe_floor, model_split
from mesp_core.offline.split import held_out_functions
from tests.unit.conftest import TINY_FLOOR


def test_the_floor_stage_is_added_without_touching_the_experts(tiny_model_dir, tiny_floor_model_dir):
    source = json.loads((tiny_model_dir / "manifest.json").read_text())
    assert "floor" not in source
    manifest = json.loads((tiny_floor_model_dir / "manifest.json").read_text())
    for name, digest in source["files"].items():
        assert manifest["files"][name] == digest == sha256_file(tiny_floor_model_dir / name)
    floor = manifest["floor"]
    assert manifest["files"][FLOOR_HEAD_FILE] == sha256_file(tiny_floor_model_dir / FLOOR_HEAD_FILE)
    assert set(floor["defaults"][ALL_CLUSTERS]) == {"1", "8", "64"}
    names = {c["name"] for c in floor["candidates"]}
    for table in floor["defaults"].values():
        assert set(table.values()) <= names
    for cluster, cal in floor["calibration"].items():
        assert cluster in floor["defaults"]
        for q in (0.5, 0.8, 0.9, 0.95):
            assert 0.0 <= cal[f"below_{q:g}"] <= cal[f"coverage_{q:g}"] <= 1.0
    assert "cluster all:" in describe_floor(floor)


def test_choices_follow_the_cost(tiny_floor_model_dir):
    floor = load_model(tiny_floor_model_dir).manifest["floor"]
    validation = floor["validation"][ALL_CLUSTERS]

    def cost(name, c):
        key = name if name != "newsvendor" else f"newsvendor@{c:g}"
        return c * validation["cold"][key] + validation["idle"][key]

    for c in (1.0, 8.0, 64.0):
        chosen = floor["defaults"][ALL_CLUSTERS][f"{c:g}"]
        fixed = [k for k in validation["cold"] if not k.startswith("newsvendor@")] + [f"newsvendor@{c:g}"]
        best = min(fixed, key=lambda k: c * validation["cold"][k] + validation["idle"][k])
        assert cost(chosen, c) == c * validation["cold"][best] + validation["idle"][best]


def test_the_split_never_reads_held_out_functions(tiny_model, tiny_trace):
    fit, val = model_split(tiny_model, tiny_trace)
    held_out = set(held_out_functions(tiny_model, tiny_trace).tolist())
    assert held_out and not held_out & (set(fit.tolist()) | set(val.tolist()))
    assert not set(fit.tolist()) & set(val.tolist())


def test_same_seed_same_floor_stage(tiny_model_dir, tiny_trace, tiny_floor_model_dir, tmp_path):
    add_floor_stage(tiny_model_dir, tiny_trace, tmp_path / "again", FloorConfig(**TINY_FLOOR), progress=False)
    first = json.loads((tiny_floor_model_dir / "manifest.json").read_text())["floor"]
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())["floor"]
    first.pop("created", None), again.pop("created", None)
    assert first == again
    assert sha256_file(tmp_path / "again" / FLOOR_HEAD_FILE) == sha256_file(tiny_floor_model_dir / FLOOR_HEAD_FILE)


def test_a_corrupt_floor_stage_is_refused_clearly(tiny_floor_model_dir, tmp_path):
    def broken(edit):
        target = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_floor_model_dir, target)
        manifest = json.loads((target / "manifest.json").read_text())
        edit(manifest, target)
        (target / "manifest.json").write_text(json.dumps(manifest))
        return target

    cases = [
        (lambda m, d: m["floor"]["defaults"]["all"].update({"8": "no such floor"}), "unknown candidates"),
        (lambda m, d: m["floor"].pop("candidates"), "incomplete"),
        (lambda m, d: (d / FLOOR_HEAD_FILE).write_bytes(b"junk"), "corrupt"),
        (lambda m, d: m["floor"]["head"]["config"].update({"hidden": 7}), "do not fit"),
    ]
    for edit, message in cases:
        with pytest.raises(ArtifactError, match=message):
            load_model(broken(edit))


def test_bad_budgets_and_inputs(tiny_model_dir, tmp_path, tiny_trace):
    with pytest.raises(ValueError, match="epochs"):
        FloorConfig(epochs=0).validate()
    with pytest.raises(ValueError, match="must differ"):
        add_floor_stage(tiny_model_dir, tiny_trace, tiny_model_dir)
    from mesp_core.data.synthetic import generate_trace

    stranger = generate_trace(n_functions=5, days=1, seed=99)
    with pytest.raises(ValueError, match="none of the trace's functions"):
        add_floor_stage(tiny_model_dir, stranger, tmp_path / "x", progress=False)


def test_a_long_trace_is_replayed_on_its_last_replay_minutes_only(tiny_model_dir, tiny_trace, tmp_path):
    with pytest.raises(ValueError, match="replay_minutes"):
        FloorConfig(replay_minutes=30).validate()
    config = FloorConfig(**{**TINY_FLOOR, "max_val_functions": 6}, replay_minutes=1440)
    section = add_floor_stage(tiny_model_dir, tiny_trace, tmp_path / "last-day", config, progress=False)
    n_val = section["training"]["n_val_functions"]
    assert tiny_trace.n_minutes == 2880
    assert section["validation"][ALL_CLUSTERS]["function_minutes"] == n_val * 1440  # not 2880 - 240


def test_the_floor_model_plans_by_cost(tiny_floor_model_dir, tiny_model, tiny_trace):
    model = load_model(tiny_floor_model_dir)
    context = tiny_trace.counts[:6, :900]
    plan = model.plan_min_scale(context, 30, capacity_per_instance=20.0)
    planned = model.floor_plan(context, 30, capacity_per_instance=20.0)
    np.testing.assert_array_equal(plan, planned.plan)
    assert planned.cold_start_cost == model.floor.default_cold_start_cost
    assert len(planned.floors) == 6 and set(planned.floors) <= {c.name for c in model.floor.candidates}
    bounded = model.plan_min_scale(context, 30, capacity_per_instance=20.0, user_min_scale=2, max_scale=3)
    assert bounded.min() >= 2 and bounded.max() <= 3
    # An explicit quantile is the experts' override: the same plan as the model without floor stage.
    np.testing.assert_array_equal(
        model.plan_min_scale(context, 30, capacity_per_instance=20.0, quantile=0.9, cold_start_cost=4.0),
        tiny_model.plan_min_scale(context, 30, capacity_per_instance=20.0, quantile=0.9))
    at_cost = model.floor_plan(context, 30, capacity_per_instance=20.0, cold_start_cost=64.0)
    assert at_cost.cold_start_cost == 64.0
    with pytest.raises(ValueError, match="cold_start_cost"):
        model.plan_min_scale(context, 30, cold_start_cost=0.0)


def test_mesp_train_runs_the_floor_stage_last(tmp_path, tiny_trace):
    from dataclasses import replace

    from mesp_core.offline.training import train
    from tests.unit.conftest import TINY

    trace = tiny_trace
    config = replace(TINY, floor_stage=True, floor_origins=3000, floor_epochs=1, floor_val_functions=8)
    report = train(trace, tmp_path / "m", config, progress=False)
    assert "floor" in report.stage_seconds
    model = load_model(tmp_path / "m")
    floor = model.manifest["floor"]
    assert floor["training"]["n_val_functions"] == 8
    assert floor["training"]["config"]["origins"] == 3000
    assert model.manifest["training"]["stage_seconds"]["floor"] == report.stage_seconds["floor"]
    assert model.floor is not None and model.floor_plan(trace.counts[:3, :800], 5).plan.shape == (3, 5)
