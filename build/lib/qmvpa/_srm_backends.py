"""Array back ends of :mod:`qmvpa.srm`: the fitting loops in NumPy and in JAX.

Private module. :class:`qmvpa.srm.SRM` and :class:`qmvpa.srm.DetSRM` validate
their input, build the initial maps and call one of the ``fit_*`` functions
below. Every function works on data already arranged as

* ``x`` -- all subjects' data stacked along the units axis, shape
  ``(sum_i units_i, samples)``, in the working dtype;
* ``bounds`` -- ``bounds[i]:bounds[i + 1]`` are subject ``i``'s rows of ``x``;
* ``w`` -- list of initial maps, element ``i`` of shape ``(units_i, features)``.

The NumPy loops follow BrainIAK's ``brainiak.funcalign.srm`` step by step
(same updates, same order, same 0.001 diagonal perturbation before the polar
step), so that float64 with ``polar="svd"`` reproduces BrainIAK to rounding.
Where BrainIAK does one matrix product per subject we do one product on the
stacked data; the arithmetic is the same.

JAX is imported only inside the JAX functions.
"""

import contextlib
import functools
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg

logger = logging.getLogger(__name__)

#: BrainIAK adds this to the diagonal of ``X_i S^T`` before the polar step.
PERTURBATION = 0.001

#: Polar factor ("eigh"): singular directions with sigma_j <= EIGH_RTOL *
#: sigma_max are not resolved well enough by the float64 Gram matrix; they
#: are handled by an SVD of the (small) remaining block.
EIGH_RTOL = 1e-4


# ---------------------------------------------------------------------------
# Polar factors (orthogonal Procrustes): W = U V^T for A = U Sigma V^T.
# ---------------------------------------------------------------------------

def polar_svd(a):
    """Orthogonal polar factor of ``a`` through an SVD (BrainIAK's way).

    float64 goes through ``numpy.linalg.svd`` exactly as BrainIAK does, so
    the result is BrainIAK's to the last bit. float32 goes through SciPy's
    LAPACK ``sgesdd``, about twice as fast as NumPy's float32 SVD on the
    machine we measured (falling back to ``sgesvd`` if ``gesdd`` fails).

    Parameters
    ----------
    a : ndarray, shape (units, features)

    Returns
    -------
    w : ndarray, shape (units, features)
        ``U @ Vt`` from the thin SVD of ``a``; same dtype as ``a``.
    """
    if a.dtype == np.float64:
        u, _, vt = np.linalg.svd(a, full_matrices=False)
    else:
        try:
            u, _, vt = scipy.linalg.svd(a, full_matrices=False, check_finite=False,
                                        lapack_driver="gesdd")
        except np.linalg.LinAlgError:
            u, _, vt = scipy.linalg.svd(a, full_matrices=False, check_finite=False,
                                        lapack_driver="gesvd")
    return u.dot(vt)


