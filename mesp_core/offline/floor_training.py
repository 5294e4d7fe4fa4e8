"""The floor stage: fit the demand head, choose each cluster's default floor policy by decision cost.

Issue 16: experts are chosen for volume error, but a floor is judged by cold starts and idle
instance-minutes. This stage
  1. fits the DemandHead (mesp_core.forecasting.demand) on the fit functions of the model's split;
  2. on the validation functions, replays every candidate floor (mesp_core.forecasting.floors)
     minute by minute with the replay's recurrence (mesp_core.floor_cost), routes each function
     every `reselect_every` minutes like the planner does, and per cluster and grid cost C keeps the
     candidate with the lowest C * cold + idle as that cluster's default;
  3. measures the head's calibration per cluster (coverage of its 0.5/0.8/0.9/0.95 quantiles);
  4. writes the head's weights and the manifest's "floor" section.
Held-out functions are never read. `train_floor` runs as the last stage of `mesp train`;
`add_floor_stage` adds it to an existing model folder without retraining the experts.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mesp_core.floor_cost import demand_instances, floor_cost, replay_floors
from mesp_core.forecasting.artifact import (
    commit_output_dir,
    prepare_output_dir,
    read_manifest,
    save_tensors,
    write_manifest,
)
from mesp_core.forecasting.demand import DemandHead, demand_examples
from mesp_core.forecasting.floors import (
    ALL_CLUSTERS,
    COST_GRID,
    FLOOR_HEAD_FILE,
    RESELECT_EVERY,
    SCORE_WINDOW,
    Candidate,
    FloorPlanner,
    FloorStage,
    cost_key,
    default_candidates,
)
from mesp_core.forecasting.model import load_model
from mesp_core.offline.progress import Progress
from mesp_core.offline.split import function_split, key_digest
from mesp_core.offline.trace_access import as_trace_access
from mesp_core.policy import DEFAULT_COLD_START_COST, newsvendor_level

CALIBRATION_LEVELS = (0.5, 0.8, 0.9, 0.95)
_REPLAY_BLOCK = 128
# The replay's int64 [candidates, functions, minutes] arrays (cold, idle and their masked copies) are
# cut in blocks of functions of about this size: 128 functions x 14 days x 24 candidates was 0.5 GB each.
_REPLAY_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class FloorConfig:
    """Budgets of the floor stage, as counts; the seed fixes the head."""

    origins: int = 120_000          # training origins sampled from the fit functions
    epochs: int = 6
    batch_size: int = 256
    hidden: int = 128
    lr: float = 2e-3
    max_val_functions: int = 1500   # validation functions replayed for the tables (a seeded sample beyond)
    table_start_minute: int = 240   # first replayed minute (the head and the keep-alives need some past)
    # Replayed minutes per function at most, the last ones: a 14-day trace is replayed on its last two
    # days, so the replay's time and memory (candidates x functions x minutes) do not grow with its length.
    replay_minutes: int = 2880
    capacity: float = 60.0          # invocations per minute per instance the tables are chosen at
    costs: tuple = COST_GRID
    default_cold_start_cost: float = DEFAULT_COLD_START_COST
    seed: int = 0

    def validate(self) -> "FloorConfig":
        for name in ("origins", "epochs", "batch_size", "hidden", "max_val_functions", "replay_minutes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"floor {name} must be a positive integer, got {value!r}")
        if not self.costs or any(c <= 0 for c in self.costs) or self.default_cold_start_cost <= 0:
            raise ValueError("floor costs must be > 0")
        if self.replay_minutes < 60:
            raise ValueError(f"floor replay_minutes must be at least an hour, got {self.replay_minutes}")
        if self.table_start_minute < 61:
            raise ValueError("table_start_minute must leave the head an hour of history (>= 61)")
        return self


def train_floor(model_dir, trace, fit_idx, val_idx, config: FloorConfig | None = None, progress: bool = True) -> dict:
    """Fit the floor stage for the model in `model_dir` (modified in place: weights + manifest).

    fit_idx / val_idx: the model's fit and validation functions in `trace`. Returns the manifest's
    new "floor" section."""
    config = (config or FloorConfig()).validate()
    ui = Progress(progress)
    model_dir = Path(model_dir)
    model = load_model(model_dir, backend="torch")  # offline: the torch backend, as training itself
    access = as_trace_access(trace)  # the trace here or in shards on Ray: read by rows
    n_minutes = access.n_minutes
    if len(fit_idx) < 1 or len(val_idx) < 1:
        raise ValueError("the floor stage needs fit and validation functions")
    if n_minutes <= config.table_start_minute + 60:
        raise ValueError(f"the trace has {n_minutes} minutes; the floor stage replays from minute "
                         f"{config.table_start_minute} and needs at least an hour after it")

    ui.stage(f"floor stage: fitting the demand head on {len(fit_idx)} fit functions "
             f"({config.origins} origins x {config.epochs} epochs)")
    head = DemandHead(hidden=config.hidden)
    fit_idx = np.asarray(fit_idx, dtype=np.int64)
    rows, origins = head.sample_origins(len(fit_idx), n_minutes, max_origins=config.origins, seed=config.seed)
    x, y = access.map_rows(demand_examples, fit_idx[rows], origins, horizon=head.horizon)
    bar = ui.bar(DemandHead.batches(config.origins, config.epochs, config.batch_size), "demand head")
    losses = head.fit_examples(x, y, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                               progress=bar.update)
    bar.close()
    del x, y

    val = np.sort(np.asarray(val_idx))
    if len(val) > config.max_val_functions:
        val = np.sort(np.random.default_rng(config.seed).choice(val, config.max_val_functions, replace=False))
    candidates = default_candidates()
    ui.stage(f"floor stage: replaying {len(candidates)} candidate floors on {len(val)} validation functions")
    tables, per_cluster, calibration = choose_defaults(model, head, candidates, access.series(val), config, ui)
    stage = FloorStage(head, candidates, [float(c) for c in config.costs], tables,
                       float(config.default_cold_start_cost), SCORE_WINDOW, RESELECT_EVERY)
    manifest = read_manifest(model_dir)
    manifest.setdefault("files", {})[FLOOR_HEAD_FILE] = save_tensors(model_dir / FLOOR_HEAD_FILE, head.state_dict())
    section = stage.manifest_entry({
        "calibration": calibration,
        "validation": per_cluster,
        "training": {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
                     "n_fit_functions": int(len(fit_idx)), "n_val_functions": int(len(val)),
                     "loss_per_epoch": [round(x, 6) for x in losses]},
    })
    manifest["floor"] = section
    manifest.pop("format", None)
    manifest.pop("format_version", None)
    write_manifest(model_dir, manifest)
    for cluster, table in tables.items():
        ui.stage(f"  cluster {cluster}: " + ", ".join(f"C={c}: {name}" for c, name in table.items()))
    return section


def choose_defaults(model, head: DemandHead, candidates: list, counts: np.ndarray, config: FloorConfig, ui):
    """(defaults per cluster and grid cost, cold/idle per cluster and candidate, calibration per cluster)."""
    n, T = counts.shape
    start = max(config.table_start_minute, T - config.replay_minutes)
    # The newsvendor candidate depends on the cost: replay it once per grid cost.
    fixed = [c for c in candidates if c.q != "newsvendor"]
    per_cost = {c: Candidate(f"newsvendor@{cost_key(c)}", q=newsvendor_level(c)) for c in config.costs}
    replayed = fixed + list(per_cost.values())
    planner = FloorPlanner(head, replayed, {ALL_CLUSTERS: replayed[0].name}, config.default_cold_start_cost,
                           config.capacity, naive=lambda ctx, h: model._predict(model.naive_expert, ctx, h)[0])
    span = T - start
    floors = np.zeros((len(replayed), n, span), dtype=np.int32)
    clusters = np.zeros((n, span), dtype=np.int64)
    levels = [head.level_index(q) for q in CALIBRATION_LEVELS]
    predicted = np.zeros((len(levels), n, span), dtype=np.float32)
    bar = ui.bar(span, "floor candidates")
    rows = np.arange(n)
    with torch.inference_mode():
        for i, t in enumerate(range(start, T)):
            if i % RESELECT_EVERY == 0:  # routed like the planner: on the last day, at each reselection
                route = model.router.route(counts[:, max(0, t - 1440):t])[0]
            clusters[:, i] = route
            quantiles = head.quantiles_at(counts, rows, np.full(n, t))
            floors[:, :, i] = planner.candidate_plans(counts, rows, np.full(n, t), 1, quantiles=quantiles)[:, :, 0]
            predicted[:, :, i] = quantiles[:, 0, levels].T
            bar.update(1)
    bar.close()
    demand = demand_instances(counts, config.capacity)
    ids = sorted(set(np.unique(clusters).tolist()))
    groups = {ALL_CLUSTERS: np.ones((n, span), dtype=bool), **{str(k): clusters == k for k in ids}}
    sums = {name: (np.zeros(len(replayed), np.int64), np.zeros(len(replayed), np.int64)) for name in groups}
    # in blocks of functions: [P, n, minutes] arrays stay small whatever the trace's length
    block_size = max(1, min(_REPLAY_BLOCK, _REPLAY_BLOCK_BYTES // (len(replayed) * span * 8)))
    for lo in range(0, n, block_size):
        block = slice(lo, lo + block_size)
        cold, idle = replay_floors(demand[block], floors[:, block], keep_alive=2, lead_minutes=1, start=start)
        for name, mask in groups.items():
            sums[name][0][:] += (cold * mask[block]).sum(axis=(1, 2))
            sums[name][1][:] += (idle * mask[block]).sum(axis=(1, 2))
    tables, per_cluster, calibration = {}, {}, {}
    actual = demand[:, start:]
    for name, mask in groups.items():
        c_sum, i_sum = sums[name]
        per_cluster[name] = {"function_minutes": int(mask.sum()), "demand_instance_minutes": int(actual[mask].sum()),
                             "cold": {c.name: int(v) for c, v in zip(replayed, c_sum)},
                             "idle": {c.name: int(v) for c, v in zip(replayed, i_sum)}}
        table = {}
        for cost in config.costs:
            options = fixed + [per_cost[cost]]
            scores = [floor_cost(c_sum[replayed.index(c)], i_sum[replayed.index(c)], cost) for c in options]
            best = options[int(np.argmin(scores))]
            table[cost_key(cost)] = "newsvendor" if best is per_cost[cost] else best.name
        tables[name] = table
        inst = demand_instances(predicted[:, mask], config.capacity)
        calibration[name] = {
            "n": int(mask.sum()),
            # Instance demand is a whole number: a calibrated q-quantile has below <= q <= coverage.
            **{f"coverage_{q:g}": float((actual[mask] <= inst[j]).mean()) if mask.any() else None
               for j, q in enumerate(CALIBRATION_LEVELS)},
            **{f"below_{q:g}": float((actual[mask] < inst[j]).mean()) if mask.any() else None
               for j, q in enumerate(CALIBRATION_LEVELS)},
            **{f"count_coverage_{q:g}": float((counts[:, start:][mask] <= np.round(predicted[j][mask])).mean())
               if mask.any() else None for j, q in enumerate(CALIBRATION_LEVELS)},
        }
    return tables, per_cluster, calibration


def model_split(model, trace) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) rows of `trace` for a trained model: its own split recomputed from the
    manifest's recorded config, limited to the functions its training_keys.txt lists. Never a
    held-out function."""
    keys_file = model.path / "training_keys.txt" if model.path else None
    if keys_file is None or not keys_file.exists():
        raise ValueError("the model folder has no training_keys.txt: its training functions are unknown")
    seen = set(keys_file.read_text().split())
    trained = np.array([key_digest(k) in seen for k in trace.keys], dtype=bool)
    if not trained.any():
        raise ValueError("none of the trace's functions is one the model was trained on")
    recorded = model.manifest.get("training", {}).get("config", {})
    fit, val, _test = function_split(trace, float(recorded.get("test_fraction", 0.2)),
                                     float(recorded.get("val_fraction", 0.2)), int(recorded.get("seed", 0)))
    fit, val = fit[trained[fit]], val[trained[val]]
    if len(val) == 0 or len(fit) == 0:
        raise ValueError("the model's split leaves no fit or no validation functions in this trace")
    return fit, val


