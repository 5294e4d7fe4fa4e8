"""`mesp calibrate` (mesp_core.cli.calibrate): per-group quantile maps stored in a model's manifest."""

import json

from mesp_core import load_model
from mesp_core.cli import main

from .support import TINY_TRACE, _one_line_error


def test_calibrate_writes_a_copy_and_prints_coverage_before_and_after(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "calibrated"
    argv = ["calibrate", "--model", str(tiny_model_dir), *TINY_TRACE, "--out", str(out), "--json", str(tmp_path / "c.json")]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"quantile calibration stored in {out}"
    assert lines[1].startswith("quantile calibration (pit) fitted on ") and lines[2].lstrip().startswith("all")
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["version"] == 1 and report["validation"]["overall"]["after"]["0.9"]["pit"] > 0
    assert load_model(out).quantile_calibration is not None and load_model(tiny_model_dir).quantile_calibration is None


def test_calibrate_a_folder_that_is_no_model_is_one_line(tmp_path, capsys):
    line = _one_line_error(capsys, ["calibrate", "--model", str(tmp_path / "nothing"), *TINY_TRACE])
    assert line.startswith("mesp calibrate: error: ") and "does not exist" in line
