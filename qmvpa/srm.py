"""Shared Response Model (SRM): a fast, drop-in replacement for BrainIAK's.

Given the same stimuli shown to several subjects (here: networks), SRM
factorises each subject's data as an orthonormal map times one shared
response::

    X_i  ~=  W_i  S         X_i: (units_i, samples), W_i: (units_i, features),
                            S:   (features, samples),  W_i^T W_i = I

:class:`SRM` is the probabilistic model fitted by expectation-maximisation,
:class:`DetSRM` the deterministic one fitted by block coordinate descent
(Chen et al. 2015, with the optimisations of Anderson et al. 2016). Both are
``brainiak.funcalign.srm.SRM`` / ``DetSRM`` with the same constructor
arguments, fitted attributes, methods, validation errors and ``.npz`` file
format; with the defaults (``dtype=np.float64``, ``backend="numpy"``) and
the same ``rand_seed`` they reproduce BrainIAK's results to rounding. Unlike
BrainIAK this module does not need MPI.

Faster engines, chosen by keyword:

* ``dtype=np.float32`` halves the cost of the matrix products and (through
  SciPy's LAPACK) of the SVDs of the polar steps; the two together are most
  of the fit's time. ``polar="eigh"`` is an alternative polar step for the
  numpy backend (eigendecomposition of a ``features x features`` Gram matrix
  in float64), faster than a float64 SVD.
* ``backend="jax"`` runs the whole fit as one jitted loop, on a GPU when JAX
  sees one, where the polar step defaults to a Newton--Schulz iteration (only
  matrix products).
* ``n_jobs=2`` (numpy backend) uses two cores: the large products on two
  BLAS threads, the subjects' M-steps two at a time (float32 then takes the
  "eigh" polar step, whose NumPy calls release the GIL). Float32 with
  ``n_jobs=2`` fitted the paper's scale 3.2-3.5x faster than BrainIAK on a
  2-core machine (``bench/RESULTS.md``).
* ``tol`` stops early once the objective (log-likelihood for SRM) changes by
  less than ``tol`` (relative) between iterations.

Data are units x samples (BrainIAK's voxels x samples); ``X`` is a list with
one array per subject. The number of units may differ between subjects, the
number of samples may not.

Cost per iteration: ``O(V T K + N K^3)`` for ``V = sum_i units_i`` units,
``T`` samples, ``K`` features and ``N`` subjects; memory ``O(V T)`` (one copy
of the data in the working dtype).

References
----------
.. [Chen2015] P.-H. Chen, J. Chen, Y. Yeshurun-Dishon, U. Hasson, J. Haxby,
   P. Ramadge, "A Reduced-Dimension fMRI Shared Response Model", NIPS 2015.
.. [Anderson2016] M. J. Anderson et al., "Enabling Factor Analysis on
   Thousand-Subject Neuroimaging Datasets", IEEE Big Data 2016.
"""

import logging
import numbers
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from . import _srm_backends as backends

__all__ = ["SRM", "DetSRM", "load"]

logger = logging.getLogger(__name__)

_BACKENDS = ("numpy", "jax")
_POLARS = {"numpy": ("svd", "eigh"), "jax": ("svd", "newton-schulz")}
_PRECISIONS = ("highest", "high", "default")
_NOT_FITTED = "The model fit has not been run yet."


# ---------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------

def _check_int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; "
                        f"got {value!r} of type {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}.")
    return int(value)


def _check_engine(estimator):
    """Validate the constructor arguments; return (dtype, backend, polar, tol, n_jobs)."""
    _check_int("n_iter", estimator.n_iter, 0)
    _check_int("features", estimator.features, 1)
    try:
        dtype = None if estimator.dtype is None else np.dtype(estimator.dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in ("float32", "float64"):
        raise ValueError("dtype must be np.float32 or np.float64; "
                         f"got {estimator.dtype!r}.")
    backend = estimator.backend
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}; got {backend!r}.")
    tol = estimator.tol
    if tol is not None:
        if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real) \
                or not np.isfinite(tol) or tol <= 0:
            raise ValueError(f"tol must be None or a positive number; got {tol!r}.")
        tol = float(tol)
    n_jobs = _check_n_jobs(getattr(estimator, "n_jobs", 1))
    polar = estimator.polar
    if polar == "auto":
        polar = _auto_polar(dtype, backend, n_jobs)
    elif polar not in _POLARS[backend]:
        raise ValueError(f"polar must be 'auto' or one of {_POLARS[backend]} with "
                         f"backend={backend!r}; got {polar!r}.")
    if estimator.precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}; "
                         f"got {estimator.precision!r}.")
    return dtype, backend, polar, tol, n_jobs


