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
