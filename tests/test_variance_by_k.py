"""Variance explained by k (SRM and per-network PCA) and the leave-one-out variance explained."""

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.decomposition import PCA

from qmvpa import factor
from qmvpa.variance_by_k import (RECONSTRUCTIONS, pca_variance_explained, smallest_k_reaching,
                                 variance_explained_by_k)

FULL = 0.99  # variance explained once k reaches the rank
EXACT = 1e-10
FLOOR_TOL = 0.05  # around 1/N and -1/(N-1) for unrelated networks


def rank_r_networks(seed, rank=3, n_networks=4, n_units=12, n_fit=60, n_heldout=40):
    """Rotated copies of one rank-``rank`` activity matrix (non-zero unit means), fit and held-out parts."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n_units, rank)) @ (1.0 + rng.standard_normal((rank, n_fit + n_heldout)))
    Xs = [ortho_group.rvs(n_units, random_state=int(rng.integers(2**31))) @ A for _ in range(n_networks)]
    return [X[:, :n_fit] for X in Xs], [X[:, n_fit:] for X in Xs]


@pytest.mark.parametrize("seed", [0, 1])
def test_srm_and_pca_reach_one_at_the_rank(seed):
    fit, heldout = rank_r_networks(seed)
    out = variance_explained_by_k(fit, heldout, [1, 3, 5])
    assert out.srm_fit.shape == out.srm_heldout.shape == out.pca_heldout.shape == (3, 4)
    for curve in (out.srm_fit, out.srm_heldout, out.pca_fit, out.pca_heldout):
        assert curve[1:].min() > FULL  # k = 3 and 5 >= rank 3
        assert curve[0].max() < FULL  # one component is not enough
    np.testing.assert_array_equal(out.ks, [1, 3, 5])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pca_curves_are_non_decreasing_in_k_and_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    X_fit, X_heldout = rng.standard_normal((15, 30)) + 2.0, rng.standard_normal((15, 25)) + 2.0
    ks = list(range(1, 16))
    fit, heldout = pca_variance_explained(X_fit, X_heldout, ks)
    assert np.all(np.diff(fit) >= -EXACT) and np.all(np.diff(heldout) >= -EXACT)
    assert fit[-1] == pytest.approx(1.0)  # k = units: everything
    for k in (2, 7):
        pca = PCA(n_components=k, svd_solver="full").fit(X_fit.T)
        recon = pca.inverse_transform(pca.transform(X_heldout.T)).T  # (units, images)
        expected = 1 - np.mean((recon - X_heldout) ** 2) / X_heldout.var()
        assert heldout[k - 1] == pytest.approx(expected, abs=1e-10)


def test_reconstructions_differ_as_documented():
    fit, heldout = rank_r_networks(0)
    noisy = [X + 0.5 * np.random.default_rng(i).standard_normal(X.shape) for i, X in enumerate(heldout)]
    curves = {r: variance_explained_by_k(fit, noisy, [3], reconstruction=r).srm_heldout[0]
              for r in RECONSTRUCTIONS}
    # The network's own projection keeps its own noise inside the subspace; averaging over networks
    # cancels some; leaving the network out cancels all of its own.
    assert curves["own"].mean() > curves["mean"].mean() > curves["leave_one_out"].mean()
    model = factor.fit_srm(fit, n_components=3)
    Ss = factor.transform(model, noisy)
    np.testing.assert_allclose(curves["own"], factor.variance_explained(noisy, model.w_, Ss), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_leave_one_out_has_no_floor_for_unrelated_networks(seed):
    rng = np.random.default_rng(seed)
    n, units, images = 5, 20, 2000
    fit = [rng.standard_normal((units, images)) for _ in range(n)]  # nothing shared
    heldout = [rng.standard_normal((units, images)) for _ in range(n)]
    model = factor.fit_srm(fit, n_components=units)  # k = units: every W_i is square and orthogonal
    for Xs in (fit, heldout):
        Ss = factor.transform(model, Xs)
        with_self = factor.variance_explained(Xs, model.w_, np.mean(Ss, axis=0))
        np.testing.assert_allclose(with_self, 1 / n, atol=FLOOR_TOL)  # the floor: X_i / N is in S̄
        assert factor.variance_explained_leave_one_out(Xs, model.w_, Ss).max() < 0
    # On held-out images the maps are as unrelated as the networks: -1/(N-1) in expectation.
    loo = factor.variance_explained_leave_one_out(heldout, model.w_, factor.transform(model, heldout))
    np.testing.assert_allclose(loo, -1 / (n - 1), atol=FLOOR_TOL)


def test_leave_one_out_of_identical_networks_is_one():
    fit, _ = rank_r_networks(3)
    model = factor.fit_srm(fit, n_components=5)
    loo = factor.variance_explained_leave_one_out(fit, model.w_, factor.transform(model, fit))
    assert loo.min() > FULL


def test_smallest_k_reaching():
    assert smallest_k_reaching([5, 10, 20], [0.5, 0.8, 0.95], 0.75) == 10
    assert smallest_k_reaching([5, 10, 20], [0.5, 0.8, 0.95], 0.99) == 20  # none: the last, as the original
    with pytest.raises(ValueError, match="same non-zero length"):
        smallest_k_reaching([5, 10], [0.5], 0.1)


@pytest.mark.parametrize("ks, match", [
    ([3, 13], r"k = 13 is larger than min\(units, fit images\) = min\(12, 60\); every k must be <= 12"),
    ([0], "ks must hold positive integers, got 0"),
    ([2.5], "ks must hold positive integers, got 2.5"),
    ([], "ks must be a non-empty list"),
])
def test_bad_ks(ks, match):
    fit, heldout = rank_r_networks(0)
    with pytest.raises(ValueError, match=match):
        variance_explained_by_k(fit, heldout, ks)


def test_k_above_fit_images_names_them():
    fit, heldout = rank_r_networks(0, n_fit=8)
    with pytest.raises(ValueError, match=r"k = 10 is larger than min\(units, fit images\) = min\(12, 8\)"):
        variance_explained_by_k(fit, heldout, [10])
    with pytest.raises(ValueError, match=r"k = 9 is larger than min\(units, fit images\) = min\(12, 8\)"):
        pca_variance_explained(fit[0], heldout[0], [9])


@pytest.mark.parametrize("call, match", [
    (lambda f, h: variance_explained_by_k(f, h[:3], [2]), "Xs_fit has 4 networks but Xs_heldout has 3"),
    (lambda f, h: variance_explained_by_k(f[:1], h[:1], [2]), "at least 2 networks"),
    (lambda f, h: variance_explained_by_k(f, h, [2], reconstruction="self"), "reconstruction must be one of"),
    (lambda f, h: variance_explained_by_k(f, [h[0][:5]] + h[1:], [2]), r"network 0: .* same units"),
    (lambda f, h: factor.variance_explained_leave_one_out(f, [np.eye(12)] * 4, [f[0]]),
     "at least 2 shared responses"),
    (lambda f, h: factor.variance_explained_leave_one_out(f[:2], [np.eye(12)] * 2, [f[0], f[1][:, :5]]),
     "same shape"),
])
def test_bad_input(call, match):
    fit, heldout = rank_r_networks(0)
    with pytest.raises(ValueError, match=match):
        call(fit, heldout)
