"""A generated N functions x D days trace in the Azure day-file layout, written in chunks of functions.

`generate_trace` holds the whole trace in memory (50,000 x 14 days: 4 GB of float32 counts); here
each chunk of functions is generated and appended to the day files, so writing never holds more
than a chunk. Function i depends only on (seed, i) (`synthetic._one_function`), so the chunked
files equal `write_invocations(generate_trace(N, D, seed))`, and the first n rows of every day file
are the trace of n functions: smaller sizes are prefixes of the largest (`prefix_trace`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.synthetic import _hash, _one_function
from mesp_core.data.trace import InvocationTrace
from mesp_core.data.writer import write_invocations


def _chunk(start: int, stop: int, days: int, seed: int) -> InvocationTrace:
    """Functions start..stop-1 of generate_trace(stop, days, seed) (no holidays, no level shifts)."""
    minutes = days * MINUTES_PER_DAY
    weekdays = np.arange(days) % 7  # d01 a Monday, as generate_trace
    counts = np.empty((stop - start, minutes), dtype=np.float32)
    keys, triggers = [], []
    for row, i in enumerate(range(start, stop)):
        _, trigger, series = _one_function(seed, i, minutes, weekdays)
        counts[row] = series
        app = i // 3
        keys.append((_hash("mesp-synthetic", seed, "owner", app // 2), _hash("mesp-synthetic", seed, "app", app),
                     _hash("mesp-synthetic", seed, "function", i)))
        triggers.append(trigger)
    return InvocationTrace(keys=keys, triggers=triggers, counts=counts, days=[f"d{d + 1:02d}" for d in range(days)],
                           present=np.ones((stop - start, days), dtype=bool))


def write_trace(out_dir, n_functions: int, days: int, seed: int = 0, chunk: int = 2000, log=print) -> list[Path]:
    """The day files of n_functions x days in out_dir (written under a temporary name, then renamed)."""
    out = Path(out_dir)
    if (out / "DONE").exists():
        return sorted(out.glob("*.csv"))
    staging = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent if out.parent.exists() else None))
    try:
        for start in range(0, n_functions, chunk):
            stop = min(start + chunk, n_functions)
            with tempfile.TemporaryDirectory(dir=staging) as part:
                for path in write_invocations(_chunk(start, stop, days, seed), part):
                    with open(path, encoding="utf-8") as src, open(staging / path.name, "a", encoding="utf-8") as dst:
                        header = src.readline()
                        if start == 0:
                            dst.write(header)
                        shutil.copyfileobj(src, dst)
            log(f"  generated functions {stop}/{n_functions}")
        (staging / "DONE").write_text(f"{n_functions} functions x {days} days, seed {seed}\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return sorted(out.glob("*.csv"))


def prefix_trace(full_files: list[Path], out_dir, n_functions: int) -> list[Path]:
    """The first n_functions rows (after the header) of every day file: the trace of n_functions."""
    out = Path(out_dir)
    if not (out / "DONE").exists():
        out.mkdir(parents=True, exist_ok=True)
        for path in full_files:
            with open(path, encoding="utf-8") as src, open(out / path.name, "w", encoding="utf-8") as dst:
                for _ in range(n_functions + 1):
                    line = src.readline()
                    if not line:
                        raise ValueError(f"{path} has fewer than {n_functions} functions")
                    dst.write(line)
        (out / "DONE").write_text(f"first {n_functions} functions of {full_files[0].parent}\n")
    return sorted(out.glob("*.csv"))
