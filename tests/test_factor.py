"""qmvpa.factor: SRM alignment, known answers (rotated and permuted copies), variance explained."""


import numpy as np
import pytest
from scipy.stats import ortho_group

from conftest import SRM_ENGINE
from qmvpa import factor, preproc, rsa

R_SHARED_MIN = 0.95  # shared iRSM vs wRSM (issue 3)
R_NATIVE_MAX = 0.3  # |native iRSM vs wRSM|
VE_TOL = 0.03  # variance explained vs 1 - noise share


def make_networks(kind, n_subjects=6, n_units=40, n_images=400, n_classes=8, noise_share=0.1, seed=0):
    """Copies of one activity matrix, each rotated (or unit-permuted), plus independent noise.

    The base activity has class structure (so RSMs have something to show) and
    per-entry variance 1; the noise has variance ``noise_share / (1 - noise_share)``,
    so it is ``noise_share`` of each network's variance. Returns units × images
    matrices and labels.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % n_classes
    centroids = rng.standard_normal((n_units, n_classes))
    A = centroids[:, labels] + 0.7 * rng.standard_normal((n_units, n_images))
    A = (A - A.mean(axis=0)) / A.std(axis=0)  # (n_units, n_images)
    sigma = np.sqrt(noise_share / (1 - noise_share))
    Xs = []
    for _ in range(n_subjects):
        if kind == "rotation":
            Q = ortho_group.rvs(n_units, random_state=int(rng.integers(2**31)))
        else:
            Q = np.eye(n_units)[rng.permutation(n_units)]
        Xs.append(Q @ A + sigma * rng.standard_normal((n_units, n_images)))
    return Xs, labels


def _pipeline(Xs, labels, engine=SRM_ENGINE):
    fit_idx, test_idx = preproc.stratified_split(labels)
    Xf = [preproc.zscore_images(X[:, fit_idx]) for X in Xs]
    Xt = [preproc.zscore_images(X[:, test_idx]) for X in Xs]
    model = factor.fit_srm(Xf, engine=engine)
    St = factor.transform(model, Xt)
    wrsm = rsa.mean_within_rsm(Xt)
    return dict(
        model=model,
        r_shared=rsa.rsm_similarity(rsa.inter_subject_rsm(St), wrsm),
        r_native=rsa.rsm_similarity(rsa.inter_subject_rsm(Xt), wrsm),
        ve_fit=factor.variance_explained(Xf, model.w_, model.s_, mu=getattr(model, "mu_", None)),
        ve_test=factor.variance_explained(Xt, model.w_, np.mean(St, axis=0)),
    )


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["rotation", "permutation"])
def test_known_answer_shared_geometry(kind, seed):
    noise_share = 0.1
    Xs, labels = make_networks(kind, noise_share=noise_share, seed=seed)
    out = _pipeline(Xs, labels)
    assert out["r_shared"] > R_SHARED_MIN
    assert abs(out["r_native"]) < R_NATIVE_MAX
    np.testing.assert_allclose(out["ve_test"], 1 - noise_share, atol=VE_TOL)
    np.testing.assert_allclose(out["ve_fit"], 1 - noise_share, atol=VE_TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_variance_explained_needs_brainiak_unit_means(seed):
    """BrainIAK's s_ omits the unit means it removed; leaving them out underestimates the fit.

    Give the shared activity unit means (as trained ReLU layers have): the
    held-out variance explained (S̄ keeps the means) stays high on average (single
    networks vary: the demeaned fit aligns the big mean direction only loosely),
    and so does the fit value with ``mu=model.mu_``; without it, the fit value
    collapses.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(400) % 8
    A = rng.standard_normal((40, 8))[:, labels] + 0.7 * rng.standard_normal((40, 400))
    A += 2.0 * rng.standard_normal((40, 1))  # shared per-unit means
    Xs = [ortho_group.rvs(40, random_state=int(rng.integers(2**31))) @ A
          + 0.33 * rng.standard_normal((40, 400)) for _ in range(6)]
    fit_idx, test_idx = preproc.stratified_split(labels)
    Xf = [preproc.zscore_images(X[:, fit_idx]) for X in Xs]
    Xt = [preproc.zscore_images(X[:, test_idx]) for X in Xs]
    model = factor.fit_srm(Xf)
    held_out = factor.variance_explained(Xt, model.w_, np.mean(factor.transform(model, Xt), axis=0))
    with_mu = factor.variance_explained(Xf, model.w_, model.s_, mu=model.mu_)
    without = factor.variance_explained(Xf, model.w_, model.s_)
    assert held_out.mean() > 0.8 and np.all(with_mu > 0.85)
    assert np.all(without < 0.5)


