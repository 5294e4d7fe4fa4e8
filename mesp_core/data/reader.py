"""Reader of the Azure Functions 2019 invocation files, with validation.

Invocation files (``invocations_per_function_md.anon.dNN.csv`` in the public trace) have the header
``HashOwner,HashApp,HashFunction,Trigger,1,...,1440``: one row per function and day, one column per
minute. They are read unchanged, plain or gzip'd (detected from the file's magic bytes, not its
name).

Days. A file whose name contains ``.dNN.`` (``d01`` .. ``d14``) is that day. Files of different days
are joined per (HashOwner, HashApp, HashFunction) key into one series ordered by day number; a
function missing from a day gets zeros there and ``present[f, d] = False``. A file with no ``.dNN.``
in its name (the shared ``invocations_per_function_md.sample.csv.gz`` or ``...top10.csv``) is one day
on its own; several such undated files are *not* separate days: their rows are concatenated as extra
functions of that one day (labelled e.g. ``"sample"`` or ``"sample+top10"``). Dated and undated
files cannot be mixed in one read.

Speed. Each file is parsed once with pandas' C engine and validated with vectorised checks. Only if
a check fails is the file read a second time to name the exact line(s): field counts per line, then
one pandas parse of the well-formed lines with the checks vectorised again. Well-formed full-size
day files (~46,000 rows x 1444 columns) never pay for that second pass. Fields are never quoted in
this layout; a quote character is taken literally.

Errors. A malformed row (wrong column count, empty key, non-numeric / negative / non-finite count,
duplicate key within a day) raises ``TraceFormatError("path:line: reason")`` with the 1-based line
number as in the file (the header is line 1). With ``on_error="skip"`` such rows are dropped instead,
counted in ``InvocationTrace.skipped`` and the first 20 are listed in ``InvocationTrace.problems``.
Problems with a whole file (missing, empty, unreadable gzip, wrong header) always raise.
"""

from __future__ import annotations

import csv
import gzip as gzip_module
import io
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.trace import (
    _DAY_RE,
    _ON_ERROR_CHOICES,
    INVOCATION_COLUMNS,
    INVOCATIONS_PREFIX,
    KEY_COLUMNS,
    MAX_LISTED_PROBLEMS,
    MINUTE_COLUMNS,
    InvocationTrace,
    TraceFormatError,
)

# --------------------------------------------------------------------------------------------
# Low-level file access


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _check_file(path: Path) -> bool:
    """Raise a clear TraceFormatError for missing / empty files; return whether it is gzip'd."""
    if not path.exists():
        raise TraceFormatError(path, None, "file not found")
    if path.is_dir():
        raise TraceFormatError(path, None, "is a directory, expected a trace file")
    try:
        if path.stat().st_size == 0:
            raise TraceFormatError(path, 1, "file is empty (expected a header line)")
        return _is_gzip(path)
    except OSError as exc:
        raise TraceFormatError(path, None, f"cannot read file: {exc.strerror or exc}") from exc


def _open_text(path: Path, gz: bool):
    raw = gzip_module.open(path, "rb") if gz else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


_STREAM_ERRORS = (EOFError, OSError, zlib.error, UnicodeDecodeError)


def _stream_error(path: Path, gz: bool, exc: Exception, line: int | None) -> TraceFormatError:
    if isinstance(exc, UnicodeDecodeError):
        return TraceFormatError(path, line, "not UTF-8 text")
    if gz:
        return TraceFormatError(path, line, f"unreadable gzip data (corrupt or truncated): {exc}")
    return TraceFormatError(path, line, f"cannot read file: {exc}")


def _read_header(path: Path, gz: bool) -> list[str]:
    try:
        with _open_text(path, gz) as fh:
            first = fh.readline()
    except _STREAM_ERRORS as exc:
        raise _stream_error(path, gz, exc, 1) from exc
    first = first.lstrip("\ufeff").rstrip("\r\n")
    if not first.strip():
        raise TraceFormatError(path, 1, "file is empty (expected a header line)")
    return first.split(",")  # no quoting in this layout (see _parse_frame)


