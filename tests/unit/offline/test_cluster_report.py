"""Experiment 1's outputs on disk (mesp_core.offline.cluster_report), from a generated trace's days."""

import json

import numpy as np
import pytest

from mesp_core.forecasting.patterns import cluster_days
from mesp_core.offline.cluster_report import write_cluster_report


@pytest.fixture(scope="module")
def report(tiny_trace, tmp_path_factory):
    days, owner = tiny_trace.daily()
    result = cluster_days(days, k=3, random_state=0)
    out = tmp_path_factory.mktemp("clusters") / "report"  # created by the report
    return result, days, owner, out, write_cluster_report(result, days, owner, tiny_trace.keys, out)


def test_every_output_is_written_and_the_summary_is_what_clusters_json_holds(report):
    result, days, _, out, summary = report
    assert sorted(p.name for p in out.iterdir()) == ["centroids.npy", "clusters.json", "clusters.png", "labels.csv"]
    assert json.loads((out / "clusters.json").read_text()) == json.loads(json.dumps(summary))
    np.testing.assert_array_equal(np.load(out / "centroids.npy"), result.centroids)
    assert (out / "clusters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["outputs"] == {"plot": str(out / "clusters.png"), "centroids": str(out / "centroids.npy"),
                                  "labels": str(out / "labels.csv")}


def test_sizes_count_every_day_once_with_idle_days_apart(report):
    result, days, _, _, summary = report
    assert summary["k"] == 3 and [c["id"] for c in summary["clusters"]] == [0, 1, 2]
    assert sum(summary["sizes"].values()) == len(days)
    assert summary["idle_days"] == int((result.labels == -1).sum())
    for c in summary["clusters"]:
        assert c["size"] == int((result.labels == c["id"]).sum()) and c["label"] == result.descriptions[c["id"]]["label"]
    assert summary["silhouette"] == {str(k): v for k, v in result.silhouette.items()}


def test_labels_csv_has_one_row_per_day_with_its_function_and_day_number(report, tiny_trace):
    result, days, owner, out, _ = report
    lines = (out / "labels.csv").read_text().splitlines()
    assert lines[0] == "HashOwner,HashApp,HashFunction,day,cluster"
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == len(days)
    for row, function, label in zip(rows, owner, result.labels):
        assert tuple(row[:3]) == tiny_trace.keys[function] and int(row[4]) == int(label)
    # Days of one function are numbered 0, 1, ... in order.
    first = [row for row in rows if tuple(row[:3]) == tiny_trace.keys[0]]
    assert [int(row[3]) for row in first] == list(range(tiny_trace.n_days))
