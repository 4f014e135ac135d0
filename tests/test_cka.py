"""Linear CKA (qmvpa.cka): against a direct Gram-matrix implementation, known answers, bad input."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from qmvpa import cka

EXACT = 1e-12  # invariances hold to rounding
REFERENCE = 1e-10  # feature-space formula against the images × images estimator


def _gram_hsic(K, L, debiased):
    """HSIC straight from the definitions, on images × images kernels."""
    n = K.shape[0]
    if not debiased:
        H = np.eye(n) - 1.0 / n
        return np.trace(K @ H @ L @ H) / (n - 1) ** 2
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))


def _gram_cka(X, Y, debiased):
    K, L = X.T @ X, Y.T @ Y  # uncentred on purpose: both estimators are shift-invariant
    return _gram_hsic(K, L, debiased) / np.sqrt(_gram_hsic(K, K, debiased) * _gram_hsic(L, L, debiased))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("units", [(7, 5), (40, 60)])  # fewer / more units than images
def test_matches_gram_matrix_estimator(seed, debiased, units):
    rng = np.random.default_rng(seed)
    n = 12
    X = rng.standard_normal((units[0], n)) + 3.0  # offset: the centring must not matter
    Y = rng.standard_normal((units[1], units[0])) @ X * 0.5 + rng.standard_normal((units[1], n))
    assert abs(cka.linear_cka(X, Y, debiased) - _gram_cka(X, Y, debiased)) < REFERENCE


def test_independent_gaussians():
    """Kornblith/Nguyen's example: biased CKA of independent data is ~0.94, debiased ~0."""
    rng = np.random.default_rng(0)
    biased, debiased = [], []
    for _ in range(100):
        X, Y = rng.standard_normal((1000, 64)), rng.standard_normal((1000, 64))
        biased.append(cka.linear_cka(X, Y))
        debiased.append(cka.linear_cka(X, Y, debiased=True))
    assert abs(np.mean(debiased)) < 0.01
    assert abs(np.mean(biased) - 0.94) < 0.02


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("n_images", [30, 200])
def test_invariances_are_exact(debiased, n_images):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, n_images))
    Q = ortho_group.rvs(50, random_state=4)
    assert abs(cka.linear_cka(X, Q @ X, debiased) - 1.0) < EXACT
    assert abs(cka.linear_cka(X, -3.7 * X, debiased) - 1.0) < EXACT
    # orthonormal columns into more units (a different unit count)
    Q_tall = np.linalg.qr(rng.standard_normal((80, 50)))[0]  # (80, 50)
    assert abs(cka.linear_cka(X, Q_tall @ X, debiased) - 1.0) < EXACT


def test_float32_close_to_float64():
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((100, 300)), rng.standard_normal((80, 300))
    Y[:10] += X[:10]
    for debiased in (False, True):
        ref = cka.linear_cka(X, Y, debiased)
        assert abs(cka.linear_cka(X.astype(np.float32), Y.astype(np.float32), debiased) - ref) < 1e-5


@pytest.mark.parametrize("debiased", [False, True])
def test_pairwise_matches_single_pairs(debiased):
    rng = np.random.default_rng(6)
    Xs = [rng.standard_normal((u, 40)) for u in (10, 25, 60, 200)]  # the last pair takes the Gram route
    pairs, values = cka.pairwise_cka(Xs, debiased)
    assert pairs.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    expected = [cka.linear_cka(Xs[i], Xs[j], debiased) for i, j in pairs]
    np.testing.assert_allclose(values, expected, rtol=0, atol=EXACT)


def test_constant_network_gives_nan(caplog):
    X = np.ones((5, 10))
    with caplog.at_level("WARNING"):
        assert np.isnan(cka.linear_cka(X, np.random.default_rng(0).standard_normal((5, 10))))
    assert "CKA undefined" in caplog.text


def test_bad_input():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 10))
    with pytest.raises(ValueError, match="X must be 2-D"):
        cka.linear_cka(X[0], X)
    with pytest.raises(ValueError, match="Y must be 2-D"):
        cka.linear_cka(X, X[None])
    with pytest.raises(ValueError, match="same number of images"):
        cka.linear_cka(X, X[:, :9])
    with pytest.raises(ValueError, match="debiased estimator needs at least 4 images, got 3"):
        cka.linear_cka(X[:, :3], X[:, :3], debiased=True)
    with pytest.raises(ValueError, match="CKA needs at least 2 images, got 1"):
        cka.linear_cka(X[:, :1], X[:, :1])
    with pytest.raises(ValueError, match="at least 2 networks"):
        cka.pairwise_cka([X])
    with pytest.raises(ValueError, match="image counts differ"):
        cka.pairwise_cka([X, X[:, :8]])
    with pytest.raises(ValueError, match="list of"):
        cka.pairwise_cka(X)
