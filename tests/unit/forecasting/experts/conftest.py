"""Fixtures of the expert tests: one torch thread per module, and windows of periodic series."""

import pytest
import torch

from mesp_core.data.windows import make_windows

from .support import HORIZON, INPUT, periodic_series


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def windows():
    series = periodic_series()
    train = make_windows(series[:9], INPUT, HORIZON, stride=15)
    val = make_windows(series[9:], INPUT, HORIZON, stride=30)
    return train, val
