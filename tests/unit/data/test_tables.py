"""The trace's other tables (mesp_core.data.tables): function durations and app memory, validated."""

from __future__ import annotations

import re

import pytest

from mesp_core.data.reader import read_invocations
from mesp_core.data.tables import read_duration_files, read_durations, read_memory
from mesp_core.data.trace import DURATION_COLUMNS, TraceFormatError

from ..paths import SHARED_AZURE
from .support import write_file

ORIGINAL = SHARED_AZURE / "original-schema"
needs_shared_data = pytest.mark.skipif(
    not (SHARED_AZURE / "invocations_per_function_md.sample.csv.gz").exists(),
    reason="the Azure sample (not redistributable) is not on this machine",
)


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


DURATION_HEADER = ",".join(DURATION_COLUMNS)


def _durations_row(function: str, average: float) -> str:
    return f"o,a,{function},{average:g},10,1,9,1,1,1,1,1,1,1"


def test_duration_files_of_several_days_become_one_frame_with_skipped_rows_counted_per_file(tmp_path):
    day1 = write_file(tmp_path / "function_durations_percentiles.anon.d01.csv",
                      [DURATION_HEADER, _durations_row("f", 100), _durations_row("g", 300)])
    day2 = write_file(tmp_path / "function_durations_percentiles.anon.d02.csv",
                      [DURATION_HEADER, _durations_row("f", 200), "o,a,h,1,2,3", _durations_row("k", 5)])
    frame, skipped = read_duration_files([day1, day2], on_error="skip")
    assert list(frame.columns) == list(DURATION_COLUMNS)
    # A key seen on both days keeps one row per day, in file order; the index runs on.
    assert frame["HashFunction"].tolist() == ["f", "g", "f", "k"] and frame.index.tolist() == [0, 1, 2, 3]
    assert frame.loc[frame.HashFunction == "f", "Average"].tolist() == [100.0, 200.0]
    assert skipped == {str(day2): 1}
    with pytest.raises(TraceFormatError, match=rf"^{re.escape(str(day2))}:3: expected 14 columns, found 6"):
        read_duration_files([day1, day2])
    _, none_skipped = read_duration_files([day1])
    assert none_skipped == {}


def test_tables_refuse_an_unknown_error_mode_and_a_missing_file(tmp_path):
    path = write_file(tmp_path / "d.csv", [DURATION_HEADER, _durations_row("f", 1)])
    with pytest.raises(ValueError, match="on_error must be one of"):
        read_durations(path, on_error="ignore")
    with pytest.raises(TraceFormatError, match="file not found"):
        read_memory(tmp_path / "absent.csv")


def test_memory_per_function_layout_is_keyed_by_function(tmp_path):
    header = "HashOwner,HashApp,HashFunction," + ",".join(
        ["SampleCount", "AverageAllocatedMb"] + [f"AverageAllocatedMb_pct{p}" for p in (1, 5, 25, 50, 75, 95, 99, 100)])
    values = "10,100,90,91,95,99,105,110,120,130"
    path = write_file(tmp_path / "app_memory_percentiles.top10.csv", [header, f"o,a,f1,{values}", f"o,a,f2,{values}"])
    frame = read_memory(path)
    assert frame["HashFunction"].tolist() == ["f1", "f2"] and frame["AverageAllocatedMb_pct50"].tolist() == [99.0, 99.0]
    duplicate = write_file(tmp_path / "m.csv", [header, f"o,a,f1,{values}", f"o,a,f1,{values}"])
    with pytest.raises(TraceFormatError, match=r"m.csv:3: duplicate key \('o', 'a', 'f1'\)"):
        read_memory(duplicate)
