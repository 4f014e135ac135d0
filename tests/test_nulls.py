"""Null distributions (qmvpa.nulls): brute-force references, known answers, calibration, bad input."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from qmvpa import cka, nulls, procrustes, rank_rsa, rsa

TOL = 1e-10  # float64 agreement with a brute-force recomputation
SEPARATION = 0.3  # observed minus the null's 95th percentile for near-copies


def _perms(random_state, n_perm, n):
    """The permutations the tests draw (one child of SeedSequence per draw)."""
    return [np.random.default_rng(s).permutation(n)
            for s in np.random.SeedSequence(random_state).spawn(n_perm)]


def _copies(rng, n_networks, units, n_images, noise=0.3):
    """Rotated noisy copies of one network (units × images)."""
    base = rng.standard_normal((units, n_images)) * np.linspace(2, 0.2, units)[:, None]
    return [ortho_group.rvs(units, random_state=rng) @ base + noise * rng.standard_normal((units, n_images))
            for _ in range(n_networks)]


def _copies_fit_test(rng, n_networks, units, n_fit, n_test, noise=0.3):
    Xs = _copies(rng, n_networks, units, n_fit + n_test, noise)
    return [X[:, :n_fit] for X in Xs], [X[:, n_fit:] for X in Xs]


# --------------------------------------------------------------------------- p-value


def test_permutation_p_value_formula():
    null = np.array([0.1, 0.5, 0.5, 0.9])
    assert nulls.permutation_p_value(0.5, null) == (1 + 3) / 5
    assert nulls.permutation_p_value(0.5, null, "less") == (1 + 3) / 5
    assert nulls.permutation_p_value(1.0, null) == 1 / 5
    assert nulls.permutation_p_value(1.0, np.append(null, np.nan)) == 1 / 5  # NaN draws left out
    p = nulls.permutation_p_value([0.0, 1.0], np.column_stack([null, null]))
    np.testing.assert_array_equal(p, [1.0, 0.2])
    with pytest.raises(ValueError, match="alternative must be one of"):
        nulls.permutation_p_value(0.5, null, "two-sided")
    with pytest.raises(ValueError, match="null must have shape"):
        nulls.permutation_p_value([0.5, 0.1], null)


# --------------------------------------------------------------------------- Mantel


def _rsm_pair(seed, n=15, symmetric_b=True):
    rng = np.random.default_rng(seed)
    A = rsa.inter_subject_rsm([rng.standard_normal((8, n)) for _ in range(3)])  # not symmetric
    B = rsa.within_rsm(rng.standard_normal((8, n)))
    if not symmetric_b:
        B = B + 0.05 * rng.standard_normal((n, n))
    return A, B


@pytest.mark.parametrize("method", rank_rsa.COMPARE_METHODS)
@pytest.mark.parametrize("symmetric_b", [True, False])
def test_mantel_matches_brute_force(method, symmetric_b):
    A, B = _rsm_pair(0, symmetric_b=symmetric_b)
    n_perm = 30 if method == "kendall_tau_a" else 100
    res = nulls.mantel_test(A, B, method, n_perm=n_perm, random_state=3)
    expected = [rank_rsa.compare_rsms(A, B[p][:, p], method) for p in _perms(3, n_perm, 15)]
    np.testing.assert_allclose(res.null, expected, rtol=0, atol=TOL)
    assert abs(res.observed - rank_rsa.compare_rsms(A, B, method)) < TOL
    assert res.p_value == nulls.permutation_p_value(res.observed, res.null)


@pytest.mark.parametrize("method", rank_rsa.COMPARE_METHODS)
def test_mantel_several_rsms_share_the_permutations(method):
    A1, B = _rsm_pair(3, n=200 if method != "kendall_tau_a" else 15)  # 200 images: two row blocks
    A2 = rsa.within_rsm(np.random.default_rng(4).standard_normal((5, B.shape[0])))
    n_perm = 5 if method == "kendall_tau_a" else 10
    both = nulls.mantel_test([A1, A2], B, method, n_perm=n_perm, random_state=5)
    assert both.null.shape == (n_perm, 2) and both.p_value.shape == (2,)
    for k, A in enumerate((A1, A2)):
        single = nulls.mantel_test(A, B, method, n_perm=n_perm, random_state=5)
        np.testing.assert_allclose(both.null[:, k], single.null, rtol=0, atol=TOL)
        assert abs(both.observed[k] - rank_rsa.compare_rsms(A, B, method)) < TOL
    perms = _perms(5, n_perm, B.shape[0])
    np.testing.assert_allclose(both.null[:, 0], [rank_rsa.compare_rsms(A1, B[p][:, p], method)
                                                 for p in perms], rtol=0, atol=TOL)


def test_mantel_float32_fast_path_close_to_float64():
    A, B = _rsm_pair(1, n=40)
    res64 = nulls.mantel_test(A, B, n_perm=50)
    res32 = nulls.mantel_test(A.astype(np.float32), B.astype(np.float32), n_perm=50)
    np.testing.assert_allclose(res32.null, res64.null, atol=1e-5)
    assert abs(res32.observed - res64.observed) < 1e-5


def test_mantel_detects_rotated_copies():
    rng = np.random.default_rng(4)
    X1, X2 = _copies(rng, 2, units=30, n_images=25)
    res = nulls.mantel_test(rsa.within_rsm(X1), rsa.within_rsm(X2), n_perm=199)
    assert res.p_value < 0.01
    assert res.observed - res.null_critical > SEPARATION
    assert abs(res.null_mean) < 0.1


def test_mantel_is_calibrated_for_independent_networks():
    rng = np.random.default_rng(5)
    p = np.array([nulls.mantel_test(rsa.within_rsm(rng.standard_normal((10, 12))),
                                    rsa.within_rsm(rng.standard_normal((10, 12))),
                                    n_perm=99, random_state=i).p_value for i in range(50)])
    assert np.mean(p < 0.05) < 0.10
    assert 0.35 < p.mean() < 0.65  # roughly uniform


def test_mantel_is_reproducible():
    A, B = _rsm_pair(2)
    r1 = nulls.mantel_test(A, B, n_perm=40, random_state=7)
    r2 = nulls.mantel_test(A, B, n_perm=60, random_state=7)
    np.testing.assert_array_equal(r1.null, r2.null[:40])


def test_mantel_bad_input():
    A, B = _rsm_pair(0)
    with pytest.raises(ValueError, match="method must be one of"):
        nulls.mantel_test(A, B, method="kendall")
    with pytest.raises(ValueError, match="must have the same shape"):
        nulls.mantel_test(A, B[:5, :5])
    with pytest.raises(ValueError, match="at least 3 × 3"):
        nulls.mantel_test(A[:2, :2], B[:2, :2])
    with pytest.raises(ValueError, match="n_perm must be an integer >= 1"):
        nulls.mantel_test(A, B, n_perm=0)
    with pytest.raises(ValueError, match="alternative must be one of"):
        nulls.mantel_test(A, B, alternative="both")


# --------------------------------------------------------------------------- SRM null


def test_srm_null_detects_rotated_copies():
    rng = np.random.default_rng(6)
    fit, test = _copies_fit_test(rng, 3, units=10, n_fit=40, n_test=30)
    res = nulls.srm_correspondence_null(fit, test, n_refits=120, n_iter=3)  # p >= 1/121
    assert res.p_value < 0.01
    assert res.observed - res.null_critical > SEPARATION
    assert res.null.shape == (120,)


def _srm_null_p_values(n_draws, n_refits, n_iter):
    rng = np.random.default_rng(7)
    p = []
    for i in range(n_draws):
        Xs = [rng.standard_normal((6, 45)) for _ in range(3)]
        res = nulls.srm_correspondence_null([X[:, :25] for X in Xs], [X[:, 25:] for X in Xs],
                                            n_refits=n_refits, n_iter=n_iter, random_state=i)
        p.append(res.p_value)
    return np.array(p)


def test_srm_null_is_calibrated_for_independent_networks_fast():
    p = _srm_null_p_values(n_draws=15, n_refits=39, n_iter=2)
    assert np.mean(p < 0.05) <= 2 / 15
    assert 0.25 < p.mean() < 0.75


@pytest.mark.slow
def test_srm_null_is_calibrated_for_independent_networks():
    p = _srm_null_p_values(n_draws=50, n_refits=39, n_iter=10)
    assert np.mean(p < 0.05) < 0.10
    assert 0.35 < p.mean() < 0.65


def test_srm_null_reproducible_vector_statistic_and_given_observed():
    rng = np.random.default_rng(8)
    fit, test = _copies_fit_test(rng, 3, units=6, n_fit=20, n_test=15)
    default = nulls.IrsmWrsmStatistic(test)

    def two(shared, model):
        return [default(shared), float(np.mean([w.shape[1] for w in model.w_]))]

    r1 = nulls.srm_correspondence_null(fit, test, statistic=two, n_refits=5, n_iter=3, random_state=1)
    r2 = nulls.srm_correspondence_null(fit, test, statistic=two, n_refits=8, n_iter=3, random_state=1)
    assert r1.null.shape == (5, 2) and r1.p_value.shape == (2,)
    np.testing.assert_array_equal(r1.null, r2.null[:5])
    np.testing.assert_array_equal(r1.null[:, 1], 6.0)  # k = units
    r3 = nulls.srm_correspondence_null(fit, test, n_refits=5, n_iter=3, random_state=1, observed=0.25)
    assert r3.observed == 0.25
    np.testing.assert_allclose(r3.null, r1.null[:, 0], atol=TOL)
    sub = nulls.srm_correspondence_null(fit, test, n_refits=3, n_iter=3, fit_subsample=10)
    assert sub.null.shape == (3,)


def test_srm_null_default_statistic_is_the_pipelines():
    rng = np.random.default_rng(9)
    fit, test = _copies_fit_test(rng, 3, units=6, n_fit=20, n_test=15)
    from qmvpa import factor
    model = factor.fit_srm(fit, n_iter=3, random_state=0)
    expected = rsa.rsm_similarity(rsa.inter_subject_rsm(factor.transform(model, test)),
                                  rsa.mean_within_rsm(test))
    res = nulls.srm_correspondence_null(fit, test, n_refits=2, n_iter=3, random_state=0)
    assert abs(res.observed - expected) < TOL


def test_srm_null_bad_input():
    rng = np.random.default_rng(0)
    fit = [rng.standard_normal((5, 20)) for _ in range(3)]
    test = [rng.standard_normal((5, 10)) for _ in range(3)]
    with pytest.raises(ValueError, match="at least 2 networks"):
        nulls.srm_correspondence_null(fit[:1], test[:1])
    with pytest.raises(ValueError, match="Xs_fit has 3 networks but Xs_test has 2"):
        nulls.srm_correspondence_null(fit, test[:2])
    with pytest.raises(ValueError, match=r"Xs_test\[1\] has 4 units but Xs_fit\[1\] has 5"):
        nulls.srm_correspondence_null(fit, [test[0], test[1][:4], test[2]])
    with pytest.raises(ValueError, match="image counts differ"):
        nulls.srm_correspondence_null([fit[0], fit[1][:, :10], fit[2]], test)
    with pytest.raises(ValueError, match="n_refits must be an integer >= 1"):
        nulls.srm_correspondence_null(fit, test, n_refits=0)
    with pytest.raises(ValueError, match="fit_subsample must be an integer >= 5"):
        nulls.srm_correspondence_null(fit, test, fit_subsample=3)
    with pytest.raises(ValueError, match="fit_subsample must be at most the 20 fit images"):
        nulls.srm_correspondence_null(fit, test, fit_subsample=30)
    with pytest.raises(ValueError, match="statistic must be callable"):
        nulls.srm_correspondence_null(fit, test, statistic=3.0)
    with pytest.raises(ValueError, match="observed has shape"):
        nulls.srm_correspondence_null(fit, test, n_refits=1, n_iter=1, observed=[0.1, 0.2])
    with pytest.raises(ValueError, match="n_components"):
        nulls.srm_correspondence_null(fit, test, n_components=6)


# --------------------------------------------------------------------------- CKA and Procrustes


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("units", [(4, 5), (60, 50)])  # feature route / permuted-kernel route
def test_cka_null_matches_brute_force(debiased, units):
    rng = np.random.default_rng(10)
    X = rng.standard_normal((units[0], 20))
    Y = rng.standard_normal((units[1], units[0])) @ X + rng.standard_normal((units[1], 20))
    res = nulls.cka_permutation_test(X, Y, debiased, n_perm=40, random_state=2)
    expected = [cka.linear_cka(X, Y[:, p], debiased) for p in _perms(2, 40, 20)]
    np.testing.assert_allclose(res.null, expected, rtol=0, atol=TOL)
    assert abs(res.observed - cka.linear_cka(X, Y, debiased)) < TOL


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_null_detects_rotated_copies(debiased):
    rng = np.random.default_rng(11)
    X1, X2 = _copies(rng, 2, units=20, n_images=30)
    res = nulls.cka_permutation_test(X1, X2, debiased, n_perm=199)
    assert res.p_value < 0.01
    assert res.observed - res.null_critical > SEPARATION


@pytest.mark.parametrize("held_out", [False, True])
def test_procrustes_null_matches_brute_force(held_out):
    rng = np.random.default_rng(12)
    X, Y = rng.standard_normal((5, 25)), rng.standard_normal((7, 25))
    Xt, Yt = (rng.standard_normal((5, 10)), rng.standard_normal((7, 10))) if held_out else (None, None)
    res = nulls.procrustes_permutation_test(X, Y, Xt, Yt, n_perm=30, random_state=4)
    expected = [procrustes.procrustes_distance(X, Y[:, p], Xt, Yt) for p in _perms(4, 30, 25)]
    np.testing.assert_allclose(res.null, expected, rtol=0, atol=TOL)
    assert res.alternative == "less"


def test_procrustes_null_detects_rotated_copies():
    rng = np.random.default_rng(13)
    fit, test = _copies_fit_test(rng, 2, units=8, n_fit=40, n_test=30)
    res = nulls.procrustes_permutation_test(fit[0], fit[1], test[0], test[1], n_perm=199)
    assert res.p_value < 0.01
    assert res.null_critical - res.observed > SEPARATION


def test_cka_and_procrustes_null_bad_input():
    X = np.random.default_rng(0).standard_normal((4, 10))
    with pytest.raises(ValueError, match="same number of images"):
        nulls.cka_permutation_test(X, X[:, :8])
    with pytest.raises(ValueError, match="at least 4 images"):
        nulls.cka_permutation_test(X[:, :3], X[:, :3], debiased=True)
    with pytest.raises(ValueError, match="n_perm must be an integer >= 1"):
        nulls.cka_permutation_test(X, X, n_perm=-1)
    with pytest.raises(ValueError, match="give both X_test and Y_test"):
        nulls.procrustes_permutation_test(X, X, X_test=X)
    with pytest.raises(ValueError, match="held-out arrays must have the fit arrays' units"):
        nulls.procrustes_permutation_test(X, X, X[:2], X)
    with pytest.raises(ValueError, match="constant across images"):
        nulls.procrustes_permutation_test(np.ones((4, 10)), X)
