"""Readers of the trace's other tables: function durations and app memory percentiles (validated)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mesp_core.data.reader import _STREAM_ERRORS, _check_file, _describe_header, _open_text, _read_header, _stream_error
from mesp_core.data.trace import (
    _ON_ERROR_CHOICES,
    DURATION_COLUMNS,
    KEY_COLUMNS,
    MAX_LISTED_PROBLEMS,
    MEMORY_COLUMNS,
    MEMORY_COLUMNS_WITH_FUNCTION,
    TraceFormatError,
)

# --------------------------------------------------------------------------------------------
# Durations and memory percentiles


def _read_table(path, layouts: Sequence[Sequence[str]], key_columns_of, on_error: str, what: str) -> pd.DataFrame:
    if on_error not in _ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {_ON_ERROR_CHOICES}, got {on_error!r}")
    path = Path(path)
    gz = _check_file(path)
    header = _read_header(path, gz)
    layout = next((list(cols) for cols in layouts if header == list(cols)), None)
    if layout is None:
        expected = " or ".join(",".join(cols) for cols in layouts)
        raise TraceFormatError(
            path, 1, f"wrong header for {what}: expected {expected}; got {_describe_header(header)}"
        )
    keys = key_columns_of(layout)
    rows: list[list[str]] = []
    lines: list[int] = []
    problems: list[tuple[str, int, str]] = []
    skipped = 0
    first_line_of: dict[tuple, int] = {}
    line_no = 1
    # These files are small (one row per function or app), so a checked line-by-line read is fine.
    try:
        with _open_text(path, gz) as fh:
            reader = csv.reader(fh)
            next(reader, None)
            for fields in reader:
                line_no = reader.line_num
                if not fields or not any(f.strip() for f in fields):
                    continue
                reason = None
                if len(fields) != len(layout):
                    reason = f"expected {len(layout)} columns, found {len(fields)}"
                else:
                    for name, text in zip(layout, fields):
                        if name in keys:
                            if not text.strip():
                                reason = f"empty {name}"
                                break
                            continue
                        try:
                            value = float(text)
                        except ValueError:
                            reason = f"non-numeric value {text!r} in column {name}"
                            break
                        if not np.isfinite(value):
                            reason = f"non-finite value {text.strip()!r} in column {name}"
                            break
                        if value < 0:
                            reason = f"negative value {text.strip()} in column {name}"
                            break
                if reason is None:
                    key = tuple(fields[layout.index(k)] for k in keys)
                    if key in first_line_of:
                        reason = f"duplicate key {key} (first at line {first_line_of[key]})"
                if reason is not None:
                    if on_error == "raise":
                        raise TraceFormatError(path, line_no, reason)
                    skipped += 1
                    if len(problems) < MAX_LISTED_PROBLEMS:
                        problems.append((str(path), line_no, reason))
                    continue
                first_line_of[key] = line_no
                rows.append(fields)
                lines.append(line_no)
    except csv.Error as exc:
        raise TraceFormatError(path, line_no + 1, f"malformed CSV: {exc}") from exc
    except _STREAM_ERRORS as exc:
        raise _stream_error(path, gz, exc, line_no + 1) from exc
    frame = pd.DataFrame(rows, columns=layout)
    for name in layout:
        if name not in keys:
            frame[name] = pd.to_numeric(frame[name]).astype(np.float64)
    frame.attrs["skipped"] = skipped
    frame.attrs["problems"] = problems
    frame.attrs["path"] = str(path)
    return frame


def read_durations(path, on_error: str = "raise") -> pd.DataFrame:
    """Read ``function_durations_percentiles.*`` (execution times in ms), validated.

    Columns exactly as in the file (``DURATION_COLUMNS``); value columns are float64, all finite and
    >= 0; keys (HashOwner, HashApp, HashFunction) unique. Bad rows raise TraceFormatError with the
    line, or with ``on_error="skip"`` are dropped and counted in ``frame.attrs["skipped"]``
    (first 20 in ``frame.attrs["problems"]``).
    """
    return _read_table(
        path, [DURATION_COLUMNS], lambda layout: list(KEY_COLUMNS), on_error, "function durations"
    )


def read_duration_files(paths, on_error: str = "raise") -> tuple[pd.DataFrame, dict[str, int]]:
    """Several duration files as one frame (a key seen on several days keeps one row per day), and
    how many malformed rows were skipped per file (with on_error="skip")."""
    frames, skipped = [], {}
    for path in paths:
        frame = read_durations(path, on_error=on_error)
        if frame.attrs.get("skipped"):
            skipped[str(path)] = int(frame.attrs["skipped"])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), skipped


def read_memory(path, on_error: str = "raise") -> pd.DataFrame:
    """Read ``app_memory_percentiles.*`` (allocated memory in MB), validated like read_durations.

    Accepts the public trace's app-level layout (``HashOwner,HashApp,SampleCount,...``, keyed by
    app) and the per-function variant with HashFunction (as in the shared top10 sample).
    """
    return _read_table(
        path,
        [MEMORY_COLUMNS, MEMORY_COLUMNS_WITH_FUNCTION],
        lambda layout: [c for c in KEY_COLUMNS if c in layout],
        on_error,
        "app memory",
    )
