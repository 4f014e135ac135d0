"""Tests of qmvpa.srm: agreement with BrainIAK, float32 and JAX accuracy,
save/load, bad input, and the known answer of rotated copies.

BrainIAK is the reference implementation (imported here only, never by
qmvpa). It is optional: the tests that compare with it are marked
``needs_brainiak`` and skipped, with the reason, where it is not installed;
every other test runs. JAX runs on the CPU (tests/conftest.py sets
JAX_PLATFORMS=cpu).
"""

import importlib
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import HAS_BRAINIAK, needs_brainiak
from qmvpa import _srm_backends as backends
from qmvpa import srm

brainiak_srm = importlib.import_module("brainiak.funcalign.srm") if HAS_BRAINIAK else None

# Named tolerances (relative to the largest entry of the reference array).
RTOL_BRAINIAK = 1e-8        # float64, numpy, polar="svd" vs BrainIAK (the bar)
# float32 vs float64 (measured on network_fit_data: at most 3e-6 and 8e-8; README's claims).
RTOL_OBJECTIVE_F32 = 1e-5   # float32 objective / log-likelihood, relative
ATOL_DOWNSTREAM_F32 = 1e-6  # variance explained, RSM correlations, absolute
RTOL_JAX_F64 = 1e-8         # jax float64 (XLA products) vs numpy float64
ATOL_ORTHONORMAL_F64 = 1e-8
ATOL_ORTHONORMAL_F32 = 1e-5
# Rotated copies align up to the bias of BrainIAK's 0.001 diagonal perturbation.
ATOL_ROTATION = 1e-4


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def shared_plus_noise(seed, subjects, units, samples, latent=5, offset=True):
    """Subjects = random orthonormal embeddings of one latent signal + noise.

    Returns a list of arrays, element i of shape (units[i], samples); ``units``
    is an int or a list (different units per subject).
    """
    rng = np.random.default_rng(seed)
    units = [units] * subjects if np.isscalar(units) else list(units)
    signal = rng.standard_normal((latent, samples))
    data = []
    for n_units in units:
        embed = np.linalg.qr(rng.standard_normal((n_units, n_units)))[0][:, :latent]
        x = embed @ signal + 0.5 * rng.standard_normal((n_units, samples))
        if offset:
            x += rng.standard_normal((n_units, 1))
        data.append(x)
    return data


def network_like(seed, subjects, units, samples, latent=40):
    """ReLU units driven by a low-dimensional latent, z-scored per image.

    Like hidden-layer activity after the paper's preprocessing: the maps
    ``X_i S^T`` are very ill-conditioned (1e8 and worse), the hard case for
    the polar step. Returns a list of (units, samples) arrays.
    """
    rng = np.random.default_rng(seed)
    latent_signal = rng.standard_normal((latent, samples)) * np.logspace(0, -2, latent)[:, None]
    data = []
    for _ in range(subjects):
        mixing = rng.standard_normal((units, latent))
        x = np.maximum(mixing @ latent_signal
                       + 0.3 * rng.standard_normal((units, samples)) - 0.5, 0)
        data.append((x - x.mean(0)) / (x.std(0) + 1e-8))
    return data


def max_rel(ours, reference):
    """max |ours - reference| / max |reference|, over a list of arrays or one."""
    if isinstance(reference, list):
        return max(max_rel(a, b) for a, b in zip(ours, reference))
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def assert_orthonormal(w, atol):
    for wi in w:
        wi = np.asarray(wi, np.float64)
        np.testing.assert_allclose(wi.T @ wi, np.eye(wi.shape[1]), atol=atol, rtol=0)


# Shapes: (subjects, units (int or per subject), samples, features)
SHAPES = [
    pytest.param(3, 20, 50, 5, id="3x20x50-k5"),
    pytest.param(4, 30, 40, 30, id="4x30x40-k=units"),
    pytest.param(5, [25, 30, 40, 28, 33], 60, 10, id="ragged-units-k10"),
    pytest.param(3, 15, 15, 15, id="k=units=samples"),
]


# ---------------------------------------------------------------------------
# Agreement with BrainIAK (float64, numpy, polar="svd")
# ---------------------------------------------------------------------------