def _check_n_jobs(n_jobs):
    """``n_jobs`` as a positive int: None is 1, -1 is every CPU (sklearn's convention)."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, numbers.Integral) \
            or (n_jobs < 1 and n_jobs != -1):
        raise ValueError(f"n_jobs must be None, -1 or an integer >= 1; got {n_jobs!r}.")
    if n_jobs == -1:
        return os.cpu_count() or 1
    return int(n_jobs)


def _auto_polar(dtype, backend, n_jobs=1):
    """The polar-step method that ``polar="auto"`` picks."""
    if backend == "numpy":
        # SciPy's float32 SVD holds the GIL: with several threads, float32
        # uses the eigh-based step (NumPy's eigh releases the GIL).
        return "eigh" if n_jobs > 1 and dtype == np.float32 else "svd"
    return "svd" if backends.jax_platform() == "cpu" else "newton-schulz"


def _check_subject_array(value, index, name="X"):
    """One subject's data as a finite 2-D float array (no copy when possible)."""
    if value is None:
        raise ValueError(f"{name}[{index}] (subject {index}) is None; every subject "
                         "needs a 2-D array of shape (units, samples).")
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(f"{name}[{index}] (subject {index}) must be a 2-D array of "
                         f"shape (units, samples); got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise TypeError(f"{name}[{index}] (subject {index}) must hold real numbers; "
                        f"got dtype {array.dtype}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}[{index}] (subject {index}) contains NaN or infinite "
                         "values; SRM needs finite data.")
    return array


def _map(fn, items, n_jobs=1):
    """``[fn(item) for item in items]``, ``n_jobs`` at a time in threads.

    The per-subject preparation steps are NumPy calls that release the GIL;
    each thread then uses one BLAS thread. Errors surface in item order.
    """
    items = list(items)
    if n_jobs <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(n_jobs) as pool, backends._blas_threads(1):
        return list(pool.map(fn, items))


def _check_subject_list(X, what="X"):
    """Raise unless ``X`` is a sequence of subjects (a list, or a 3-D array).

    A single 2-D array (one subject's data instead of a list) is a
    ``ValueError``, as in BrainIAK (there its length is taken as the number of
    subjects, which then does not match); anything without a length is a
    ``TypeError``.
    """
    if isinstance(X, np.ndarray) and X.ndim != 3:
        raise ValueError(f"{what} must be a list of 2-D arrays of shape (units, samples), one "
                         f"per subject (or a 3-D array); got a {X.ndim}-D array.")
    if not hasattr(X, "__len__"):
        raise TypeError(f"{what} must be a list of 2-D arrays of shape (units, samples), one "
                        f"per subject; got {type(X).__name__}.")


def _check_fit_data(X, features, n_jobs=1):
    """Validate a list of subjects' data for fit (BrainIAK's checks and more)."""
    _check_subject_list(X)
    if len(X) <= 1:
        raise ValueError(f"There are not enough subjects ({len(X):d}) to train the "
                         "model: X must hold at least 2 subjects.")
    data = _map(lambda item: _check_subject_array(item[1], item[0]), enumerate(X), n_jobs)
    samples = data[0].shape[1]
    for i, x in enumerate(data):
        if x.shape[1] != samples:
            raise ValueError("Different number of samples between subjects: "
                             f"X[0] has {samples} samples, X[{i}] has {x.shape[1]}.")
    if samples < features:
        raise ValueError("There are not enough samples to train the model with "
                         f"{features:d} features: features must be <= the number of "
                         f"samples ({samples}).")
    for i, x in enumerate(data):
        if x.shape[0] < features:
            raise ValueError(f"features ({features}) must be <= the number of units of "
                             f"every subject; X[{i}] has {x.shape[0]} units.")
    return data


