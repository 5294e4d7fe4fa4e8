"""`ShardedTrace`: the day files read into shards of functions, never whole in one process.

Reading is a two-step shuffle on Ray:
1. one task per day parses and validates that day's file(s) with the single-process reader's
   own code (`read_day`: same checks, same errors, same skipped rows) and leaves the day's
   counts in Ray's object store; only the keys come back to the driver;
2. the driver numbers the functions by first appearance, exactly as `read_invocations` does,
   and cuts them into contiguous shards; one task per day splits that day's block into the
   shards' pieces, and one task per shard joins its pieces of every day into an
   `InvocationTrace` of its own.

A worker holds one day file (step 1), one day block and its pieces (the split) or one shard
(step 2), never the trace: a shard task's inputs are its own rows, so it never needs every day
block at once (14 day blocks of the full Azure trace are 4 GB). Ray's object store holds the
blocks and pieces and spills them to disk when they do not fit in memory. The shards,
concatenated in order, are the trace `read_invocations` returns (`gather()` does that, for
small traces and tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.reader import _ON_ERROR_CHOICES, _expand_paths, day_groups, index_functions, read_day
from mesp_core.data.trace import MAX_LISTED_PROBLEMS, InvocationTrace, TraceFormatError
from mesp_core.distributed.engine import remote, require_ray
from mesp_core.offline.progress import peak_rss_mb


def _read_day_task(files, on_error):
    day = read_day(files, on_error)
    meta = {"keys": day.keys, "triggers": day.triggers, "skipped": day.skipped, "problems": day.problems,
            "rss_mb": peak_rss_mb()}
    return meta, day.counts


def _split_day(block, *selections):
    """One day's block cut into the shards' pieces: rows `selections[s]` for shard s."""
    pieces = tuple(np.ascontiguousarray(block[sel]) for sel in selections)
    return pieces if len(pieces) > 1 else pieces[0]  # one return value is not a sequence to Ray


def _build_shard(keys, triggers, days, positions, *day_pieces):
    """One shard's InvocationTrace: for each day, its piece's rows go to rows `positions[d]`."""
    n_days = len(days)
    counts = np.zeros((len(keys), n_days * MINUTES_PER_DAY), dtype=np.float32)
    present = np.zeros((len(keys), n_days), dtype=bool)
    for d, (pos, piece) in enumerate(zip(positions, day_pieces)):
        counts[pos, d * MINUTES_PER_DAY : (d + 1) * MINUTES_PER_DAY] = piece
        present[pos, d] = True
    return InvocationTrace(keys=keys, triggers=triggers, counts=counts, days=days, present=present)


def _daily(shard: InvocationTrace, first_function: int):
    """The shard's present function-days as rows, and each row's global function index."""
    days, owner = shard.daily()
    return days, owner + first_function


@dataclass
class ShardedTrace:
    """A trace as contiguous shards of functions, each an `InvocationTrace` in Ray's object store.

    The driver keeps the function keys, triggers, day labels and which functions each shard
    holds (`bounds`: [start, stop) function indices); the counts stay in the shards."""

    keys: list[tuple[str, str, str]]
    triggers: list[str]
    days: list[str]
    bounds: list[tuple[int, int]]
    refs: list  # ray.ObjectRef -> InvocationTrace, one per shard
    skipped: int = 0
    problems: list = field(default_factory=list)
    reader_rss_mb: float = 0.0  # largest peak RSS of a day-reading worker (one fresh process per day)

    @property
    def n_functions(self) -> int:
        return len(self.keys)

    @property
    def n_shards(self) -> int:
        return len(self.refs)

    @classmethod
    def read(cls, paths, n_shards: int, on_error: str = "raise") -> "ShardedTrace":
        """Read day files (as `read_invocations` takes them) into `n_shards` function shards."""
        ray = require_ray()
        if on_error not in _ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {_ON_ERROR_CHOICES}, got {on_error!r}")
        _check_shards(n_shards)
        files = _expand_paths(paths)
        groups = day_groups(files)
        # a day file's parse peaks at a few times its size: its worker exits afterwards
        task = remote(_read_day_task, num_returns=2, max_calls=1)
        calls = [task.remote(day_files, on_error) for _, day_files in groups]
        index_of: dict = {}
        keys: list = []
        triggers: list = []
        problems: list = []
        skipped = 0
        day_index = []
        reader_rss = 0.0
        for meta_ref, _ in calls:  # day by day: the driver holds one day's keys besides the numbered ones
            meta = _day_meta(ray, meta_ref)
            reader_rss = max(reader_rss, meta["rss_mb"])
            skipped += meta["skipped"]
            problems.extend(meta["problems"][: MAX_LISTED_PROBLEMS - len(problems)])
            day_index.append(index_functions(meta["keys"], meta["triggers"], index_of, keys, triggers))
        if not keys:
            raise TraceFormatError(files[0], None, "no valid function rows in the given trace file(s)")
        labels = [label for label, _ in groups]
        bounds = _contiguous(len(keys), n_shards)
        # pieces[d][s]: day d's rows of shard s; positions[s][d]: where they go in shard s
        pieces, positions = [], [[] for _ in bounds]
        split = remote(_split_day, num_returns=len(bounds))
        for (_, counts), idx in zip(calls, day_index):
            selections = []
            for s, (start, stop) in enumerate(bounds):
                sel = np.flatnonzero((idx >= start) & (idx < stop))
                selections.append(sel)
                positions[s].append(idx[sel] - start)
            out = split.remote(counts, *selections)
            pieces.append(out if len(bounds) > 1 else [out])
        del calls  # a day block lives on only until its split has run
        refs = [remote(_build_shard).remote(keys[start:stop], triggers[start:stop], labels, positions[s],
                                            *(day[s] for day in pieces))
                for s, (start, stop) in enumerate(bounds)]
        del pieces
        return cls(keys, triggers, labels, bounds, refs, skipped, problems, reader_rss)

    @classmethod
    def from_trace(cls, trace: InvocationTrace, n_shards: int) -> "ShardedTrace":
        """Shards of a trace already in this process (a generated one, tests)."""
        ray = require_ray()
        _check_shards(n_shards)
        bounds = _contiguous(trace.n_functions, n_shards)
        refs = [ray.put(trace.subset(np.arange(start, stop))) for start, stop in bounds]
        return cls(list(trace.keys), list(trace.triggers), list(trace.days), bounds, refs, trace.skipped, list(trace.problems))

    def daily(self) -> tuple[list, np.ndarray, list[int]]:
        """Per shard a reference to its present function-days [rows, 1440] (in order, the rows of
        `InvocationTrace.daily()`), every row's global function index, and the rows per shard."""
        ray = require_ray()
        calls = [remote(_daily, num_returns=2).remote(ref, start) for ref, (start, _) in zip(self.refs, self.bounds)]
        owners = ray.get([owner for _, owner in calls])
        return [days for days, _ in calls], np.concatenate(owners), [len(o) for o in owners]

    @property
    def n_minutes(self) -> int:
        return len(self.days) * MINUTES_PER_DAY

    def select(self, rows) -> list[tuple[object, np.ndarray]]:
        """The shards holding some of `rows` (sorted global function indices), in order, each as
        (its reference, those rows as indices into the shard): a task per pair sees the functions
        of `rows` in their order."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= self.n_functions):
            raise ValueError(f"rows must be sorted, distinct function indices below {self.n_functions}")
        picked = []
        for ref, (start, stop) in zip(self.refs, self.bounds):
            local = rows[(rows >= start) & (rows < stop)] - start
            if len(local):
                picked.append((ref, local))
        return picked

    def gather(self) -> InvocationTrace:
        """The whole trace in this process (equal to `read_invocations` on the same files)."""
        ray = require_ray()
        shards = ray.get(self.refs)
        return InvocationTrace(
            keys=self.keys,
            triggers=self.triggers,
            counts=np.concatenate([s.counts for s in shards]),
            days=self.days,
            present=np.concatenate([s.present for s in shards]),
            skipped=self.skipped,
            problems=list(self.problems),
        )


def _day_meta(ray, ref) -> dict:
    """A day task's keys and counts of skipped rows; a bad file raises the reader's own error."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, (TraceFormatError, ValueError, OSError)):
            raise exc.cause from None
        raise


def _check_shards(n_shards) -> None:
    if not isinstance(n_shards, (int, np.integer)) or isinstance(n_shards, bool) or n_shards < 1:
        raise ValueError(f"the number of shards must be a positive integer, got {n_shards!r}")


def _contiguous(n: int, n_shards: int) -> list[tuple[int, int]]:
    """[start, stop) of up to n_shards non-empty, near-equal runs of 0..n-1."""
    edges = np.linspace(0, n, min(n_shards, n) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
