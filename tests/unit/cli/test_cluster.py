"""`mesp cluster` (mesp_core.cli.cluster): Experiment 1's plot, labels and JSON."""

import json

from mesp_core.cli import main

from .support import TINY_TRACE


def test_cluster_command_writes_plot_and_labels(tmp_path, capsys):
    out = tmp_path / "clusters"
    assert main(["cluster", *TINY_TRACE, "--k", "3", "--out", str(out), "--json", str(out / "report.json")]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["k"] == 3 and len(report["clusters"]) == 3
    assert (out / "clusters.png").stat().st_size > 10_000
    assert len((out / "labels.csv").read_text().splitlines()) == 1 + 80 * 2


def test_cluster_json_on_stdout_replaces_the_table(tmp_path, capsys):
    out = tmp_path / "clusters"
    argv = ["cluster", "--synthetic-functions", "20", "--synthetic-days", "1", "--seed", "2", "--k", "2", "--out", str(out)]
    assert main([*argv, "--json", "-"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["k"] == 2 and sum(summary["sizes"].values()) == 20
    assert summary == json.loads((out / "clusters.json").read_text())
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("K-Shape: 20 daily patterns -> K=2 clusters (+")
    assert [line.split()[:2] for line in table if line.startswith("cluster ")] == [["cluster", "0"], ["cluster", "1"]]