ORTHO_TOL = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-5}


def test_fit_srm_shapes_and_transform():
    Xs, _ = make_networks("rotation", n_subjects=3, n_units=12, n_images=50)
    Xs[1] = Xs[1][:10]  # networks may differ in units
    model = factor.fit_srm(Xs, n_components=5, n_iter=3)
    assert [w.shape for w in model.w_] == [(12, 5), (10, 5), (12, 5)]
    assert model.s_.shape == (5, 50)
    for w in model.w_:
        # Orthonormal to the precision of the engine's dtype (float32 by default).
        np.testing.assert_allclose(w.T @ w, np.eye(5), atol=ORTHO_TOL[np.dtype(w.dtype)])
    Ss = factor.transform(model, Xs)
    rtol = ORTHO_TOL[np.dtype(model.w_[0].dtype)]  # float32 engine: products agree to ~1e-6
    for w, X, S in zip(model.w_, Xs, Ss):
        np.testing.assert_allclose(S, w.T @ X, rtol=rtol, atol=rtol * np.abs(S).max())
    # the same as the estimator's own transform
    for a, b in zip(Ss, model.transform(Xs)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def test_variance_explained_reference():
    rng = np.random.default_rng(0)
    ws = [np.linalg.qr(rng.standard_normal((8, 3)))[0] for _ in range(2)]
    S = rng.standard_normal((3, 20))
    Xs = [w @ S + 0.1 * rng.standard_normal((8, 20)) for w in ws]
    ref = [1 - np.mean((w @ S - X) ** 2) / np.var(X) for w, X in zip(ws, Xs)]
    np.testing.assert_allclose(factor.variance_explained(Xs, ws, S), ref)
    np.testing.assert_allclose(factor.variance_explained(Xs, ws, [S, S]), ref)
    assert np.allclose(factor.variance_explained([w @ S for w in ws], ws, S), 1)


@pytest.mark.parametrize("args, kwargs, match", [
    (lambda X: [X], {}, r"at least 2 networks \(subjects\), got 1"),
    (lambda X: [X, X[:, :-1]], {}, r"image counts differ: \[30, 29\]"),
    (lambda X: [X, X], dict(n_components=11), r"k\) = 11 is larger than the units of the smallest network \(10\)"),
    (lambda X: [X[:, :8], X[:, :8]], dict(n_components=9), r"larger than the units|larger than the 8 fit images"),
    (lambda X: [X[:, :8], X[:, :8]], {}, r"k\) = 10 is larger than the 8 fit images"),
    (lambda X: [X, X], dict(n_components=0), r"must be a positive integer, got 0"),
    (lambda X: [X, X], dict(n_iter=0), r"n_iter must be a positive integer"),
    (lambda X: [X, X], dict(engine="magic"), r"engine must be one of \('brainiak', 'fast', 'jax'\), got 'magic'"),
    (lambda X: [X, np.where(X > 1, np.nan, X)], {}, r"Xs\[1\] contains NaN or Inf"),
])
def test_fit_srm_bad_input(args, kwargs, match):
    X = np.random.default_rng(0).standard_normal((10, 30))
    with pytest.raises(ValueError, match=match):
        factor.fit_srm(args(X), **kwargs)


def test_transform_bad_input():
    Xs, _ = make_networks("rotation", n_subjects=2, n_units=6, n_images=30)
    model = factor.fit_srm(Xs, n_iter=2)
    with pytest.raises(ValueError, match="fitted on 2 networks but Xs has 1"):
        factor.transform(model, Xs[:1])
    with pytest.raises(ValueError, match=r"Xs\[1\] must have shape \(6, n_images\)"):
        factor.transform(model, [Xs[0], Xs[1][:5]])
    with pytest.raises(ValueError, match="model is not fitted"):
        factor.transform(object(), Xs)


@pytest.mark.parametrize("engine", ["fast", "jax"])
@pytest.mark.parametrize("kind", ["rotation", "permutation"])
def test_fast_engines_known_answer(kind, engine):
    Xs, labels = make_networks(kind)
    out = _pipeline(Xs, labels, engine=engine)
    assert out["r_shared"] > R_SHARED_MIN
    assert abs(out["r_native"]) < R_NATIVE_MAX
    np.testing.assert_allclose(out["ve_test"], 0.9, atol=VE_TOL)
    assert [w.shape for w in out["model"].w_] == [(40, 40)] * 6
