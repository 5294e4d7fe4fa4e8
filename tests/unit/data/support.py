"""Trace files written by hand for the reader's and the tables' tests, and the reader's error check."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.reader import read_invocations
from mesp_core.data.trace import INVOCATION_COLUMNS, TraceFormatError


HEADER = ",".join(INVOCATION_COLUMNS)


def row(key: str, values=None, trigger="http") -> str:
    values = list(range(MINUTES_PER_DAY)) if values is None else values
    return f"o{key},a{key},f{key},{trigger}," + ",".join(str(v) for v in values)


def const_row(key: str, value, trigger="http") -> str:
    return row(key, [value] * MINUTES_PER_DAY, trigger)


def write_file(path: Path, lines: list[str], compress=False) -> Path:
    text = "\n".join(lines) + "\n"
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def expect_error(path: Path, line: int | None, pattern: str, **kwargs):
    with pytest.raises(TraceFormatError) as info:
        read_invocations(path, **kwargs)
    err = info.value
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(err).startswith(prefix), str(err)
    assert err.path == str(path) and err.line == line
    assert re.search(pattern, err.reason), err.reason
    return err
