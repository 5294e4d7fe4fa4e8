"""The shared argument checks (mesp_core.checks): what passes, and one wording for every refusal."""

import math

import numpy as np
import pytest

from mesp_core.checks import check_int, check_number


@pytest.mark.parametrize("value", [0, 5, np.int64(3), np.int32(0), 10**12])
def test_check_int_accepts_integers_at_or_above_the_bound(value):
    assert check_int("minutes", value, low=0) is None


@pytest.mark.parametrize(
    "value, message",
    [
        (True, "minutes must be an integer, got True"),  # a bool is an int to Python, never to us
        (2.0, "minutes must be an integer, got 2.0"),
        ("3", "minutes must be an integer, got '3'"),
        (None, "minutes must be an integer, got None"),
        (np.float64(1.0), "minutes must be an integer"),
        (-1, "minutes must be >= 0, got -1"),
        (np.int64(-4), "minutes must be >= 0, got -4"),
    ],
)
def test_check_int_refuses_with_the_name_and_the_value(value, message):
    with pytest.raises(ValueError) as info:
        check_int("minutes", value, low=0)
    assert str(info.value).startswith(message)


def test_check_int_bound_is_inclusive():
    check_int("replan_every", 1, low=1)
    with pytest.raises(ValueError, match=r"^replan_every must be >= 1, got 0$"):
        check_int("replan_every", 0, low=1)


@pytest.mark.parametrize("value", [0.0, 0, 2.5, np.float32(0.5), np.int64(7), 1e300])
def test_check_number_accepts_finite_numbers(value):
    assert check_number("capacity", value, low=0.0) is None


@pytest.mark.parametrize(
    "value, message",
    [
        (False, "capacity must be a number, got False"),
        ("1.5", "capacity must be a number, got '1.5'"),
        ([1.0], "capacity must be a number, got [1.0]"),
        (math.nan, "capacity must be finite, got nan"),
        (math.inf, "capacity must be finite, got inf"),
        (np.float64(-np.inf), "capacity must be finite, got -inf"),
        (-0.5, "capacity must be >= 0.0, got -0.5"),
    ],
)
def test_check_number_refuses_with_the_name_and_the_value(value, message):
    with pytest.raises(ValueError) as info:
        check_number("capacity", value, low=0.0)
    assert str(info.value) == message


def test_check_number_exclusive_bound_refuses_the_bound_itself():
    check_number("quantile", 1e-9, low=0.0, low_inclusive=False)
    with pytest.raises(ValueError, match=r"^quantile must be > 0.0, got 0.0$"):
        check_number("quantile", 0.0, low=0.0, low_inclusive=False)
    with pytest.raises(ValueError, match=r"^quantile must be > 0.0, got -1$"):
        check_number("quantile", -1, low=0.0, low_inclusive=False)