def _init_w_transforms(voxels, features, rand_seed, n_jobs=1):
    """BrainIAK's random orthonormal initial maps, draw for draw.

    Parameters
    ----------
    voxels : sequence of int
        Units per subject.
    features : int
    rand_seed : int or None

    Returns
    -------
    w : list of ndarray, element i of shape (voxels[i], features), float64
    random_state : numpy.random.RandomState
        Seeded with ``rand_seed``; it drew one seed per subject.
    """
    random_state = np.random.RandomState(rand_seed)
    seeds = [random_state.randint(2 ** 32, dtype=np.int64) for _ in voxels]

    def one(item):
        n_units, seed = item
        rnd_matrix = np.random.RandomState(seed).random_sample((n_units, features))
        return np.linalg.qr(rnd_matrix)[0]

    return _map(one, zip(voxels, seeds), n_jobs), random_state


def _stack(data, dtype, center, n_jobs=1):
    """Stack subjects along units, in ``dtype``, optionally removing unit means.

    Returns
    -------
    x : ndarray, shape (sum_i units_i, samples)
    bounds : ndarray of int, shape (subjects + 1,)
    mu : list of ndarray, element i of shape (units_i,), float64
        Unit means over samples (zeros when ``center`` is False).
    """
    bounds = np.concatenate([[0], np.cumsum([d.shape[0] for d in data])])
    x = np.empty((bounds[-1], data[0].shape[1]), dtype=dtype)

    def one(i):
        d = data[i]
        rows = x[bounds[i]:bounds[i + 1]]
        if center:
            mu_i = np.mean(d, 1, dtype=np.float64)
            np.subtract(d, mu_i[:, np.newaxis], out=rows, casting="unsafe")
            return mu_i
        rows[...] = d
        return np.zeros(d.shape[0])

    mu = _map(one, range(len(data)), n_jobs)
    return x, bounds, mu


def _squared_norm(array):
    """``np.sum(array ** 2)`` in float64 (exactly BrainIAK's for float64 input)."""
    if array.dtype == np.float64:
        return float(np.sum(array ** 2))
    return float(np.sum(np.square(array, dtype=np.float64)))


def _check_transform_data(X, w):
    _check_subject_list(X)
    if len(X) != len(w):
        raise ValueError("The number of subjects does not match the one in the model: "
                         f"the model has {len(w)}, X has {len(X)}.")
    data = []
    for i, x in enumerate(X):
        if x is None:                 # BrainIAK passes None through
            data.append(None)
            continue
        x = _check_subject_array(x, i)
        if x.shape[0] != w[i].shape[0]:
            raise ValueError(f"X[{i}] (subject {i}) has {x.shape[0]} units; the model "
                             f"was fitted with {w[i].shape[0]} units for this subject.")
        data.append(x)
    return data


class _SRMBase(BaseEstimator, TransformerMixin):
    """What SRM and DetSRM share: parameters, transform and the new-subject map."""

    def __init__(self, n_iter=10, features=50, rand_seed=0, dtype=np.float64,
                 backend="numpy", tol=None, polar="auto", precision="highest", n_jobs=1):
        self.n_iter = n_iter
        self.features = features
        self.rand_seed = rand_seed
        self.dtype = dtype
        self.backend = backend
        self.tol = tol
        self.polar = polar
        self.precision = precision
        self.n_jobs = n_jobs

    def _check_is_fitted(self):
        if not hasattr(self, "w_"):
            raise NotFittedError(_NOT_FITTED)

    def _prepare(self, X, center):
        """Validate, initialise and stack the data; return the engine's inputs."""
        dtype, backend, polar, tol, n_jobs = _check_engine(self)
        data = _check_fit_data(X, self.features, n_jobs)
        w, self.random_state_ = _init_w_transforms([d.shape[0] for d in data],
                                                   self.features, self.rand_seed, n_jobs)
        w = [wi.astype(dtype, copy=False) for wi in w]
        x, bounds, mu = _stack(data, dtype, center, n_jobs)
        sq_norms = np.array(_map(_squared_norm, data, n_jobs))
        self.polar_ = polar
        return dict(x=x, bounds=bounds, mu=mu, sq_norms=sq_norms, w=w,
                    dtype=dtype, backend=backend, polar=polar, tol=tol, n_jobs=n_jobs)

    def transform(self, X, y=None):
        """Map data into the shared space: ``S_i = W_i^T X_i``.

        Parameters
        ----------
        X : list of array, element i of shape (units_i, samples_i)
            One array per subject, in the order used by ``fit``. The number
            of samples may differ from the training data (e.g. held-out
            images). ``None`` entries are passed through as ``None``.
        y : ignored

        Returns
        -------
        s : list of ndarray, element i of shape (features, samples_i)
            In the dtype of ``w_``.
        """
        self._check_is_fitted()
        data = _check_transform_data(X, self.w_)
        return [None if x is None else self.w_[i].T.dot(x.astype(self.w_[i].dtype, copy=False))
                for i, x in enumerate(data)]

    def transform_subject(self, X):
        """Fit the map of a new subject to the fitted shared response.

        The new subject is assumed to have seen the training stimuli; its map
        solves the orthogonal Procrustes problem ``min ||X - W S||_F``, i.e.
        ``W = polar(X S^T)`` (no perturbation, no demeaning, as BrainIAK).

        Parameters
        ----------
        X : array, shape (units, samples)
            The new subject's data; ``samples`` as in the training data.

        Returns
        -------
        w : ndarray, shape (units, features)
            Orthonormal map of the new subject.
        """
        self._check_is_fitted()
        x = _check_subject_array(X, 0, name="X (new subject)")
        if x.shape[1] != self.s_.shape[1]:
            raise ValueError("The number of timepoints(TRs) does not match the one in "
                             f"the model: X has {x.shape[1]} samples, the model "
                             f"{self.s_.shape[1]}.")
        if x.shape[0] < self.s_.shape[0]:
            raise ValueError(f"features ({self.s_.shape[0]}) must be <= the number of "
                             f"units of the new subject; X has {x.shape[0]} units.")
        polar = getattr(self, "polar_", "svd")
        polar_fn = backends.NUMPY_POLAR.get(polar, backends.polar_svd)
        return polar_fn(x.astype(self.s_.dtype, copy=False).dot(self.s_.T))

    def _engine_record(self):
        """Our extra constructor arguments, as a string array (no pickling)."""
        return np.array([np.dtype(self.dtype).name, str(self.backend), str(self.polar),
                         repr(self.tol), str(self.precision)])