@needs_brainiak
@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("subjects, units, samples, features", SHAPES)
def test_srm_matches_brainiak(subjects, units, samples, features, seed):
    data = shared_plus_noise(seed, subjects, units, samples)
    ref = brainiak_srm.SRM(n_iter=10, features=features, rand_seed=seed).fit(data)
    ours = srm.SRM(n_iter=10, features=features, rand_seed=seed).fit(data)
    assert ours.polar_ == "svd"
    assert max_rel(ours.w_, ref.w_) < RTOL_BRAINIAK
    assert max_rel(ours.s_, ref.s_) < RTOL_BRAINIAK
    assert max_rel(ours.sigma_s_, ref.sigma_s_) < RTOL_BRAINIAK
    assert max_rel(ours.rho2_, ref.rho2_) < RTOL_BRAINIAK
    assert max_rel(ours.mu_, ref.mu_) < RTOL_BRAINIAK
    for a, b in zip(ours.transform(data), ref.transform(data)):
        assert max_rel(a, b) < RTOL_BRAINIAK
    np.testing.assert_array_equal(ours.random_state_.randint(2 ** 32, size=5),
                                  ref.random_state_.randint(2 ** 32, size=5))


@needs_brainiak
@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("subjects, units, samples, features", SHAPES)
def test_detsrm_matches_brainiak(subjects, units, samples, features, seed):
    data = shared_plus_noise(seed, subjects, units, samples)
    ref = brainiak_srm.DetSRM(n_iter=10, features=features, rand_seed=seed).fit(data)
    ours = srm.DetSRM(n_iter=10, features=features, rand_seed=seed).fit(data)
    assert max_rel(ours.w_, ref.w_) < RTOL_BRAINIAK
    assert max_rel(ours.s_, ref.s_) < RTOL_BRAINIAK
    expected = ref._objective_function(data, ref.w_, ref.s_)
    assert ours.objective_[-1] == pytest.approx(expected, rel=1e-10)


@needs_brainiak
def test_matches_brainiak_on_network_like_data():
    """Ill-conditioned, z-scored data: still BrainIAK's numbers in float64."""
    data = network_like(3, subjects=5, units=60, samples=150)
    for ours_cls, ref_cls in [(srm.SRM, brainiak_srm.SRM), (srm.DetSRM, brainiak_srm.DetSRM)]:
        ref = ref_cls(n_iter=10, features=60).fit(data)
        ours = ours_cls(n_iter=10, features=60).fit(data)
        assert max_rel(ours.w_, ref.w_) < RTOL_BRAINIAK
        assert max_rel(ours.s_, ref.s_) < RTOL_BRAINIAK


@needs_brainiak
def test_initial_maps_are_brainiaks():
    voxels, features, seed = [12, 9, 15], 4, 5
    ours, random_state = srm._init_w_transforms(voxels, features, seed)
    ref_state = np.random.RandomState(seed)
    states = [np.random.RandomState(ref_state.randint(2 ** 32, dtype=np.int64))
              for _ in voxels]
    ref, _ = brainiak_srm._init_w_transforms([np.zeros((v, 1)) for v in voxels],
                                             features, states)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)
    assert random_state.randint(100) == ref_state.randint(100)


@needs_brainiak
def test_n_iter_zero_matches_brainiak():
    data = shared_plus_noise(1, 3, 10, 20)
    ref = brainiak_srm.SRM(n_iter=0, features=4).fit(data)
    ours = srm.SRM(n_iter=0, features=4).fit(data)
    np.testing.assert_array_equal(ours.s_, ref.s_)
    np.testing.assert_array_equal(ours.sigma_s_, ref.sigma_s_)
    assert max_rel(ours.w_, ref.w_) == 0
    assert ours.n_iter_ == 0 and ours.objective_.shape == (0,)


@needs_brainiak
def test_log_likelihood_matches_brainiaks_log(caplog):
    """objective_ holds the values that BrainIAK logs as 'Objective function'."""
    data = shared_plus_noise(2, 4, 12, 30)
    with caplog.at_level("INFO", logger="brainiak.funcalign.srm"):
        brainiak_srm.SRM(n_iter=6, features=5).fit(data)
    logged = [float(r.getMessage().split()[-1]) for r in caplog.records
              if r.name == "brainiak.funcalign.srm"
              and r.getMessage().startswith("Objective function")]
    ours = srm.SRM(n_iter=6, features=5).fit(data)
    assert len(logged) == 6
    np.testing.assert_allclose(ours.objective_, logged, rtol=1e-6, atol=1e-6)


def test_log_likelihood_does_not_decrease():
    ours = srm.SRM(n_iter=15, features=5).fit(shared_plus_noise(4, 4, 20, 60))
    assert np.all(np.diff(ours.objective_) > -1e-6 * np.abs(ours.objective_[1:]))


# ---------------------------------------------------------------------------
# Polar factors
# ---------------------------------------------------------------------------

def _matrix(seed, rows, cols, cond):
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.standard_normal((rows, cols)))[0]
    v = np.linalg.qr(rng.standard_normal((cols, cols)))[0]
    return (u * np.logspace(0, -np.log10(cond), cols)) @ v.T


@pytest.mark.parametrize("rows, cols", [(40, 40), (60, 25)])
def test_polar_eigh_equals_svd_when_well_conditioned(rows, cols):
    a = _matrix(0, rows, cols, cond=1e3)
    np.testing.assert_allclose(backends.polar_eigh(a), backends.polar_svd(a), atol=1e-10)


