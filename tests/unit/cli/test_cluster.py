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
