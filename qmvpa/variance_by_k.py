"""Variance explained as a function of the number of shared features ``k``, with a per-network PCA baseline.

Activity matrices are **units × images** (see :mod:`qmvpa`). For every ``k`` of
a list, :func:`variance_explained_by_k` fits SRM on the fit images and reports,
per network, the share of variance the shared space reconstructs on the fit
and on the held-out images; beside it, :func:`pca_variance_explained` gives
what the network's own ``k`` principal components (fitted on its fit images)
explain of the same images. PCA is the best any ``k``-dimensional linear
summary of one network can do on its fit images; SRM's ``k`` features must in
addition be shared by all networks, so the gap between the curves is what
sharing costs.

This is the original study's ``compute_var_exp_srm`` / ``tune_srm`` and
``fit_pca`` / ``fit_pca_thresholded`` (``qmvpa/factor.py`` there), with these
differences:

- the original traced only the fit images' curve (its docstring promised the
  held-out one); both are reported here;
- the original's SRM curve reconstructed each network from its *own*
  projection, ``W_i W_iᵀ X_i`` (``calc_srm_var_exp`` with the network's own
  transformed data), while its figures (``show_variance_explained.ipynb``)
  used the mean shared response ``S̄`` of all networks. ``reconstruction``
  selects either, or the leave-one-out ``S̄_{-i}`` of
  :func:`qmvpa.factor.variance_explained_leave_one_out`;
- ``fit_pca_thresholded`` took the 0-based *index* of the first component
  whose cumulative explained-variance ratio passed the threshold as ``k``, one
  component too few (and 0 when the first component alone passed);
  :func:`smallest_k_reaching` returns the ``k`` itself.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from qmvpa import factor

log = logging.getLogger(__name__)

__all__ = ["RECONSTRUCTIONS", "VarianceByK", "variance_explained_by_k", "pca_variance_explained",
           "smallest_k_reaching"]

#: How :func:`variance_explained_by_k` reconstructs network ``i`` from the shared space.
RECONSTRUCTIONS = ("mean", "leave_one_out", "own")


@dataclasses.dataclass(frozen=True)
class VarianceByK:
    """Variance explained per ``k`` and network (see :func:`variance_explained_by_k`).

    Attributes
    ----------
    ks : ndarray of int, shape (n_ks,)
    srm_fit, srm_heldout : ndarray of float64, shape (n_ks, n_networks)
        SRM's reconstruction on the fit and the held-out images.
    pca_fit, pca_heldout : ndarray of float64, shape (n_ks, n_networks)
        Each network's own ``k`` principal components, fitted on its fit images.
    reconstruction : str
        One of :data:`RECONSTRUCTIONS`.
    """

    ks: np.ndarray
    srm_fit: np.ndarray
    srm_heldout: np.ndarray
    pca_fit: np.ndarray
    pca_heldout: np.ndarray
    reconstruction: str


def _check_ks(ks, n_units, n_fit_images):
    ks = np.atleast_1d(np.asarray(ks))
    if ks.ndim != 1 or ks.size == 0:
        raise ValueError(f"ks must be a non-empty list of positive integers, got {ks.tolist()!r}")
    limit = min(min(n_units), n_fit_images)
    for k in ks.tolist():
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ks must hold positive integers, got {k!r}")
        if k > limit:
            raise ValueError(f"k = {k} is larger than min(units, fit images) = min({min(n_units)}, "
                             f"{n_fit_images}); every k must be <= {limit}")
    return ks.astype(int)


def _check_pair_of_lists(Xs_fit, Xs_heldout):
    Xs_fit = [np.asarray(X) for X in Xs_fit]
    Xs_heldout = [np.asarray(X) for X in Xs_heldout]
    if len(Xs_fit) != len(Xs_heldout):
        raise ValueError(f"Xs_fit has {len(Xs_fit)} networks but Xs_heldout has {len(Xs_heldout)}")
    for i, (F, H) in enumerate(zip(Xs_fit, Xs_heldout)):
        if F.ndim != 2 or H.ndim != 2 or F.shape[0] != H.shape[0]:
            raise ValueError(f"network {i}: fit and held-out activity must be 2-D (n_units, n_images) with "
                             f"the same units, got {F.shape} and {H.shape}")
    return Xs_fit, Xs_heldout


def _r2(X, reconstruction):
    """``1 - mean((reconstruction - X)**2) / var(X)``, the measure of :func:`qmvpa.factor.variance_explained`."""
    var = X.var()
    return 1.0 - np.mean(np.square(reconstruction - X)) / var if var > 0 else np.nan


def pca_variance_explained(X_fit, X_heldout, ks):
    """Variance of one network's fit and held-out images explained by its first ``k`` principal components.

    PCA as scikit-learn's (``PCA(k).fit(X_fit.T)``): units are the features,
    each centred on its mean over the fit images; an image ``x`` is
    reconstructed as ``m + U_k U_kᵀ (x - m)``. The score is that of
    :func:`qmvpa.factor.variance_explained`, ``1 - mean(residual**2) / var(X)``.
    Both curves are non-decreasing in ``k`` (nested projections).

    Parameters
    ----------
    X_fit : array, shape (n_units, n_fit_images)
    X_heldout : array, shape (n_units, n_heldout_images)
    ks : sequence of int
        Each ``<= min(n_units, n_fit_images)``.

    Returns
    -------
    fit, heldout : ndarray of float64, shape (n_ks,)
    """
    (X_fit,), (X_heldout,) = _check_pair_of_lists([X_fit], [X_heldout])
    ks = _check_ks(ks, [X_fit.shape[0]], X_fit.shape[1])
    X_fit = X_fit.astype(np.float64)
    X_heldout = X_heldout.astype(np.float64)
    mean = X_fit.mean(axis=1, keepdims=True)  # (n_units, 1)
    U, _, _ = np.linalg.svd(X_fit - mean, full_matrices=False)  # (n_units, min(n_units, n_fit_images))
    out = np.empty((2, len(ks)))
    for j, X in enumerate((X_fit, X_heldout)):
        coords = U[:, :ks.max()].T @ (X - mean)  # (k_max, n_images)
        for a, k in enumerate(ks):
            out[j, a] = _r2(X, mean + U[:, :k] @ coords[:k])
    return out[0], out[1]


def variance_explained_by_k(Xs_fit, Xs_heldout, ks, reconstruction="mean", n_iter=10, random_state=0,
                            engine=factor.DEFAULT_ENGINE):
    """SRM's variance explained on fit and held-out images for every ``k``, beside per-network PCA.

    Parameters
    ----------
    Xs_fit : list of array, element i of shape (n_units_i, n_fit_images)
        Every network's activity on the images SRM is fitted on (at least 2 networks).
    Xs_heldout : list of array, element i of shape (n_units_i, n_heldout_images)
        The same networks on the held-out images.
    ks : sequence of int
        Numbers of shared features; each ``<= min(units of every network, n_fit_images)``.
    reconstruction : {"mean", "leave_one_out", "own"}, default "mean"
        How network ``i`` is rebuilt from the shared space: ``W_i S̄`` with ``S̄``
        the mean of all networks' ``S_j = W_jᵀ X_j`` (the paper's figures);
        ``W_i S̄_{-i}``, the mean over ``j != i``
        (:func:`qmvpa.factor.variance_explained_leave_one_out`); or
        ``W_i W_iᵀ X_i``, the network's own projection (the original's
        ``compute_var_exp_srm``). On each image set, ``S_j`` are that set's.
    n_iter, random_state, engine
        Passed to :func:`qmvpa.factor.fit_srm`.

    Returns
    -------
    VarianceByK
        ``srm_fit``, ``srm_heldout``, ``pca_fit``, ``pca_heldout``, each of
        shape (n_ks, n_networks).

    Raises
    ------
    ValueError
        A ``k`` larger than the units of the smallest network or than the fit
        images (the message names the ``k``, the units and the fit images), an
        unknown ``reconstruction``, mismatched networks.
    """
    if reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
    Xs_fit, Xs_heldout = _check_pair_of_lists(Xs_fit, Xs_heldout)
    if len(Xs_fit) < 2:
        raise ValueError(f"SRM needs at least 2 networks, got {len(Xs_fit)}")
    ks = _check_ks(ks, [X.shape[0] for X in Xs_fit], Xs_fit[0].shape[1])
    n = len(Xs_fit)
    srm = np.empty((2, len(ks), n))
    for a, k in enumerate(ks):
        model = factor.fit_srm(Xs_fit, n_components=int(k), n_iter=n_iter, random_state=random_state,
                               engine=engine)
        for j, Xs in enumerate((Xs_fit, Xs_heldout)):
            Ss = factor.transform(model, Xs)  # n × (k, n_images)
            if reconstruction == "mean":
                srm[j, a] = factor.variance_explained(Xs, model.w_, np.mean(Ss, axis=0))
            elif reconstruction == "leave_one_out":
                srm[j, a] = factor.variance_explained_leave_one_out(Xs, model.w_, Ss)
            else:
                srm[j, a] = factor.variance_explained(Xs, model.w_, Ss)
        log.info("k = %d: SRM variance explained %.3f (fit), %.3f (held out)", k, srm[0, a].mean(),
                 srm[1, a].mean())
    pca = np.empty((2, len(ks), n))
    for i, (F, H) in enumerate(zip(Xs_fit, Xs_heldout)):
        pca[0, :, i], pca[1, :, i] = pca_variance_explained(F, H, ks)
    return VarianceByK(ks=ks, srm_fit=srm[0], srm_heldout=srm[1], pca_fit=pca[0], pca_heldout=pca[1],
                       reconstruction=reconstruction)


def smallest_k_reaching(ks, values, threshold):
    """The first ``k`` whose value exceeds ``threshold``, else the last ``k`` (the original's ``chose_n_components``).

    Parameters
    ----------
    ks : sequence of int, shape (n_ks,)
        Increasing.
    values : array-like, shape (n_ks,)
        E.g. ``VarianceByK.srm_fit.mean(axis=1)``, or a PCA curve.
    threshold : float

    Returns
    -------
    k : int
    """
    ks = np.asarray(ks)
    values = np.asarray(values, dtype=np.float64)
    if ks.ndim != 1 or values.shape != ks.shape or ks.size == 0:
        raise ValueError(f"ks and values must be 1-D of the same non-zero length, got shapes {ks.shape} "
                         f"and {values.shape}")
    above = np.flatnonzero(values > threshold)
    return int(ks[above[0]] if above.size else ks[-1])