@pytest.mark.parametrize("cond", [1e6, 1e12, np.inf])
def test_polar_eigh_is_orthonormal_when_ill_conditioned(cond):
    a = _matrix(1, 50, 30, cond=1e300 if np.isinf(cond) else cond)
    if np.isinf(cond):
        a[:, -5:] = 0.0                              # rank-deficient
    w = backends.polar_eigh(a)
    assert_orthonormal([w], ATOL_ORTHONORMAL_F64)
    # it maximises tr(W^T A) as well as the SVD does
    assert np.sum(w * a) == pytest.approx(np.sum(backends.polar_svd(a) * a), rel=1e-10)


def test_polar_eigh_float32():
    a = _matrix(2, 40, 40, cond=1e7).astype(np.float32)
    w = backends.polar_eigh(a)
    assert w.dtype == np.float32
    assert_orthonormal([w], ATOL_ORTHONORMAL_F32)


@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_newton_schulz_polar(dtype, atol):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    a = _matrix(3, 30, 20, cond=1e2).astype(dtype)
    with backends._x64(jax, dtype):
        polar = backends._jax_polar(jax, jnp, "newton-schulz", "highest")
        w = np.asarray(jax.jit(polar)(jnp.asarray(a)))
        rank_deficient = a.copy()
        rank_deficient[:, -4:] = 0
        w_deficient = np.asarray(jax.jit(polar)(jnp.asarray(rank_deficient)))
    np.testing.assert_allclose(w, backends.polar_svd(a.astype(np.float64)), atol=atol)
    # Newton-Schulz keeps exactly-zero columns at zero (SRM never has them: the
    # 0.001 perturbation); the other columns are still orthonormal.
    wd = w_deficient[:, :-4].astype(np.float64)
    np.testing.assert_allclose(wd.T @ wd, np.eye(wd.shape[1]), atol=atol * 10)


# ---------------------------------------------------------------------------
# float32 and the fast polar step: objective and downstream numbers
# ---------------------------------------------------------------------------

def variance_explained(model, data):
    """Per subject, 1 - mean((W S - X)^2) / var(X) on the fit set."""
    out = []
    for w, x in zip(model.w_, data):
        x = np.asarray(x, np.float64)
        x = x - x.mean(1, keepdims=True)
        residual = np.asarray(w, np.float64) @ np.asarray(model.s_, np.float64) - x
        out.append(1 - np.mean(residual ** 2) / np.var(x))
    return np.array(out)


def rsm(x):
    """Images x images Pearson correlation of (units, images) activity."""
    return np.corrcoef(np.asarray(x, np.float64).T)


def lower(m):
    return m[np.tril_indices_from(m, k=-1)]


def shared_irsm_vs_wrsm(model, heldout):
    """r(shared-space iRSM, native wRSM), as in the paper's Fig. 4 (top)."""
    shared = model.transform(heldout)
    n = len(shared)
    irsm = np.mean([np.corrcoef(np.asarray(shared[i], np.float64).T,
                                np.mean([shared[j] for j in range(n) if j != i], 0).T)
                    [:shared[i].shape[1], shared[i].shape[1]:] for i in range(n)], 0)
    irsm = 0.5 * (irsm + irsm.T)
    wrsm = np.mean([rsm(x) for x in heldout], 0)
    return np.corrcoef(lower(irsm), lower(wrsm))[0, 1]


@pytest.fixture(scope="module")
def network_fit_data():
    data = network_like(11, subjects=6, units=80, samples=240)
    return [x[:, :200] for x in data], [x[:, 200:] for x in data]


@pytest.mark.parametrize("cls", [srm.SRM, srm.DetSRM])
@pytest.mark.parametrize("engine", [
    pytest.param(dict(dtype=np.float32), id="numpy-f32-eigh"),
    pytest.param(dict(dtype=np.float32, polar="svd"), id="numpy-f32-svd"),
    pytest.param(dict(dtype=np.float64, polar="eigh"), id="numpy-f64-eigh"),
])
def test_fast_engines_match_float64(cls, engine, network_fit_data):
    fit, heldout = network_fit_data
    reference = cls(n_iter=10, features=80).fit(fit)
    fast = cls(n_iter=10, features=80, **engine).fit(fit)
    assert fast.w_[0].dtype == np.dtype(engine["dtype"])
    np.testing.assert_allclose(fast.objective_, reference.objective_,
                               rtol=RTOL_OBJECTIVE_F32)
    np.testing.assert_allclose(variance_explained(fast, fit),
                               variance_explained(reference, fit), atol=ATOL_DOWNSTREAM_F32)
    assert shared_irsm_vs_wrsm(fast, heldout) == pytest.approx(
        shared_irsm_vs_wrsm(reference, heldout), abs=ATOL_DOWNSTREAM_F32)
    atol = ATOL_ORTHONORMAL_F32 if engine["dtype"] == np.float32 else ATOL_ORTHONORMAL_F64
    assert_orthonormal(fast.w_, atol)


