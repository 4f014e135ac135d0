"""Shared Response Model alignment: fit, map into the shared space, variance explained.

Activity matrices are **units × images** (see :mod:`qmvpa`). The Shared Response
Model (Chen et al. 2015) finds for every network ``i`` an orthonormal map
``W_i`` (units_i × k) and one shared response ``S`` (k × images) with
``X_i ≈ W_i S``; docs/analyses.md gives the formulas.

The SRM implementation is chosen by name (``engine``), behind one function,
:func:`fit_srm`:

- ``"brainiak"`` — ``brainiak.funcalign.srm.SRM``, the probabilistic SRM the
  paper used, our reference (optional: needs BrainIAK and MPI, imported only
  when used; :func:`srm_class` raises ``ImportError`` without them);
- ``"fast"`` (default) — ``qmvpa.srm.SRM``, our drop-in reimplementation with
  the same constructor and fitted attributes (``w_``, ``s_``), in float32 on
  NumPy: about 2× faster than BrainIAK on one CPU core, its log-likelihood
  within 1e-5 (relative) and variance explained and RSM correlations within
  1e-6 (absolute) of float64 (tests/test_srm.py; measured: 3e-6 and 8e-8);
- ``"jax"`` — the same in float32 as one jitted JAX loop, for a GPU.

Both return a fitted estimator with ``w_`` (list of units_i × k) and ``s_``
(k × images). Note: BrainIAK's probabilistic SRM removes each unit's mean over
the fit images before fitting (its ``mu_``), but its ``transform`` maps the data
as given, ``S_i = W_iᵀ X_i``, and so does :func:`transform`.
"""

from __future__ import annotations

import logging

import numpy as np

from qmvpa._validation import as_network_list, check_finite

log = logging.getLogger(__name__)

__all__ = ["ENGINES", "DEFAULT_ENGINE", "srm_class", "fit_srm", "transform", "variance_explained",
           "variance_explained_leave_one_out", "check_n_components"]

#: SRM engines :func:`fit_srm` knows, by name.
ENGINES = ("brainiak", "fast", "jax")
#: The engine used when none is named: ``qmvpa.srm`` in float32, checked against BrainIAK.
DEFAULT_ENGINE = "fast"
#: Keyword arguments of ``qmvpa.srm.SRM`` for our engines.
_FAST_OPTIONS = {"fast": {"dtype": np.float32, "backend": "numpy"},
                 "jax": {"dtype": np.float32, "backend": "jax"}}


def srm_class(engine):
    """The SRM estimator class of ``engine`` (imported lazily: BrainIAK pulls in MPI).

    Raises
    ------
    ValueError
        If ``engine`` is not one of :data:`ENGINES`.
    ImportError
        If the engine's package is not installed (BrainIAK is optional: it
        needs MPI and has binary wheels for Python 3.11 and 3.12 only).
    """
    if engine == "brainiak":
        try:
            from brainiak.funcalign.srm import SRM
        except ImportError as err:
            raise ImportError(f"engine 'brainiak' needs BrainIAK and an MPI library (pip install "
                              f"brainiak mpich), which could not be imported: {err}") from None
        return SRM
    if engine in _FAST_OPTIONS:
        from qmvpa.srm import SRM

        return SRM
    raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


def check_n_components(n_components, n_units, n_images):
    """Validate (or default) the number of shared features ``k``.

    Parameters
    ----------
    n_components : int or None
        Requested ``k``; ``None`` means ``min(n_units)`` (an orthogonal map
        that keeps the whole geometry, see docs/analyses.md).
    n_units : sequence of int
        Units of every network.
    n_images : int
        Images the SRM is fitted on.

    Returns
    -------
    k : int
    """
    min_units = int(min(n_units))
    k = min_units if n_components is None else n_components
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"n_components (k) must be a positive integer, got {n_components!r}")
    k = int(k)
    if k > min_units:
        raise ValueError(f"n_components (k) = {k} is larger than the units of the smallest network "
                         f"({min_units}); choose k <= {min_units}")
    if k > n_images:
        raise ValueError(f"n_components (k) = {k} is larger than the {n_images} fit images; "
                         f"choose k <= {n_images} or fit on more images")
    return k


