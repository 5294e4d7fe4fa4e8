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


def test_nothing_to_choose_from_leaves_the_check_off(tiny_model, tiny_trace):
    for ratios, counts in [((), tiny_trace.counts[:5]), ((0.5,), tiny_trace.counts[:0])]:
        entry = choose_recent_check(tiny_model, counts, ratios)
        assert entry == {"enabled": False, "reason": "no ratios to try or validation series too short", "val_wape": {}}


def test_a_chosen_ratio_is_one_that_beat_the_experts_alone(tiny_model, tiny_trace):
    entry = choose_recent_check(tiny_model, tiny_trace.counts[:40], (1.0, 0.5))
    assert set(entry["val_wape"]) == {"off", "1", "0.5"} and entry["origins"] == 12 and entry["n_val_functions"] == 40
    assert entry["window"] == 60 and entry["alternative"] == "repeat_last_hour"
    if entry["enabled"]:
        assert entry["val_wape"][f"{entry['switch_ratio']:g}"] < entry["val_wape"]["off"]
    else:
        assert entry["val_wape"]["off"] == min(entry["val_wape"].values()) and "switch_ratio" not in entry


@pytest.mark.parametrize(
    "entry, text",
    [
        ({"enabled": True, "switch_ratio": 0.7, "val_wape": {"off": 0.3, "0.7": 0.25}},
         "switch ratio 0.7 (val WAPE off 0.300, 0.7 0.250)"),
        ({"enabled": False, "val_wape": {"off": 0.2, "0.5": 0.21}}, "off (no ratio beats the experts alone; val WAPE off 0.200, 0.5 0.210)"),
        ({"enabled": False, "reason": "no ratios to try", "val_wape": {}}, "off (no ratios to try; val WAPE n/a)"),
        ({}, "off (no ratio beats the experts alone; val WAPE n/a)"),
    ],
)
def test_describe_recent_check(entry, text):
    from mesp_core.offline.recent_check import describe_recent_check

    assert describe_recent_check(entry) == text