# ---------------------------------------------------------------------------
# n_jobs > 1 (threads for the big products and the per-subject M-steps)
# ---------------------------------------------------------------------------

@needs_brainiak
@pytest.mark.parametrize("subjects, units, samples, features", SHAPES)
def test_n_jobs_float64_matches_brainiak(subjects, units, samples, features):
    """float64 with threads keeps BrainIAK's SVD polar step and its numbers to 1e-8."""
    data = shared_plus_noise(3, subjects, units, samples)
    for ours_cls, ref_cls in [(srm.SRM, brainiak_srm.SRM), (srm.DetSRM, brainiak_srm.DetSRM)]:
        ref = ref_cls(n_iter=10, features=features, rand_seed=3).fit(data)
        ours = ours_cls(n_iter=10, features=features, rand_seed=3, n_jobs=2).fit(data)
        assert ours.polar_ == "svd"
        assert max_rel(ours.w_, ref.w_) < RTOL_BRAINIAK
        assert max_rel(ours.s_, ref.s_) < RTOL_BRAINIAK
        if ours_cls is srm.SRM:
            assert max_rel(ours.sigma_s_, ref.sigma_s_) < RTOL_BRAINIAK
            assert max_rel(ours.rho2_, ref.rho2_) < RTOL_BRAINIAK
            assert max_rel(ours.mu_, ref.mu_) < RTOL_BRAINIAK


@needs_brainiak
def test_n_jobs_float64_on_network_like_data():
    data = network_like(3, subjects=5, units=60, samples=150)
    ref = brainiak_srm.SRM(n_iter=10, features=60).fit(data)
    ours = srm.SRM(n_iter=10, features=60, n_jobs=2).fit(data)
    assert max_rel(ours.w_, ref.w_) < RTOL_BRAINIAK
    assert max_rel(ours.s_, ref.s_) < RTOL_BRAINIAK
    assert max_rel(ours.rho2_, ref.rho2_) < RTOL_BRAINIAK


@pytest.mark.parametrize("cls", [srm.SRM, srm.DetSRM])
@pytest.mark.parametrize("engine, polar", [
    pytest.param(dict(dtype=np.float32, n_jobs=2), "eigh", id="f32-auto-2jobs"),
    pytest.param(dict(dtype=np.float32, polar="svd", n_jobs=2), "svd", id="f32-svd-2jobs"),
    pytest.param(dict(dtype=np.float32, n_jobs=-1), None, id="f32-all-cpus"),
    pytest.param(dict(dtype=np.float64, polar="eigh", n_jobs=2), "eigh", id="f64-eigh-2jobs"),
])
def test_n_jobs_fast_engines_match_float64(cls, engine, polar, network_fit_data):
    fit, heldout = network_fit_data
    reference = cls(n_iter=10, features=80).fit(fit)
    fast = cls(n_iter=10, features=80, **engine).fit(fit)
    if polar is not None:
        assert fast.polar_ == polar
    assert fast.w_[0].dtype == np.dtype(engine["dtype"])
    np.testing.assert_allclose(fast.objective_, reference.objective_,
                               rtol=RTOL_OBJECTIVE_F32)
    np.testing.assert_allclose(variance_explained(fast, fit),
                               variance_explained(reference, fit), atol=ATOL_DOWNSTREAM_F32)
    assert shared_irsm_vs_wrsm(fast, heldout) == pytest.approx(
        shared_irsm_vs_wrsm(reference, heldout), abs=ATOL_DOWNSTREAM_F32)
    atol = ATOL_ORTHONORMAL_F32 if engine["dtype"] == np.float32 else ATOL_ORTHONORMAL_F64
    assert_orthonormal(fast.w_, atol)


def test_n_jobs_one_is_the_sequential_engine():
    """n_jobs=1 (the default) and None are the same code path: identical bits."""
    data = network_like(4, subjects=4, units=30, samples=60)
    for dtype in (np.float64, np.float32):
        a = srm.SRM(n_iter=5, features=20, dtype=dtype).fit(data)
        b = srm.SRM(n_iter=5, features=20, dtype=dtype, n_jobs=None).fit(data)
        assert a.polar_ == b.polar_ == "svd"
        for wa, wb in zip(a.w_, b.w_):
            np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(a.s_, b.s_)