def polar_eigh(a):
    """Orthogonal polar factor of ``a`` through the eigendecomposition of ``a.T a``.

    Cheaper than an SVD on a CPU: one symmetric eigendecomposition of the
    ``features x features`` Gram matrix (in float64) and three matrix
    products. With ``a = U S V^T`` the Gram matrix gives ``V`` and
    ``B = a V = U S``; the well-resolved columns of ``B`` (``sigma_j >
    EIGH_RTOL * sigma_max``) are normalised, the rest (directions the Gram
    matrix squares below float64 resolution) get the polar factor of their
    own block, computed by a small SVD after projecting out the resolved
    columns. The result is orthonormal to about 1e-8 or better and equals
    the SVD-based factor to the accuracy that the conditioning of ``a``
    allows.

    Parameters
    ----------
    a : ndarray, shape (units, features), units >= features

    Returns
    -------
    w : ndarray, shape (units, features)
        Same dtype as ``a``.
    """
    a64 = np.asarray(a, dtype=np.float64)
    gram = a64.T.dot(a64)                               # (k, k), syrk
    _, v = np.linalg.eigh(gram)                         # ascending
    v = np.ascontiguousarray(v[:, ::-1])                # descending
    b = a64.dot(v)                                      # (units, k) = U S
    sigma = np.sqrt(np.einsum("ij,ij->j", b, b))        # (k,)
    resolved = sigma > EIGH_RTOL * sigma.max()
    u = np.empty_like(b)
    u[:, resolved] = b[:, resolved] / sigma[resolved]
    if not resolved.all():
        u_res = u[:, resolved]
        rest = b[:, ~resolved]
        for _ in range(2):                              # "twice is enough"
            rest -= u_res.dot(u_res.T.dot(rest))
        uu, sv, vvt = np.linalg.svd(rest, full_matrices=False)
        null = sv <= sv.max(initial=0.0) * rest.shape[0] * np.finfo(np.float64).eps
        if null.any():
            # Exactly rank-deficient block: the SVD's arbitrary left vectors
            # for zero singular values need not be orthogonal to u_res, so
            # complete the basis inside the orthogonal complement instead.
            basis = np.hstack([u_res, uu[:, ~null]])
            extra = np.random.RandomState(0).standard_normal((b.shape[0], null.sum()))
            for _ in range(2):
                extra -= basis.dot(basis.T.dot(extra))
            uu[:, null] = np.linalg.qr(extra)[0]
        u[:, ~resolved] = uu.dot(vvt)
    if a.dtype == np.float64:
        return u.dot(v.T)
    # U and V are orthonormal in float64; rounding them first keeps W
    # orthonormal to the working precision and halves the product's cost.
    return u.astype(a.dtype).dot(v.T.astype(a.dtype))


NUMPY_POLAR = {"svd": polar_svd, "eigh": polar_eigh}


def _blas_threads(n_threads):
    """Context setting the BLAS libraries' thread count (no-op for ``None``).

    Uses threadpoolctl when installed; without it, the environment's thread
    count (e.g. ``OPENBLAS_NUM_THREADS``) stays in force.
    """
    if n_threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a requirement
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n_threads), user_api="blas")


class _Parallel:
    """Runs the big products on ``n_jobs`` BLAS threads and the per-subject
    polar steps ``n_jobs`` at a time (each on one BLAS thread).

    ``n_jobs == 1`` runs everything in the caller's thread with the BLAS
    settings untouched, i.e. exactly the sequential code. The per-subject
    work only overlaps where its calls release the GIL: NumPy's ``linalg``
    (the float64 SVD, ``eigh``) and BLAS products do; SciPy's LAPACK
    wrappers (the float32 ``gesdd`` of :func:`polar_svd`) do not.
    """

    def __init__(self, n_jobs):
        self.n_jobs = int(n_jobs)
        self._pool = None

    def __enter__(self):
        if self.n_jobs > 1:
            self._pool = ThreadPoolExecutor(self.n_jobs)
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        return False

    def blas(self):
        """Context for the big products: all ``n_jobs`` BLAS threads."""
        return _blas_threads(self.n_jobs if self.n_jobs > 1 else None)

    def map(self, fn, items):
        """``[fn(i) for i in items]``, ``n_jobs`` at a time on one BLAS thread each."""
        items = list(items)
        if self._pool is None:
            return [fn(i) for i in items]
        with _blas_threads(1):
            return list(self._pool.map(fn, items))


def _perturbed(a):
    """Copy of ``a`` with BrainIAK's 0.001 added to its (top square) diagonal."""
    a_pert = a.copy()
    np.fill_diagonal(a_pert, np.diag(a_pert) + a.dtype.type(PERTURBATION))
    return a_pert


def _sum_products(a, b):
    """``sum(a * b)`` accumulated in float64 (exactly ``np.sum(a*b)`` in float64)."""
    if a.dtype == np.float64 and b.dtype == np.float64:
        return float(np.sum(a * b))
    return float(np.sum(a * b, dtype=np.float64))


