"""Adding pattern K+1 without retraining (mesp_core.offline.extend), from the session's tiny model."""

import numpy as np

from mesp_core import load_model
from mesp_core.offline.extend import extend

from .support import _novel_trace


def test_extend_adds_a_cluster_and_leaves_existing_experts_byte_identical(tiny_model_dir, tmp_path):
    before = {p.relative_to(tiny_model_dir): p.read_bytes() for p in tiny_model_dir.rglob("*") if p.is_file()}
    out = tmp_path / "extended"
    report = extend(tiny_model_dir, _novel_trace(), out, threshold=0.2, k=1, progress=False)
    assert len(report["added"]) == 1
    extended = load_model(out)
    assert len(extended.clusters) == 4
    for relative, data in before.items():  # the source folder is untouched
        assert (tiny_model_dir / relative).read_bytes() == data
    for relative in before:
        if str(relative).startswith(("experts/", "dense/")):
            assert (out / relative).read_bytes() == before[relative], relative
    novel = _novel_trace(n=3, seed=9).counts[:, :1440]
    assert (extended.route(novel) == 3).all()


def test_extend_without_new_patterns_copies_the_model(tiny_model_dir, tiny_trace, tmp_path):
    out = tmp_path / "same"
    report = extend(tiny_model_dir, tiny_trace.subset(np.arange(5)), out, threshold=5.0, progress=False)
    assert report["added"] == [] and len(load_model(out).clusters) == 3


def test_the_model_folder_itself_is_never_the_output(tiny_model_dir):
    import pytest

    before = (tiny_model_dir / "manifest.json").read_bytes()
    with pytest.raises(ValueError, match="--out must differ from --model"):
        extend(tiny_model_dir, _novel_trace(), tiny_model_dir / ".", progress=False)
    assert (tiny_model_dir / "manifest.json").read_bytes() == before


def test_by_default_a_day_is_new_beyond_the_widest_clusters_p95_route_distance(tiny_model_dir, tiny_model, tiny_trace, tmp_path):
    report = extend(tiny_model_dir, tiny_trace.subset(np.arange(6)), tmp_path / "same", progress=False)
    p95 = [c["route_distance_p95"] for c in tiny_model.manifest["clusters"] if c["route_distance_p95"] is not None]
    assert report["threshold"] == max(p95)
    assert report["n_days"] == 12 and report["n_far_days"] <= report["n_days"]


def test_the_extended_manifest_records_what_was_added_and_from_which_trace(tiny_model_dir, tmp_path):
    import json

    novel = _novel_trace()
    report = extend(tiny_model_dir, novel, tmp_path / "extended", threshold=0.2, k=1, progress=False)
    manifest = json.loads((tmp_path / "extended" / "manifest.json").read_text())
    (record,) = manifest["extensions"]
    assert record["fingerprint"] == novel.fingerprint() and record["threshold"] == 0.2
    assert record["added_clusters"] == [c["id"] for c in report["added"]] == [3]
    added = manifest["clusters"][-1]
    assert added["id"] == 3 and added["added_by"] == "extend" and added["chosen"] == added["ranking"][0]["candidate"]
    assert (manifest["format"], manifest["format_version"]) == ("mesp-model", 1)
    assert "quantiles.safetensors" in manifest["files"] and "centroids.safetensors" in manifest["files"]
