"""K-Shape (mesp_core.forecasting.kshape): the same clustering as tslearn's estimator, its input and
parameter checks, and the eigenvector shortcut."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mesp_core.forecasting.kshape import EmptyClusterError, KShape, NotFittedError
from mesp_core.forecasting.sbd import sbd_to_centroids

from .support import three_shapes


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