def _converged(objective, tol):
    """True when the last two objective values differ by <= tol (relative)."""
    if tol is None or len(objective) < 2:
        return False
    previous, current = objective[-2], objective[-1]
    return abs(current - previous) <= tol * max(abs(previous), np.finfo(float).tiny)


# ---------------------------------------------------------------------------
# Probabilistic SRM, NumPy (EM as in brainiak.funcalign.srm.SRM._srm)
# ---------------------------------------------------------------------------

def _e_step_matrices(sigma_s, rho0, exact):
    """The E-step's features x features matrices, in float64.

    Parameters
    ----------
    sigma_s : ndarray, shape (k, k)
        Current shared-response covariance.
    rho0 : float
        ``sum_i 1 / rho_i^2``.
    exact : bool
        True: BrainIAK's operations, in its order (two Cholesky factorisations
        and two inverses), so float64 fits match BrainIAK to rounding. False:
        the algebraically equal ``(Sigma_s^-1 + rho0 I)^-1 = (I + rho0
        Sigma_s)^-1 Sigma_s``, one factorisation and no inverse of
        ``Sigma_s`` (cheaper, and better conditioned).

    Returns
    -------
    inv_sigma_s_rhos : ndarray, shape (k, k)
        ``(Sigma_s^-1 + rho0 I)^-1``.
    response_map : ndarray, shape (k, k)
        ``Sigma_s (I - rho0 inv_sigma_s_rhos)``, which maps ``W^T Psi^-1 X``
        to the shared response (it equals ``inv_sigma_s_rhos``).
    log_det : float
        ``log det(Sigma_s^-1 + rho0 I) + log det(Sigma_s)``.
    """
    identity = np.identity(sigma_s.shape[0])
    if not exact:
        chol, lower = scipy.linalg.cho_factor(identity + rho0 * sigma_s, check_finite=False)
        inv_sigma_s_rhos = scipy.linalg.cho_solve((chol, lower), sigma_s, check_finite=False)
        inv_sigma_s_rhos = 0.5 * (inv_sigma_s_rhos + inv_sigma_s_rhos.T)
        log_det = np.log(np.diag(chol) ** 2).sum()
        return inv_sigma_s_rhos, inv_sigma_s_rhos, log_det
    chol_sigma_s, lower = scipy.linalg.cho_factor(sigma_s, check_finite=False)
    inv_sigma_s = scipy.linalg.cho_solve((chol_sigma_s, lower), identity, check_finite=False)
    sigma_s_rhos = inv_sigma_s + identity * rho0
    chol_sigma_s_rhos, lower = scipy.linalg.cho_factor(sigma_s_rhos, check_finite=False)
    inv_sigma_s_rhos = scipy.linalg.cho_solve((chol_sigma_s_rhos, lower), identity,
                                              check_finite=False)
    response_map = sigma_s.dot(identity - rho0 * inv_sigma_s_rhos)
    log_det = (np.log(np.diag(chol_sigma_s_rhos) ** 2).sum()
               + np.log(np.diag(chol_sigma_s) ** 2).sum())
    return inv_sigma_s_rhos, response_map, log_det


