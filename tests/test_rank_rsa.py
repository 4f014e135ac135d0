"""Rank RSA (qmvpa.rank_rsa): Spearman and Kendall τ-a against SciPy and a direct count."""

import numpy as np
import pytest
from scipy import stats

from qmvpa import rank_rsa, rsa

TOL = 1e-12


def _tau_a_direct(x, y):
    """O(m²) definition: mean of sign products over all pairs."""
    i, j = np.triu_indices(len(x), 1)
    return float(np.mean(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])))


def _rsms(seed, n=20, ties=False):
    rng = np.random.default_rng(seed)
    A = rsa.within_rsm(rng.standard_normal((30, n)))
    B = rsa.within_rsm(rng.standard_normal((30, n)) + 0.5 * rng.standard_normal((30, 1)))
    if ties:
        # a categorical model RSM: 1 within a class, 0 across (heavily tied), and a rounded RSM
        labels = np.arange(n) % 4
        A = (labels[:, None] == labels[None, :]).astype(float)
        B = np.round(B, 1)
    return A, B


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_ties_tau_a_is_scipys_tau_b(seed):
    A, B = _rsms(seed)
    a, b = rsa.lower_triangle(A), rsa.lower_triangle(B)
    assert len(np.unique(a)) == len(a) and len(np.unique(b)) == len(b)
    tau = rank_rsa.compare_rsms(A, B, "kendall_tau_a")
    assert abs(tau - stats.kendalltau(a, b).statistic) < TOL
    assert abs(tau - _tau_a_direct(a, b)) < TOL


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_ties_tau_a_is_the_direct_count_not_tau_b(seed):
    A, B = _rsms(seed, ties=True)
    a, b = rsa.lower_triangle(A), rsa.lower_triangle(B)
    tau = rank_rsa.compare_rsms(A, B, "kendall_tau_a")
    assert abs(tau - _tau_a_direct(a, b)) < TOL
    tau_b = stats.kendalltau(a, b).statistic
    assert abs(tau) < abs(tau_b) - 1e-3  # ties shrink τ-a, not τ-b


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_and_pearson_match_scipy(ties):
    A, B = _rsms(3, ties=ties)
    a, b = rsa.lower_triangle(A), rsa.lower_triangle(B)
    assert abs(rank_rsa.compare_rsms(A, B, "spearman") - stats.spearmanr(a, b).statistic) < TOL
    assert abs(rank_rsa.compare_rsms(A, B, "pearson") - stats.pearsonr(a, b).statistic) < TOL


def test_kendall_tau_a_of_vectors():
    x = np.array([1.0, 2.0, 2.0, 3.0])
    y = np.array([1.0, 3.0, 2.0, 4.0])
    # pairs: (1,2)+ (1,3)+ (1,4)+ (2,3) tie in x (2,4)+ (3,4)+ : 5 concordant of 6
    assert abs(rank_rsa.kendall_tau_a(x, y) - 5 / 6) < TOL
    assert rank_rsa.kendall_tau_a(x, -y) == pytest.approx(-5 / 6)


def test_constant_vector_gives_nan(caplog):
    with caplog.at_level("WARNING"):
        assert np.isnan(rank_rsa.kendall_tau_a(np.ones(5), np.arange(5.0)))
    assert "constant" in caplog.text


def test_bad_input():
    A = np.eye(5)
    with pytest.raises(ValueError, match="method must be one of"):
        rank_rsa.compare_rsms(A, A, "kendall")
    with pytest.raises(ValueError, match="must have the same shape"):
        rank_rsa.compare_rsms(A, np.eye(4), "kendall_tau_a")
    with pytest.raises(ValueError, match="at least 3 × 3"):
        rank_rsa.compare_rsms(np.eye(2), np.eye(2), "kendall_tau_a")
    with pytest.raises(ValueError, match="1-D of the same length"):
        rank_rsa.kendall_tau_a(np.arange(3.0), np.arange(4.0))
    with pytest.raises(ValueError, match="at least 2 values"):
        rank_rsa.kendall_tau_a([1.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        rank_rsa.kendall_tau_a([1.0, np.nan], [1.0, 2.0])
