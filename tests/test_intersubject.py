"""qmvpa.intersubject: pairwise ISC and the original's Procrustes disparity matrix, against NumPy and SciPy."""

import numpy as np
import pytest
from scipy.spatial import procrustes
from scipy.stats import ortho_group

from qmvpa import intersubject

EXACT = 1e-10
SEEDS = [0, 1]


def networks(seed, n=4, units=6, images=15):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((units, images))
    return [base + 0.5 * rng.standard_normal((units, images)) for _ in range(n)]


@pytest.mark.parametrize("seed", SEEDS)
def test_cross_correlation_matches_corrcoef(seed):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((5, 20)), rng.standard_normal((3, 20))
    np.testing.assert_allclose(intersubject.cross_correlation(X, Y), np.corrcoef(X, Y)[:5, 5:], atol=EXACT)


@pytest.mark.parametrize("seed", SEEDS)
def test_pairwise_isc_is_the_diagonal_of_the_cross_correlation(seed):
    Xs = networks(seed)
    pairs, isc = intersubject.pairwise_isc(Xs)
    assert pairs.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert isc.shape == (6, 6)
    for (i, j), row in zip(pairs, isc):
        np.testing.assert_allclose(row, np.diag(np.corrcoef(Xs[i], Xs[j])[:6, 6:]), atol=EXACT)
    assert isc.mean() > 0.5  # copies of one signal


@pytest.mark.parametrize("seed", SEEDS)
def test_pairwise_mean_cross_correlation_is_the_originals_summary(seed):
    Xs = networks(seed)
    Xs[2] = Xs[2][:4]  # unit counts may differ
    pairs, values = intersubject.pairwise_mean_cross_correlation(Xs)
    for (i, j), v in zip(pairs, values):
        n_i = Xs[i].shape[0]
        assert v == pytest.approx(np.corrcoef(Xs[i], Xs[j])[:n_i, n_i:].mean(), abs=EXACT)


def test_constant_feature_correlates_zero():
    Xs = networks(0)
    Xs[0][2] = 3.0
    _, isc = intersubject.pairwise_isc(Xs)
    assert np.all(isc[:3, 2] == 0) and np.all(np.isfinite(isc))


@pytest.mark.parametrize("seed", SEEDS)
def test_procrustes_matrix_matches_scipy(seed):
    Xs = networks(seed, units=8, images=5)
    D = intersubject.procrustes_disparity_matrix(Xs)
    assert D.shape == (4, 4)
    np.testing.assert_array_equal(D, D.T)
    np.testing.assert_array_equal(np.diag(D), 0)
    for i in range(4):
        for j in range(i):
            assert D[i, j] == pytest.approx(procrustes(Xs[i], Xs[j])[2], abs=EXACT)


def test_procrustes_matrix_what_it_is_invariant_to():
    """Units are the points: rotating the image space (columns), shifting and scaling cost nothing;
    rotating the units (rows) does."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((10, 6))
    image_rotated = 2.5 * X @ ortho_group.rvs(6, random_state=1) + 4.0
    unit_rotated = ortho_group.rvs(10, random_state=2) @ X
    D = intersubject.procrustes_disparity_matrix([X, image_rotated, unit_rotated])
    assert D[0, 1] == pytest.approx(0, abs=EXACT)
    assert D[0, 2] > 0.1


@pytest.mark.parametrize("call, match", [
    (lambda Xs: intersubject.pairwise_isc(Xs[:1]), r"needs at least 2 networks \(subjects\), got 1"),
    (lambda Xs: intersubject.pairwise_isc([Xs[0], Xs[1][:3]]),
     r"pairwise_isc pairs unit u .* same number of units; got \[6, 3\]"),
    (lambda Xs: intersubject.procrustes_disparity_matrix([Xs[0], Xs[1][:, :4]]),
     r"image counts differ: \[15, 4\]"),
    (lambda Xs: intersubject.procrustes_disparity_matrix([Xs[0], np.ones((6, 15))]),
     r"Xs\[1\]: all rows \(units\) are the same point"),
    (lambda Xs: intersubject.cross_correlation(Xs[0], Xs[1][:, :3]), "same images"),
    (lambda Xs: intersubject.pairwise_mean_cross_correlation(Xs[0]), "Xs must be a list"),
    (lambda Xs: intersubject.cross_correlation(Xs[0][0], Xs[1]), "X must be 2-D"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(networks(0))