def fit_probabilistic_numpy(x, bounds, trace_xtx, w, n_iter, tol, polar, n_jobs=1):
    """EM for the probabilistic SRM on stacked, demeaned data.

    Parameters
    ----------
    x : ndarray, shape (sum_i units_i, samples)
        Demeaned data of all subjects, stacked; float32 or float64.
    bounds : sequence of int, length subjects + 1
        Subject ``i`` owns rows ``bounds[i]:bounds[i + 1]`` of ``x``.
    trace_xtx : ndarray, shape (subjects,)
        ``||X_i||_F^2`` of the *raw* (not demeaned) data, as BrainIAK uses.
    w : list of ndarray, element i of shape (units_i, features)
        Initial maps, in ``x.dtype``; replaced in the list.
    n_iter : int
    tol : float or None
        Stop after the iteration whose log-likelihood changed by at most
        ``tol`` relative to the previous one.
    polar : {"svd", "eigh"}
    n_jobs : int, default 1
        1: everything sequential with the BLAS settings untouched. More: the
        large products run on ``n_jobs`` BLAS threads and the subjects' M-step
        (product ``X_i S^T``, polar step, noise variance) ``n_jobs`` at a
        time in threads, each on one BLAS thread.

    Returns
    -------
    dict
        ``sigma_s`` (features, features) float64, ``w`` list, ``rho2``
        (subjects,) float64, ``s`` (features, samples) in ``x.dtype``,
        ``objective`` list of log-likelihoods, ``n_iter`` iterations run.
    """
    polar_fn = NUMPY_POLAR[polar]
    dtype = x.dtype
    subjects = len(w)
    samples = x.shape[1]
    features = w[0].shape[1]
    voxels = np.diff(bounds)
    rho2 = np.ones(subjects)
    shared_response = np.zeros((features, samples), dtype=dtype)
    sigma_s = np.identity(features)
    w_scaled = np.empty((x.shape[0], features), dtype=dtype)   # W_i / rho_i^2, stacked
    objective = []
    iteration = 0
    with _Parallel(n_jobs) as parallel:
        for iteration in range(n_iter):
            logger.info("Iteration %d", iteration + 1)

            with parallel.blas():
                # E-step: features x features algebra in float64.
                rho0 = (1 / rho2).sum()
                inv_sigma_s_rhos, response_map, log_det_sigma = _e_step_matrices(
                    sigma_s, rho0, exact=dtype == np.float64)

                for subject in range(subjects):
                    rows = slice(bounds[subject], bounds[subject + 1])
                    np.divide(w[subject], dtype.type(rho2[subject]), out=w_scaled[rows])
                wt_invpsi_x = w_scaled.T.dot(x)                        # (k, T)
                trace_xt_invsigma2_x = float(np.sum(trace_xtx / rho2))
                log_det_psi = np.sum(np.log(rho2) * voxels)
                shared_response = response_map.astype(dtype).dot(wt_invpsi_x)   # (k, T)

                # Log-likelihood of the parameters entering this iteration. Since
                # response_map equals inv_sigma_s_rhos, tr(Y^T inv Y) = sum(Y * S).
                loglike = (-0.5 * samples * (log_det_sigma + log_det_psi)
                           - 0.5 * trace_xt_invsigma2_x
                           + 0.5 * _sum_products(wt_invpsi_x, shared_response))
                objective.append(float(loglike))
                logger.info("Objective function %f", loglike)

                # M-step
                sigma_s = (inv_sigma_s_rhos
                           + shared_response.dot(shared_response.T).astype(np.float64)
                           / samples)
                trace_sigma_s = samples * np.trace(sigma_s)

            if parallel.n_jobs == 1:
                a_all = x.dot(shared_response.T)                   # (sum units, k)

            def m_step(subject):
                rows = slice(bounds[subject], bounds[subject + 1])
                if parallel.n_jobs == 1:
                    a_subject = a_all[rows]
                else:
                    a_subject = x[rows].dot(shared_response.T)     # (units_i, k)
                w[subject] = polar_fn(_perturbed(a_subject))
                rho2[subject] = (trace_xtx[subject]
                                 - 2 * _sum_products(w[subject], a_subject)
                                 + trace_sigma_s) / (samples * voxels[subject])

            parallel.map(m_step, range(subjects))

            if _converged(objective, tol):
                logger.info("Converged after %d iterations (tol=%g)", iteration + 1, tol)
                break
    n_done = iteration + 1 if n_iter > 0 else 0
    return dict(sigma_s=sigma_s, w=w, rho2=rho2, s=shared_response,
                objective=objective, n_iter=n_done)


# ---------------------------------------------------------------------------
# Deterministic SRM, NumPy (BCD as in brainiak.funcalign.srm.DetSRM._srm)
# ---------------------------------------------------------------------------

