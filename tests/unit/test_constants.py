"""The numbers every part of MESP shares (mesp_core.constants), and the places that must agree with them."""

import json

import numpy as np
import pytest

from mesp_core.constants import DEFAULT_HORIZON, MIN_CONTEXT, MINUTES_PER_DAY

from .paths import REPO


def test_a_day_is_the_trace_layouts_1440_minute_columns():
    from mesp_core.data.trace import INVOCATION_COLUMNS, MINUTE_COLUMNS

    assert MINUTES_PER_DAY == 1440
    assert MINUTE_COLUMNS == tuple(str(m) for m in range(1, MINUTES_PER_DAY + 1))
    assert INVOCATION_COLUMNS[:4] == ("HashOwner", "HashApp", "HashFunction", "Trigger")
    assert len(INVOCATION_COLUMNS) == 4 + MINUTES_PER_DAY


def test_the_default_horizon_is_what_training_experts_commands_and_the_packaged_model_use():
    from mesp_core.cli import build_parser
    from mesp_core.forecasting.experts import build_expert
    from mesp_core.offline.config import TrainConfig

    assert TrainConfig().horizon == DEFAULT_HORIZON
    assert build_expert({"family": "seasonal_naive"}).horizon == DEFAULT_HORIZON
    parser = build_parser()
    for command in (["forecast"], ["evaluate"]):
        assert parser.parse_args(command).horizon == DEFAULT_HORIZON, command
    manifest = json.loads((REPO / "mesp_core" / "default_model" / "manifest.json").read_text())
    assert manifest["horizon"] == DEFAULT_HORIZON


def test_the_shortest_context_a_model_takes_is_min_context():
    from mesp_core.forecasting.model import MOE_MIN_CONTEXT, RECENT_CHECK_WINDOW, validate_contexts

    assert validate_contexts(np.ones((2, MIN_CONTEXT))).shape == (2, MIN_CONTEXT)
    with pytest.raises(ValueError, match=f"context\\[0\\] has {MIN_CONTEXT - 1} minutes; at least {MIN_CONTEXT}"):
        validate_contexts(np.ones((2, MIN_CONTEXT - 1)))
    # The mixture takes over once an hour of recent errors fits in front of the shortest context.
    assert MOE_MIN_CONTEXT == RECENT_CHECK_WINDOW + MIN_CONTEXT