def test_n_jobs_restores_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def threads():
        return [(i["filepath"], i["num_threads"])
                for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    before = threads()
    srm.SRM(n_iter=2, features=5, dtype=np.float32, n_jobs=2).fit(
        shared_plus_noise(0, 3, 20, 40))
    assert threads() == before


def test_n_jobs_bad_data_names_the_subject():
    data = shared_plus_noise(0, 4, 10, 30)
    data[2][1, 3] = np.nan
    with pytest.raises(ValueError, match=r"X\[2\] \(subject 2\) contains NaN"):
        srm.SRM(n_iter=1, features=3, n_jobs=2).fit(data)


# ---------------------------------------------------------------------------
# JAX backend (on the CPU here)
# ---------------------------------------------------------------------------

def test_jax_float64_matches_numpy():
    pytest.importorskip("jax")
    data = shared_plus_noise(5, 4, [14, 12, 16, 13], 40)
    for cls in (srm.SRM, srm.DetSRM):
        reference = cls(n_iter=8, features=6).fit(data)
        ours = cls(n_iter=8, features=6, backend="jax", polar="svd").fit(data)
        assert ours.w_[0].dtype == np.float64
        assert max_rel(ours.w_, reference.w_) < RTOL_JAX_F64
        assert max_rel(ours.s_, reference.s_) < RTOL_JAX_F64
        np.testing.assert_allclose(ours.objective_, reference.objective_, rtol=1e-10)


@pytest.mark.parametrize("cls", [srm.SRM, srm.DetSRM])
def test_jax_float32_newton_schulz_matches_float64(cls, network_fit_data):
    pytest.importorskip("jax")
    fit, heldout = network_fit_data
    reference = cls(n_iter=10, features=80).fit(fit)
    fast = cls(n_iter=10, features=80, dtype=np.float32, backend="jax",
               polar="newton-schulz").fit(fit)
    assert isinstance(fast.w_[0], np.ndarray) and fast.w_[0].dtype == np.float32
    np.testing.assert_allclose(fast.objective_, reference.objective_,
                               rtol=RTOL_OBJECTIVE_F32)
    np.testing.assert_allclose(variance_explained(fast, fit),
                               variance_explained(reference, fit), atol=ATOL_DOWNSTREAM_F32)
    assert shared_irsm_vs_wrsm(fast, heldout) == pytest.approx(
        shared_irsm_vs_wrsm(reference, heldout), abs=ATOL_DOWNSTREAM_F32)
    assert_orthonormal(fast.w_, ATOL_ORTHONORMAL_F32)


def test_jax_auto_polar_on_cpu_is_svd():
    pytest.importorskip("jax")
    model = srm.DetSRM(n_iter=2, features=3, backend="jax",
                       dtype=np.float32).fit(shared_plus_noise(0, 2, 6, 10))
    assert model.polar_ == "svd"


def test_importing_srm_loads_neither_mpi_nor_jax():
    code = ("import sys, qmvpa.srm; "
            "bad = [m for m in ('mpi4py', 'jax', 'brainiak', 'keras') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------------------
# Early stopping
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [srm.SRM, srm.DetSRM])
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_tol_stops_early(cls, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    data = shared_plus_noise(6, 3, 10, 40)
    full = cls(n_iter=50, features=4, backend=backend).fit(data)
    early = cls(n_iter=50, features=4, backend=backend, tol=1e-3).fit(data)
    assert full.n_iter_ == 50
    assert 1 <= early.n_iter_ < 50
    values = early.objective_
    assert abs(values[-1] - values[-2]) <= 1e-3 * abs(values[-2])
    assert all(abs(b - a) > 1e-3 * abs(a) for a, b in zip(values[:-2], values[1:-1]))


# ---------------------------------------------------------------------------
# Known answer: subjects are rotated copies of one signal
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [srm.SRM, srm.DetSRM])
@pytest.mark.parametrize("engine", [dict(), dict(dtype=np.float32)], ids=["f64", "f32"])
def test_rotated_copies_are_aligned(cls, engine):
    rng = np.random.default_rng(8)
    units, samples, subjects = 20, 120, 4
    signal = rng.standard_normal((units, samples))
    heldout = rng.standard_normal((units, 30))
    rotations = [np.linalg.qr(rng.standard_normal((units, units)))[0]
                 for _ in range(subjects)]
    model = cls(n_iter=10, features=units, **engine).fit([r @ signal for r in rotations])
    shared = model.transform([r @ heldout for r in rotations])
    for i in range(subjects):
        # the same held-out images land on the same shared coordinates ...
        assert max_rel(shared[i], shared[0]) < ATOL_ROTATION
        # ... because W_i W_0^T recovers the rotation from subject 0 to i
        assert max_rel(model.w_[i] @ model.w_[0].T, rotations[i] @ rotations[0].T) \
            < ATOL_ROTATION
    # an orthogonal map keeps the geometry: inner products between images
    gram_shared = shared[0].T.astype(np.float64) @ shared[0]
    assert max_rel(gram_shared, heldout.T @ heldout) < ATOL_ROTATION


# ---------------------------------------------------------------------------
# transform_subject, sklearn contract
# ---------------------------------------------------------------------------

@needs_brainiak
@pytest.mark.parametrize("name", ["SRM", "DetSRM"])
def test_transform_subject_matches_brainiak(name):
    cls, ref_cls = getattr(srm, name), getattr(brainiak_srm, name)
    data = shared_plus_noise(9, 4, 12, 30)
    ours = cls(n_iter=5, features=5).fit(data[:3])
    ref = ref_cls(n_iter=5, features=5).fit(data[:3])
    w_new = ours.transform_subject(data[3])
    assert w_new.shape == (12, 5)
    assert max_rel(w_new, ref.transform_subject(data[3])) < RTOL_BRAINIAK


def test_sklearn_contract():
    data = shared_plus_noise(0, 3, 8, 20)
    model = srm.SRM(n_iter=3, features=4, dtype=np.float32, tol=1e-3)
    params = clone(model).get_params()
    assert params["features"] == 4 and params["dtype"] is np.float32
    assert params["tol"] == 1e-3
    s = model.fit_transform(data)
    assert len(s) == 3 and s[0].shape == (4, 20) and s[0].dtype == np.float32
    assert model.fit(data) is model


# ---------------------------------------------------------------------------
# save / load, and BrainIAK's files
# ---------------------------------------------------------------------------

def _assert_same_model(a, b, probabilistic=True):
    for name in ("w_", "mu_") if probabilistic else ("w_",):
        for x, y in zip(getattr(a, name), getattr(b, name)):
            np.testing.assert_array_equal(x, y)
    names = ("s_", "sigma_s_", "rho2_") if probabilistic else ("s_",)
    for name in names:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.features, a.n_iter, a.rand_seed) == (b.features, b.n_iter, b.rand_seed)