def deterministic_objective(sq_norms, shared_response, subjects, samples):
    """DetSRM objective ``0.5 / T * sum_i ||X_i - W_i S||_F^2`` from norms.

    With orthonormal ``W_i`` and ``S = mean_i W_i^T X_i`` the residual norm is
    ``sum_i ||X_i||^2 - N ||S||^2``, which costs no extra matrix product.

    Parameters
    ----------
    sq_norms : ndarray, shape (subjects,)
        ``||X_i||_F^2``.
    shared_response : ndarray, shape (features, samples)
    subjects, samples : int
    """
    s_norm2 = _sum_products(shared_response, shared_response)
    return 0.5 * (float(np.sum(sq_norms)) - subjects * s_norm2) / samples


def fit_deterministic_numpy(x, bounds, sq_norms, w, n_iter, tol, polar, n_jobs=1):
    """Block coordinate descent for the deterministic SRM on stacked data.

    Parameters
    ----------
    x : ndarray, shape (sum_i units_i, samples)
        Raw data of all subjects, stacked (DetSRM does not demean).
    bounds : sequence of int, length subjects + 1
    sq_norms : ndarray, shape (subjects,)
        ``||X_i||_F^2``, for the objective.
    w : list of ndarray, element i of shape (units_i, features)
    n_iter : int
    tol : float or None
    polar : {"svd", "eigh"}
    n_jobs : int, default 1
        As in :func:`fit_probabilistic_numpy`.

    Returns
    -------
    dict
        ``w`` list, ``s`` (features, samples), ``objective`` list (the value
        after initialisation, then after each iteration), ``n_iter``.
    """
    polar_fn = NUMPY_POLAR[polar]
    subjects = len(w)
    samples = x.shape[1]
    w_stacked = np.concatenate(w, axis=0)                      # (sum units, k)

    def shared_from(w_stacked):
        return w_stacked.T.dot(x) / x.dtype.type(subjects)     # (k, T)

    iteration = 0
    with _Parallel(n_jobs) as parallel:
        with parallel.blas():
            shared_response = shared_from(w_stacked)
        objective = [deterministic_objective(sq_norms, shared_response, subjects, samples)]
        logger.info("Objective function %f", objective[-1])
        for iteration in range(n_iter):
            logger.info("Iteration %d", iteration + 1)
            if parallel.n_jobs == 1:
                a_all = x.dot(shared_response.T)                   # (sum units, k)

            def m_step(subject):
                rows = slice(bounds[subject], bounds[subject + 1])
                if parallel.n_jobs == 1:
                    a_subject = a_all[rows]
                else:
                    a_subject = x[rows].dot(shared_response.T)
                w_stacked[rows] = polar_fn(_perturbed(a_subject))

            parallel.map(m_step, range(subjects))
            with parallel.blas():
                shared_response = shared_from(w_stacked)
            objective.append(deterministic_objective(sq_norms, shared_response,
                                                     subjects, samples))
            logger.info("Objective function %f", objective[-1])
            if _converged(objective, tol):
                logger.info("Converged after %d iterations (tol=%g)", iteration + 1, tol)
                break
    n_done = iteration + 1 if n_iter > 0 else 0
    w = [w_stacked[bounds[i]:bounds[i + 1]].copy() for i in range(subjects)]
    return dict(w=w, s=shared_response, objective=objective, n_iter=n_done)


# ---------------------------------------------------------------------------
# JAX (CPU or accelerator): the whole loop is one jitted function.
# ---------------------------------------------------------------------------

#: Newton--Schulz polar iteration: at most this many steps (SRM's X_i S^T
#: have singular values down to 1e-11 of their norm: 25-30 steps).
NS_MAX_STEPS = 60


def _jax():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='jax' needs the jax package (pip install jax); "
            f"importing it failed: {err}") from err
    return jax, jnp


def jax_platform():
    """Platform of JAX's default device: 'cpu', 'gpu', 'tpu', ..."""
    jax, _ = _jax()
    return jax.default_backend()