def fit_srm(Xs, n_components=None, n_iter=10, random_state=0, engine=DEFAULT_ENGINE):
    """Fit a Shared Response Model to several networks' activity on the same images.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units_i, n_images)
        Activity of each network on the fit images (at least 2 networks).
    n_components : int, optional
        Number of shared features ``k``; default: the smallest network's unit
        count (see docs/analyses.md). Must not exceed that, nor ``n_images``.
    n_iter : int, default 10
        EM / alternating iterations (BrainIAK's default).
    random_state : int, default 0
        Seed of the random orthogonal initial maps (BrainIAK's ``rand_seed``).
    engine : {"fast", "jax", "brainiak"}
        Which SRM implementation fits (see the module docstring).

    Returns
    -------
    model : fitted SRM estimator
        With ``w_`` (list of arrays, element i of shape (n_units_i, k)) and
        ``s_`` (array of shape (k, n_images)).

    Raises
    ------
    ValueError
        Fewer than 2 networks, image counts that differ, non-finite values,
        a bad ``k`` or ``n_iter``, or an unknown engine.
    ImportError
        If the engine's package is not installed (see :func:`srm_class`).
    """
    Xs = as_network_list(Xs, min_networks=2, what="SRM")
    check_finite(Xs)
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    k = check_n_components(n_components, [X.shape[0] for X in Xs], Xs[0].shape[1])
    SRM = srm_class(engine)
    if engine == "brainiak":
        Xs = [np.asarray(X, dtype=np.float64) for X in Xs]  # the reference runs in float64
    log.info("fitting SRM (%s): %d networks, k=%d, %d images, %d iterations",
             engine, len(Xs), k, Xs[0].shape[1], n_iter)
    model = SRM(n_iter=int(n_iter), features=k, rand_seed=int(random_state),
                **_FAST_OPTIONS.get(engine, {}))
    model.fit(Xs)
    return model


def transform(model, Xs):
    """Map every network's activity into the shared space: ``S_i = W_iᵀ X_i``.

    Parameters
    ----------
    model : fitted SRM
        Anything with ``w_`` (list of arrays, element i of shape (n_units_i, k)).
    Xs : list of array, element i of shape (n_units_i, n_images)
        Activity of the same networks, in the same order, e.g. on held-out images.

    Returns
    -------
    Ss : list of array, element i of shape (k, n_images)
    """
    ws = getattr(model, "w_", None)
    if ws is None:
        raise ValueError("model is not fitted (it has no w_); call fit_srm first")
    if isinstance(Xs, np.ndarray) and Xs.ndim == 3:
        Xs = list(Xs)
    if len(Xs) != len(ws):
        raise ValueError(f"model was fitted on {len(ws)} networks but Xs has {len(Xs)}")
    out = []
    for i, (w, X) in enumerate(zip(ws, Xs)):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != w.shape[0]:
            raise ValueError(f"Xs[{i}] must have shape ({w.shape[0]}, n_images) to match the fitted "
                             f"map W_{i}, got {X.shape}")
        out.append(w.T.astype(np.result_type(w, X), copy=False) @ X)  # (k, n_images)
    return out


