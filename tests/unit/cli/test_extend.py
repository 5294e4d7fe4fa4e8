"""`mesp extend` (mesp_core.cli.extend): clusters for new patterns, the existing model left as it is."""

import json

from mesp_core import load_model
from mesp_core.cli import main

from ..offline.support import _novel_trace
from .support import _one_line_error, write_trace


def test_extend_adds_a_cluster_for_a_new_shape_and_reports_it(tiny_model_dir, tmp_path, capsys):
    files = write_trace(_novel_trace(), tmp_path / "novel")
    out = tmp_path / "extended"
    argv = ["extend", "--model", str(tiny_model_dir), "--trace", *files, "--out", str(out), "--threshold", "0.2",
            "--k", "1", "--quiet"]
    assert main([*argv, "--json", str(tmp_path / "extend.json")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "24 of 24 new daily patterns are far from every centroid (distance > 0.200)"
    assert table[1] == f"added clusters: [3]; existing experts unchanged; model in {out}"
    assert table[2].startswith("  cluster 3: 24 days, ")
    report = json.loads((tmp_path / "extend.json").read_text())
    assert [c["id"] for c in report["added"]] == [3] and report["threshold"] == 0.2
    assert len(load_model(out).clusters) == 4


def test_extending_into_the_model_folder_itself_is_one_line(tiny_model_dir, tmp_path, capsys):
    files = write_trace(_novel_trace(n=3), tmp_path / "novel")
    line = _one_line_error(capsys, ["extend", "--model", str(tiny_model_dir), "--trace", *files,
                                    "--out", str(tiny_model_dir), "--quiet"])
    assert line == "mesp extend: error: --out must differ from --model: the existing model is kept as it is"