def _x64(jax, dtype):
    """Context enabling 64-bit JAX types while a float64 fit runs."""
    if np.dtype(dtype) == np.float64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def _jax_polar(jax, jnp, polar, precision):
    """The polar-factor function used inside the jitted loops."""
    lax = jax.lax

    def polar_svd_jax(a):
        u, _, vt = jnp.linalg.svd(a, full_matrices=False)
        return jnp.matmul(u, vt, precision=precision)

    def polar_newton_schulz(a):
        """Newton--Schulz-type iteration for the polar factor: only matmuls.

        ``X_0 = a / ||a||_F`` has its singular values in (0, 1]. Each step
        applies the odd quintic ``p(s) = 2.75 s - 3 s^3 + 1.25 s^5`` to every
        singular value: ``X <- X (2.75 I - 3 G + 1.25 G^2)`` with ``G = X^T X``
        (three matrix products). ``p(1) = 1`` and ``p'(1) = 0``, so it
        converges quadratically near 1 like cubic Newton--Schulz, while small
        singular values grow 2.75-fold per step (cubic: 1.5-fold), and p maps
        [0, 1.11] into itself without sending large values near zero (the
        scaled variants that do, e.g. Chen & Chow's with a small lower bound,
        lose their accuracy in float32). Stops when ``||G - I||_F`` (an upper
        bound on every ``|s^2 - 1|``) is below ``4 k eps``, when it stops
        shrinking (the floor the matmul precision allows, e.g. TF32), or
        after ``NS_MAX_STEPS`` steps. Directions below the working precision
        grow like the others, so the result is orthonormal even when ``a`` is
        nearly rank-deficient; they are where float32 Newton--Schulz and an
        SVD differ most.
        """
        dtype = a.dtype
        k = a.shape[1]
        identity = jnp.eye(k, dtype=dtype)
        threshold = 4.0 * float(np.finfo(dtype).eps) * k

        def cond(state):
            _, step, err, err_prev = state
            stalled = jnp.logical_and(err < 1e-2, err >= err_prev)
            return jnp.logical_and(step < NS_MAX_STEPS,
                                   jnp.logical_and(err > threshold,
                                                   jnp.logical_not(stalled)))

        def body(state):
            x, step, err, _ = state
            g = jnp.matmul(x.T, x, precision=precision)             # (k, k)
            err_new = jnp.linalg.norm(g - identity)
            poly = (2.75 * identity - 3.0 * g
                    + 1.25 * jnp.matmul(g, g, precision=precision))
            return jnp.matmul(x, poly.astype(dtype), precision=precision), \
                step + 1, err_new.astype(dtype), err

        init = (a / jnp.linalg.norm(a), jnp.asarray(0),
                jnp.asarray(jnp.inf, dtype), jnp.asarray(jnp.inf, dtype))
        return lax.while_loop(cond, body, init)[0]

    return {"svd": polar_svd_jax, "newton-schulz": polar_newton_schulz}[polar]


def _perturbed_jax(jnp, a):
    idx = jnp.arange(min(a.shape))
    return a.at[idx, idx].add(jnp.asarray(PERTURBATION, a.dtype))


def _row_sum(jnp, a):
    """Sum of all entries, row sums first (less float32 round-off than one flat sum)."""
    return jnp.sum(jnp.sum(a, axis=1))


