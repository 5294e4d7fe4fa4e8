"""`mesp floor` (mesp_core.cli.floor): the floor stage added to an existing model folder."""

import json

from mesp_core import load_model
from mesp_core.cli import main

from .support import TINY_TRACE, _one_line_error


def test_floor_adds_the_stage_and_prints_each_clusters_default(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "with-floor"
    argv = ["floor", "--model", str(tiny_model_dir), *TINY_TRACE, "--out", str(out), "--origins", "2000",
            "--epochs", "1", "--val-functions", "10", "--quiet", "--json", str(tmp_path / "floor.json")]
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"floor stage added; model in {out}"
    assert table[1].startswith("cluster all: ")
    report = json.loads((tmp_path / "floor.json").read_text())
    assert report["training"]["n_val_functions"] == 10 and "defaults" in report
    assert load_model(out).floor is not None and load_model(tiny_model_dir).floor is None


def test_floor_with_a_bad_budget_is_one_line(tiny_model_dir, tmp_path, capsys):
    line = _one_line_error(capsys, ["floor", "--model", str(tiny_model_dir), *TINY_TRACE, "--out",
                                    str(tmp_path / "x"), "--epochs", "0", "--quiet"])
    assert line == "mesp floor: error: floor epochs must be a positive integer, got 0"
