"""Trace ingestion: Azure layout, multi-day join, validation with file:line, gzip, writer."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.synthetic import generate_trace
from mesp_core.data.reader import read_invocations
from mesp_core.data.tables import read_durations, read_memory
from mesp_core.data.trace import DURATION_COLUMNS, INVOCATION_COLUMNS, InvocationTrace, TraceFormatError, split_functions
from mesp_core.data.writer import write_invocations

# ../shared sits beside the checkout (CI too); the sample is test data only, never packaged.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "azure2019"
SAMPLE = SHARED / "invocations_per_function_md.sample.csv.gz"
ORIGINAL = SHARED / "original-schema"
needs_shared_data = pytest.mark.skipif(
    not SAMPLE.exists(), reason="the Azure sample (not redistributable) is not on this machine"
)

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


# ---------------------------------------------------------------------------------------------
# well-formed input


def test_reads_one_day_file(tmp_path):
    path = write_file(tmp_path / "invocations_per_function_md.anon.d01.csv", [HEADER, row("1"), const_row("2", 7)])
    trace = read_invocations(path)
    assert trace.days == ["d01"]
    assert trace.keys == [("o1", "a1", "f1"), ("o2", "a2", "f2")]
    assert trace.triggers == ["http", "http"]
    assert trace.counts.dtype == np.float32 and trace.counts.shape == (2, MINUTES_PER_DAY)
    np.testing.assert_array_equal(trace.counts[0], np.arange(MINUTES_PER_DAY))
    np.testing.assert_array_equal(trace.counts[1], 7)
    assert trace.present.all() and trace.skipped == 0 and trace.problems == []
    assert trace.n_functions == 2 and trace.n_minutes == MINUTES_PER_DAY


def test_gzip_equals_plain_and_is_detected_by_content(tmp_path):
    lines = [HEADER, row("1"), const_row("2", 3)]
    plain = read_invocations(write_file(tmp_path / "invocations_per_function_md.anon.d01.csv", lines))
    gz = read_invocations(write_file(tmp_path / "x.anon.d01.csv.gz", lines, compress=True))
    # a gzip'd file without .gz in its name is still read (magic bytes decide)
    odd = read_invocations(write_file(tmp_path / "y.anon.d01.csv", lines, compress=True))
    assert plain == gz == odd


def test_multi_day_join_orders_by_day_and_fills_absent_days(tmp_path):
    d02 = write_file(tmp_path / "invocations_per_function_md.anon.d02.csv", [HEADER, const_row("B", 2), const_row("C", 3)])
    d01 = write_file(tmp_path / "invocations_per_function_md.anon.d01.csv.gz", [HEADER, const_row("A", 1), const_row("B", 5)], compress=True)
    trace = read_invocations([d02, d01])  # given out of order on purpose
    assert trace.days == ["d01", "d02"]
    assert [k[2] for k in trace.keys] == ["fA", "fB", "fC"]
    np.testing.assert_array_equal(trace.present, [[True, False], [True, True], [False, True]])
    day = MINUTES_PER_DAY
    np.testing.assert_array_equal(trace.counts[0, :day], 1)
    np.testing.assert_array_equal(trace.counts[0, day:], 0)
    np.testing.assert_array_equal(trace.counts[1, :day], 5)
    np.testing.assert_array_equal(trace.counts[1, day:], 2)
    np.testing.assert_array_equal(trace.counts[2, :day], 0)
    np.testing.assert_array_equal(trace.counts[2, day:], 3)
    rows, func = trace.daily()
    assert rows.shape == (4, day)
    np.testing.assert_array_equal(func, [0, 1, 1, 2])
    np.testing.assert_array_equal(rows[:, 0], [1, 5, 2, 3])


def test_directory_reads_all_trace_files(tmp_path):
    write_file(tmp_path / "invocations_per_function_md.anon.d01.csv", [HEADER, const_row("A", 1)])
    write_file(tmp_path / "invocations_per_function_md.anon.d03.csv", [HEADER, const_row("A", 3)])
    (tmp_path / "notes.txt").write_text("not a trace")
    trace = read_invocations(tmp_path)
    assert trace.days == ["d01", "d03"]
    np.testing.assert_array_equal(trace.counts[0, MINUTES_PER_DAY:], 3)


def test_undated_files_are_concatenated_into_one_day(tmp_path):
    a = write_file(tmp_path / "invocations_per_function_md.sample.csv", [HEADER, const_row("A", 1)])
    b = write_file(tmp_path / "invocations_per_function_md.top10.csv", [HEADER, const_row("B", 2)])
    trace = read_invocations([a, b])
    assert trace.days == ["sample+top10"]
    assert trace.n_functions == 2 and trace.present.all()


def test_mixing_dated_and_undated_files_is_refused(tmp_path):
    a = write_file(tmp_path / "invocations_per_function_md.anon.d01.csv", [HEADER, const_row("A", 1)])
    b = write_file(tmp_path / "invocations_per_function_md.sample.csv", [HEADER, const_row("B", 2)])
    with pytest.raises(TraceFormatError, match="no .dNN. day"):
        read_invocations([a, b])


def test_float_and_spaced_counts_are_accepted(tmp_path):
    values = ["1.5", " 2", "1e2"] + ["0"] * (MINUTES_PER_DAY - 3)
    path = write_file(tmp_path / "t.anon.d01.csv", [HEADER, row("1", values)])
    trace = read_invocations(path)
    np.testing.assert_array_equal(trace.counts[0, :4], [1.5, 2, 100, 0])


# ---------------------------------------------------------------------------------------------
# malformed input: every kind names file and line


BAD_ROWS = {
    "short-row": (row("X", list(range(MINUTES_PER_DAY - 1))), r"expected 1444 columns, found 1443"),
    "long-row": (row("X", list(range(MINUTES_PER_DAY + 1))), r"expected 1444 columns, found 1445"),
    "non-numeric": (row("X", ["abc"] + [0] * (MINUTES_PER_DAY - 1)), r"non-numeric count 'abc' in column 1\b"),
    "empty-count": (row("X", [0] * 9 + [""] + [0] * (MINUTES_PER_DAY - 10)), r"non-numeric count '' in column 10\b"),
    "negative": (row("X", [0, 0, -3] + [0] * (MINUTES_PER_DAY - 3)), r"negative count -3 in column 3\b"),
    "nan": (row("X", [0, "nan"] + [0] * (MINUTES_PER_DAY - 2)), r"non-finite count 'nan' in column 2\b"),
    "inf": (row("X", ["inf"] + [0] * (MINUTES_PER_DAY - 1)), r"non-finite count 'inf' in column 1\b"),
    "duplicate": (row("1"), r"duplicate key \(o1, a1, f1\) \(first at line 2\)"),
    "empty-key": (",a,f,http," + ",".join(["0"] * MINUTES_PER_DAY), r"empty HashOwner"),
}
# validation does not depend on compression: gzip is checked for a few kinds only (keeps it fast)
CASES = [pytest.param(kind, False, id=f"plain-{kind}") for kind in BAD_ROWS] + [
    pytest.param(kind, True, id=f"gzip-{kind}") for kind in ("short-row", "non-numeric", "duplicate")
]


@pytest.mark.parametrize("kind, compress", CASES)
def test_bad_row_is_reported_with_file_and_line(tmp_path, kind, compress):
    bad_row, pattern = BAD_ROWS[kind]
    name = "invocations_per_function_md.anon.d01.csv" + (".gz" if compress else "")
    # a blank line before the bad row checks that line numbers count physical lines
    path = write_file(tmp_path / name, [HEADER, row("1"), "", const_row("2", 1), bad_row, const_row("3", 4)], compress)
    expect_error(path, 5, pattern)

    trace = read_invocations(path, on_error="skip")
    assert trace.skipped == 1
    assert len(trace.problems) == 1 and trace.problems[0][:2] == (str(path), 5)
    assert re.search(pattern, trace.problems[0][2])
    assert [k[2] for k in trace.keys] == ["f1", "f2", "f3"]
    np.testing.assert_array_equal(trace.counts[2], 4)


def test_extra_column_on_every_row_is_an_error_not_silent_loss(tmp_path):
    lines = [HEADER] + [row(str(i), list(range(MINUTES_PER_DAY + 1))) for i in range(3)]
    path = write_file(tmp_path / "t.anon.d01.csv", lines)
    expect_error(path, 2, r"expected 1444 columns, found 1445")
    with pytest.raises(TraceFormatError, match="no valid function rows"):
        read_invocations(path, on_error="skip")


def test_skip_mode_counts_all_and_lists_first_twenty(tmp_path):
    bad = [row(f"b{i}", [0] * 100 + ["x"] + [0] * (MINUTES_PER_DAY - 101)) for i in range(25)]
    path = write_file(tmp_path / "t.anon.d01.csv", [HEADER, const_row("good", 1)] + bad)
    trace = read_invocations(path, on_error="skip")
    assert trace.n_functions == 1 and trace.skipped == 25
    assert len(trace.problems) == 20
    assert [p[1] for p in trace.problems] == list(range(3, 23))


def test_wrong_header_is_line_one(tmp_path):
    header = HEADER.replace(",1440", ",1441")
    path = write_file(tmp_path / "t.anon.d01.csv", [header, row("1")])
    expect_error(path, 1, r"wrong header")
    short = write_file(tmp_path / "u.anon.d01.csv", ["HashOwner,HashApp,HashFunction,Trigger,1,2,3", "o,a,f,http,1,2,3"])
    err = expect_error(short, 1, r"wrong header")
    assert "7 columns" in err.reason
    # header problems concern the whole file and are never skipped
    expect_error(path, 1, r"wrong header", on_error="skip")


def test_duplicate_key_across_files_of_one_day(tmp_path):
    a = write_file(tmp_path / "p1.anon.d01.csv", [HEADER, const_row("A", 1), const_row("B", 1)])
    b = write_file(tmp_path / "p2.anon.d01.csv", [HEADER, const_row("C", 1), const_row("B", 2)])
    with pytest.raises(TraceFormatError) as info:
        read_invocations([a, b])
    assert str(info.value).startswith(f"{b}:3: duplicate key")
    assert f"{a}:3" in info.value.reason
    trace = read_invocations([a, b], on_error="skip")
    assert trace.skipped == 1 and [k[2] for k in trace.keys] == ["fA", "fB", "fC"]
    np.testing.assert_array_equal(trace.counts[1], 1)  # the first occurrence is kept


def test_missing_empty_and_corrupt_files(tmp_path):
    expect_error(tmp_path / "nope.anon.d01.csv", None, r"file not found")
    empty = tmp_path / "empty.anon.d01.csv"
    empty.write_bytes(b"")
    expect_error(empty, 1, r"file is empty")
    good = write_file(tmp_path / "g.anon.d01.csv.gz", [HEADER] + [row(str(i)) for i in range(50)], compress=True)
    truncated = tmp_path / "bad.anon.d01.csv.gz"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(TraceFormatError, match=r"unreadable gzip data"):
        read_invocations(truncated)
    garbage = tmp_path / "garbage.anon.d01.csv.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"\x00garbage" * 10)
    with pytest.raises(TraceFormatError, match=r"unreadable gzip data"):
        read_invocations(garbage)
    header_only = write_file(tmp_path / "h.anon.d01.csv", [HEADER])
    with pytest.raises(TraceFormatError, match="no valid function rows"):
        read_invocations(header_only)
    with pytest.raises(ValueError, match="on_error"):
        read_invocations(good, on_error="ignore")
    no_trace_dir = tmp_path / "sub"
    no_trace_dir.mkdir()
    with pytest.raises(TraceFormatError, match="no invocations_per_function_md"):
        read_invocations(no_trace_dir)


def test_progress_bar_runs(tmp_path, capsys):
    path = write_file(tmp_path / "t.anon.d01.csv", [HEADER, row("1")])
    assert read_invocations(path, progress=True).n_functions == 1
    assert "reading trace" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# writer, trace helpers


@pytest.mark.parametrize("compress", [False, True])
def test_write_then_read_round_trip(tmp_path, compress):
    trace = generate_trace(n_functions=40, days=3, seed=5)
    paths = write_invocations(trace, tmp_path, gzip=compress)
    suffix = ".csv.gz" if compress else ".csv"
    assert [p.name for p in paths] == [f"invocations_per_function_md.anon.d0{d}{suffix}" for d in (1, 2, 3)]
    assert read_invocations(paths) == trace
    assert read_invocations(paths).fingerprint() == trace.fingerprint()


def test_round_trip_with_absent_days_and_fractional_counts(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.gamma(1.0, 3.0, size=(3, 2 * MINUTES_PER_DAY)).astype(np.float32)
    present = np.array([[True, True], [True, False], [True, True]])
    counts[1, MINUTES_PER_DAY:] = 0
    trace = InvocationTrace(
        keys=[("o", "a", f"f{i}") for i in range(3)], triggers=["http", "timer", "queue"],
        counts=counts, days=["d04", "d05"], present=present,
    )
    paths = write_invocations(trace, tmp_path)
    assert [p.name for p in paths] == ["invocations_per_function_md.anon.d04.csv", "invocations_per_function_md.anon.d05.csv"]
    assert read_invocations(paths) == trace


def test_sample_named_day_is_written_as_d01(tmp_path):
    trace = InvocationTrace(keys=[("o", "a", "f")], triggers=["http"], counts=np.ones((1, MINUTES_PER_DAY)), days=["sample"], present=np.ones((1, 1)))
    (path,) = write_invocations(trace, tmp_path)
    assert path.name == "invocations_per_function_md.anon.d01.csv"
    again = read_invocations(path)
    assert again.days == ["d01"] and np.array_equal(again.counts, trace.counts)


def test_trace_checks_its_shapes():
    with pytest.raises(ValueError, match="counts must have shape"):
        InvocationTrace(keys=[("o", "a", "f")], triggers=["t"], counts=np.zeros((1, 100)), days=["d01"], present=np.ones((1, 1)))
    with pytest.raises(ValueError, match="unique"):
        InvocationTrace(keys=[("o", "a", "f")] * 2, triggers=["t"] * 2, counts=np.zeros((2, MINUTES_PER_DAY)), days=["d01"], present=np.ones((2, 1)))


def test_subset_fingerprint_and_split():
    trace = generate_trace(n_functions=50, days=2, seed=1)
    sub = trace.subset([3, 1])
    assert sub.keys == [trace.keys[3], trace.keys[1]]
    np.testing.assert_array_equal(sub.counts[1], trace.counts[1])
    mask = np.zeros(50, dtype=bool)
    mask[[1, 3]] = True
    assert trace.subset(mask).keys == [trace.keys[1], trace.keys[3]]

    fp = trace.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp) and fp == generate_trace(n_functions=50, days=2, seed=1).fingerprint()
    changed = trace.subset(np.arange(50))
    changed.counts[7, 100] += 1
    assert changed.fingerprint() != fp

    train, test = split_functions(trace, test_fraction=0.2, seed=0)
    assert len(test) == 10 and len(train) == 40
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(50))
    again_train, again_test = split_functions(trace, 0.2, seed=0)
    assert np.array_equal(test, again_test) and np.array_equal(train, again_train)
    # same keys in another order -> the same functions are held out
    perm = np.random.default_rng(3).permutation(50)
    _, perm_test = split_functions(trace.subset(perm), 0.2, seed=0)
    assert {trace.subset(perm).keys[i] for i in perm_test} == {trace.keys[i] for i in test}
    _, other_test = split_functions(trace, 0.2, seed=1)
    assert not np.array_equal(other_test, test)
    with pytest.raises(ValueError, match="test_fraction"):
        split_functions(trace, 1.0)
    all_train, none_held = split_functions(trace, 0.0)
    assert all_train.tolist() == list(range(50)) and len(none_held) == 0


# ---------------------------------------------------------------------------------------------
# durations and memory percentiles


def test_durations_and_memory_validation(tmp_path):
    header = ",".join(DURATION_COLUMNS)
    good = "o,a,f,306,7726495,0.0,144874.0,1,247,269,282,304,481,130686"
    path = write_file(tmp_path / "function_durations_percentiles.anon.d01.csv", [header, good])
    frame = read_durations(path)
    assert list(frame.columns) == list(DURATION_COLUMNS) and frame["Average"].iloc[0] == 306.0

    for bad, pattern in [
        ("o,a,g,306,x,0,1,1,1,1,1,1,1,1", r"non-numeric value 'x' in column Count"),
        ("o,a,g,306,-1,0,1,1,1,1,1,1,1,1", r"negative value -1 in column Count"),
        ("o,a,g,306,1,0,1,1,1,1,1,1,1", r"expected 14 columns, found 13"),
        ("o,a,g,inf,1,0,1,1,1,1,1,1,1,1", r"non-finite value 'inf' in column Average"),
        (good, r"duplicate key"),
    ]:
        bad_path = write_file(tmp_path / "d.csv", [header, good, bad])
        with pytest.raises(TraceFormatError, match=rf"^{re.escape(str(bad_path))}:3: {pattern}"):
            read_durations(bad_path)
        frame = read_durations(bad_path, on_error="skip")
        assert len(frame) == 1 and frame.attrs["skipped"] == 1

    with pytest.raises(TraceFormatError, match=r":1: wrong header for function durations"):
        read_durations(write_file(tmp_path / "h.csv", ["HashOwner,HashApp,Average", "o,a,1"]))

    mem_header = "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100"
    mem = write_file(tmp_path / "app_memory_percentiles.anon.d01.csv.gz", [mem_header, "o,a,10,100,90,91,95,99,105,110,120,130"], compress=True)
    frame = read_memory(mem)
    assert frame.shape == (1, 12) and frame["AverageAllocatedMb"].iloc[0] == 100.0
    dup = write_file(tmp_path / "m.csv", [mem_header, "o,a,10,100,90,91,95,99,105,110,120,130", "o,a,1,1,1,1,1,1,1,1,1,1"])
    with pytest.raises(TraceFormatError, match=r"m.csv:3: duplicate key \('o', 'a'\)"):
        read_memory(dup)


# ---------------------------------------------------------------------------------------------
# the real sample


@needs_shared_data
def test_real_sample_reads():
    trace = read_invocations(SAMPLE)
    assert trace.n_functions == 6418 and trace.n_minutes == 1440
    assert trace.days == ["sample"] and trace.present.all()
    assert trace.counts.dtype == np.float32 and (trace.counts >= 0).all()
    assert (trace.counts.sum(axis=1) > 0).all()  # README: no all-zero days


@needs_shared_data
def test_real_original_schema_reads():
    inv = read_invocations(ORIGINAL / "invocations_per_function_md.top10.csv")
    assert inv.n_functions == 10 and inv.days == ["top10"]
    durations = read_durations(ORIGINAL / "function_durations_percentiles.top10.csv")
    memory = read_memory(ORIGINAL / "app_memory_percentiles.top10.csv")
    assert len(durations) == 10 and len(memory) == 10
    assert set(zip(durations.HashOwner, durations.HashApp, durations.HashFunction)) == set(inv.keys)
    assert (durations["percentile_Average_50"] <= durations["percentile_Average_100"]).all()
    assert "HashFunction" in memory.columns