@functools.lru_cache(maxsize=32)
def _probabilistic_runner(bounds, samples, features, n_iter, tol, polar, precision):
    """Jitted EM loop for one problem layout (cached: reused across fits)."""
    jax, jnp = _jax()
    lax = jax.lax
    subjects = len(bounds) - 1
    voxels = np.diff(bounds)
    polar_fn = _jax_polar(jax, jnp, polar, precision)
    tol_value = -1.0 if tol is None else float(tol)

    def mm(p, q):
        return jnp.matmul(p, q, precision=precision)

    def run(x, w, trace_xtx):
        dtype = x.dtype
        identity = jnp.eye(features, dtype=dtype)
        voxels_j = jnp.asarray(voxels, dtype)

        def body(state):
            it, w, rho2, sigma_s, _, terms = state
            rho0 = jnp.sum(1.0 / rho2)
            # (Sigma_s^-1 + rho0 I)^-1 = (I + rho0 Sigma_s)^-1 Sigma_s: no inverse
            # of Sigma_s, which matters in float32.
            chol = jnp.linalg.cholesky(identity + rho0 * sigma_s)
            inv_sigma_s_rhos = jax.scipy.linalg.cho_solve((chol, True), sigma_s)
            inv_sigma_s_rhos = 0.5 * (inv_sigma_s_rhos + inv_sigma_s_rhos.T)
            w_scaled = jnp.concatenate([w[i] / rho2[i] for i in range(subjects)])
            wt_invpsi_x = mm(w_scaled.T, x)                         # (k, T)
            shared = mm(inv_sigma_s_rhos, wt_invpsi_x)              # (k, T)
            # log det(Sigma_s^-1 + rho0 I) + log det(Sigma_s) = log det(I + rho0 Sigma_s)
            log_det = (2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
                       + jnp.sum(jnp.log(rho2) * voxels_j))
            terms = terms.at[it].set(jnp.stack([
                log_det, jnp.sum(trace_xtx / rho2),
                _row_sum(jnp, wt_invpsi_x * shared)]))
            sigma_s = inv_sigma_s_rhos + mm(shared, shared.T) / samples
            sigma_s = 0.5 * (sigma_s + sigma_s.T)
            trace_sigma_s = samples * jnp.trace(sigma_s)
            a_all = mm(x, shared.T)                                 # (sum units, k)
            new_w, new_rho2 = [], []
            for i in range(subjects):
                a_i = a_all[bounds[i]:bounds[i + 1]]
                w_i = polar_fn(_perturbed_jax(jnp, a_i))
                new_w.append(w_i)
                new_rho2.append((trace_xtx[i] - 2.0 * _row_sum(jnp, w_i * a_i)
                                 + trace_sigma_s) / (samples * voxels_j[i]))
            return it + 1, new_w, jnp.stack(new_rho2), sigma_s, shared, terms

        def loglike(terms, i):
            return -0.5 * samples * terms[i, 0] - 0.5 * terms[i, 1] + 0.5 * terms[i, 2]

        def cond(state):
            it, terms = state[0], state[5]
            previous = loglike(terms, jnp.maximum(it - 2, 0))
            change = jnp.abs(loglike(terms, jnp.maximum(it - 1, 0)) - previous)
            done = jnp.logical_and(it >= 2, change <= tol_value * jnp.abs(previous))
            return jnp.logical_and(it < n_iter, jnp.logical_not(done))

        init = (jnp.asarray(0), list(w), jnp.ones(subjects, dtype), identity,
                jnp.zeros((features, samples), dtype),
                jnp.zeros((max(n_iter, 1), 3), dtype))
        return lax.while_loop(cond, body, init)

    return jax.jit(run)


def fit_probabilistic_jax(x, bounds, trace_xtx, w, n_iter, tol, polar, precision):
    """EM for the probabilistic SRM as one jitted JAX loop.

    Same parameters and return value as :func:`fit_probabilistic_numpy`,
    with ``polar`` in {"svd", "newton-schulz"} and ``precision`` the
    ``jax.lax.Precision`` name used by every matrix product ("highest": full
    float32 on GPUs; "default": TF32/bfloat16 where the device has them).
    The features x features algebra runs in the working dtype, through the
    better conditioned ``(I + rho0 Sigma_s)^-1 Sigma_s``. The log-likelihood
    is assembled in float64 from per-iteration terms computed on the device.
    """
    jax, jnp = _jax()
    with _x64(jax, x.dtype):
        runner = _probabilistic_runner(tuple(int(b) for b in bounds), x.shape[1],
                                       w[0].shape[1], int(n_iter), tol, polar, precision)
        it, w_out, rho2, sigma_s, shared, terms = runner(
            jnp.asarray(x), [jnp.asarray(wi) for wi in w],
            jnp.asarray(trace_xtx, dtype=x.dtype))
        n_done = int(it)
        terms = np.asarray(terms, dtype=np.float64)[:n_done]
        samples = x.shape[1]
        objective = [float(-0.5 * samples * t[0] - 0.5 * t[1] + 0.5 * t[2]) for t in terms]
        return dict(sigma_s=np.asarray(sigma_s, dtype=np.float64),
                    w=[np.asarray(wi) for wi in w_out],
                    rho2=np.asarray(rho2, dtype=np.float64), s=np.asarray(shared),
                    objective=objective, n_iter=n_done)


