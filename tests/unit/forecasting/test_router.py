import numpy as np
import pytest

from mesp_core.forecasting.router import IDLE_CLUSTER, Router


def _centroids(k=4, t=1440):
    x = np.arange(t)
    rows = [np.sin(2 * np.pi * x * (j + 1) / t + j) for j in range(k - 1)]
    spike = np.zeros(t)
    spike[600:620] = 1.0  # a once-a-day batch spike
    rows.append(spike)
    c = np.stack(rows)
    return (c - c.mean(1, keepdims=True)) / c.std(1, keepdims=True)


def test_a_segment_of_a_centroid_routes_to_it_at_any_phase_and_scale():
    centroids = _centroids()
    router = Router(centroids)
    for k in range(len(centroids)):
        for start in (0, 500, 1300):  # 1300 wraps past midnight
            window = np.roll(np.tile(centroids[k], 2), -start)[:720] * 40 + 100
            if np.ptp(window) < 1e-6:  # the spike centroid is flat away from its spike: that is idle
                continue
            clusters, dist = router.route([window])
            assert clusters[0] == k
            assert dist[0] < 0.05


def test_routing_is_deterministic_and_batched_like_single_calls():
    rng = np.random.default_rng(3)
    router = Router(_centroids())
    contexts = [rng.poisson(5, size=n).astype(np.float32) for n in (60, 300, 1440, 3000, 300)]
    first = router.route(contexts)
    second = router.route(contexts)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    singles = [router.route([c]) for c in contexts]
    np.testing.assert_array_equal(first[0], [s[0][0] for s in singles])
    np.testing.assert_allclose(first[1], [s[1][0] for s in singles], atol=1e-5)


@pytest.mark.parametrize("minutes", [60, 301, 1440, 3000])
def test_one_array_routes_exactly_like_its_rows_as_a_list(minutes):
    rng = np.random.default_rng(minutes)
    block = rng.poisson(rng.uniform(0.1, 50, size=(40, 1)), size=(40, minutes)).astype(np.float32)
    block[3] = 7.0  # a flat row stays idle on both paths
    router = Router(_centroids())
    np.testing.assert_array_equal(router.distances(block), router.distances(list(block)))


def test_block_means_match_the_reshaped_mean():
    from mesp_core.forecasting.router import _block_mean

    x = np.random.default_rng(1).random((7, 1440)).astype(np.float32) * 1000
    np.testing.assert_array_equal(_block_mean(x, 5), x.reshape(7, -1, 5).mean(axis=2, dtype=np.float32))
    np.testing.assert_array_equal(_block_mean(x[:, 5:], 5), x[:, 5:].reshape(7, -1, 5).mean(axis=2, dtype=np.float32))


def test_long_contexts_use_only_the_last_day():
    centroids = _centroids()
    router = Router(centroids)
    noise = np.random.default_rng(0).poisson(50, size=2000).astype(np.float32)
    day = np.tile(centroids[1], 1) * 10 + 50
    assert router.route([np.concatenate([noise, day])])[0][0] == 1


def test_idle_and_constant_windows_go_to_the_naive_floor():
    router = Router(_centroids())
    clusters, dist = router.route(np.stack([np.zeros(120), np.full(120, 7.0)]))
    assert list(clusters) == [IDLE_CLUSTER, IDLE_CLUSTER]
    assert list(dist) == [0.0, 0.0]


def test_bad_centroids_and_contexts_are_rejected_clearly():
    with pytest.raises(ValueError, match="centroids"):
        Router(np.zeros((0, 1440)))
    with pytest.raises(ValueError, match="resolution"):
        Router(np.zeros((2, 1440)), resolution=7)
    with pytest.raises(ValueError, match="2-D"):
        Router(_centroids()).route(np.zeros(100))


def _exact_distances(router: Router, counts: np.ndarray) -> np.ndarray:
    """The router's distances by brute force in float64: every phase of every centroid, no FFT."""
    t = router._window_blocks(counts.shape[1])
    windows = counts[:, counts.shape[1] - t * router.resolution:].astype(np.float64)
    w = windows.reshape(len(counts), t, router.resolution).mean(axis=2)
    centroids = router.centroids.astype(np.float64)
    period = centroids.shape[1]
    segments = np.lib.stride_tricks.sliding_window_view(np.concatenate([centroids, centroids[:, :t - 1]], 1), t, axis=1)
    seg_std = segments.std(axis=2)
    seg_std = np.where(seg_std > 1e-6, seg_std, np.inf)
    out = np.full((len(w), len(centroids)), np.nan)
    std = w.std(axis=1)
    live = std > 1e-6 * (1.0 + np.abs(w).mean(axis=1))
    wz = (w[live] - w[live].mean(axis=1, keepdims=True)) / std[live, None]
    corr = np.einsum("nt,kpt->nkp", wz, segments[:, :period]) / (t * seg_std[None])
    out[live] = 1.0 - np.clip(corr.max(axis=2), -1.0, 1.0)
    return out


@pytest.mark.parametrize("minutes", [60, 100, 130, 720, 1440, 2000])
def test_the_numpy_and_torch_backends_route_alike(minutes):
    """numpy's and torch's float32 FFTs give distances within float32 rounding of the exact (float64,
    no FFT) ones, and so the same routes except between two clusters that tie within that rounding.
    A near-flat stretch of a centroid (the spike centroid here) amplifies the rounding on short
    windows, in either backend: hence an absolute bound."""
    rng = np.random.default_rng(minutes)
    centroids = _centroids()
    numpy_router, torch_router = Router(centroids, backend="numpy"), Router(centroids, backend="torch")
    phases = rng.integers(0, 1440, size=120)
    windows = np.stack([np.roll(np.tile(centroids[i % 4], 3), -p)[:minutes] for i, p in enumerate(phases)])
    counts = rng.poisson(np.maximum(windows * 20 + 30, 0.1)).astype(np.float32)
    counts[:5] = 0.0  # idle rows
    clusters, distances = numpy_router.route(counts)
    torch_clusters, torch_distances = torch_router.route(counts)
    assert (clusters[:5] == IDLE_CLUSTER).all() and (torch_clusters[:5] == IDLE_CLUSTER).all()
    exact = _exact_distances(numpy_router, counts)
    flipped = np.flatnonzero(clusters != torch_clusters)
    assert len(flipped) <= 2, flipped
    for row in flipped:  # a tie: both clusters are as near as rounding can tell
        assert abs(exact[row, clusters[row]] - exact[row, torch_clusters[row]]) < 2e-3
    for got in (numpy_router.distances(counts), torch_router.distances(counts)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
        np.testing.assert_allclose(got, exact, rtol=0, atol=1e-3, equal_nan=True)
    np.testing.assert_allclose(distances, torch_distances, rtol=0, atol=2e-3)
