"""What `mesp train` may spend and try: the training configuration, its defaults written once.

Kept free of torch and Optuna so the CLI can show these defaults in `--help` without loading them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

from mesp_core.constants import DEFAULT_HORIZON

# Autoformer is offered (--families ... autoformer) but not default: on the shared sample's validation
# functions, same 4,000 fit windows and 8 epochs, it scored val WAPE 0.366 (0.327 at d_model 32,
# lr 3e-3) against N-BEATS' 0.237 and seasonal naive's 0.270, at 25-57x N-BEATS' time per epoch
# (bench/compare_families.py, 2026-12-07).
TRAINABLE_DEFAULT = ("dlinear", "nbeats", "lstm", "patchtst")
# Training windows per fit, at most, for the families whose epoch costs many N-BEATS epochs. PatchTST
# at 20,000 (the per-cluster cap) bounds only its dense trials: on the shared sample's 60k windows its
# 3 dense trials took 926 s of a full `mesp train`, 5-6x N-BEATS' time per window.
FAMILY_MAX_WINDOWS = {"autoformer": 4_000, "patchtst": 20_000}
BASELINE_FAMILIES = ("seasonal_naive", "repeat_last_hour")
QUANTILE_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)


@dataclass
class TrainConfig:
    """Knobs of `mesp train`; the defaults finish the shared 6,418-function sample in < 15 min on 2 cores.

    Every budget that decides the model is a count (trials, epochs, windows), so a seed and the data
    fix the model whatever the machine's load. `max_fit_seconds` is the one wall-clock cap, off by
    default; a fit it cuts short is named in the manifest's `training.cut_short`.
    """

    k: int | None = None  # clusters; None = chosen by silhouette over k_range
    k_min: int = 3
    k_max: int = 10
    horizon: int = DEFAULT_HORIZON
    input_size_max: int = 480  # widest context any candidate may ask for
    families: tuple[str, ...] = TRAINABLE_DEFAULT
    dense_trials: int = 3  # Optuna trials per family for the dense baseline
    dense_top_n: int = 2  # dense families kept (and specialised per cluster)
    scratch_trials: int = 1  # per cluster and family: trials trained from scratch
    # Epochs of one dense trial at most (early stopping may end it sooner). On the shared sample (60k
    # windows, 1 thread, load ~3) the dense stage's 3 trials took dlinear 17 s, nbeats 143 s, lstm
    # 164 s, but patchtst 926 s before FAMILY_MAX_WINDOWS capped it (its search reaches 3 layers,
    # d_model 64 and input 480; the old 25-s cap had cut those trials to an epoch or two).
    dense_epochs: int = 8
    cluster_epochs: int = 6  # epochs of one per-cluster candidate (fine-tuned or from scratch) at most
    patience: int = 3  # epochs without a better validation loss before a fit stops
    max_fit_seconds: float | None = None  # optional wall-clock cap per fit; makes the model load-dependent
    max_dense_windows: int = 60_000
    max_cluster_windows: int = 20_000
    # Per-family caps on the windows a fit trains on (a seeded sample), below the two above.
    family_max_windows: dict[str, int] = field(default_factory=lambda: dict(FAMILY_MAX_WINDOWS))
    # Windows cut (and routed) at most, a seeded sample of them: the dense and per-cluster caps above
    # only apply after routing, and 14-day traces give ~700 windows per function (4,000 functions x
    # 14 days peaked at 24 GB without these). The shared sample has 185k / 24k, below both.
    max_fit_windows: int = 250_000
    max_val_windows: int = 60_000
    # Validation functions read whole (a seeded sample of at most this many): the naive floors, the
    # recent-error check and the quantile calibration replay their full histories. 5,000 x 14 days
    # is 400 MB; the shared sample has 1,027.
    max_val_functions: int = 5_000
    # K-Shape fits a seeded sample of at most this many fit days (100k x 1440 takes ~200 s and ~4.4 GB;
    # the 14-day public trace has ~390k). The router only needs the centroids.
    max_cluster_days: int = 100_000
    min_cluster_windows: int = 300  # below this a cluster reuses the dense model
    stride: int = 30
    # Selection and residual quantiles use windows with at least this much history: online the
    # operator always has a day of context, and the naive floors need it to see their period.
    val_min_context: int = 720
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    metric: str = "wape"
    loss_weight: str = "sqrt_scale"  # networks' per-window loss weight (see TorchExpert)
    blend_weights: tuple[float, ...] = (0.25, 0.5, 0.75)  # mixes of a cluster's two best tried
    # Recent-error check (mesp_core.forecasting.model): switch ratios tried on the validation functions; the
    # best by WAPE is kept, or none when no ratio beats the experts alone. () = no check.
    recent_check_ratios: tuple[float, ...] = (0.9, 0.7, 0.5, 0.3)
    seed: int = 0
    # torch threads for K-Shape's large batched operations. Networks are fitted and scored on one
    # thread whatever this says: some kernels split reductions by thread, so the count would change
    # the last bits of losses and, through early stopping and ranking, the model. (K-Shape itself gave
    # the same labels and bit-identical centroids on 1 and 2 threads for 3,500 sample days, 2026-12-07.)
    threads: int = 1
    # Floor stage (issue 16, mesp_core.offline.floor_training): the demand head's budget as counts,
    # and how many validation functions are replayed to choose each cluster's default floor.
    floor_stage: bool = True
    floor_origins: int = 120_000
    floor_epochs: int = 6
    floor_val_functions: int = 1500
    # Quantile calibration (mesp_core.offline.calibration): per-group maps fitted on the validation functions.
    calibrate_quantiles: bool = True

    def validate(self) -> "TrainConfig":
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got {self.k_min}..{self.k_max}")
        if not 0.0 <= self.test_fraction < 1.0 or not 0.0 < self.val_fraction < 1.0:
            raise ValueError("test_fraction must be in [0, 1) and val_fraction in (0, 1)")
        from mesp_core.forecasting.model import SCALE_MINUTES

        if self.input_size_max < SCALE_MINUTES:
            raise ValueError(f"input_size_max must be >= {SCALE_MINUTES}")
        if min(self.max_fit_windows, self.max_val_windows, self.max_dense_windows, self.max_cluster_windows) < 1:
            raise ValueError("window caps must be >= 1")
        if self.max_val_functions < 1:
            raise ValueError(f"max_val_functions must be >= 1, got {self.max_val_functions}")
        for name in ("dense_epochs", "cluster_epochs", "patience", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer (a count, not seconds), got {value!r}")
        if self.max_fit_seconds is not None and not (
            isinstance(self.max_fit_seconds, (int, float)) and 0 < self.max_fit_seconds < math.inf
        ):
            raise ValueError(f"max_fit_seconds must be a positive number or None, got {self.max_fit_seconds!r}")
        if self.max_cluster_days < self.k_max:
            raise ValueError(f"max_cluster_days must be >= k_max ({self.k_max})")
        if self.metric != "wape":
            raise ValueError("only metric 'wape' is supported for selection")
        if min(self.floor_origins, self.floor_epochs, self.floor_val_functions) < 1:
            raise ValueError("floor_origins, floor_epochs and floor_val_functions must be >= 1")
        if any(not 0.0 < r <= 1.0 for r in self.recent_check_ratios):
            raise ValueError(f"recent_check_ratios must be in (0, 1], got {self.recent_check_ratios}")
        from mesp_core.forecasting.experts import TRAINABLE_FAMILIES

        unknown = [f for f in self.families if f not in TRAINABLE_FAMILIES]
        if unknown:
            raise ValueError(f"unknown trainable families {unknown}; choose from {sorted(TRAINABLE_FAMILIES)}")
        for family, cap in self.family_max_windows.items():
            if family not in TRAINABLE_FAMILIES:
                raise ValueError(f"family_max_windows names unknown family {family!r}; choose from {sorted(TRAINABLE_FAMILIES)}")
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"family_max_windows[{family!r}] must be a positive integer, got {cap!r}")
        return self

    def family_windows(self, family: str, limit: int) -> int:
        """The windows a fit of `family` may train on, at most, within a stage's own `limit`."""
        return min(limit, self.family_max_windows.get(family, limit))


def quick(config: TrainConfig) -> TrainConfig:
    """A budget for demos and tests: a few minutes on 2 cores, same pipeline."""
    return replace(
        config,
        dense_trials=min(config.dense_trials, 2),
        dense_epochs=min(config.dense_epochs, 4),
        cluster_epochs=min(config.cluster_epochs, 3),
        max_dense_windows=15_000,
        max_cluster_windows=6_000,
        k_max=min(config.k_max, 8),
        floor_origins=min(config.floor_origins, 30_000),
        floor_epochs=min(config.floor_epochs, 3),
        floor_val_functions=min(config.floor_val_functions, 300),
        max_val_functions=min(config.max_val_functions, 1000),
    )


def config_json(config: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))


def train_config_fields(manifest: dict) -> dict:
    """The training config recorded in a manifest, limited to fields this version knows."""
    recorded = manifest.get("training", {}).get("config", {})
    known = TrainConfig.__dataclass_fields__
    fields = {k: v for k, v in recorded.items() if k in known}
    if "families" in fields:
        fields["families"] = tuple(fields["families"])
    return fields