class SRM(_SRMBase):
    """Probabilistic Shared Response Model, drop-in for BrainIAK's ``SRM``.

    Given multi-subject data, factorise it as a shared response ``S`` among
    all subjects and an orthonormal map ``W_i`` per subject,
    ``X_i = W_i S + mu_i + noise_i``, with ``S ~ N(0, Sigma_s)`` per sample
    and isotropic noise of variance ``rho_i^2``; fitted by EM [Chen2015]_.

    Parameters
    ----------
    n_iter : int, default 10
        Number of EM iterations.
    features : int, default 50
        Number of shared features ``k``; at most the number of samples and of
        every subject's units. ``k`` equal to the units of every subject
        makes every ``W_i`` an orthogonal (geometry-preserving) map.
    rand_seed : int, default 0
        Seed of the random initial maps (drawn exactly as BrainIAK does).
    dtype : {np.float64, np.float32}, default np.float64
        Working precision of the data and of the large products. float64
        reproduces BrainIAK; float32 is about twice as fast.
    backend : {"numpy", "jax"}, default "numpy"
        "jax" runs the fit as one jitted loop on JAX's default device (a GPU
        when present); float64 with JAX is enabled for the fit only.
    tol : float or None, default None
        If set, stop after the iteration whose log-likelihood changed by at
        most ``tol`` relative to the previous iteration's.
    polar : {"auto", "svd", "eigh", "newton-schulz"}, default "auto"
        How the orthogonal Procrustes step ``W_i = polar(X_i S^T)`` is
        computed. "svd" is BrainIAK's (float32: SciPy's ``gesdd``); "eigh"
        (numpy only) uses the eigendecomposition of the ``k x k`` Gram matrix
        in float64; "newton-schulz" (jax only) uses only matrix products.
        "auto": "svd" for numpy and for jax on a CPU, "newton-schulz" for jax
        on an accelerator.
    precision : {"highest", "high", "default"}, default "highest"
        Matrix-product precision of the jax backend (``jax.lax.Precision``).
        "default" lets a GPU use TF32: faster, but in a CPU emulation of TF32
        products the log-likelihood moved by about 1e-3 (relative), far above
        the 1e-5 that "highest" keeps.
    n_jobs : int or None, default 1
        Threads of the numpy backend (ignored by jax). 1 (or None) runs
        sequentially with the BLAS settings untouched. More: the large
        products use ``n_jobs`` BLAS threads (through threadpoolctl) and the
        subjects' M-steps (``X_i S^T``, polar step) run ``n_jobs`` at a time;
        -1 uses every CPU. With ``polar="auto"`` float32 then uses the "eigh"
        polar step (SciPy's float32 SVD holds the GIL); float64 keeps
        BrainIAK's SVD. Leave at 1 when fits already run in parallel.

    Attributes
    ----------
    w_ : list of ndarray, element i of shape (units_i, features)
        Orthonormal maps.
    s_ : ndarray, shape (features, samples)
        Shared response of the training data.
    sigma_s_ : ndarray, shape (features, features)
        Covariance of the shared response.
    mu_ : list of ndarray, element i of shape (units_i,)
        Unit means over samples.
    rho2_ : ndarray, shape (subjects,)
        Noise variance per subject.
    random_state_ : numpy.random.RandomState
        Generator seeded with ``rand_seed``.
    objective_ : ndarray, shape (n_iter_,)
        Log-likelihood (up to a constant) of the parameters entering each
        iteration, as BrainIAK logs it.
    n_iter_ : int
        Iterations run (less than ``n_iter`` when ``tol`` stopped early).
    polar_ : str
        The polar-step method used.

    Notes
    -----
    BrainIAK's quirks are kept so results match: the noise variance uses the
    squared norm of the raw (not demeaned) data, 0.001 is added to the
    diagonal of ``X_i S^T`` before each polar step, ``transform`` does not
    subtract ``mu_``, and ``s_`` is the shared response computed in the last
    E-step (before that iteration's M-step).
    """

    def fit(self, X, y=None):
        """Fit the probabilistic SRM.

        Parameters
        ----------
        X : list of array, element i of shape (units_i, samples)
            One array per subject (at least 2), same number of samples.
        y : ignored

        Returns
        -------
        self : SRM
        """
        logger.info("Starting Probabilistic SRM")
        p = self._prepare(X, center=True)
        if p["backend"] == "jax":
            result = backends.fit_probabilistic_jax(
                p["x"], p["bounds"], p["sq_norms"], p["w"], self.n_iter, p["tol"],
                p["polar"], self.precision)
        else:
            result = backends.fit_probabilistic_numpy(
                p["x"], p["bounds"], p["sq_norms"], p["w"], self.n_iter, p["tol"],
                p["polar"], p["n_jobs"])
        dtype = p["dtype"]
        self.sigma_s_ = result["sigma_s"].astype(dtype, copy=False)
        self.w_ = [wi.astype(dtype, copy=False) for wi in result["w"]]
        self.mu_ = [m.astype(dtype, copy=False) for m in p["mu"]]
        self.rho2_ = result["rho2"].astype(dtype, copy=False)
        self.s_ = result["s"].astype(dtype, copy=False)
        self.objective_ = np.asarray(result["objective"], dtype=np.float64)
        self.n_iter_ = result["n_iter"]
        return self

    def save(self, file):
        """Save the fitted model to an ``.npz`` file in BrainIAK's format.

        Keys ``w_``, ``s_``, ``sigma_s_``, ``mu_``, ``rho2_`` and ``kwargs``
        (``[features, n_iter, rand_seed]``) as BrainIAK writes them, so
        ``brainiak.funcalign.srm.load`` reads the file; plus ``nnsrm_engine``
        (our extra arguments). When subjects have different numbers of units
        (which BrainIAK cannot save) the maps and means are stored per
        subject as ``w_0, w_1, ...`` and ``mu_0, mu_1, ...``, readable by
        :func:`load` only.

        Parameters
        ----------
        file : str, pathlib.Path or file-like
            ``.npz`` is appended to a name that lacks it.
        """
        self._check_is_fitted()
        np.savez_compressed(file, **_pack(self.w_, "w_"), **_pack(self.mu_, "mu_"),
                            s_=self.s_, sigma_s_=self.sigma_s_, rho2_=self.rho2_,
                            kwargs=np.array([self.features, self.n_iter, self.rand_seed]),
                            nnsrm_engine=self._engine_record())


