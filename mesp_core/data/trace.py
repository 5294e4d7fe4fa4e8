"""The invocation trace in memory, and the function-level split every experiment uses.

`InvocationTrace` holds per-minute invocation counts of many functions over one or more whole days,
in the Azure Functions 2019 layout's terms (keys HashOwner/HashApp/HashFunction, a trigger, 1440
minutes a day). Reading and writing the day files is `mesp_core.data.reader` / `.writer`; the
durations and memory percentile tables are `mesp_core.data.tables`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY

KEY_COLUMNS = ("HashOwner", "HashApp", "HashFunction")
MINUTE_COLUMNS = tuple(str(m) for m in range(1, MINUTES_PER_DAY + 1))
INVOCATION_COLUMNS = KEY_COLUMNS + ("Trigger",) + MINUTE_COLUMNS
DURATION_COLUMNS = KEY_COLUMNS + (
    "Average",
    "Count",
    "Minimum",
    "Maximum",
    "percentile_Average_0",
    "percentile_Average_1",
    "percentile_Average_25",
    "percentile_Average_50",
    "percentile_Average_75",
    "percentile_Average_99",
    "percentile_Average_100",
)
# The public trace keys memory by app (HashOwner, HashApp); the shared top10 sample also carries
# HashFunction. Both layouts are accepted.
MEMORY_VALUE_COLUMNS = (
    "SampleCount",
    "AverageAllocatedMb",
    "AverageAllocatedMb_pct1",
    "AverageAllocatedMb_pct5",
    "AverageAllocatedMb_pct25",
    "AverageAllocatedMb_pct50",
    "AverageAllocatedMb_pct75",
    "AverageAllocatedMb_pct95",
    "AverageAllocatedMb_pct99",
    "AverageAllocatedMb_pct100",
)
MEMORY_COLUMNS = ("HashOwner", "HashApp") + MEMORY_VALUE_COLUMNS
MEMORY_COLUMNS_WITH_FUNCTION = KEY_COLUMNS + MEMORY_VALUE_COLUMNS

INVOCATIONS_PREFIX = "invocations_per_function_md"
MAX_LISTED_PROBLEMS = 20
_DAY_RE = re.compile(r"\.d(\d{1,3})\.")
_ON_ERROR_CHOICES = ("raise", "skip")

class TraceFormatError(ValueError):
    """A trace file cannot be used as given. ``str(e) == "<file>:<line>: <reason>"``.

    ``line`` is the 1-based line number in the file (header = 1), or None when the problem concerns
    the whole file (missing, unreadable); then ``str(e) == "<file>: <reason>"``.
    """

    def __init__(self, path, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        # rebuilt from its parts when it crosses processes (a Ray task reading a day file)
        return type(self), (self.path, self.line, self.reason)


@dataclass
class InvocationTrace:
    """Per-minute invocation counts of many functions over one or more whole days."""

    keys: list[tuple[str, str, str]]
    triggers: list[str]
    counts: np.ndarray
    days: list[str]
    present: np.ndarray
    skipped: int = 0
    problems: list[tuple[str, int | None, str]] = field(default_factory=list)

    def __post_init__(self):
        self.keys = [tuple(k) for k in self.keys]
        self.triggers = list(self.triggers)
        self.days = list(self.days)
        self.counts = np.ascontiguousarray(self.counts, dtype=np.float32)
        self.present = np.asarray(self.present, dtype=bool)
        n = len(self.keys)
        if self.counts.ndim != 2 or self.counts.shape != (n, len(self.days) * MINUTES_PER_DAY):
            raise ValueError(
                f"counts must have shape (n_functions={n}, n_days*{MINUTES_PER_DAY}="
                f"{len(self.days) * MINUTES_PER_DAY}), got {self.counts.shape}"
            )
        if self.present.shape != (n, len(self.days)):
            raise ValueError(f"present must have shape ({n}, {len(self.days)}), got {self.present.shape}")
        if len(self.triggers) != n:
            raise ValueError(f"{len(self.triggers)} triggers for {n} functions")
        if len(set(self.keys)) != n:
            raise ValueError("function keys must be unique")

    @property
    def n_functions(self) -> int:
        return self.counts.shape[0]

    @property
    def n_minutes(self) -> int:
        return self.counts.shape[1]

    @property
    def n_days(self) -> int:
        return len(self.days)

    def subset(self, idx) -> "InvocationTrace":
        """The functions selected by ``idx`` (integer indices or a boolean mask), in that order."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (self.n_functions,):
                raise ValueError(f"boolean mask must have length {self.n_functions}, got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        return InvocationTrace(
            keys=[self.keys[i] for i in idx],
            triggers=[self.triggers[i] for i in idx],
            counts=self.counts[idx],
            days=list(self.days),
            present=self.present[idx],
            skipped=self.skipped,
            problems=list(self.problems),
        )

    def daily(self) -> tuple[np.ndarray, np.ndarray]:
        """Present function-days as rows: ``([n_rows, 1440] counts, [n_rows] function index)``.

        Rows are ordered by function, then by day; days on which a function is absent are left out.
        """
        per_day = self.counts.reshape(self.n_functions, self.n_days, MINUTES_PER_DAY)
        func_idx, day_idx = np.nonzero(self.present)
        return per_day[func_idx, day_idx], func_idx

    def fingerprint(self) -> str:
        """sha256 hex of the function keys and counts (identifies training data in manifests)."""
        digest = trace_digest(self.keys, self.n_minutes)
        digest.update(np.ascontiguousarray(self.counts, dtype="<f4").tobytes())
        return digest.hexdigest()

    def __eq__(self, other) -> bool:
        if not isinstance(other, InvocationTrace):
            return NotImplemented
        return (
            self.keys == other.keys
            and self.triggers == other.triggers
            and self.days == other.days
            and np.array_equal(self.present, other.present)
            and np.array_equal(self.counts, other.counts)
        )

    def __repr__(self) -> str:
        return (
            f"InvocationTrace(n_functions={self.n_functions}, days={self.days}, "
            f"skipped={self.skipped})"
        )



# --------------------------------------------------------------------------------------------
# Function-level split


def trace_digest(keys, n_minutes: int):
    """The fingerprint's sha256 after the header and keys; the counts (float32, little-endian, in
    function order) are fed next, all at once or shard by shard."""
    digest = hashlib.sha256()
    digest.update(f"mesp-trace-v1|{len(keys)}|{n_minutes}\n".encode())
    for key in keys:
        digest.update(("\x1f".join(key) + "\n").encode())
    return digest


def split_functions(trace: InvocationTrace, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic function-level split: ``(train_idx, test_idx)``, both sorted.

    Each function is ranked by sha256 of (seed, its key), and the ``round(n*test_fraction)``
    lowest go to test (at least one each side when n >= 2). The choice depends only on the set of
    keys and the seed, so it is the same across runs, machines and file orders. ``test_fraction``
    0 puts every function in train (a model to deploy once evaluation is done).
    """
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n = trace.n_functions
    if float(test_fraction) == 0.0:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ranks = np.array(
        [
            int.from_bytes(
                hashlib.sha256(f"{seed}\x1f{o}\x1f{a}\x1f{f}".encode()).digest()[:8], "big"
            )
            for o, a, f in trace.keys
        ],
        dtype=np.uint64,
    )
    n_test = int(round(n * float(test_fraction)))
    if n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    order = np.argsort(ranks, kind="stable")
    test = np.sort(order[:n_test])
    train = np.sort(order[n_test:])
    return train.astype(np.int64), test.astype(np.int64)
