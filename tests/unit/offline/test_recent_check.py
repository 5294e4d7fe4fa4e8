"""Choosing the recent-error check's switch ratio on validation functions (mesp_core.offline.recent_check)."""

import copy
import json

import pytest

from mesp_core.offline.recent_check import choose_recent_check


def test_training_chooses_the_ratio_on_validation_functions(tiny_model, tiny_model_dir, tiny_trace):
    entry = json.loads((tiny_model_dir / "manifest.json").read_text())["recent_check"]
    scores = entry["val_wape"]
    assert set(scores) == {"off", "0.9", "0.7", "0.5", "0.3"}
    best = min(scores.values())
    if entry["enabled"]:
        assert scores[f"{entry['switch_ratio']:g}"] == best < scores["off"]
        assert tiny_model.recent_check_ratio == entry["switch_ratio"]
    else:
        assert scores["off"] == best and tiny_model.recent_check_ratio is None

    too_short = choose_recent_check(tiny_model, tiny_trace.counts[:5, :600], (0.7,))
    assert too_short["enabled"] is False and "too short" in too_short["reason"]
    with pytest.raises(ValueError, match="recent_check_ratios"):
        from mesp_core.offline.config import TrainConfig

        TrainConfig(recent_check_ratios=(1.5,)).validate()


def test_choosing_the_ratio_scores_the_experts_alone_even_when_a_check_is_on(tiny_model, tiny_trace):
    checked = copy.copy(tiny_model)
    checked.recent_check_ratio = 1.0
    plain = copy.copy(tiny_model)
    plain.recent_check_ratio = None
    counts = tiny_trace.counts[:30]
    assert choose_recent_check(checked, counts, (0.5,))["val_wape"] == choose_recent_check(plain, counts, (0.5,))["val_wape"]