class DetSRM(_SRMBase):
    """Deterministic Shared Response Model, drop-in for BrainIAK's ``DetSRM``.

    Minimises ``sum_i ||X_i - W_i S||_F^2`` over orthonormal ``W_i`` and
    ``S`` by block coordinate descent [Chen2015]_. The data are not demeaned.

    Parameters
    ----------
    n_iter, features, rand_seed, dtype, backend, polar, precision, n_jobs
        As for :class:`SRM`.
    tol : float or None, default None
        If set, stop after the iteration whose objective changed by at most
        ``tol`` relative to the previous value.

    Attributes
    ----------
    w_ : list of ndarray, element i of shape (units_i, features)
        Orthonormal maps.
    s_ : ndarray, shape (features, samples)
        Shared response, ``mean_i W_i^T X_i``.
    random_state_ : numpy.random.RandomState
        Generator seeded with ``rand_seed``.
    objective_ : ndarray, shape (n_iter_ + 1,)
        ``0.5 / samples * sum_i ||X_i - W_i S||_F^2`` after initialisation
        and after each iteration (BrainIAK's logged objective).
    n_iter_ : int
        Iterations run.
    polar_ : str
        The polar-step method used.
    """

    def fit(self, X, y=None):
        """Fit the deterministic SRM.

        Parameters
        ----------
        X : list of array, element i of shape (units_i, samples)
            One array per subject (at least 2), same number of samples.
        y : ignored

        Returns
        -------
        self : DetSRM
        """
        logger.info("Starting Deterministic SRM")
        p = self._prepare(X, center=False)
        fit = (backends.fit_deterministic_jax if p["backend"] == "jax"
               else backends.fit_deterministic_numpy)
        extra = (self.precision,) if p["backend"] == "jax" else (p["n_jobs"],)
        result = fit(p["x"], p["bounds"], p["sq_norms"], p["w"], self.n_iter, p["tol"],
                     p["polar"], *extra)
        dtype = p["dtype"]
        self.w_ = [wi.astype(dtype, copy=False) for wi in result["w"]]
        self.s_ = result["s"].astype(dtype, copy=False)
        self.objective_ = np.asarray(result["objective"], dtype=np.float64)
        self.n_iter_ = result["n_iter"]
        return self

    def save(self, file):
        """Save the fitted model to an ``.npz`` file.

        BrainIAK's DetSRM cannot be saved; we use the SRM layout without
        ``sigma_s_``, ``mu_`` and ``rho2_`` (keys ``w_``, ``s_``, ``kwargs``,
        ``nnsrm_engine``), which :func:`load` reads back as a DetSRM.

        Parameters
        ----------
        file : str, pathlib.Path or file-like
        """
        self._check_is_fitted()
        np.savez_compressed(file, **_pack(self.w_, "w_"), s_=self.s_,
                            kwargs=np.array([self.features, self.n_iter, self.rand_seed]),
                            nnsrm_engine=self._engine_record())