def _describe_header(names: Sequence[str]) -> str:
    shown = ",".join(names[:6])
    return f"{shown}{',...' if len(names) > 6 else ''} ({len(names)} columns)"


# --------------------------------------------------------------------------------------------
# Invocation files


@dataclass
class _FileRows:
    """Validated rows of one invocation file."""

    path: Path
    keys: list[tuple[str, str, str]]
    triggers: list[str]
    counts: np.ndarray  # float32 [n, 1440]
    lines: np.ndarray | None  # file line of each row; None when read by the fast path
    problems: list[tuple[str, int, str]]
    n_bad: int

    def line_numbers(self) -> np.ndarray:
        if self.lines is None:
            self.lines = _data_line_numbers(self.path)
        return self.lines


def _read_text(path: Path, gz: bool) -> str:
    """The whole file as text; a corrupt gzip stream or bad encoding names the line it reached."""
    chunks: list[bytes] = []
    try:
        with (gzip_module.open(path, "rb") if gz else open(path, "rb")) as fh:
            while True:
                chunk = fh.read(1 << 24)
                if not chunk:
                    break
                chunks.append(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        lines_read = sum(c.count(b"\n") for c in chunks)
        raise _stream_error(path, gz, exc, lines_read + 1) from exc
    data = b"".join(chunks)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(path, data.count(b"\n", 0, exc.start) + 1, "not UTF-8 text") from exc


def _data_line_numbers(path: Path) -> np.ndarray:
    """File line numbers of the non-blank data rows (only needed to word an error)."""
    lines = _read_text(path, _is_gzip(path)).split("\n")
    return np.asarray([i + 1 for i in range(1, len(lines)) if lines[i].strip()], dtype=np.int64)


def _parse_frame(source, **kwargs) -> pd.DataFrame:
    # Keys and trigger kept as text (a converter is cheaper than a dtype mapping, and a hash such as
    # "1e8e9efa" must not become a number); counts left to the C parser's own int/float inference,
    # about twice as fast as forcing float32 per column. Quotes are not used by the Azure layout
    # and are taken literally, so a line's field count is simply its comma count + 1.
    return pd.read_csv(
        source,
        engine="c",
        na_filter=False,
        quoting=csv.QUOTE_NONE,
        converters={name: str for name in INVOCATION_COLUMNS[:4]},
        encoding="utf-8",
        **kwargs,
    )


def _fast_parse(path: Path, gz: bool):
    """pandas C-engine parse + vectorised checks; returns None if anything needs a closer look."""
    try:
        with warnings.catch_warnings():
            # pandas only *warns* when every row has extra fields; that must be an error here.
            warnings.simplefilter("error")
            frame = _parse_frame(path, header=0, compression="gzip" if gz else None)
    except Exception:  # noqa: BLE001 - any parse failure is re-diagnosed by _diagnose_parse
        return None
    # pandas turns a first column into the index when every row has one field too many
    if list(frame.columns) != list(INVOCATION_COLUMNS) or not isinstance(frame.index, pd.RangeIndex):
        return None
    if any(dtype.kind not in "iuf" for dtype in frame.dtypes.iloc[4:]):
        return None  # some count is not a number
    # pandas keeps columns as rows internally: transpose and cast in one copy
    counts = np.ascontiguousarray(frame.iloc[:, 4:].to_numpy(), dtype=np.float32)
    if counts.size and not (np.isfinite(counts).all() and (counts >= 0).all()):
        return None
    key_frame = frame.iloc[:, :3]
    if (key_frame.map(str.strip) == "").to_numpy().any() or key_frame.duplicated().any():
        return None
    keys = list(zip(*(key_frame[c].tolist() for c in KEY_COLUMNS)))
    return keys, frame["Trigger"].tolist(), counts


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Column of the first True per row (rows are known to have one)."""
    return np.argmax(mask, axis=1)


def _diagnose_parse(path: Path, gz: bool, on_error: str) -> _FileRows:
    """Parse a file the fast path objected to, naming the line of every bad row.

    Field counts are checked per line (a comma count), the well-formed lines are parsed by pandas
    in one go, and the checks run vectorised; only the bad cells are looked at one by one.
    """
    text = _read_text(path, gz)
    lines = text.split("\n")
    expected = len(INVOCATION_COLUMNS)
    reasons: dict[int, str] = {}
    good: list[str] = []
    good_numbers: list[int] = []
    for i in range(1, len(lines)):
        line = lines[i]
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            continue
        n_fields = line.count(",") + 1
        if n_fields != expected:
            reasons[i + 1] = f"expected {expected} columns, found {n_fields}"
        else:
            good.append(line)
            good_numbers.append(i + 1)
    del lines, text

    numbers = np.asarray(good_numbers, dtype=np.int64)
    keys: list[tuple[str, str, str]] = []
    triggers: list[str] = []
    counts = np.zeros((0, MINUTES_PER_DAY), dtype=np.float32)
    if good:
        frame = _parse_frame(io.StringIO("\n".join(good)), header=None, names=list(INVOCATION_COLUMNS))
        del good
        if len(frame) != len(numbers):
            raise TraceFormatError(path, None, "could not align parsed rows with file lines")
        ok = np.ones(len(frame), dtype=bool)

        def flag(r: int, reason: str) -> None:
            # one reason per row: the first check that fails
            if ok[r]:
                reasons[int(numbers[r])] = reason
                ok[r] = False

        for name in KEY_COLUMNS:
            for r in np.flatnonzero(frame[name].str.strip().eq("").to_numpy()):
                flag(r, f"empty {name}")

        block = frame.iloc[:, 4:]
        values = np.empty(block.shape, dtype=np.float64)
        is_number = np.array([dtype.kind in "iuf" for dtype in block.dtypes])
        values[:, is_number] = block.iloc[:, np.flatnonzero(is_number)].to_numpy(dtype=np.float64)
        for j in np.flatnonzero(~is_number):  # columns holding some non-number: those cells -> NaN
            values[:, j] = pd.to_numeric(block.iloc[:, j].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        not_finite = ~np.isfinite(values)
        bad_rows = np.flatnonzero(not_finite.any(axis=1))
        first_col = _first_true(not_finite[bad_rows]) if bad_rows.size else []
        for r, j in zip(bad_rows, first_col):
            raw = block.iat[r, j]
            shown = raw.strip() if isinstance(raw, str) else str(raw)
            try:
                float(shown)
                kind = "non-finite"
            except ValueError:
                kind = "non-numeric"
            flag(r, f"{kind} count {shown!r} in column {MINUTE_COLUMNS[j]}")
        negative = values < 0
        bad_rows = np.flatnonzero(negative.any(axis=1))
        if bad_rows.size:
            for r, j in zip(bad_rows, _first_true(negative[bad_rows])):
                flag(r, f"negative count {values[r, j]:.10g} in column {MINUTE_COLUMNS[j]}")

        # duplicates among otherwise valid rows; the first occurrence is kept
        valid = np.flatnonzero(ok)
        key_frame = frame.iloc[valid, :3]
        dup = key_frame.duplicated(keep="first").to_numpy()
        if dup.any():
            first_line: dict[tuple[str, str, str], int] = {}
            for r, key in zip(valid, key_frame.itertuples(index=False, name=None)):
                first_line.setdefault(key, int(numbers[r]))
            for r in valid[dup]:
                key = tuple(frame.iloc[r, :3])
                flag(r, f"duplicate key {_short_key(key)} (first at line {first_line[key]})")

        kept = np.flatnonzero(ok)
        keys = list(frame.iloc[kept, :3].itertuples(index=False, name=None))
        triggers = frame["Trigger"].iloc[kept].tolist()
        counts = np.ascontiguousarray(values[kept], dtype=np.float32)
        numbers = numbers[kept]

    ordered = sorted(reasons.items())
    if ordered and on_error == "raise":
        line, reason = ordered[0]
        raise TraceFormatError(path, line, reason)
    problems = [(str(path), line, reason) for line, reason in ordered[:MAX_LISTED_PROBLEMS]]
    return _FileRows(path, keys, triggers, counts, numbers, problems, len(ordered))


def _short_key(key: tuple[str, str, str]) -> str:
    return "(" + ", ".join(k[:12] + ("..." if len(k) > 12 else "") for k in key) + ")"


def _read_invocation_file(path: Path, on_error: str) -> _FileRows:
    gz = _check_file(path)
    header = _read_header(path, gz)
    if header != list(INVOCATION_COLUMNS):
        raise TraceFormatError(
            path,
            1,
            "wrong header: expected HashOwner,HashApp,HashFunction,Trigger,1,...,1440 "
            f"({len(INVOCATION_COLUMNS)} columns), got {_describe_header(header)}",
        )
    fast = _fast_parse(path, gz)
    if fast is not None:
        keys, triggers, counts = fast
        return _FileRows(path, keys, triggers, counts, None, [], 0)
    return _diagnose_parse(path, gz, on_error)


def _day_label(path: Path) -> tuple[int | None, str]:
    """(day number, label) from a file name: ``...anon.d03.csv`` -> (3, "d03")."""
    match = _DAY_RE.search(path.name)
    if match:
        number = int(match.group(1))
        return number, f"d{number:02d}"
    name = path.name
    for suffix in (".gz", ".csv"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for prefix in (INVOCATIONS_PREFIX + ".", "anon."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return None, name or path.stem


def _expand_paths(paths) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    expanded: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.name.startswith(INVOCATIONS_PREFIX) and q.is_file())
            if not found:
                raise TraceFormatError(p, None, f"directory holds no {INVOCATIONS_PREFIX}* files")
            expanded.extend(found)
        else:
            expanded.append(p)
    if not expanded:
        raise ValueError("no trace files given")
    return expanded


def day_groups(files: list[Path]) -> list[tuple[str, list[Path]]]:
    """The files of each day, in day order: ``[("d01", [...]), ...]`` (one group when undated)."""
    labelled = [(path, *_day_label(path)) for path in files]
    dated = [item for item in labelled if item[1] is not None]
    undated = [item for item in labelled if item[1] is None]
    if dated and undated:
        raise TraceFormatError(
            undated[0][0],
            None,
            "file name has no .dNN. day while other files do; pass only day files "
            "(…anon.d01.csv, …) or only undated files",
        )
    if dated:
        numbers = sorted({number for _, number, _ in dated})
        groups = [
            (f"d{number:02d}", [path for path, n, _ in dated if n == number]) for number in numbers
        ]
    else:
        labels = list(dict.fromkeys(label for _, _, label in undated))
        groups = [("+".join(labels), [path for path, _, _ in undated])]
    return groups


@dataclass
class DayRows:
    """The valid rows of one day's file(s), in file then line order."""

    keys: list[tuple[str, str, str]]
    triggers: list[str]
    counts: np.ndarray  # float32 [rows, 1440]
    skipped: int
    problems: list[tuple[str, int | None, str]]


def read_day(day_files: list[Path], on_error: str, bar=None) -> DayRows:
    """Read and validate the files of one day; a key repeated across them is a bad row."""
    seen_at: dict[tuple[str, str, str], tuple[_FileRows, int]] = {}
    keys: list[tuple[str, str, str]] = []
    triggers: list[str] = []
    day_counts: list[np.ndarray] = []
    problems: list[tuple[str, int | None, str]] = []
    skipped = 0
    for path in day_files:
        rows = _read_invocation_file(path, on_error)
        skipped += rows.n_bad
        problems.extend(rows.problems[: MAX_LISTED_PROBLEMS - len(problems)])
        keep = np.ones(len(rows.keys), dtype=bool)
        # Keys repeated across files of one day (rare): reject the later row.
        for r, key in enumerate(rows.keys):
            if key in seen_at:
                first_rows, first_r = seen_at[key]
                first_line = first_rows.line_numbers()[first_r]
                reason = f"duplicate key {_short_key(key)} (first at {first_rows.path}:{first_line})"
                line = int(rows.line_numbers()[r])
                if on_error == "raise":
                    raise TraceFormatError(path, line, reason)
                keep[r] = False
                skipped += 1
                if len(problems) < MAX_LISTED_PROBLEMS:
                    problems.append((str(path), line, reason))
            else:
                seen_at[key] = (rows, r)
        if keep.all():
            keys.extend(rows.keys)
            triggers.extend(rows.triggers)
            day_counts.append(rows.counts)
        else:
            keys.extend(key for key, kept in zip(rows.keys, keep) if kept)
            triggers.extend(trigger for trigger, kept in zip(rows.triggers, keep) if kept)
            day_counts.append(rows.counts[keep])
        if bar is not None:
            bar.update(1)
    counts = day_counts[0] if len(day_counts) == 1 else np.concatenate(day_counts)
    return DayRows(keys, triggers, counts, skipped, problems)


def index_functions(day_keys: list, day_triggers: list, index_of: dict, keys: list, triggers: list) -> np.ndarray:
    """Function index of each of a day's rows; functions not seen before are appended to
    `keys`/`triggers` (so functions are ordered by first appearance)."""
    idx = np.empty(len(day_keys), dtype=np.int64)
    for r, key in enumerate(day_keys):
        f = index_of.get(key)
        if f is None:
            f = index_of[key] = len(keys)
            keys.append(key)
            triggers.append(day_triggers[r])
        idx[r] = f
    return idx


def read_invocations(paths, on_error: str = "raise", progress: bool = False) -> InvocationTrace:
    """Read one or more invocation files (or directories holding them) into one InvocationTrace.

    ``paths``: a path, a directory (all ``invocations_per_function_md*`` files in it) or a list.
    Files named ``...dNN...`` are days joined per function key in day order; undated files form one
    day together, their rows concatenated as extra functions (see the module docstring).
    ``on_error``: ``"raise"`` (default) raises TraceFormatError at the first bad row;
    ``"skip"`` drops bad rows and counts them (``.skipped``, ``.problems``). A key repeated within a
    day is a bad row at its second occurrence (the first is kept).
    Functions are ordered by first appearance (day order, then file order, then line order).
    Memory: the result is float32 ``[n_functions, n_days*1440]``; a multi-day read briefly holds
    the per-day arrays as well.
    """
    if on_error not in _ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {_ON_ERROR_CHOICES}, got {on_error!r}")
    files = _expand_paths(paths)
    groups = day_groups(files)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), desc="reading trace", unit="file")

    index_of: dict[tuple[str, str, str], int] = {}
    keys: list[tuple[str, str, str]] = []
    triggers: list[str] = []
    day_blocks: list[tuple[np.ndarray, np.ndarray]] = []  # (function indices, counts) per day
    problems: list[tuple[str, int | None, str]] = []
    skipped = 0
    try:
        for _label, day_files in groups:
            day = read_day(day_files, on_error, bar)
            skipped += day.skipped
            problems.extend(day.problems[: MAX_LISTED_PROBLEMS - len(problems)])
            day_blocks.append((index_functions(day.keys, day.triggers, index_of, keys, triggers), day.counts))
    finally:
        if bar is not None:
            bar.close()

    n_functions, n_days = len(keys), len(groups)
    if n_functions == 0:
        raise TraceFormatError(files[0], None, "no valid function rows in the given trace file(s)")
    present = np.zeros((n_functions, n_days), dtype=bool)
    if n_days == 1 and np.array_equal(day_blocks[0][0], np.arange(n_functions)):
        counts = day_blocks[0][1]
        present[:, 0] = True
    else:
        counts = np.zeros((n_functions, n_days * MINUTES_PER_DAY), dtype=np.float32)
        for d in range(n_days):
            idx, block = day_blocks[d]
            counts[idx, d * MINUTES_PER_DAY : (d + 1) * MINUTES_PER_DAY] = block
            present[idx, d] = True
            day_blocks[d] = (idx, None)  # free the day's copy early
    return InvocationTrace(
        keys=keys,
        triggers=triggers,
        counts=counts,
        days=[label for label, _ in groups],
        present=present,
        skipped=skipped,
        problems=problems,
    )
