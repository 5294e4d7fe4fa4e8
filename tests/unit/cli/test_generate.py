"""`mesp generate` (mesp_core.cli.generate): a seeded synthetic trace as Azure day files."""

from mesp_core.cli import main
from mesp_core.data.reader import read_invocations
from mesp_core.data.synthetic import generate_trace, generate_with_events

from .support import _one_line_error


def test_generate_writes_the_seeded_trace_one_file_per_day(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "a"), "--functions", "12", "--days", "2", "--seed", "3"]) == 0
    paths = capsys.readouterr().out.split()
    assert paths == [str(tmp_path / "a" / f"invocations_per_function_md.anon.d0{d}.csv") for d in (1, 2)]
    assert read_invocations(paths) == generate_trace(n_functions=12, days=2, seed=3)

    assert main(["generate", "--out", str(tmp_path / "b"), "--functions", "12", "--days", "2", "--seed", "3"]) == 0
    assert main(["generate", "--out", str(tmp_path / "c"), "--functions", "12", "--days", "2", "--seed", "4"]) == 0
    capsys.readouterr()
    first = (tmp_path / "a" / "invocations_per_function_md.anon.d01.csv").read_bytes()
    assert (tmp_path / "b" / "invocations_per_function_md.anon.d01.csv").read_bytes() == first  # same seed, same bytes
    assert (tmp_path / "c" / "invocations_per_function_md.anon.d01.csv").read_bytes() != first


def test_gzip_files_hold_the_same_trace(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--functions", "10", "--days", "1", "--gzip"]) == 0
    (path,) = capsys.readouterr().out.split()
    assert path.endswith("invocations_per_function_md.anon.d01.csv.gz")
    with open(path, "rb") as handle:
        assert handle.read(2) == b"\x1f\x8b"
    assert read_invocations(path) == generate_trace(n_functions=10, days=1, seed=0)


def test_holidays_and_level_shifts(tmp_path, capsys):
    argv = ["generate", "--out", str(tmp_path), "--functions", "10", "--days", "14", "--seed", "2"]
    assert main([*argv, "--holidays", "--level-shifts", "0.5"]) == 0
    out = capsys.readouterr()
    trace, _, events = generate_with_events(n_functions=10, days=14, seed=2, holidays=2, level_shifts=0.5)
    assert len(events.holidays) == 2  # --holidays alone: one per week
    assert f"holidays {', '.join(trace.days[d] for d in events.holidays)}; level shifts in {len(events.level_shifts)} of 10" in out.err
    assert read_invocations(out.out.split()) == trace
    assert "--holidays must be >= 0" in _one_line_error(capsys, [*argv, "--holidays", "-2"])
    assert "--level-shifts must be a share" in _one_line_error(capsys, [*argv, "--level-shifts", "2"])
    assert "only 10 weekdays" in _one_line_error(capsys, [*argv, "--holidays", "11"])