def _pack(arrays, key):
    """One stacked array under ``key`` (BrainIAK's layout) or one per subject."""
    if len({a.shape for a in arrays}) == 1:
        return {key: np.stack(arrays)}
    return {f"{key}{i}": a for i, a in enumerate(arrays)}


def _unpack(loaded, key):
    if key in loaded.files:
        return [a for a in loaded[key]]
    n = sum(1 for name in loaded.files if name.startswith(key) and name[len(key):].isdigit())
    return [loaded[f"{key}{i}"] for i in range(n)]


def load(file):
    """Load a model saved by :meth:`SRM.save`, :meth:`DetSRM.save` or BrainIAK.

    Parameters
    ----------
    file : str, pathlib.Path or file-like
        An ``.npz`` file.

    Returns
    -------
    model : SRM or DetSRM
        An :class:`SRM` when the file holds ``sigma_s_`` (every BrainIAK
        file), else a :class:`DetSRM`.
    """
    with np.load(file) as loaded:
        features, n_iter, rand_seed = (int(v) for v in loaded["kwargs"])
        engine = {}
        if "nnsrm_engine" in loaded.files:
            dtype, backend, polar, tol, precision = (str(v) for v in loaded["nnsrm_engine"])
            engine = dict(dtype=np.dtype(dtype).type, backend=backend, polar=polar,
                          tol=None if tol == "None" else float(tol), precision=precision)
        probabilistic = "sigma_s_" in loaded.files
        model = (SRM if probabilistic else DetSRM)(
            n_iter=n_iter, features=features, rand_seed=rand_seed, **engine)
        model.w_ = _unpack(loaded, "w_")
        model.s_ = loaded["s_"]
        if probabilistic:
            model.sigma_s_ = loaded["sigma_s_"]
            model.mu_ = _unpack(loaded, "mu_")
            model.rho2_ = loaded["rho2_"]
    return model