@pytest.mark.parametrize("units", [12, [12, 10, 14]], ids=["same-units", "ragged-units"])
def test_save_load_round_trip(tmp_path, units):
    data = shared_plus_noise(3, 3, units, 25)
    model = srm.SRM(n_iter=4, features=5, rand_seed=2, dtype=np.float32,
                    tol=1e-6).fit(data)
    model.save(tmp_path / "model")                      # .npz is appended
    loaded = srm.load(tmp_path / "model.npz")
    assert type(loaded) is srm.SRM
    _assert_same_model(model, loaded)
    assert loaded.dtype is np.float32 and loaded.tol == 1e-6
    for a, b in zip(loaded.transform(data), model.transform(data)):
        np.testing.assert_array_equal(a, b)


def test_detsrm_save_load_round_trip(tmp_path):
    data = shared_plus_noise(3, 3, 12, 25)
    model = srm.DetSRM(n_iter=4, features=5).fit(data)
    model.save(tmp_path / "det.npz")
    loaded = srm.load(tmp_path / "det.npz")
    assert type(loaded) is srm.DetSRM
    _assert_same_model(model, loaded, probabilistic=False)


@needs_brainiak
def test_files_are_exchangeable_with_brainiak(tmp_path):
    data = shared_plus_noise(4, 3, 12, 25)
    ours = srm.SRM(n_iter=4, features=5).fit(data)
    ours.save(tmp_path / "ours.npz")
    _assert_same_model(ours, brainiak_srm.load(tmp_path / "ours.npz"))

    ref = brainiak_srm.SRM(n_iter=4, features=5).fit(data)
    ref.save(tmp_path / "brainiak.npz")
    loaded = srm.load(tmp_path / "brainiak.npz")
    assert type(loaded) is srm.SRM
    _assert_same_model(ref, loaded)
    assert max_rel(loaded.transform_subject(data[0]), ref.transform_subject(data[0])) \
        < RTOL_BRAINIAK


# ---------------------------------------------------------------------------
# Bad input: BrainIAK's errors, plus ours
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [srm.SRM, srm.DetSRM])
def test_not_fitted(cls, tmp_path):
    model = cls()
    data = shared_plus_noise(0, 2, 6, 10)
    with pytest.raises(NotFittedError, match="The model fit has not been run yet"):
        model.transform(data)
    with pytest.raises(NotFittedError, match="The model fit has not been run yet"):
        model.transform_subject(data[0])
    with pytest.raises(NotFittedError, match="The model fit has not been run yet"):
        model.save(tmp_path / "x.npz")


