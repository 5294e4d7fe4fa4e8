"""Progress of long offline work (mesp_core.offline.progress): stage lines with elapsed time and bars, on stderr."""

from mesp_core.offline import progress as progress_module
from mesp_core.offline.progress import Progress


def test_stage_lines_show_seconds_since_the_start_on_stderr(monkeypatch, capsys):
    clock = iter([100.0, 112.4, 1000.6])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    ui = Progress(True)
    ui.stage("clustering")
    ui.stage("experts")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "[    12s] clustering\n[   901s] experts\n"


def test_a_disabled_progress_says_nothing(capsys):
    ui = Progress(False)
    ui.stage("clustering")
    bar = ui.bar(3, "dense HPO")
    bar.update(3)
    bar.close()
    assert capsys.readouterr() == ("", "")


def test_bars_count_on_stderr(capsys):
    bar = Progress(True).bar(4, "experts per cluster")
    assert bar.total == 4 and not bar.disable
    bar.update(4)
    assert bar.n == 4
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == "" and "experts per cluster" in captured.err and "0/4" in captured.err
