"""The trained mixture as one object: route, forecast, quantiles, min-scale plan.

`load_model(path)` reads an artifact folder (mesp_core.forecasting.artifact) written by `mesp train`. The
model only uses the context it is given: nothing here looks at wall-clock time or other functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from mesp_core.forecasting.approaches import DENSE_PREFIX, check_approach
from mesp_core.forecasting.distribution import ForecastDistribution, RecentHour, interp_columns
from mesp_core.forecasting.artifact import ArtifactError, load_arrays, load_tensors, read_manifest
from mesp_core.constants import DEFAULT_HORIZON, MIN_CONTEXT
from mesp_core.policy import newsvendor_level
from mesp_core.forecasting.router import IDLE_CLUSTER, Router, as_context_list

NAIVE_KEY = "naive"
# Recent-error check (manifest "recent_check"): a routed expert is trusted only while it keeps up
# with repeating the last hour on the function's own recent minutes. Functions that jump between
# levels (a batch job switching on) make every learned daily shape wrong for a while; the last
# hour already shows the new level. The switch ratio is chosen on validation functions by training.
RECENT_CHECK_KEY = "repeat_last_hour"
RECENT_CHECK_WINDOW = 60
# Contexts shorter than this show too little of the day for the router to pick a daily shape, and
# leave no hour for the recent-error check: the best dense model forecasts them instead. Chosen on
# the validation functions of the shared sample (WAPE with 60/90/105-minute contexts: dense 0.189 /
# 0.183 / 0.192 vs MoE 0.195 / 0.194 / 0.193; from 120 minutes on, MoE 0.171 vs dense 0.183).
MOE_MIN_CONTEXT = RECENT_CHECK_WINDOW + MIN_CONTEXT


def validate_contexts(context, min_length: int = MIN_CONTEXT) -> np.ndarray | list[np.ndarray]:
    """Per-minute counts, oldest first; clear errors for what a forecaster cannot use.

    Returns one float32 2-D array when the input was one (the operator's and the
    replay's case; it stays one array through routing and every expert, with no per-row copies),
    else a list of 1-D arrays."""
    if isinstance(context, np.ndarray) and context.ndim == 2 and context.shape[0] and context.shape[1] >= min_length:
        # Check it in one pass, and look for the offending row only when something is wrong.
        block = np.asarray(context, dtype=np.float32)
        if np.isfinite(block).all() and not (block < 0).any():
            return block
    rows = as_context_list(context)
    if not rows:
        raise ValueError("context is empty: give at least one function's history")
    for i, row in enumerate(rows):
        if len(row) < min_length:
            raise ValueError(f"context[{i}] has {len(row)} minutes; at least {min_length} are needed")
        if not np.isfinite(row).all():
            raise ValueError(f"context[{i}] contains NaN or infinite counts")
        if (row < 0).any():
            raise ValueError(f"context[{i}] contains negative counts")
    return rows


def _take(rows, idx: np.ndarray):
    """The rows at `idx`, as one array when `rows` is one."""
    return rows[idx] if isinstance(rows, np.ndarray) else [rows[i] for i in idx]


def _lengths(rows) -> np.ndarray:
    if isinstance(rows, np.ndarray):
        return np.full(rows.shape[0], rows.shape[1], dtype=np.int64)
    return np.array([len(row) for row in rows], dtype=np.int64)


# Residual quantiles are stored in units of the mean level of the last SCALE_MINUTES minutes, the
# same for every expert, so an upper forecast is point + level * residual quantile.
SCALE_MINUTES = 240


def window_scale(prepared: np.ndarray) -> np.ndarray:
    """Mean level (+1, so idle windows keep unit scale) of the last SCALE_MINUTES minutes."""
    return np.abs(prepared[:, -SCALE_MINUTES:]).mean(axis=1) + 1.0


class MespModel:
    def __init__(
        self,
        manifest: dict,
        router: Router,
        cluster_experts: dict[int, object],
        dense_experts: dict[str, object],
        naive_expert,
        residual_quantiles: dict[str, np.ndarray],
        path: Path | None = None,
        floor=None,
        quantile_calibration=None,
        backend: str = "torch",
    ):
        self.manifest = manifest
        self.router = router
        self.cluster_experts = cluster_experts
        self.dense_experts = dense_experts
        self.naive_expert = naive_expert
        self.residual_quantiles = residual_quantiles
        self.quantile_levels = np.asarray(manifest.get("quantile_levels", []), dtype=np.float64)
        self.dense_best = manifest.get("dense", {}).get("best")
        self.path = path
        self.backend = backend  # what runs the networks: "numpy" (no torch import) or "torch"
        # The floor stage (mesp_core.forecasting.floors.FloorStage), None for models trained without it.
        self.floor = floor
        # Per-group maps nominal -> used quantile level (mesp_core.forecasting.calibration); None = as measured.
        self.quantile_calibration = quantile_calibration
        check = manifest.get("recent_check") or {}
        # None = no check (models trained before it existed, or training found it did not help).
        self.recent_check_ratio: float | None = check.get("switch_ratio") if check.get("enabled") else None

    # ------------------------------------------------------------------ description
    @property
    def clusters(self) -> list[dict]:
        return list(self.manifest.get("clusters", []))

    def describe_cluster(self, cluster: int) -> str:
        if cluster == IDLE_CLUSTER:
            return "idle/flat window (seasonal-naive floor)"
        return self._cluster_entry(cluster).get("description", {}).get("label", f"cluster {cluster}")

    def expert_name(self, cluster: int) -> str:
        if cluster == IDLE_CLUSTER or cluster not in self.cluster_experts:
            return self.naive_expert.family
        return self.cluster_experts[cluster].family

    def _cluster_entry(self, cluster: int) -> dict:
        for entry in self.manifest.get("clusters", []):
            if entry["id"] == cluster:
                return entry
        return {}

    # ------------------------------------------------------------------ routing
    def route(self, context) -> np.ndarray:
        rows = validate_contexts(context)
        clusters, _ = self.router.route(rows)
        return clusters

    def explain_routes(self, context, switched=None) -> list[dict]:
        """Per function: cluster, distance, description and the expert that forecasts it.

        `switched` (a forecast's ForecastDistribution.switched) names repeat-last-hour where the
        recent-error check replaced the routed expert, as `mesp forecast` and the operator report it."""
        rows = validate_contexts(context)
        clusters, distances = self.router.route(rows)
        short = self._short_for_moe(rows)
        routes = [
            {
                "cluster": int(k),
                "distance": float(d),
                "description": self.describe_cluster(int(k)),
                "expert": (f"dense:{self.dense_best} (context under {MOE_MIN_CONTEXT} min)" if is_short
                           else self.expert_name(int(k))),
            }
            for k, d, is_short in zip(clusters, distances, short)
        ]
        if switched is not None:
            for route, lost in zip(routes, switched):
                if lost:  # the routed expert lost to repeat-last-hour on this function's last hour
                    route["expert"] = f"repeat_last_hour (recent-error check; routed to {route['expert']})"
        return routes

    # ------------------------------------------------------------------ forecasting
    def _experts_for(self, rows: np.ndarray | list[np.ndarray], approach: str, clusters: np.ndarray | None = None) -> list[tuple[object, str, np.ndarray]]:
        """(expert, residual-quantile key, row indices) groups that together cover every row;
        `clusters` reuses routes already computed for these rows (moe only)."""
        n = len(rows)
        if approach == "naive":
            return [(self.naive_expert, NAIVE_KEY, np.arange(n))]
        check_approach(approach)
        if approach == "dense" or approach.startswith(DENSE_PREFIX):
            family = approach.partition(":")[2] or self.dense_best
            if family not in self.dense_experts:
                known = ", ".join(f"dense:{f}" for f in self.dense_experts) or "none"
                raise ValueError(f"no dense model {family!r} in this model (dense models: {known})")
            return [(self.dense_experts[family], f"dense-{family}", np.arange(n))]
        if clusters is None:
            clusters, _ = self.router.route(rows)
        groups = []
        short = self._short_for_moe(rows)
        if short.any():
            groups.append((self.dense_experts[self.dense_best], f"dense-{self.dense_best}", np.flatnonzero(short)))
        for cluster in np.unique(clusters[~short]):
            members = np.flatnonzero((clusters == cluster) & ~short)
            expert = self.cluster_experts.get(int(cluster))
            if expert is None:
                groups.append((self.naive_expert, NAIVE_KEY, members))
            else:
                groups.append((expert, f"cluster-{int(cluster)}", members))
        return groups

    def _short_for_moe(self, rows: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Rows the mixture hands to the best dense model (context < MOE_MIN_CONTEXT minutes)."""
        if self.dense_best not in self.dense_experts:  # a model without dense baseline keeps its experts
            return np.zeros(len(rows), dtype=bool)
        return _lengths(rows) < MOE_MIN_CONTEXT

    def _predict(self, expert, rows: np.ndarray | list[np.ndarray], horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Point forecast [m, horizon] and the scale of the first step's window, rolling the
        expert forward on its own output when horizon exceeds what it was trained for."""
        from mesp_core.data.windows import prepare_contexts

        batch = _as_batch(rows)
        prepared = prepare_contexts(batch, expert.input_size) if expert.trainable else None
        scale = window_scale(prepare_contexts(batch, SCALE_MINUTES))
        pieces = []
        produced = 0
        # Non-trainable floors read the true history (their periods may span days); networks
        # see the fixed-width window they were trained on.
        current = prepared if expert.trainable else batch
        while produced < horizon:
            step = np.asarray(expert.predict(current), dtype=np.float32)
            pieces.append(step)
            produced += step.shape[1]
            if produced < horizon:
                current = [np.concatenate([row, new]) for row, new in zip(current, step)]
                if expert.trainable:
                    current = np.stack(current)[:, -expert.input_size :]
        forecast = np.concatenate(pieces, axis=1)[:, :horizon]
        return np.clip(forecast, 0.0, None), scale

    def forecast(self, context, horizon: int = DEFAULT_HORIZON, approach: str = "moe") -> np.ndarray:
        """Per-minute invocation forecast [n, horizon], non-negative floats."""
        return self.forecast_distribution(context, horizon, approach).point

    def forecast_quantile(
        self, context, horizon: int = DEFAULT_HORIZON, q: float = 0.9, approach: str = "moe"
    ) -> np.ndarray:
        """Upper (or lower) quantile forecast from the expert's validation residuals."""
        return self.forecast_distribution(context, horizon, approach).quantile(q)

    def forecast_distribution(self, context, horizon: int = DEFAULT_HORIZON, approach: str = "moe") -> "ForecastDistribution":
        """Point forecast plus what any quantile needs, computed once (the replay sweeps quantiles)."""
        if int(horizon) != horizon or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon}")
        horizon = int(horizon)
        rows = validate_contexts(context)
        recent = None
        clusters = self.router.route(rows)[0] if approach == "moe" else None
        point, scale, groups = self._forecast_groups(rows, horizon, approach, clusters)
        if approach == "moe" and self.recent_check_ratio is not None:
            recent = self._recent_hour(rows, approach, clusters)
        switched = np.zeros(len(rows), dtype=bool)
        if recent is not None:
            switched = recent.switch(self.recent_check_ratio)
        if switched.any():
            idx = np.flatnonzero(switched)
            point[idx] = repeat_last_hour_forecast(_take(rows, idx), horizon)
            groups = [(key, members[~switched[members]]) for key, members in groups] + [(RECENT_CHECK_KEY, idx)]
        return ForecastDistribution(self, point, scale, groups, switched, rows=rows, approach=approach,
                                    recent=recent, clusters=clusters)

    def _forecast_groups(self, rows: np.ndarray | list[np.ndarray], horizon: int, approach: str, clusters: np.ndarray | None = None):
        """Point forecast, window scale and (residual key, rows) groups, without the recent check."""
        point = np.zeros((len(rows), horizon), dtype=np.float32)
        scale = np.zeros(len(rows), dtype=np.float32)
        groups = []
        for expert, key, members in self._experts_for(rows, approach, clusters):
            point[members], scale[members] = self._predict(expert, _take(rows, members), horizon)
            groups.append((key, members))
        return point, scale, groups

    def recent_hour(self, context, approach: str = "moe") -> "RecentHour":
        """Each context's last hour as `approach` (without the recent check; for moe, the expert
        each function is routed to now) and repeat-last-hour forecast it from the minutes before.
        Only contexts that leave at least MIN_CONTEXT minutes before that hour take part."""
        rows = validate_contexts(context)
        clusters = self.router.route(rows)[0] if approach == "moe" else None
        return self._recent_hour(rows, approach, clusters)

    def _recent_hour(self, rows: np.ndarray | list[np.ndarray], approach: str, clusters: np.ndarray | None,
                     window: int = RECENT_CHECK_WINDOW) -> "RecentHour":
        usable = np.flatnonzero(_lengths(rows) >= window + MIN_CONTEXT)
        actual = np.zeros((len(usable), window), dtype=np.float32)
        model_past = alt_past = actual
        if usable.size:
            if isinstance(rows, np.ndarray):
                past, actual = rows[usable, :-window], rows[usable, -window:]
            else:
                past = [rows[i][:-window] for i in usable]
                actual = np.stack([rows[i][-window:] for i in usable]).astype(np.float32)
            model_past, _, _ = self._forecast_groups(past, window, approach, None if clusters is None else clusters[usable])
            alt_past = repeat_last_hour_forecast(past, window)
        return RecentHour(len(rows), usable, actual, model_past, alt_past)

    def _residual_quantile(self, key: str, q: float, horizon: int) -> np.ndarray:
        """Residual quantile per lead step in window-scale units, interpolated between stored levels
        and held at the last stored step beyond the trained horizon."""
        table = self.residual_quantiles.get(key)
        if table is None:
            table = self.residual_quantiles.get(NAIVE_KEY)
        if table is None or len(self.quantile_levels) == 0:
            return np.zeros(horizon, dtype=np.float32)
        per_step = interp_columns(q, self.quantile_levels, table).astype(np.float32)
        if horizon > len(per_step):
            per_step = np.concatenate([per_step, np.full(horizon - len(per_step), per_step[-1], np.float32)])
        return per_step[:horizon]

    def plan_min_scale(
        self,
        context,
        horizon: int = DEFAULT_HORIZON,
        capacity_per_instance=60.0,
        lead_minutes: int = 1,
        approach: str = "moe",
        cold_start_cost: float | None = None,
        **policy,
    ) -> np.ndarray:
        """Per-minute min-scale plan [n, horizon] (ints).

        `capacity_per_instance` is one number or one per function (n numbers). `cold_start_cost` is
        how many idle instance-minutes one avoided cold start is worth. A model with a floor stage
        plans through it (each function's floor policy chosen by that cost, see `floor_plan`); the
        cost defaults to the one it was trained for. Without a floor stage, or with an explicit
        `quantile` in `policy` (the experts' override), the experts' forecast is sized at that
        quantile, or at the critical fractile C / (1 + C) when only a cost is given."""
        if self.floor is not None and "quantile" not in policy:
            return self.floor_plan(context, horizon, capacity_per_instance, lead_minutes, cold_start_cost,
                                   **policy).plan
        if cold_start_cost is not None and "quantile" not in policy:
            policy = {**policy, "quantile": newsvendor_level(cold_start_cost)}
        config, capacity = policy_config(capacity_per_instance, lead_minutes, policy)
        # The last plan minutes are sized over [i, i + lead + hold]: forecast that much further.
        distribution = self.forecast_distribution(context, horizon + config.lookahead, approach)
        return plan_from_distribution(distribution, horizon, config, capacity)

    # ------------------------------------------------------------------ floor stage
    def floor_cost(self, cold_start_cost: float | None = None) -> float:
        """The cold-start cost a plan uses: the given one, else the floor stage's, else the policy default."""
        from mesp_core.policy import DEFAULT_COLD_START_COST, check_cold_start_cost

        if cold_start_cost is not None:
            return check_cold_start_cost(cold_start_cost)
        return self.floor.default_cold_start_cost if self.floor is not None else DEFAULT_COLD_START_COST

    def floor_planner(self, cold_start_cost: float | None = None, capacity_per_instance=60.0, lead_minutes: int = 1,
                      keep_warm_minutes: int = 2):
        """A FloorPlanner with this model's head, candidates, cluster defaults, router and naive floor."""
        if self.floor is None:
            raise ValueError("this model has no floor stage (train it, or add one with "
                             "mesp_core.offline.floor_training.add_floor_stage)")

        def naive(contexts, horizon):
            return self._predict(self.naive_expert, contexts, horizon)[0]

        def route(contexts):
            return self.router.route(validate_contexts(contexts))[0]

        return self.floor.planner(self.floor_cost(cold_start_cost), capacity_per_instance, lead_minutes,
                                  keep_warm_minutes, naive=naive, route=route)

    def floor_plan(self, context, horizon: int = DEFAULT_HORIZON, capacity_per_instance=60.0, lead_minutes: int = 1,
                   cold_start_cost: float | None = None, floors=None, since=None, **policy) -> "FloorPlan":
        """The floor stage's plan [n, horizon] and, per function, the floor policy it used. The
        user's min-scale and max-scale in `policy` bound it; other policy settings are checked.

        `floors`: the floor policy per function (`floor_choose`'s names) to plan with instead of
        choosing here. `since`: choose at the reselect boundary that many minutes back (`floor_choose`)."""
        if int(horizon) != horizon or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon}")
        if floors is not None and since is not None:
            raise ValueError("give either the floors to plan with or when to choose them (since), not both")
        config, capacity = policy_config(capacity_per_instance, lead_minutes, policy)
        rows = validate_contexts(context)
        planner = self.floor_planner(cold_start_cost, config.capacity_per_instance if capacity is None else capacity,
                                     lead_minutes)
        if floors is None:
            plan, chosen = planner.plan(rows, int(horizon), since)
        else:
            if len(floors) != len(rows):
                raise ValueError(f"{len(floors)} floors given for {len(rows)} contexts")
            chosen = planner.index_of(floors)
            plan = planner.plan_chosen(rows, int(horizon), chosen)
        plan = np.maximum(plan, config.user_min_scale)
        if config.max_scale is not None:
            plan = np.minimum(plan, config.max_scale)
        return FloorPlan(plan=plan, floors=[planner.names[i] for i in chosen], cold_start_cost=planner.cost)

    def floor_choose(self, context, capacity_per_instance=60.0, lead_minutes: int = 1,
                     cold_start_cost: float | None = None, since=None) -> list[str]:
        """The floor policy the floor stage chooses per function, without planning: at the end of each
        context (since None), or at the reselect boundary `since` minutes back (FloorPlanner.choose_at).
        Planning with it via `floor_plan(..., floors=...)` until the next boundary plans exactly what
        `floor_plan(..., since=...)` would."""
        policy_config(capacity_per_instance, lead_minutes, {})  # the same checks as floor_plan
        rows = validate_contexts(context)
        planner = self.floor_planner(cold_start_cost, capacity_per_instance, lead_minutes)
        chosen = planner.choose_at(rows, since)
        return [planner.names[i] for i in chosen]

    def outlook(self, context, horizon: int = DEFAULT_HORIZON, approach: str = "moe", quantile: float = 0.9,
                capacity_per_instance=None, lead_minutes: int = 1) -> "Outlook":
        """What `mesp forecast` shows: point and `quantile` forecasts [n, horizon], the routes explained
        (repeat-last-hour named where the recent-error check took over) and, with a capacity, the
        min-scale plan the operator would set, all from one model run."""
        config = None
        if capacity_per_instance is not None:
            config = policy_config(capacity_per_instance, lead_minutes, {"quantile": quantile})[0]
        # A plan's last minutes are sized over [i, i + lead + hold], so one forecast reaches that much further.
        distribution = self.forecast_distribution(context, horizon + (config.lookahead if config else 0), approach)
        return Outlook(
            point=distribution.point[:, :horizon],
            upper=distribution.quantile(quantile)[:, :horizon],
            plan=None if config is None else plan_from_distribution(distribution, horizon, config),
            routes=self.explain_routes(context, switched=distribution.switched),
        )


@dataclass
class FloorPlan:
    plan: np.ndarray            # [n, horizon] min-scale settings
    floors: list[str]           # the floor policy each function uses now (e.g. "q=0.9", "keep-alive 10")
    cold_start_cost: float      # the cost it was chosen for


@dataclass
class Outlook:
    point: np.ndarray           # [n, horizon] point forecast
    upper: np.ndarray           # [n, horizon] the asked quantile
    plan: np.ndarray | None     # [n, horizon] min-scale plan, when a capacity was given
    routes: list[dict]          # explain_routes, per function


def policy_config(capacity_per_instance, lead_minutes: int, policy: dict):
    """(PolicyConfig, per-function capacities or None). Per-function capacities travel beside the
    config, which holds one number; its placeholder is then never used for sizing."""
    from mesp_core.policy import PolicyConfig

    per_function = np.ndim(capacity_per_instance) > 0
    config = PolicyConfig(capacity_per_instance=60.0 if per_function else capacity_per_instance,
                          lead_minutes=lead_minutes, **policy)
    return config, (capacity_per_instance if per_function else None)


def plan_from_distribution(distribution: "ForecastDistribution", horizon: int, config, capacity=None) -> np.ndarray:
    """Min-scale plan [n, horizon] from a forecast that reaches `horizon + config.lookahead` minutes."""
    from mesp_core.policy import plan_min_scale

    if distribution.point.shape[1] < horizon + config.lookahead:
        raise ValueError(f"the forecast covers {distribution.point.shape[1]} minutes; planning {horizon} "
                         f"needs {horizon + config.lookahead} (lead + hold further)")
    upper = distribution.point if config.quantile is None else distribution.quantile(config.quantile)
    plan, _reasons = plan_min_scale(distribution.point, upper, config, plan_horizon=horizon, explain=False, capacity=capacity)
    return plan


def repeat_last_hour_forecast(rows: np.ndarray | list[np.ndarray], horizon: int) -> np.ndarray:
    """Repeat-last-hour forecast [n, horizon] of contexts of any length >= 60 minutes."""
    from mesp_core.forecasting.experts.naive import RepeatLastHour
    from mesp_core.data.windows import prepare_contexts

    expert = RepeatLastHour(horizon=horizon)
    return expert.predict(prepare_contexts(_as_batch(rows), expert.input_size))


def _as_batch(rows):
    """Rows of one length as a 2-D array, so experts check and cut them in one vectorised step
    instead of row by row (10,000 per-row checks cost more than the networks); ragged rows stay a list."""
    if isinstance(rows, np.ndarray):
        return rows
    if rows and all(len(row) == len(rows[0]) for row in rows):
        return np.stack(rows)
    return rows


def load_model(path: str | os.PathLike, backend: str = "auto") -> MespModel:
    """Load an artifact folder; ArtifactError names what is wrong when it cannot be used. `backend` runs
    the networks: "numpy" (no torch import: ~0.5 GB less memory), "torch", or "auto" (numpy when every
    expert family in the model has a numpy forward; `model.backend` says which)."""
    from mesp_core.forecasting.backend import check_backend, choose_backend
    from mesp_core.forecasting.experts import build_expert
    from mesp_core.forecasting.calibration import load_quantile_calibration
    from mesp_core.forecasting.floors import load_floor_stage

    model_dir, backend = Path(path), check_backend(backend)
    manifest = read_manifest(model_dir)
    files = manifest.get("files", {})
    try:
        backend = choose_backend(manifest, backend, model_dir)
        load_weights = load_arrays if backend == "numpy" else load_tensors
        router = Router(load_arrays(model_dir, "centroids.safetensors", files.get("centroids.safetensors"))["centroids"],
                        resolution=int(manifest.get("router", {}).get("resolution", 5)), backend=backend)

        def expert_from(entry: dict):
            weights = entry.get("weights")
            state = load_weights(model_dir, weights, files.get(weights)) if weights else {}
            return build_expert(entry["config"], state, backend)

        cluster_experts = {int(c["id"]): expert_from(c["expert"]) for c in manifest.get("clusters", [])}
        dense = manifest.get("dense", {})
        dense_experts = {name: expert_from(entry) for name, entry in dense.get("models", {}).items()}
        naive = expert_from(manifest["naive"])
        quantile_tensors = (load_arrays(model_dir, "quantiles.safetensors", files.get("quantiles.safetensors"))
                            if "quantiles.safetensors" in files else {})
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise ArtifactError(f"{model_dir}: manifest and weights do not fit together ({type(exc).__name__}: {exc})") from None
    floor = load_floor_stage(model_dir, manifest, files, backend)
    calibration = load_quantile_calibration(model_dir, manifest)
    residual_quantiles = {name: np.asarray(t, dtype=np.float32) for name, t in quantile_tensors.items()}
    levels = manifest.get("quantile_levels", [])
    for name, table in residual_quantiles.items():
        if table.ndim != 2 or table.shape[0] != len(levels):
            raise ArtifactError(f"{model_dir}: quantiles.safetensors: table {name!r} has shape {list(table.shape)}, "
                                f"expected one row per quantile level ({len(levels)}) and one column per lead minute")
        if not np.isfinite(table).all():
            raise ArtifactError(f"{model_dir}: quantiles.safetensors: table {name!r} has NaN or infinite values")
    return MespModel(manifest, router, cluster_experts, dense_experts, naive, residual_quantiles, path=model_dir,
                     floor=floor, quantile_calibration=calibration, backend=backend)


def default_model_path() -> Path:
    """The model shipped inside the package: `mesp train` with its defaults on the training 80% of
    the real Azure Functions 2019 sample (CC-BY 4.0); figures in docs/RESULTS.md."""
    return Path(__file__).resolve().parent.parent / "default_model"
