"""The shape-based distance engine (mesp_core.forecasting.sbd): SBD against a brute-force computation,
alignment, z-normalisation and flat series."""

from __future__ import annotations

import numpy as np
import pytest

from mesp_core.forecasting.sbd import aligned_members, is_flat, sbd_to_centroids, znormalize


def brute_force_sbd(x: np.ndarray, c: np.ndarray) -> float:
    x = (x - x.mean()) / x.std()
    c = (c - c.mean()) / c.std()
    cc = np.correlate(x, c, mode="full")  # every linear lag, zero padded
    return 1.0 - cc.max() / (np.linalg.norm(x) * np.linalg.norm(c))


def test_sbd_to_centroids_matches_brute_force_and_is_shift_tolerant():
    rng = np.random.RandomState(0)
    X = rng.rand(7, 50) ** 3
    C = rng.randn(3, 50)
    dist = sbd_to_centroids(X, C)
    expected = np.array([[brute_force_sbd(x, c) for c in C] for x in X])
    np.testing.assert_allclose(dist, expected, atol=1e-10)
    pulse = np.zeros(200)
    pulse[50:60] = 1.0
    shifted = np.roll(pulse, 37)
    # only the zero-padded baseline differs after the best shift
    assert sbd_to_centroids(shifted[None], pulse[None])[0, 0] < 0.2 * sbd_to_centroids(-pulse[None], pulse[None])[0, 0]
    aligned, d, lags = aligned_members(np.stack([shifted, pulse]), pulse)
    assert np.argmax(aligned[0]) == 50 and d[1] < 1e-12
    np.testing.assert_array_equal(lags, [37, 0])
    np.testing.assert_allclose(aligned[1], znormalize(pulse[None])[0], atol=1e-12)


def test_znormalize_and_is_flat():
    X = np.array([[3.0, 3.0, 3.0, 3.0], [0, 0, 0, 0], [1, 2, 3, 4], [1e6, 1e6, 1e6, 1e6 + 1e-9]])
    np.testing.assert_array_equal(is_flat(X), [True, True, False, True])
    Z = znormalize(X)
    np.testing.assert_array_equal(Z[[0, 1, 3]], 0.0)
    assert Z[2].mean() == pytest.approx(0.0) and Z[2].std() == pytest.approx(1.0)
    assert znormalize(X.astype(np.float32)).dtype == np.float32


@pytest.fixture
def two_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_serial_runs_on_one_thread_and_parallel_gives_big_ops_the_callers_threads_back(two_threads):
    import torch

    from mesp_core.forecasting.sbd import _PARALLEL_MIN_VALUES, parallel, serial

    with parallel(_PARALLEL_MIN_VALUES):  # outside serial(): nothing to give back
        assert torch.get_num_threads() == 2
    with serial():
        assert torch.get_num_threads() == 1
        with parallel(_PARALLEL_MIN_VALUES - 1):  # a small op stays serial
            assert torch.get_num_threads() == 1
        with parallel(_PARALLEL_MIN_VALUES):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with serial():  # nested: still the caller's threads for big ops, restored on the way out
            with parallel(_PARALLEL_MIN_VALUES):
                assert torch.get_num_threads() == 2
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_series_checks_name_the_problem():
    for bad, message in [(np.zeros((3, 1)), "at least 2 time steps"), (np.array([[1.0, np.inf]]), "NaN or infinite"),
                         ([[1.0, 2.0], [3.0]], "2-D numeric array")]:
        with pytest.raises(ValueError, match=message):
            znormalize(bad)
    # tslearn's [n, T, 1] layout is accepted, integers become float64
    np.testing.assert_array_equal(znormalize(np.arange(6).reshape(2, 3, 1)), znormalize(np.arange(6.0).reshape(2, 3)))
    assert znormalize(np.arange(6).reshape(2, 3)).dtype == np.float64
