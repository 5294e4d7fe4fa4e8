"""Writer of the Azure Functions 2019 invocation layout: one file per day."""

from __future__ import annotations

import gzip as gzip_module
import re
from pathlib import Path

import numpy as np

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.trace import INVOCATION_COLUMNS, INVOCATIONS_PREFIX, InvocationTrace


# One %-format per row is about twice as fast as joining str() of each value.
_INT_ROW_FORMAT = ",".join(["%d"] * MINUTES_PER_DAY)
_FLOAT_ROW_FORMAT = ",".join(["%.9g"] * MINUTES_PER_DAY)  # 9 digits: exact for float32


def write_invocations(trace: InvocationTrace, out_dir, gzip: bool = False) -> list[Path]:
    """Write one Azure-layout file per day: ``out_dir/invocations_per_function_md.anon.dNN.csv[.gz]``.

    A day labelled ``dNN`` keeps its number; other labels (e.g. ``"sample"``) are numbered by
    position (d01, d02, ...). Only functions present on a day are written for it. Integral counts
    are written as integers, others with 9 significant digits (exact for float32).
    ``read_invocations(write_invocations(t, d))`` reproduces ``t`` when every function is present
    on its first day (function order is first appearance).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    header = ",".join(INVOCATION_COLUMNS) + "\n"
    used_numbers: set[int] = set()
    for d, label in enumerate(trace.days):
        match = re.fullmatch(r"d(\d{1,3})", label)
        number = int(match.group(1)) if match else d + 1
        if number in used_numbers:
            raise ValueError(f"two days of the trace map to file day d{number:02d}")
        used_numbers.add(number)
        name = f"{INVOCATIONS_PREFIX}.anon.d{number:02d}.csv" + (".gz" if gzip else "")
        path = out / name
        block = trace.counts[:, d * MINUTES_PER_DAY : (d + 1) * MINUTES_PER_DAY]
        rows = np.flatnonzero(trace.present[:, d])
        integral = bool(np.all(block[rows] == np.round(block[rows])))
        opener = gzip_module.open(path, "wt", encoding="utf-8", compresslevel=6, newline="") if gzip else open(
            path, "w", encoding="utf-8", newline=""
        )
        with opener as fh:
            fh.write(header)
            buffer: list[str] = []
            for f in rows:
                owner, app, func = trace.keys[f]
                if integral:
                    text = _INT_ROW_FORMAT % tuple(block[f].astype(np.int64).tolist())
                else:
                    text = _FLOAT_ROW_FORMAT % tuple(block[f].astype(np.float64).tolist())
                buffer.append(f"{owner},{app},{func},{trace.triggers[f]},{text}\n")
                if len(buffer) >= 1024:
                    fh.write("".join(buffer))
                    buffer.clear()
            fh.write("".join(buffer))
        written.append(path)
    return written
