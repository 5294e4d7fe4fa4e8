"""K-Shape (against tslearn), SBD, K selection, cluster descriptions, cluster_days and its plot."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mesp_core.forecasting.kshape import EmptyClusterError, KShape, NotFittedError
from mesp_core.forecasting.patterns import ClusteringResult, choose_k, cluster_days, describe_centroid
from mesp_core.forecasting.sbd import aligned_members, is_flat, sbd_to_centroids, znormalize

T_DAY = 1440


def three_shapes(n: int, T: int, seed: int) -> np.ndarray:
    """Shifted two-cycle sines, periodic pulses and random walks, with noise."""
    rng = np.random.RandomState(seed)
    t = np.arange(T)
    rows = []
    for i in range(n):
        shift = rng.randint(0, T)
        if i % 3 == 0:
            x = np.sin(2 * np.pi * 2 * (t + shift) / T)
        elif i % 3 == 1:
            x = ((t + shift) % 16 < 2).astype(float)
        else:
            x = np.cumsum(rng.randn(T))
        rows.append(x + 0.3 * rng.randn(T))
    return znormalize(np.array(rows))


@pytest.fixture(scope="module")
def tslearn_kshape():
    """tslearn's KShape running its numba kernels as plain Python (same code, no 60 s JIT compile),
    with BLAS on one thread (its 128x128 eigh calls are 30x slower with threads on shared cores)."""
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tslearn warns at import when h5py is missing
        import tslearn.clustering.kshape as kshape_module
        import tslearn.metrics.cycc as cycc

    saved = (cycc.normalized_cc, kshape_module.cdist_normalized_cc, kshape_module.y_shifted_sbd_vec)
    cycc.normalized_cc = saved[0].py_func
    kshape_module.cdist_normalized_cc = saved[1].py_func
    kshape_module.y_shifted_sbd_vec = saved[2].py_func
    try:
        with threadpool_limits(limits=1):
            yield kshape_module.KShape
    finally:
        cycc.normalized_cc, kshape_module.cdist_normalized_cc, kshape_module.y_shifted_sbd_vec = saved


def assert_same_as_tslearn(ours: KShape, ref) -> None:
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, atol=1e-8)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-9, abs=1e-12)
    assert ours.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kshape_equals_tslearn_random_init(tslearn_kshape, seed):
    X = three_shapes(60, 128, seed)
    ref = tslearn_kshape(n_clusters=3, random_state=seed).fit(X[:, :, None])
    ours = KShape(3, random_state=seed).fit(X)
    assert ours.cluster_centers_.shape == (3, 128, 1)
    assert_same_as_tslearn(ours, ref)


def test_kshape_equals_tslearn_with_given_init_and_several_inits(tslearn_kshape):
    X = three_shapes(45, 96, 7)
    init = X[[0, 1, 2]][:, :, None].copy()
    ref = tslearn_kshape(n_clusters=3, init=init, max_iter=20).fit(X[:, :, None])
    assert_same_as_tslearn(KShape(3, init=init, max_iter=20).fit(X[:, :, None]), ref)
    # n_init > 1 draws every attempt's centroids from one RandomState, in tslearn's order
    ref = tslearn_kshape(n_clusters=4, n_init=3, random_state=11).fit(X[:, :, None])
    assert_same_as_tslearn(KShape(4, n_init=3, random_state=11).fit(X), ref)


def test_fit_z_normalises_and_float32_agrees():
    X = three_shapes(60, 128, 5)
    scaled = X * 40 + 7  # shape-preserving affine change
    a = KShape(3, random_state=0).fit(X)
    b = KShape(3, random_state=0).fit(scaled)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    c = KShape(3, random_state=0, dtype="float32").fit(X)
    np.testing.assert_array_equal(a.labels_, c.labels_)
    np.testing.assert_allclose(a.cluster_centers_, c.cluster_centers_, atol=2e-3)


def test_pruned_assignment_equals_full_computation():
    """labels_ come from the bound-pruned assignment; predict() computes every pair."""
    rng = np.random.RandomState(3)
    X = np.cumsum(rng.randn(300, 200), axis=1)  # random walks: similar spectra, little pruning help
    model = KShape(6, random_state=1, max_iter=15).fit(X)
    np.testing.assert_array_equal(model.labels_, model.predict(X))
    dist = sbd_to_centroids(X, model.cluster_centers_[:, :, 0])
    best = dist[np.arange(len(X)), model.labels_]
    assert model.inertia_ == pytest.approx(float(np.mean(best**2)), rel=1e-9)
    assert model.pairs_computed_ < 300 * 6 * (model.n_iter_ + 1)


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


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[1.0, np.nan, 2.0]]), "NaN"),
        (np.zeros((2, 3, 2)), "univariate"),
        (np.zeros(5), "2-D"),
        (np.array([["a", "b"]]), "numeric"),
        (np.zeros((0, 4)), "no series"),
    ],
)
def test_bad_input_gets_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=message):
        KShape(2).fit(bad)


def test_parameter_errors_and_not_fitted():
    X = three_shapes(12, 32, 0)
    with pytest.raises(ValueError, match="cannot form 20 clusters"):
        KShape(20).fit(X)
    with pytest.raises(ValueError, match="n_clusters"):
        KShape(0).fit(X)
    with pytest.raises(ValueError, match="init must have shape"):
        KShape(2, init=np.zeros((3, 32))).fit(X)
    with pytest.raises(NotFittedError):
        KShape(2).predict(X)
    model = KShape(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="length 31"):
        model.predict(X[:, :31])


def test_every_attempt_with_an_empty_cluster_raises():
    X = np.tile(np.sin(np.arange(40) / 3.0), (6, 1))  # identical series: two equal centroids
    with pytest.raises(EmptyClusterError, match="empty in all 10 attempts"):
        KShape(2, random_state=0).fit(X)


def diurnal_day(peak_hour: float, rng, scale=100.0) -> np.ndarray:
    t = np.arange(T_DAY) / 60.0
    base = np.exp(-0.5 * ((t - peak_hour) / 2.0) ** 2) * scale + 2
    return rng.poisson(base).astype(float)


def timer_day(period: int, rng, phase=0) -> np.ndarray:
    x = ((np.arange(T_DAY) + phase) % period == 0) * 30.0
    return x + rng.poisson(0.2, T_DAY)


def spike_day(minute: int, rng) -> np.ndarray:
    x = rng.poisson(0.3, T_DAY).astype(float)
    x[minute : minute + 10] += 400
    return x


def test_describe_centroid_kinds():
    rng = np.random.RandomState(0)
    diurnal = describe_centroid(diurnal_day(15, rng))
    assert diurnal["kind"] == "diurnal" and 15 in diurnal["peak_hours"], diurnal
    assert diurnal["label"].startswith("diurnal, peak ")
    members = np.array([timer_day(5, rng, phase=p) for p in range(6)])
    timer = describe_centroid(members.mean(axis=0), members)
    assert timer == {"label": "timer every 5 min", "kind": "timer", "peak_hours": timer["peak_hours"], "period_minutes": 5}
    midnight = describe_centroid(spike_day(3, rng))
    assert midnight["kind"] == "spiky" and midnight["label"] == "midnight batch spike"
    noon = describe_centroid(spike_day(12 * 60 + 30, rng))
    assert noon["label"] == "batch spike at 12:30" and noon["peak_hours"] == [12]
    bursty = describe_centroid((rng.rand(T_DAY) < 0.05) * rng.rand(T_DAY) * 50)
    assert bursty["kind"] == "bursty" and bursty["period_minutes"] is None, bursty
    assert describe_centroid(np.full(T_DAY, 4.0)) == {"label": "idle/flat", "kind": "idle", "peak_hours": [], "period_minutes": None}
    again = describe_centroid(diurnal_day(15, np.random.RandomState(0)))
    assert again == diurnal  # deterministic
    with pytest.raises(ValueError, match="1440"):
        describe_centroid(np.zeros(100))


def mixed_days(seed=0):
    rng = np.random.RandomState(seed)
    days = []
    truth = []
    for i in range(45):
        kind = i % 3
        if kind == 0:
            days.append(diurnal_day(rng.uniform(13, 16), rng))
        elif kind == 1:
            days.append(timer_day(10, rng, phase=rng.randint(10)))
        else:
            days.append(spike_day(rng.randint(0, 30), rng))
        truth.append(kind)
    days += [np.zeros(T_DAY), np.full(T_DAY, 3.0)]
    truth += [-1, -1]
    return np.array(days), np.array(truth)


def test_cluster_days_separates_shapes_and_sets_idle_days_aside():
    days, truth = mixed_days()
    result = cluster_days(days, k=3, random_state=0)
    assert isinstance(result, ClusteringResult)
    assert result.k == 3 and result.centroids.shape == (3, T_DAY) and len(result.descriptions) == 3
    np.testing.assert_array_equal(result.labels[truth == -1], -1)
    for kind in range(3):  # each true shape lands in a single cluster
        assert len(np.unique(result.labels[truth == kind])) == 1
    kinds = sorted(d["kind"] for d in result.descriptions)
    assert kinds == ["diurnal", "spiky", "timer"], result.descriptions
    assert set(result.silhouette) == {3} and result.silhouette[3] > 0.3


def test_choose_k_finds_three_shapes_and_cluster_days_uses_it():
    days, truth = mixed_days(1)
    k, scores = choose_k(days[truth >= 0], k_range=range(2, 6), sample=200, random_state=0)
    assert k == 3 and set(scores) <= {2, 3, 4, 5} and scores[3] == max(scores.values())
    result = cluster_days(days, k=None, k_range=range(2, 6), random_state=0)
    assert result.k == 3 and result.silhouette == scores


def test_cluster_days_errors():
    with pytest.raises(ValueError, match="idle/constant"):
        cluster_days(np.zeros((4, T_DAY)), k=2)
    with pytest.raises(ValueError, match="1440 minutes"):
        cluster_days(np.random.rand(4, 100), k=2)
    with pytest.raises(ValueError, match="at least 5 non-flat"):
        cluster_days(np.random.RandomState(0).rand(4, T_DAY), k=5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        cluster_days(np.random.RandomState(0).rand(4, T_DAY), k=0)


def test_plot_clusters_writes_a_png(tmp_path):
    from mesp_core.offline.plots import plot_clusters

    days, _ = mixed_days()
    result = cluster_days(days, k=3, random_state=0)
    path = plot_clusters(result, days, tmp_path / "out" / "clusters.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with pytest.raises(ValueError, match="one row per label"):
        plot_clusters(result, days[:5], tmp_path / "bad.png")


def test_iterative_top_eigenvector_matches_eigh():
    import torch

    from mesp_core.forecasting.kshape import _top_eigvec_iterative

    rng = np.random.RandomState(0)
    A = rng.randn(400, 300) + np.linspace(0, 3, 300)  # a dominant direction plus noise
    M = torch.from_numpy(A.T @ A)
    exact = torch.linalg.eigh(M)[1][:, -1]
    for warm in (None, exact + 0.1 * torch.from_numpy(rng.randn(300))):
        v = _top_eigvec_iterative(M, warm, tol=1e-11, max_passes=150)
        assert abs(float(v @ exact)) == pytest.approx(1.0, abs=1e-12)


def test_spikes_at_scattered_times_are_not_called_a_batch():
    rng = np.random.RandomState(4)
    scattered = np.array([spike_day(int(m), rng) for m in rng.randint(0, T_DAY - 10, 12)])
    described = describe_centroid(scattered[0], scattered)
    assert described["kind"] == "spiky" and described["label"] == "sporadic spikes at varying times", described
    nightly = np.array([spike_day(int(m), rng) for m in rng.randint(0, 20, 12)])
    assert describe_centroid(nightly[0], nightly)["label"] == "midnight batch spike"
