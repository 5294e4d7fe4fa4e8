"""The loop's model batch: one model run per (approach, length), each row's floor forecast at its
sizing level (coldStartCost's critical fractile or a quantile override), routes labelled by the
library from the rows the recent-error check switched."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

import mesp_core
from mesp_core.policy import newsvendor_level
from mesp_operator.forecast import FloorChoice, Sizing, choice_phase, floor_batch, forecast_batch

GOLDEN_MODEL = Path(__file__).resolve().parents[3] / "tests" / "golden" / "model_v1"


class _Distribution:
    def __init__(self, point: np.ndarray, switched: np.ndarray, asked: list):
        self.point, self.switched, self.asked = point, switched, asked

    def quantile(self, q: float) -> np.ndarray:
        self.asked.append(q)
        return self.point + q


class _RecordingModel:
    """Forecasts each row as its first value repeated; rows whose first value is odd count as switched."""

    def __init__(self):
        self.runs: list[tuple[str, int, list[float]]] = []
        self.switched_given = None
        self.levels: list[float] = []  # every quantile level asked of the model's distributions

    def forecast_distribution(self, contexts, horizon, approach):
        self.runs.append((approach, horizon, [float(c[0]) for c in contexts]))
        first = contexts[:, :1]
        return _Distribution(np.repeat(first, horizon, axis=1), first[:, 0] % 2 == 1, self.levels)

    def explain_routes(self, contexts, switched=None):
        self.switched_given = list(switched)
        return [{"cluster": int(c[0]), "expert": "x", "description": "", "distance": 0.0} for c in contexts]


DEFAULT = Sizing(10.0, operator_default=True)


def test_one_model_run_per_approach_and_length_and_routes_get_each_rows_switch():
    model = _RecordingModel()
    contexts = np.array([[1.0] * 4, [2.0] * 4, [3.0] * 4, [4.0] * 4], dtype=np.float32)
    requests = [("moe", 5, DEFAULT), ("dense", 5, DEFAULT), ("moe", 5, Sizing(10.0, 0.5)), ("moe", 7, DEFAULT)]
    result = forecast_batch(model, contexts, requests)
    assert model.runs == [("moe", 5, [1.0, 3.0]), ("dense", 5, [2.0]), ("moe", 7, [4.0])]
    assert model.switched_given == [True, False, True, False]  # in the rows' own order, not the groups'
    assert [len(p) for p in result.point] == [5, 5, 5, 7]
    np.testing.assert_allclose(result.upper[0], 1 + 10 / 11)
    np.testing.assert_allclose(result.upper[2], 3.5)
    assert [r["cluster"] for r in result.routes] == [1, 2, 3, 4]


def test_which_level_reaches_the_model_for_each_cost_and_override():
    """Rows with different costs share one model run; each distinct level is asked of it once."""
    model = _RecordingModel()
    contexts = np.full((5, 4), 2.0, dtype=np.float32)
    requests = [("moe", 3, Sizing(19.0)), ("moe", 3, DEFAULT), ("moe", 3, Sizing(19.0)),
                ("moe", 3, Sizing(19.0, quantile=0.8)), ("moe", 3, Sizing(1.0))]
    result = forecast_batch(model, contexts, requests)
    assert len(model.runs) == 1
    assert model.levels == pytest.approx([0.95, 10 / 11, 0.8, 0.5])
    assert [float(u[0]) - 2.0 for u in result.upper] == pytest.approx([0.95, 10 / 11, 0.95, 0.8, 0.5])


@pytest.mark.parametrize("sizing,level,text", [
    (Sizing(10.0, operator_default=True), 10 / 11, "coldStartCost 10 (q0.909, operator default)"),
    (Sizing(100.0), 100 / 101, "coldStartCost 100 (q0.990)"),
    (Sizing(0.25), 0.2, "coldStartCost 0.25 (q0.200)"),
    (Sizing(10.0, quantile=0.9), 0.9, "quantile 0.9 (override)"),
    (Sizing(10.0, quantile=0.95, operator_default=True), 0.95, "quantile 0.95 (override)"),
])
def test_the_sizing_level_is_the_costs_critical_fractile_unless_a_quantile_overrides_it(sizing, level, text):
    assert sizing.level == pytest.approx(level)
    assert sizing.describe() == text
    if sizing.quantile is None:
        assert sizing.level == newsvendor_level(sizing.cold_start_cost)  # the library's rule, not a copy


def test_with_the_real_model_the_routes_are_the_librarys_explanation():
    model = mesp_core.load_model(GOLDEN_MODEL)
    rng = np.random.default_rng(3)
    contexts = rng.poisson(20, size=(3, 1440)).astype(np.float32)
    result = forecast_batch(model, contexts, [("moe", 12, DEFAULT)] * 3)
    distribution = model.forecast_distribution(contexts, horizon=12, approach="moe")
    assert result.routes == model.explain_routes(contexts, switched=distribution.switched)
    np.testing.assert_array_equal(np.stack(result.point), distribution.point)
    np.testing.assert_array_equal(np.stack(result.upper), distribution.quantile(10 / 11))
    higher = forecast_batch(model, contexts, [("moe", 12, Sizing(100.0))] * 3)
    assert (np.stack(higher.upper) >= np.stack(result.upper)).all()  # a dearer cold start, a higher floor forecast


class _FloorStageModel:
    """Plans each row as its first value times the cost, naming the floor by the capacity asked."""

    floor = object()  # has a floor stage

    def __init__(self):
        self.calls = []

    def floor_plan(self, contexts, horizon, capacity_per_instance, lead_minutes, cold_start_cost, floors=None):
        assert floors is None  # without a minute, floor_batch lets the model choose
        self.calls.append((horizon, lead_minutes, cold_start_cost, [float(c[0]) for c in contexts],
                           list(capacity_per_instance)))
        plan = np.repeat(contexts[:, :1] * cold_start_cost, horizon, axis=1).astype(np.int64)
        return types.SimpleNamespace(plan=plan, floors=[f"cap {c:g}" for c in capacity_per_instance])


def test_cost_sized_rows_share_one_floor_stage_call_per_length_lead_and_cost():
    model = _FloorStageModel()
    contexts = np.array([[1.0] * 4, [2.0] * 4, [3.0] * 4, [4.0] * 4, [5.0] * 4], dtype=np.float32)
    requests = [(5, 2, 20.0, Sizing(2.0)), (5, 2, 10.0, Sizing(2.0, operator_default=True)),
                (5, 2, 20.0, Sizing(2.0, 0.9)), (5, 1, 20.0, Sizing(2.0)), (5, 2, 20.0, Sizing(3.0))]
    floors = floor_batch(model, contexts, requests)
    assert model.calls == [(5, 2, 2.0, [1.0, 2.0], [20.0, 10.0]), (5, 1, 2.0, [4.0], [20.0]),
                           (5, 2, 3.0, [5.0], [20.0])]
    assert floors.names == ["cap 20", "cap 10", None, "cap 20", "cap 20"]  # the quantile override: no floor
    assert floors.targets[2] is None and floors.targets[1].tolist() == [4] * 5 and floors.targets[4].tolist() == [15] * 5


def test_a_model_without_a_floor_stage_is_never_asked_for_one():
    floors = floor_batch(_RecordingModel(), np.ones((2, 4), dtype=np.float32), [(5, 2, 20.0, DEFAULT)] * 2)
    assert floors.targets == [None, None] and floors.names == [None, None]
    kept = floor_batch(_RecordingModel(), np.ones((2, 4), dtype=np.float32), [(5, 2, 20.0, DEFAULT)] * 2,
                       minute=29_000_000, keys=["a", "b"], records=[None, None])
    assert kept.targets == [None, None] and kept.records == [None, None]


class _CountingChoices:
    """The packaged model, counting the rows it is asked to choose a floor policy for."""

    def __init__(self, model):
        self.model, self.floor, self.chosen_rows = model, model.floor, 0

    def floor_choose(self, contexts, **kw):
        self.chosen_rows += len(contexts)
        return self.model.floor_choose(contexts, **kw)

    def floor_plan(self, contexts, **kw):
        return self.model.floor_plan(contexts, **kw)


@pytest.fixture
def one_torch_thread():
    """The floor stage's many small model calls stall on a busy machine with more threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_kept_floor_choices_plan_exactly_what_choosing_every_loop_does(one_torch_thread):
    """Loop by loop over sliding contexts, the records make the same plans and names as the stateless
    floor_plan(since=...), while each row chooses only at its own reselect boundary (or without a
    record: at the first loop, after a restart, after its cost changed)."""
    model = _CountingChoices(mesp_core.load_model(mesp_core.default_model_path()))
    rng = np.random.default_rng(11)
    n, L = 6, 600
    series = (rng.poisson(2.0, size=(n, 1000)) * (rng.random((n, 1000)) < 0.4)).astype(np.float32)
    series[0, ::11] = 130
    keys = [f"uid-{i}" for i in range(n)]
    requests = [(60, 1, 60.0, DEFAULT), (60, 1, 20.0, Sizing(10.0)), (30, 2, 60.0, DEFAULT),
                (60, 1, 60.0, Sizing(4.0)), (60, 1, 60.0, Sizing(10.0, quantile=0.9)), (60, 1, 5.0, DEFAULT)]
    every = model.floor.reselect_every
    base = 29_000_000  # unix minutes: the boundaries are absolute, each policy at its own phase
    records: list = [None] * n
    for t in range(700, 736):
        if t == 712:
            records = [None] * n  # a restart: no memory, every row chooses again
        if t == 724:
            requests[3] = (60, 1, 60.0, Sizing(8.0))  # a new cost: its record no longer holds
        contexts = series[:, t - L:t]
        before = model.chosen_rows
        out = floor_batch(model, contexts, requests, minute=base + t, keys=keys, records=records)
        since = [(base + t - choice_phase(k, every)) % every for k in keys]
        due = sum(r is None or r.boundary != base + t - s or r.cold_start_cost != q[3].cold_start_cost
                  for r, s, q in zip(records[:4] + records[5:], since[:4] + since[5:], requests[:4] + requests[5:]))
        assert model.chosen_rows - before == due
        groups: dict = {}  # the stateless reference, made per floor_batch group (same model batches)
        for i, (length, lead, capacity, sizing) in enumerate(requests):
            if sizing.quantile is None:
                groups.setdefault((length, lead, sizing.cold_start_cost), []).append(i)
            else:
                assert out.targets[i] is None and out.records[i] is None
        for (length, lead, cost), members in groups.items():
            expected = model.model.floor_plan(contexts[members], horizon=length, lead_minutes=lead,
                                              capacity_per_instance=np.array([requests[i][2] for i in members]),
                                              cold_start_cost=cost, since=np.array([since[i] for i in members]))
            for j, i in enumerate(members):
                assert out.targets[i].tolist() == expected.plan[j].tolist(), (t, i)
                assert out.names[i] == expected.floors[j] == out.records[i].name
                assert out.records[i] == FloorChoice(base + t - since[i], out.names[i], cost, lead)
        records = out.records
    assert model.chosen_rows < 36 * 5 / 3  # most loops only plan with the kept choices
    with pytest.raises(ValueError, match="one key per request"):
        floor_batch(model, contexts, requests, minute=base, keys=keys[:2])


def test_choice_phases_are_stable_and_spread():
    assert choice_phase("a-uid", 30) == choice_phase("a-uid", 30)
    phases = {choice_phase(f"uid-{i}", 30) for i in range(300)}
    assert phases == set(range(30))