@pytest.mark.parametrize("cls", [srm.SRM, srm.DetSRM])
def test_bad_fit_data(cls):
    good = shared_plus_noise(0, 3, 6, 10)
    model = cls(n_iter=2, features=4)
    with pytest.raises(ValueError, match=r"There are not enough subjects \(1\) to train"):
        model.fit(good[:1])
    with pytest.raises(ValueError, match=r"There are not enough subjects \(0\)"):
        model.fit([])
    with pytest.raises(ValueError, match="Different number of samples between subjects: "
                                         "X\\[0\\] has 10 samples, X\\[2\\] has 9"):
        model.fit(good[:2] + [good[2][:, :9]])
    with pytest.raises(ValueError, match="not enough samples to train the model with 11 "
                                         "features.*samples \\(10\\)"):
        cls(features=11).fit(good)
    with pytest.raises(ValueError, match=r"features \(6\) must be <= the number of units.*"
                                         r"X\[1\] has 5 units"):
        cls(features=6).fit([good[0], good[1][:5]] + good[2:])
    for bad_value in (np.nan, np.inf, -np.inf):
        bad = [x.copy() for x in good]
        bad[2][1, 3] = bad_value
        with pytest.raises(ValueError, match=r"X\[2\] \(subject 2\) contains NaN or "
                                             r"infinite values"):
            model.fit(bad)
    with pytest.raises(ValueError, match=r"X\[1\] \(subject 1\) must be a 2-D array.*"
                                         r"got shape \(6,\)"):
        model.fit([good[0], good[1][:, 0]])
    with pytest.raises(ValueError, match=r"X\[0\] \(subject 0\) is None"):
        model.fit([None, good[1]])
    with pytest.raises(ValueError, match="X must be a list of 2-D arrays.*got a 2-D array"):
        model.fit(good[0])
    with pytest.raises(TypeError, match="X must be a list of 2-D arrays.*got int"):
        model.fit(3)
    with pytest.raises(TypeError, match=r"X\[0\] \(subject 0\) must hold real numbers"):
        model.fit([np.full((6, 10), "a"), good[1]])


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(features=0), ValueError, r"features must be an integer >= 1; got 0"),
    (dict(features=2.5), TypeError, r"features must be an integer >= 1; got 2.5 of type float"),
    (dict(n_iter=-1), ValueError, r"n_iter must be an integer >= 0; got -1"),
    (dict(dtype=np.int32), ValueError, r"dtype must be np.float32 or np.float64; got"),
    (dict(dtype="float16"), ValueError, r"dtype must be np.float32 or np.float64; got 'float16'"),
    (dict(dtype=None), ValueError, r"dtype must be np.float32 or np.float64; got None"),
    (dict(backend="torch"), ValueError, r"backend must be one of \('numpy', 'jax'\); got 'torch'"),
    (dict(tol=0), ValueError, r"tol must be None or a positive number; got 0"),
    (dict(tol=-1e-3), ValueError, r"tol must be None or a positive number; got -0.001"),
    (dict(polar="qr"), ValueError, r"polar must be 'auto' or one of \('svd', 'eigh'\) with "
                                   r"backend='numpy'; got 'qr'"),
    (dict(polar="newton-schulz"), ValueError, r"polar must be 'auto' or one of"),
    (dict(precision="low"), ValueError, r"precision must be one of"),
    (dict(n_jobs=0), ValueError, r"n_jobs must be None, -1 or an integer >= 1; got 0"),
    (dict(n_jobs=-2), ValueError, r"n_jobs must be None, -1 or an integer >= 1; got -2"),
    (dict(n_jobs=1.5), ValueError, r"n_jobs must be None, -1 or an integer >= 1; got 1.5"),
    (dict(n_jobs=True), ValueError, r"n_jobs must be None, -1 or an integer >= 1; got True"),
])
def test_bad_parameters(kwargs, error, message):
    data = shared_plus_noise(0, 2, 6, 10)
    params = dict(n_iter=1, features=3)
    params.update(kwargs)
    with pytest.raises(error, match=message):
        srm.SRM(**params).fit(data)


def test_jax_rejects_eigh_polar():
    pytest.importorskip("jax")
    with pytest.raises(ValueError, match=r"\('svd', 'newton-schulz'\) with backend='jax'; "
                                         r"got 'eigh'"):
        srm.SRM(features=3, backend="jax", polar="eigh").fit(shared_plus_noise(0, 2, 6, 10))