def add_floor_stage(model_dir, trace, out_dir, config: FloorConfig | None = None, progress: bool = True) -> dict:
    """Copy the model in `model_dir` to `out_dir` with a floor stage added (experts untouched);
    the source folder is never modified. Returns the new manifest's "floor" section."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if model_dir.resolve() == out_dir.resolve():
        raise ValueError("--out must differ from --model: the existing model is kept as it is")
    model = load_model(model_dir, backend="torch")  # offline: the torch backend, as training itself
    fit, val = model_split(model, trace)
    staging = prepare_output_dir(out_dir)
    for item in model_dir.iterdir():
        target = staging / item.name
        shutil.copytree(item, target) if item.is_dir() else shutil.copy2(item, target)
    try:
        section = train_floor(staging, trace, fit, val, config, progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    commit_output_dir(staging, out_dir)
    return section


def describe_floor(section: dict, cost: float | None = None) -> str:
    """One line per cluster: its default floor at `cost` (the stage's default cost when None)."""
    from mesp_core.forecasting.floors import nearest_cost

    cost = section["default_cold_start_cost"] if cost is None else cost
    key = cost_key(nearest_cost(section["costs"], cost))
    lines = []
    for cluster, table in section["defaults"].items():
        cal = section.get("calibration", {}).get(cluster, {})
        cov = " ".join(f"{q:g}:{cal[f'coverage_{q:g}']:.3f}" for q in CALIBRATION_LEVELS
                       if cal.get(f"coverage_{q:g}") is not None)
        lines.append(f"cluster {cluster}: {table.get(key)} at C={key}" + (f" (coverage {cov})" if cov else ""))
    return "\n".join(lines)
