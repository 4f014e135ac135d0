"""qmvpa.rsa agrees with plain numpy/scipy references and encodes the mathematics."""

import numpy as np
import pytest
from scipy import stats

from qmvpa import rsa

TOL = 1e-6  # agreement with the float64 reference
TOL32 = 2e-6  # float32 inputs


def _data(n_subjects=4, n_units=30, n_images=25, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n_units, n_images)) for _ in range(n_subjects)]


def _reference_irsm(Xs):
    """The original qmvpa.rsa.inter_RSMs, with np.corrcoef."""
    n, m = len(Xs), Xs[0].shape[1]
    out = []
    for i in range(n):
        others = np.mean([Xs[j] for j in range(n) if j != i], axis=0)
        out.append(np.corrcoef(Xs[i].T, others.T)[:m, m:])
    return np.mean(out, axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_within_rsm_matches_corrcoef(seed):
    X = _data(1, seed=seed)[0]
    np.testing.assert_allclose(rsa.within_rsm(X), np.corrcoef(X.T), atol=TOL)


def test_within_rsm_float32():
    X = _data(1)[0].astype(np.float32)
    R = rsa.within_rsm(X)
    assert R.dtype == np.float32
    np.testing.assert_allclose(R, np.corrcoef(X.T.astype(np.float64)), atol=TOL32)


def test_mean_within_rsm():
    Xs = _data()
    ref = np.mean([np.corrcoef(X.T) for X in Xs], axis=0)
    np.testing.assert_allclose(rsa.mean_within_rsm(Xs), ref, atol=TOL)


def test_cross_rsm():
    X, Y = _data(2)
    np.testing.assert_allclose(rsa.cross_rsm(X, Y), np.corrcoef(X.T, Y.T)[:25, 25:], atol=TOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_subjects", [2, 5])
def test_inter_subject_rsm_matches_leave_one_out_reference(seed, n_subjects):
    Xs = _data(n_subjects, seed=seed)
    ref = _reference_irsm(Xs)
    np.testing.assert_allclose(rsa.inter_subject_rsm(Xs), ref, atol=TOL)
    np.testing.assert_allclose(rsa.inter_subject_rsm(Xs, symmetrize=True), (ref + ref.T) / 2, atol=TOL)


def test_inter_subject_rsm_of_identical_networks_is_within_rsm():
    X = _data(1)[0]
    np.testing.assert_allclose(rsa.inter_subject_rsm([X, X, X]), rsa.within_rsm(X), atol=TOL)


def test_lower_triangle_is_strict():
    M = np.arange(16).reshape(4, 4)
    assert rsa.lower_triangle(M).tolist() == [4, 8, 9, 12, 13, 14]
    with pytest.raises(ValueError, match="expected a square matrix"):
        rsa.lower_triangle(np.zeros((2, 3)))


@pytest.mark.parametrize("seed", [0, 1])
def test_rsm_similarity_matches_scipy(seed):
    A, B = (rsa.within_rsm(X) for X in _data(2, seed=seed))
    iu = np.tril_indices(25, -1)
    a, b = A[iu], B[iu]
    assert abs(rsa.rsm_similarity(A, B) - stats.pearsonr(a, b).statistic) < TOL
    assert abs(rsa.rsm_similarity(A, B, "spearman") - stats.spearmanr(a, b).statistic) < TOL
    assert abs(rsa.rsm_similarity(A, B, "kendall") - stats.kendalltau(a, b).statistic) < TOL


def test_rsm_similarity_ignores_the_diagonal_and_upper_triangle():
    A = rsa.within_rsm(_data(1)[0])
    B = A.copy()
    B[np.diag_indices(25)] = -5.0
    B[np.triu_indices(25, 1)] = 0.3
    for method in rsa.SIMILARITY_METHODS:
        assert rsa.rsm_similarity(A, B, method) == pytest.approx(1.0)


def test_rsm_similarity_bad_input():
    A = np.eye(5)
    with pytest.raises(ValueError, match="method must be one of"):
        rsa.rsm_similarity(A, A, method="cosine")
    with pytest.raises(ValueError, match="must have the same shape"):
        rsa.rsm_similarity(A, np.eye(4))


@pytest.mark.parametrize("method", rsa.SIMILARITY_METHODS)
def test_pairwise_consistency(method):
    rsms = [rsa.within_rsm(X) for X in _data(4)]
    pairs, values = rsa.pairwise_consistency(rsms, method=method)
    assert pairs.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    ref = [rsa.rsm_similarity(rsms[i], rsms[j], method) for i, j in pairs]
    np.testing.assert_allclose(values, ref, atol=TOL)
    with pytest.raises(ValueError, match="need at least 2 RSMs"):
        rsa.pairwise_consistency(rsms[:1])


def test_inter_subject_correlation_matches_reference():
    Xs = _data(3, n_units=6, n_images=40)
    isc = rsa.inter_subject_correlation(Xs)
    assert isc.shape == (3, 6)
    for i in range(3):
        others = np.mean([Xs[j] for j in range(3) if j != i], axis=0)
        for f in range(6):
            assert abs(isc[i, f] - stats.pearsonr(Xs[i][f], others[f]).statistic) < TOL


@pytest.mark.parametrize("fn", [rsa.inter_subject_rsm, rsa.inter_subject_correlation])
def test_bad_network_lists(fn):
    X = np.zeros((4, 6))
    with pytest.raises(ValueError, match="needs at least 2 networks"):
        fn([X])
    with pytest.raises(ValueError, match=r"image counts differ: \[6, 5\]"):
        fn([X, np.zeros((4, 5))])
    with pytest.raises(ValueError, match=r"same number of units; got \[4, 3\]"):
        fn([X, np.zeros((3, 6))])