@pytest.mark.parametrize("cls", [srm.SRM, srm.DetSRM])
def test_bad_transform_data(cls):
    data = shared_plus_noise(0, 3, 6, 10)
    model = cls(n_iter=2, features=4).fit(data)
    with pytest.raises(ValueError, match="The number of subjects does not match the one in "
                                         "the model: the model has 3, X has 2"):
        model.transform(data[:2])
    with pytest.raises(ValueError, match=r"X\[1\] \(subject 1\) has 5 units; the model was "
                                         r"fitted with 6"):
        model.transform([data[0], data[1][:5], data[2]])
    bad = [x.copy() for x in data]
    bad[1][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"X\[1\] \(subject 1\) contains NaN"):
        model.transform(bad)
    assert model.transform([None, data[1], data[2]])[0] is None
    with pytest.raises(ValueError, match=r"The number of timepoints\(TRs\) does not match "
                                         r"the one in the model: X has 9 samples, the model 10"):
        model.transform_subject(data[0][:, :9])
    with pytest.raises(ValueError, match=r"features \(4\) must be <= the number of units of "
                                         r"the new subject; X has 3 units"):
        model.transform_subject(data[0][:3])


def _brainiak_misuse(module, name):
    """The misuses BrainIAK's own tests check (brainiak/tests/funcalign/test_srm.py), in its order.

    Returns ``[(what, exception type raised or None), ...]`` for class ``name`` of ``module``.
    """
    rng = np.random.RandomState(0)
    voxels, samples, features = 20, 40, 3
    shared = rng.standard_normal((features, samples))
    X = [np.linalg.qr(rng.random_sample((voxels, features)))[0].dot(shared)
         + 0.1 * rng.random_sample((voxels, samples)) for _ in range(2)]
    cls = getattr(module, name)
    out = []

    def attempt(what, fn):
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - the type is what is compared
            out.append((what, type(err)))
        else:
            out.append((what, None))

    model = cls(n_iter=2, features=features)
    attempt("transform before fit", lambda: model.transform(X))
    attempt("transform_subject before fit", lambda: model.transform_subject(X[0]))
    attempt("fit with 1 subject", lambda: model.fit(X[:1]))
    model.fit(X)
    attempt("transform of one 2-D array", lambda: model.transform(X[1]))
    attempt("transform_subject of the transpose", lambda: model.transform_subject(X[0].T))
    attempt("more features than samples", lambda: cls(n_iter=2, features=samples + 1).fit(X))
    attempt("different samples per subject",
            lambda: cls(n_iter=2, features=features).fit(X + [X[0][:, :-2]]))
    return out


#: What BrainIAK raises for each misuse its tests check.
BRAINIAK_MISUSE = [
    ("transform before fit", NotFittedError),
    ("transform_subject before fit", NotFittedError),
    ("fit with 1 subject", ValueError),
    ("transform of one 2-D array", ValueError),
    ("transform_subject of the transpose", ValueError),
    ("more features than samples", ValueError),
    ("different samples per subject", ValueError),
]


@pytest.mark.parametrize("name", ["SRM", "DetSRM"])
def test_misuse_raises_brainiaks_exception_types(name):
    """qmvpa.srm raises exactly the types BrainIAK raises (and BrainIAK's tests expect)."""
    assert _brainiak_misuse(srm, name) == BRAINIAK_MISUSE  # the same classes, not subclasses


@needs_brainiak
@pytest.mark.parametrize("name", ["SRM", "DetSRM"])
def test_brainiak_raises_the_recorded_types(name):
    """The table above is BrainIAK's behaviour (so the test above checks the right thing)."""
    assert _brainiak_misuse(brainiak_srm, name) == BRAINIAK_MISUSE


# ---------------------------------------------------------------------------
# Longer checks (make test-slow)
# ---------------------------------------------------------------------------

@pytest.mark.slow
@needs_brainiak
@pytest.mark.parametrize("name", ["SRM", "DetSRM"])
def test_matches_brainiak_at_larger_scale(name):
    cls, ref_cls = getattr(srm, name), getattr(brainiak_srm, name)
    data = network_like(21, subjects=8, units=300, samples=800, latent=100)
    ref = ref_cls(n_iter=10, features=300).fit(data)
    ours = cls(n_iter=10, features=300).fit(data)
    assert max_rel(ours.w_, ref.w_) < RTOL_BRAINIAK
    assert max_rel(ours.s_, ref.s_) < RTOL_BRAINIAK
    fast = cls(n_iter=10, features=300, dtype=np.float32).fit(data)
    np.testing.assert_allclose(fast.objective_, ours.objective_, rtol=RTOL_OBJECTIVE_F32)


@pytest.mark.slow
def test_jax_float32_newton_schulz_at_larger_scale():
    pytest.importorskip("jax")
    data = network_like(22, subjects=6, units=200, samples=500, latent=80)
    reference = srm.SRM(n_iter=10, features=200).fit(data)
    fast = srm.SRM(n_iter=10, features=200, dtype=np.float32, backend="jax",
                   polar="newton-schulz").fit(data)
    np.testing.assert_allclose(fast.objective_, reference.objective_, rtol=RTOL_OBJECTIVE_F32)
    assert_orthonormal(fast.w_, ATOL_ORTHONORMAL_F32)