@functools.lru_cache(maxsize=32)
def _deterministic_runner(bounds, samples, features, n_iter, tol, polar, precision):
    """Jitted BCD loop for one problem layout (cached: reused across fits)."""
    jax, jnp = _jax()
    lax = jax.lax
    subjects = len(bounds) - 1
    polar_fn = _jax_polar(jax, jnp, polar, precision)
    tol_value = -1.0 if tol is None else float(tol)

    def mm(p, q):
        return jnp.matmul(p, q, precision=precision)

    def run(x, w, total_sq):
        w_stacked = jnp.concatenate(w)
        shared0 = mm(w_stacked.T, x) / subjects

        def objective_of(s_norm2):
            return 0.5 * (total_sq - subjects * s_norm2) / samples

        def body(state):
            it, w_stacked, shared, norms = state
            a_all = mm(x, shared.T)                                 # (sum units, k)
            w_stacked = jnp.concatenate(
                [polar_fn(_perturbed_jax(jnp, a_all[bounds[i]:bounds[i + 1]]))
                 for i in range(subjects)])
            shared = mm(w_stacked.T, x) / subjects                  # (k, T)
            norms = norms.at[it + 1].set(_row_sum(jnp, shared * shared))
            return it + 1, w_stacked, shared, norms

        def cond(state):
            it, norms = state[0], state[3]
            previous = objective_of(norms[jnp.maximum(it - 1, 0)])
            change = jnp.abs(objective_of(norms[it]) - previous)
            done = jnp.logical_and(it >= 1, change <= tol_value * jnp.abs(previous))
            return jnp.logical_and(it < n_iter, jnp.logical_not(done))

        norms = jnp.zeros(n_iter + 1, x.dtype).at[0].set(_row_sum(jnp, shared0 * shared0))
        return lax.while_loop(cond, body, (jnp.asarray(0), w_stacked, shared0, norms))

    return jax.jit(run)


def fit_deterministic_jax(x, bounds, sq_norms, w, n_iter, tol, polar, precision):
    """Block coordinate descent for the deterministic SRM as one jitted JAX loop.

    Same parameters and return value as :func:`fit_deterministic_numpy`,
    with ``polar`` and ``precision`` as in :func:`fit_probabilistic_jax`.
    """
    jax, jnp = _jax()
    with _x64(jax, x.dtype):
        runner = _deterministic_runner(tuple(int(b) for b in bounds), x.shape[1],
                                       w[0].shape[1], int(n_iter), tol, polar, precision)
        total_sq = float(np.sum(sq_norms))
        it, w_stacked, shared, norms = runner(
            jnp.asarray(x), [jnp.asarray(wi) for wi in w],
            jnp.asarray(total_sq, dtype=x.dtype))
        n_done = int(it)
        samples, subjects = x.shape[1], len(w)
        objective = [0.5 * (total_sq - subjects * float(v)) / samples
                     for v in np.asarray(norms, dtype=np.float64)[:n_done + 1]]
        w_stacked = np.asarray(w_stacked)
        return dict(w=[w_stacked[bounds[i]:bounds[i + 1]].copy() for i in range(subjects)],
                    s=np.asarray(shared), objective=objective, n_iter=n_done)
