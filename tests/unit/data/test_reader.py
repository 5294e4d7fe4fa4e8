"""Reading the Azure invocation layout (mesp_core.data.reader): multi-day join, validation with
file:line, gzip, the real sample."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mesp_core.constants import MINUTES_PER_DAY
from mesp_core.data.reader import read_invocations
from mesp_core.data.trace import TraceFormatError

from ..paths import SHARED_AZURE
from .support import HEADER, const_row, expect_error, row, write_file

SAMPLE = SHARED_AZURE / "invocations_per_function_md.sample.csv.gz"
needs_shared_data = pytest.mark.skipif(
    not SAMPLE.exists(), reason="the Azure sample (not redistributable) is not on this machine"
)


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


@needs_shared_data
def test_real_sample_reads():
    trace = read_invocations(SAMPLE)
    assert trace.n_functions == 6418 and trace.n_minutes == 1440
    assert trace.days == ["sample"] and trace.present.all()
    assert trace.counts.dtype == np.float32 and (trace.counts >= 0).all()
    assert (trace.counts.sum(axis=1) > 0).all()  # README: no all-zero days
