"""Angular Procrustes distance (qmvpa.procrustes): SciPy's rotation, known answers, metric axioms."""

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group

from qmvpa import procrustes

TOL = 1e-10  # float64 agreement
ZERO = 1e-6  # an exact copy's distance: arccos near 1 turns 1e-16 rounding into ~1e-8


def _centre(X):
    return X - X.mean(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotation_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((6, 20)) + 2.0, rng.standard_normal((6, 20))
    Q = procrustes.procrustes_rotation(X, Y)
    R, _ = orthogonal_procrustes(_centre(Y).T, _centre(X).T)  # images × units convention
    np.testing.assert_allclose(Q, R.T, atol=TOL)
    np.testing.assert_allclose(Q @ Q.T, np.eye(6), atol=TOL)


def test_rotation_recovers_a_rotation_and_pads():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5, 30))
    R = ortho_group.rvs(5, random_state=4)
    np.testing.assert_allclose(procrustes.procrustes_rotation(R @ X, X), R, atol=TOL)
    Q = procrustes.procrustes_rotation(X[:3], X)  # 3 vs 5 units: padded to 5
    assert Q.shape == (5, 5)
    np.testing.assert_allclose(Q @ Q.T, np.eye(5), atol=TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_distance_zero_for_rotated_scaled_shifted_copies(seed):
    rng = np.random.default_rng(seed)
    X, X_test = rng.standard_normal((8, 40)), rng.standard_normal((8, 25))
    R = ortho_group.rvs(8, random_state=seed)
    Y, Y_test = 2.5 * R @ X + 1.0, 2.5 * R @ X_test - 3.0
    assert procrustes.procrustes_distance(X, Y) < ZERO
    assert procrustes.procrustes_distance(X, Y, X_test, Y_test) < ZERO
    # into more units (orthonormal columns): zero padding keeps the distance at 0
    T = np.linalg.qr(rng.standard_normal((12, 8)))[0]  # (12, 8)
    assert procrustes.procrustes_distance(X, T @ X) < ZERO
    assert procrustes.procrustes_distance(X, T @ X, X_test, T @ X_test) < ZERO


def test_same_images_distance_is_arccos_of_best_rotation():
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((4, 15)), rng.standard_normal((4, 15))
    Xn, Yn = _centre(X), _centre(Y)
    Xn, Yn = Xn / np.linalg.norm(Xn), Yn / np.linalg.norm(Yn)
    Q = procrustes.procrustes_rotation(X, Y)
    expected = np.arccos(np.sum(Xn * (Q @ Yn)))
    assert abs(procrustes.procrustes_distance(X, Y) - expected) < TOL
    # cross-validated form with the fit images as held-out images is the same number
    assert abs(procrustes.procrustes_distance(X, Y, X, Y) - expected) < TOL


def test_heldout_distance_uses_the_fit_rotation():
    rng = np.random.default_rng(6)
    X, Y = rng.standard_normal((5, 30)), rng.standard_normal((7, 30))
    Xt, Yt = rng.standard_normal((5, 12)), rng.standard_normal((7, 12))
    Q = procrustes.procrustes_rotation(X, Y)  # (7, 7)
    Xtn, Ytn = _centre(Xt), _centre(Yt)
    Xtn = np.vstack([Xtn / np.linalg.norm(Xtn), np.zeros((2, 12))])  # padded to 7 units
    Ytn = Ytn / np.linalg.norm(Ytn)
    expected = np.arccos(np.sum(Xtn * (Q @ Ytn)))
    assert abs(procrustes.procrustes_distance(X, Y, Xt, Yt) - expected) < TOL


@pytest.mark.parametrize("seed", [0, 1])
def test_symmetric(seed):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((6, 30)), rng.standard_normal((9, 30))
    Xt, Yt = rng.standard_normal((6, 10)), rng.standard_normal((9, 10))
    assert abs(procrustes.procrustes_distance(X, Y) - procrustes.procrustes_distance(Y, X)) < TOL
    assert abs(procrustes.procrustes_distance(X, Y, Xt, Yt)
               - procrustes.procrustes_distance(Y, X, Yt, Xt)) < TOL


def test_triangle_inequality_on_random_triples():
    """Random triples with the middle network between the others (rotated, noisy mixtures).

    Such near-geodesic triples are where a non-metric fails: 1 - cos(d) breaks the
    inequality on some of them, the angle must not.
    """
    rng = np.random.default_rng(7)
    chordal_violations = 0
    for _ in range(200):
        X, Z = rng.standard_normal((5, 20)), rng.standard_normal((5, 20))
        t = rng.uniform()
        Y = ortho_group.rvs(5, random_state=rng) @ ((1 - t) * X + t * Z) + 0.1 * rng.standard_normal((5, 20))
        Y = np.vstack([Y, np.zeros((2, 20))])  # 7 units: the padding is exercised too
        d = procrustes.pairwise_procrustes([X, Y, Z])
        for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
            assert d[i, j] <= d[i, k] + d[k, j] + TOL
            c = 1 - np.cos(d)
            chordal_violations += c[i, j] > c[i, k] + c[k, j]
        assert np.all((d >= 0) & (d <= np.pi / 2 + TOL))
    assert chordal_violations > 0


@pytest.mark.parametrize("held_out", [False, True])
def test_pairwise_matrix_matches_single_pairs(held_out):
    rng = np.random.default_rng(8)
    Xs = [rng.standard_normal((u, 25)) for u in (4, 6, 6)]
    Ts = [rng.standard_normal((u, 11)) for u in (4, 6, 6)] if held_out else None
    D = procrustes.pairwise_procrustes(Xs, Ts)
    assert np.allclose(D, D.T) and np.all(np.diag(D) == 0)
    for i in range(3):
        for j in range(3):
            if i != j:
                args = (Xs[i], Xs[j]) + ((Ts[i], Ts[j]) if held_out else ())
                assert abs(D[i, j] - procrustes.procrustes_distance(*args)) < TOL


def test_float32_close_to_float64():
    rng = np.random.default_rng(9)
    X, Y = rng.standard_normal((30, 100)), rng.standard_normal((20, 100))
    Xt, Yt = rng.standard_normal((30, 50)), rng.standard_normal((20, 50))
    f32 = [a.astype(np.float32) for a in (X, Y, Xt, Yt)]
    assert abs(procrustes.procrustes_distance(*f32) - procrustes.procrustes_distance(X, Y, Xt, Yt)) < 1e-5


def test_constant_network_gives_nan(caplog):
    with caplog.at_level("WARNING"):
        assert np.isnan(procrustes.procrustes_distance(np.ones((3, 8)), np.eye(3, 8)))
    assert "Procrustes distance undefined" in caplog.text


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((4, 10))
    with pytest.raises(ValueError, match="X must be 2-D"):
        procrustes.procrustes_distance(X[0], X)
    with pytest.raises(ValueError, match="same number of images"):
        procrustes.procrustes_distance(X, X[:, :9])
    with pytest.raises(ValueError, match="give both X_test and Y_test"):
        procrustes.procrustes_distance(X, X, X)
    with pytest.raises(ValueError, match="X_test and Y_test must have the same number of images"):
        procrustes.procrustes_distance(X, X, X, X[:, :5])
    with pytest.raises(ValueError, match="held-out arrays must have the fit arrays' units"):
        procrustes.procrustes_distance(X, X, X[:3], X)
    with pytest.raises(ValueError, match="need at least 2 images"):
        procrustes.procrustes_rotation(X[:, :1], X[:, :1])
    with pytest.raises(ValueError, match="at least 2 networks"):
        procrustes.pairwise_procrustes([X])
    with pytest.raises(ValueError, match="Xs_test has 3 networks but Xs has 2"):
        procrustes.pairwise_procrustes([X, X], [X, X, X])
    with pytest.raises(ValueError, match=r"Xs_test\[1\] has 3 units but Xs\[1\] has 4"):
        procrustes.pairwise_procrustes([X, X], [X, X[:3]])
    with pytest.raises(ValueError, match="image counts differ"):
        procrustes.pairwise_procrustes([X, X[:, :7]])
