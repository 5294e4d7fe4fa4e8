"""The approaches a model offers, named once (mesp_core.forecasting.approaches), and what the model accepts."""

import numpy as np
import pytest

from mesp_core.forecasting.approaches import (
    APPROACH_HELP,
    APPROACH_LABELS,
    APPROACHES,
    DENSE_PREFIX,
    check_approach,
)


@pytest.mark.parametrize("approach", [*APPROACHES, "dense:dlinear", "dense:anything"])
def test_check_approach_returns_what_it_was_given(approach):
    assert check_approach(approach) == approach


@pytest.mark.parametrize("approach", ["MoE", "oracle", "", "dense-dlinear", None, 3])
def test_check_approach_refuses_everything_else_naming_the_choices(approach):
    with pytest.raises(ValueError) as info:
        check_approach(approach)
    assert str(info.value) == f"approach must be one of moe, dense, naive, dense:<family>, got {approach!r}"


def test_without_families_only_the_three_names_pass():
    assert check_approach("dense", allow_family=False) == "dense"
    with pytest.raises(ValueError, match=r"^approach must be one of moe, dense, naive, got 'dense:dlinear'$"):
        check_approach("dense:dlinear", allow_family=False)


def test_labels_and_help_name_every_approach():
    assert set(APPROACH_LABELS) == set(APPROACHES)
    assert APPROACH_HELP.replace(" ", "").split("|") == ["moe", "dense", f"{DENSE_PREFIX}<family>", "naive"]


def test_the_model_accepts_exactly_the_listed_approaches(tiny_model, tiny_trace):
    context = tiny_trace.counts[:4, :600]
    for approach in [*APPROACHES, *(DENSE_PREFIX + family for family in tiny_model.dense_experts)]:
        out = tiny_model.forecast(context, 15, approach=approach)
        assert out.shape == (4, 15) and np.isfinite(out).all(), approach
    for approach in ("MoE", "oracle", "dense-dlinear"):
        with pytest.raises(ValueError, match="approach must be one of"):
            tiny_model.forecast(context, 15, approach=approach)
    # A family the model did not keep is named as such, with the ones it has.
    with pytest.raises(ValueError, match=r"no dense model 'lstm' in this model \(dense models: dense:"):
        tiny_model.forecast(context, 15, approach="dense:lstm")
