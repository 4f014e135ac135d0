"""Pairwise comparisons of networks: inter-subject correlations and the original's Procrustes disparity matrix.

Activity matrices are **units × images** (see :mod:`qmvpa`). The original
study's ``qmvpa/rsa.py`` had these pairwise measures beside its RSA code
(``isc``, ``isc_pairwise``, ``inter_procrustes``):

- :func:`cross_correlation` — every unit of one network correlated, across
  images, with every unit of another (the original ``isc``'s ``isc_ij``);
- :func:`pairwise_isc` — for every pair of networks, the correlation of
  matching features (the diagonal of :func:`cross_correlation`): meaningful
  where features correspond across networks, e.g. shared responses
  ``S_i = W_iᵀ X_i``. :func:`qmvpa.rsa.inter_subject_correlation` is the
  leave-one-out variant (each network against the mean of the others);
- :func:`pairwise_mean_cross_correlation` — what the original
  ``isc_pairwise`` summarised each pair by: the mean of *all* entries of the
  cross-correlation matrix (matching and non-matching units alike);
- :func:`procrustes_disparity_matrix` — the original ``inter_procrustes``:
  ``scipy.spatial.procrustes`` disparity between every pair of activity
  matrices, passed as they are. SciPy treats **rows as points** and columns
  as dimensions, so with units × images the *units* are the points, unit
  ``u`` of one network is paired with unit ``u`` of the other, and the fit
  rotates (and reflects, translates, scales) the *image* space. The disparity
  is therefore not invariant to rotating or permuting a network's units: it
  says how far apart two networks are when their units are assumed to
  correspond (the shared space), not a rotation-invariant shape distance
  between representations.

A feature that does not vary across images has no defined correlation; here
it correlates 0 with everything (NumPy's ``corrcoef`` gives NaN).
"""

from __future__ import annotations

import logging

import numpy as np

from qmvpa._validation import as_matrix, as_network_list

log = logging.getLogger(__name__)

__all__ = ["cross_correlation", "pairwise_isc", "pairwise_mean_cross_correlation",
           "procrustes_disparity_matrix"]


def _as_2d(X, name):
    return as_matrix(X, name).astype(np.float64, copy=False)


def _check_networks(Xs, same_units):
    Xs = [X.astype(np.float64, copy=False)
          for X in as_network_list(Xs, min_networks=2, what="an inter-subject comparison")]
    if same_units:
        units = [X.shape[0] for X in Xs]
        if len(set(units)) > 1:
            raise ValueError(f"{same_units} pairs unit u of one network with unit u of another, so every "
                             f"network needs the same number of units; got {units}")
    return Xs


def _zscore_rows(X):
    """Rows centred and scaled to unit norm, shape (n_units, n_images); a constant row becomes 0."""
    Z = X - X.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.sum(np.square(Z), axis=1, keepdims=True))  # (n_units, 1)
    norm[norm <= np.finfo(Z.dtype).tiny] = np.inf
    return Z / norm


def _pairs(n):
    return np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=int).reshape(-1, 2)


def cross_correlation(X, Y):
    """Pearson correlation, across images, of every unit of ``X`` with every unit of ``Y``.

    Parameters
    ----------
    X : array, shape (n_units_x, n_images)
    Y : array, shape (n_units_y, n_images)

    Returns
    -------
    corr : ndarray of float64, shape (n_units_x, n_units_y)
        ``corr[u, v] = corr(X[u], Y[v])``; equal to
        ``np.corrcoef(X, Y)[:n_units_x, n_units_x:]`` for non-constant rows.
    """
    X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same images (columns): {X.shape[1]} != {Y.shape[1]}")
    return _zscore_rows(X) @ _zscore_rows(Y).T  # (n_units_x, n_units_y)


def pairwise_isc(Xs):
    """Inter-subject correlation of matching features for every pair of networks.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_features, n_images)
        At least 2 networks with the same features (rows) and images.

    Returns
    -------
    pairs : ndarray of int, shape (n_pairs, 2)
        ``(i, j)`` with ``i < j``, in lexicographic order.
    isc : ndarray of float64, shape (n_pairs, n_features)
        ``isc[p, f] = corr(Xs[i][f], Xs[j][f])`` across images for pair ``p = (i, j)``.
    """
    Xs = _check_networks(Xs, same_units="pairwise_isc")
    Z = [_zscore_rows(X) for X in Xs]
    pairs = _pairs(len(Xs))
    isc = np.array([np.sum(Z[i] * Z[j], axis=1) for i, j in pairs])  # (n_pairs, n_features)
    return pairs, isc


def pairwise_mean_cross_correlation(Xs):
    """The original ``isc_pairwise`` summary: mean of every unit-by-unit correlation, per pair.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units_i, n_images)
        At least 2 networks (unit counts may differ).

    Returns
    -------
    pairs : ndarray of int, shape (n_pairs, 2)
        ``(i, j)`` with ``i < j``.
    values : ndarray of float64, shape (n_pairs,)
        ``cross_correlation(Xs[i], Xs[j]).mean()``.
    """
    Xs = _check_networks(Xs, same_units=False)
    # mean_uv corr(u, v) = (sum_u z_u) . (sum_v z_v) / (n_u n_v): no n_u × n_v matrix needed.
    sums = [_zscore_rows(X).sum(axis=0) for X in Xs]  # each (n_images,)
    pairs = _pairs(len(Xs))
    values = np.array([sums[i] @ sums[j] / (Xs[i].shape[0] * Xs[j].shape[0]) for i, j in pairs])
    return pairs, values


def procrustes_disparity_matrix(Xs):
    """``scipy.spatial.procrustes`` disparity between every pair of networks (the original ``inter_procrustes``).

    Each matrix is centred (column means removed: the mean over units of
    every image) and scaled to unit Frobenius norm; the disparity of ``A`` and
    ``B`` is the sum of squared differences after the best rotation, reflection
    and scaling of ``B``'s columns, ``1 - (sum of singular values of AᵀB)²``,
    in [0, 1]. Rows (units) are the points and are paired by index: see the
    module docstring for what that means.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units, n_images)
        At least 2 networks with the same units and images.

    Returns
    -------
    D : ndarray of float64, shape (n_networks, n_networks)
        Symmetric, zero diagonal; ``D[i, j] = scipy.spatial.procrustes(Xs[i], Xs[j])[2]``.
        (The original filled only the lower triangle.)

    Raises
    ------
    ValueError
        Fewer than 2 networks, shapes that differ, or a network whose rows are
        all the same point (nothing to align).
    """
    Xs = _check_networks(Xs, same_units="procrustes_disparity_matrix")
    standard = []
    for i, X in enumerate(Xs):
        A = X - X.mean(axis=0, keepdims=True)  # (n_units, n_images)
        norm = np.linalg.norm(A)
        if norm == 0:
            raise ValueError(f"Xs[{i}]: all rows (units) are the same point, so there is nothing to "
                             f"align (scipy.spatial.procrustes needs more than one unique point)")
        standard.append(A / norm)
    n = len(Xs)
    D = np.zeros((n, n))
    for i, j in _pairs(n):
        nuclear = np.linalg.svd(standard[i].T @ standard[j], compute_uv=False).sum()  # of (n_images, n_images)
        D[i, j] = D[j, i] = max(1.0 - nuclear ** 2, 0.0)  # round-off can dip below 0
    return D
