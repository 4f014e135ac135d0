"""Intervals over networks (qmvpa.intervals): formulas, coverage, pair handling, bad input."""

import numpy as np
import pytest
from scipy import stats

from qmvpa import cka, intervals

TOL = 1e-12
N_NETWORKS = 10
N_DRAWS = 400
COVERAGE_RANGE = (0.92, 0.98)  # nominal 0.95; ±2.7 binomial SDs at 400 draws


def test_jackknife_of_a_mean_is_the_t_interval():
    values = np.random.default_rng(0).normal(1.0, 2.0, N_NETWORKS)
    ci = intervals.network_mean_interval(values)
    low, high = stats.t.interval(0.95, N_NETWORKS - 1, loc=values.mean(), scale=stats.sem(values))
    assert abs(ci.low - low) < TOL and abs(ci.high - high) < TOL
    assert abs(ci.se - stats.sem(values)) < TOL
    assert ci.estimate == pytest.approx(values.mean())
    np.testing.assert_allclose(ci.replicates, [np.delete(values, i).mean() for i in range(N_NETWORKS)])


def test_jackknife_coverage_of_a_mean():
    rng = np.random.default_rng(1)
    true_mean = 0.3
    covered = [intervals.network_mean_interval(rng.normal(true_mean, 1.0, N_NETWORKS))
               for _ in range(N_DRAWS)]
    coverage = np.mean([c.low <= true_mean <= c.high for c in covered])
    assert COVERAGE_RANGE[0] <= coverage <= COVERAGE_RANGE[1]


def _pair_model(rng, n=N_NETWORKS, mu=0.5, network_sd=0.1, pair_sd=0.05):
    """Pairwise values with network effects: M_ij = mu + a_i + a_j + e_ij (pairs share networks)."""
    a = rng.normal(0, network_sd, n)
    e = rng.normal(0, pair_sd, (n, n))
    M = mu + a[:, None] + a[None, :] + (e + e.T) / np.sqrt(2)
    np.fill_diagonal(M, 1.0)
    return M


def test_pair_jackknife_leave_one_out_values():
    M = _pair_model(np.random.default_rng(2))
    ci = intervals.pair_mean_interval(M)
    iu = np.triu_indices(N_NETWORKS, 1)
    assert abs(ci.estimate - M[iu].mean()) < TOL
    for i in range(N_NETWORKS):
        keep = np.delete(np.arange(N_NETWORKS), i)
        sub = M[np.ix_(keep, keep)]
        assert abs(ci.replicates[i] - sub[np.triu_indices(N_NETWORKS - 1, 1)].mean()) < TOL


def test_pair_jackknife_covers_while_an_interval_over_pairs_does_not():
    rng = np.random.default_rng(3)
    mu = 0.5
    iu = np.triu_indices(N_NETWORKS, 1)
    jack, naive = [], []
    for _ in range(300):
        M = _pair_model(rng, mu=mu)
        ci = intervals.pair_mean_interval(M)
        jack.append(ci.low <= mu <= ci.high)
        low, high = stats.t.interval(0.95, len(iu[0]) - 1, loc=M[iu].mean(), scale=stats.sem(M[iu]))
        naive.append(low <= mu <= high)
    assert 0.88 <= np.mean(jack) <= 0.99
    assert np.mean(naive) < 0.8  # pairs treated as independent: far too narrow


def test_bootstrap_skips_self_pairs_and_covers_roughly():
    rng = np.random.default_rng(4)
    M = _pair_model(rng)
    np.fill_diagonal(M, 100.0)  # a self pair would blow the mean up
    ci = intervals.pair_mean_interval(M, method="bootstrap", n_boot=300)
    assert ci.method == "bootstrap" and ci.replicates.shape == (300,)
    assert np.nanmax(ci.replicates) < 2.0
    assert ci.low < ci.estimate < ci.high
    covered = []
    for seed in range(100):
        values = rng.normal(0.0, 1.0, N_NETWORKS)
        c = intervals.network_mean_interval(values, method="bootstrap", n_boot=300, random_state=seed)
        covered.append(c.low <= 0.0 <= c.high)
    assert 0.8 <= np.mean(covered) <= 0.99  # percentile bootstrap with 10 networks: a little narrow


def test_bootstrap_is_reproducible():
    values = np.random.default_rng(5).normal(size=N_NETWORKS)
    a = intervals.network_mean_interval(values, method="bootstrap", n_boot=50, random_state=9)
    b = intervals.network_mean_interval(values, method="bootstrap", n_boot=50, random_state=9)
    np.testing.assert_array_equal(a.replicates, b.replicates)


def test_generic_statistic_of_network_subsets():
    values = np.arange(5.0)
    ci = intervals.jackknife_interval(lambda idx: float(np.max(values[idx])), 5)
    np.testing.assert_array_equal(ci.replicates, [4, 4, 4, 4, 3])
    assert ci.estimate == 4.0 and ci.low <= 4.0 <= ci.high


def test_pair_matrix_from_pairwise_output():
    rng = np.random.default_rng(6)
    Xs = [rng.standard_normal((8, 20)) for _ in range(4)]
    pairs, values = cka.pairwise_cka(Xs)
    M = intervals.pair_matrix(pairs, values, 4, diagonal=1.0)
    assert M[1, 3] == M[3, 1] == values[4]
    assert np.all(np.diag(M) == 1.0)
    ci = intervals.pair_mean_interval(M)
    assert abs(ci.estimate - values.mean()) < TOL
    M_nan = intervals.pair_matrix(pairs, values, 4)  # NaN diagonal: ignored
    assert np.all(np.isnan(np.diag(M_nan)))
    assert intervals.pair_mean_interval(M_nan).estimate == ci.estimate


def test_bad_input():
    with pytest.raises(ValueError, match="confidence must be a number in"):
        intervals.network_mean_interval(np.zeros(5), confidence=95)
    with pytest.raises(ValueError, match="n_networks must be an integer >= 3"):
        intervals.jackknife_interval(np.mean, 2)
    with pytest.raises(ValueError, match="method must be one of"):
        intervals.network_mean_interval(np.zeros(5), method="delta")
    with pytest.raises(ValueError, match="values must be 1-D"):
        intervals.network_mean_interval(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="values must be finite"):
        intervals.network_mean_interval(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="n_boot must be an integer >= 2"):
        intervals.network_mean_interval(np.zeros(5), method="bootstrap", n_boot=1)
    with pytest.raises(ValueError, match="M must be a square"):
        intervals.pair_mean_interval(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least 3 networks"):
        intervals.pair_mean_interval(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="M must be symmetric"):
        intervals.pair_mean_interval(np.triu(np.ones((4, 4))))
    with pytest.raises(ValueError, match="finite off the diagonal"):
        intervals.pair_mean_interval(intervals.pair_matrix([[0, 1]], [0.5], 3))
    with pytest.raises(ValueError, match="two different network indices"):
        intervals.pair_matrix([[0, 0]], [1.0], 3)
    with pytest.raises(ValueError, match=r"pairs must have shape \(n_pairs, 2\)"):
        intervals.pair_matrix([0, 1], [1.0], 3)