def variance_explained(Xs, ws, S, mu=None):
    """Share of each network's variance that the shared response reconstructs (docs/analyses.md).

    ``1 - mean((W_i S + mu_i - X_i)**2) / var(X_i)``, per network, with ``var``
    the variance of all of ``X_i``'s entries and ``mu_i = 0`` unless given.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units_i, n_images)
        Activity of each network.
    ws : list of array, element i of shape (n_units_i, k)
        The fitted maps ``W_i``.
    S : array of shape (k, n_images), or list of such arrays (one per network)
        Shared response. On held-out images the paper uses the mean of the
        networks' shared responses, ``S̄ = np.mean(transform(model, Xs), axis=0)``;
        the same ``S̄`` on the fit images gives a comparable fit value (what
        stage 3 reports). The model's own reconstruction of its fit images is
        ``s_`` with ``mu`` below.
    mu : list of array, element i of shape (n_units_i,), optional
        Per-unit means the model removed before fitting and that ``S`` does not
        contain. BrainIAK's probabilistic SRM demeans each unit over the fit
        images, so its ``s_`` reconstructs ``X_i - mu_i``: with ``S = s_`` pass
        ``model.mu_``, or each unit's mean counts as unexplained (a layer of
        ReLU units, whose means are large, would look badly fitted); but then
        each network's own means count as explained, shared or not. ``S̄``
        (from ``S_i = W_iᵀ X_i``) keeps the means, so with it pass nothing.

    Returns
    -------
    r2 : ndarray of float64, shape (n_subjects,)
        1 for a perfect reconstruction; can be negative for a poor one.
    """
    if isinstance(Xs, np.ndarray) and Xs.ndim == 3:
        Xs = list(Xs)
    if len(Xs) != len(ws):
        raise ValueError(f"Xs has {len(Xs)} networks but ws has {len(ws)} maps")
    per_subject = isinstance(S, (list, tuple)) or (isinstance(S, np.ndarray) and S.ndim == 3)
    if per_subject and len(S) != len(Xs):
        raise ValueError(f"S has {len(S)} shared responses but Xs has {len(Xs)} networks")
    if mu is not None and len(mu) != len(Xs):
        raise ValueError(f"mu has {len(mu)} mean vectors but Xs has {len(Xs)} networks")
    out = np.empty(len(Xs))
    for i, (X, w) in enumerate(zip(Xs, ws)):
        X = np.asarray(X, dtype=np.float64)
        S_i = np.asarray(S[i] if per_subject else S, dtype=np.float64)
        if w.shape[0] != X.shape[0] or w.shape[1] != S_i.shape[0] or S_i.shape[1] != X.shape[1]:
            raise ValueError(f"shapes do not fit W_{i} S ≈ X_{i}: W {w.shape}, S {S_i.shape}, X {X.shape}")
        resid = np.asarray(w, dtype=np.float64) @ S_i  # (n_units_i, n_images)
        resid -= X
        if mu is not None:
            m = np.asarray(mu[i], dtype=np.float64).reshape(-1)
            if m.shape[0] != X.shape[0]:
                raise ValueError(f"mu[{i}] has {m.shape[0]} entries but X_{i} has {X.shape[0]} units")
            resid += m[:, None]
        var = X.var()
        out[i] = 1.0 - np.mean(np.square(resid)) / var if var > 0 else np.nan
    return out


def variance_explained_leave_one_out(Xs, ws, Ss):
    """Variance explained with the shared response of the *other* networks, ``S̄_{-i}``.

    :func:`variance_explained` with ``S = S̄`` (the paper's measure) averages
    every network's shared response, network ``i``'s own included, so
    ``W_i S̄`` contains ``W_i S_i / N``, a share of ``X_i`` itself: with
    ``k = n_units`` (``W_i`` square, so ``W_i S_i = X_i``) even networks that
    share nothing score about ``1 / N``. Here network ``i`` is reconstructed
    from ``S̄_{-i} = mean_{j != i} S_j`` only, so unrelated networks score
    about ``-1 / (N - 1)`` on held-out images (a little higher on the fit
    images, which the fit aligns as well as it can, but below 0): a positive
    value is shared structure.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units_i, n_images)
        Activity of each network (at least 2).
    ws : list of array, element i of shape (n_units_i, k)
        The fitted maps ``W_i``.
    Ss : list of array, element i of shape (k, n_images)
        Every network's shared response, ``transform(model, Xs)``.

    Returns
    -------
    r2 : ndarray of float64, shape (n_subjects,)
        ``1 - mean((W_i S̄_{-i} - X_i)**2) / var(X_i)`` per network.
    """
    if isinstance(Ss, np.ndarray) and Ss.ndim == 3:
        Ss = list(Ss)
    if not isinstance(Ss, (list, tuple)) or len(Ss) < 2:
        raise ValueError(f"Ss must be a list of at least 2 shared responses (k, n_images), one per network; "
                         f"got {len(Ss) if isinstance(Ss, (list, tuple)) else type(Ss).__name__}")
    Ss = [np.asarray(S, dtype=np.float64) for S in Ss]
    shapes = {S.shape for S in Ss}
    if len(shapes) > 1:
        raise ValueError(f"every shared response must have the same shape (k, n_images); got {sorted(shapes)}")
    total = np.sum(Ss, axis=0)  # (k, n_images)
    others = [(total - S) / (len(Ss) - 1) for S in Ss]  # S̄_{-i}, each (k, n_images)
    return variance_explained(Xs, ws, others)

