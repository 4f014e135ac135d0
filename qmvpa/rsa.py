"""Representational similarity analysis: within- and inter-network RSMs, and comparing RSMs.

Activity matrices are **units × images** (see :mod:`qmvpa`); an RSM is
**images × images**, entry ``[a, b]`` the Pearson correlation between the
activity vectors (columns) of images ``a`` and ``b``.

Every RSM is one matrix product of z-scored columns, ``Zᵀ Z / n_units``, in the
input's floating type (float32 stays float32: the correlations are sums of
``n_units`` products of numbers of order 1, accurate to about 1e-6). Second-order
statistics (:func:`rsm_similarity`, :func:`pairwise_consistency`) are computed in
float64.

The functions (formulas in docs/analyses.md):

- :func:`within_rsm` — wRSM of one network; :func:`mean_within_rsm` averages over networks;
- :func:`inter_subject_rsm` — the leave-one-out iRSM: network ``i``'s image vectors
  correlated with the mean of the other networks' vectors, averaged over ``i``;
- :func:`rsm_similarity` — Pearson, Spearman or Kendall correlation between two RSMs'
  strict lower triangles (diagonal excluded), see :func:`lower_triangle`;
- :func:`pairwise_consistency` — that similarity for every pair of networks;
- :func:`inter_subject_correlation` — the classic leave-one-out ISC per feature;
- :func:`class_mean_rsm` — the RSM of class-mean patterns (the original study's
  RSM grid: images sorted by class and averaged in windows of one class).

A column with no variance across units (an image no unit responds to) has no
defined correlation; here it correlates 0 with everything, itself included,
instead of producing NaN.
"""

from __future__ import annotations

import logging

import numpy as np

from qmvpa._validation import as_matrix, as_network_list, check_same_units
from qmvpa.preproc import zscore_images

log = logging.getLogger(__name__)

__all__ = [
    "within_rsm",
    "mean_within_rsm",
    "cross_rsm",
    "inter_subject_rsm",
    "lower_triangle",
    "rsm_similarity",
    "pairwise_consistency",
    "inter_subject_correlation",
    "class_mean_rsm",
    "SIMILARITY_METHODS",
]

SIMILARITY_METHODS = ("pearson", "spearman", "kendall")


# --------------------------------------------------------------------------- helpers

def _zscore_columns(X):
    """Columns centred and scaled to unit length (so ``A.T @ B`` is the column correlation matrix).

    Shape in = shape out = (n_units, n_images); a constant column becomes zeros.
    """
    return zscore_images(X, unit_norm=True)


# --------------------------------------------------------------------------- RSMs

def within_rsm(X):
    """Within-network RSM: correlations between the images' activity vectors.

    Parameters
    ----------
    X : array-like, shape (n_units, n_images)
        Activity of one network.

    Returns
    -------
    rsm : ndarray, shape (n_images, n_images)
        ``rsm[a, b] = corr(X[:, a], X[:, b])``, in ``X``'s floating type;
        equal to ``np.corrcoef(X.T)`` for non-constant columns.
    """
    X = as_matrix(X)
    Z = _zscore_columns(X)  # (n_units, n_images)
    return Z.T @ Z  # (n_images, n_images)


def mean_within_rsm(Xs):
    """Mean over networks of their within-network RSMs (the paper's wRSM).

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units_i, n_images)
        Activity of each network (unit counts may differ).

    Returns
    -------
    rsm : ndarray, shape (n_images, n_images)
    """
    Xs = as_network_list(Xs, min_networks=1)
    total = within_rsm(Xs[0])
    for X in Xs[1:]:
        total += within_rsm(X)
    total /= len(Xs)
    return total


def cross_rsm(X, Y):
    """RSM between two activity matrices: ``rsm[a, b] = corr(X[:, a], Y[:, b])``.

    Parameters
    ----------
    X, Y : array-like, shape (n_units, n_images_x) and (n_units, n_images_y)
        Same units (rows) in both.

    Returns
    -------
    rsm : ndarray, shape (n_images_x, n_images_y)
        Not symmetric in general.
    """
    X, Y = as_matrix(X, "X"), as_matrix(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same units (rows): {X.shape[0]} != {Y.shape[0]}")
    return _zscore_columns(X).T @ _zscore_columns(Y)


def inter_subject_rsm(Xs, symmetrize=False):
    """Leave-one-out inter-network RSM (the paper's iRSM).

    For each network ``i``, ``R_i[a, b] = corr(X_i[:, a], M_i[:, b])`` where
    ``M_i`` is the mean of the other networks' activity; the iRSM is the mean of
    the ``R_i``. Only meaningful where units correspond across networks (the
    shared space); in the native space it shows how little they do.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units, n_images)
        At least 2 networks, all with the same units and images.
    symmetrize : bool, default False
        ``R_i`` is not symmetric (row image from network ``i``, column image
        from the others). By default the result is returned as is, like the
        original ``qmvpa.rsa.inter_RSMs``; its strict lower triangle is what
        :func:`rsm_similarity` compares. With ``True``, ``(R + Rᵀ) / 2``.

    Returns
    -------
    rsm : ndarray, shape (n_images, n_images)
        Its diagonal is each image's correlation with itself across networks
        (not 1).
    """
    Xs = as_network_list(Xs, min_networks=2, what="an inter-network analysis")
    check_same_units(Xs, "inter_subject_rsm")
    n = len(Xs)
    dtype = np.result_type(*Xs)
    total = np.zeros(Xs[0].shape, dtype=dtype)  # (n_units, n_images)
    for X in Xs:
        total += X
    rsm = None
    for X in Xs:
        others = (total - X) / (n - 1)  # (n_units, n_images)
        r = _zscore_columns(X.astype(dtype, copy=False)).T @ _zscore_columns(others)
        rsm = r if rsm is None else rsm.__iadd__(r)
    rsm /= n
    if symmetrize:
        rsm = (rsm + rsm.T) / 2
    return rsm


# --------------------------------------------------------------------------- comparing RSMs

def lower_triangle(M):
    """Strict lower triangle of a square matrix, diagonal excluded, row by row.

    Parameters
    ----------
    M : array-like, shape (n, n)

    Returns
    -------
    v : ndarray, shape (n * (n - 1) / 2,)
    """
    M = np.asarray(M)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"expected a square matrix (n, n), got shape {M.shape}")
    return M[np.tril_indices(M.shape[0], k=-1)]


def _check_pair(A, B):
    A, B = np.asarray(A), np.asarray(B)
    if A.shape != B.shape:
        raise ValueError(f"the two RSMs must have the same shape, got {A.shape} and {B.shape}")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 3:
        raise ValueError(f"expected square RSMs of at least 3 × 3 images, got shape {A.shape}")
    return A, B


def _pearson(a, b):
    a = a.astype(np.float64) - a.mean(dtype=np.float64)
    b = b.astype(np.float64) - b.mean(dtype=np.float64)
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    if denom == 0:
        log.warning("rsm_similarity: an RSM's lower triangle is constant; correlation undefined (NaN)")
        return float("nan")
    return float(np.dot(a, b) / denom)


def _spearman(a, b):
    from scipy.stats import rankdata

    return _pearson(rankdata(a), rankdata(b))


def _kendall(a, b):
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)  # tau-b (ties corrected)


_METHODS = {"pearson": _pearson, "spearman": _spearman, "kendall": _kendall}


def rsm_similarity(A, B, method="pearson"):
    """Second-order similarity of two RSMs: correlation of their strict lower triangles.

    Parameters
    ----------
    A, B : array-like, shape (n_images, n_images)
        Two RSMs over the same images. Only the strict lower triangles are used.
    method : {"pearson", "spearman", "kendall"}, default "pearson"
        Pearson r (linear); Spearman ρ (Pearson r of ranks, average rank for
        ties); Kendall τ-b (``scipy.stats.kendalltau``).

    Returns
    -------
    r : float
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {SIMILARITY_METHODS}, got {method!r}")
    A, B = _check_pair(A, B)
    return _METHODS[method](lower_triangle(A), lower_triangle(B))


def pairwise_consistency(rsms, method="pearson"):
    """Second-order similarity between every pair of networks' RSMs (consistency).

    Parameters
    ----------
    rsms : sequence of array, each of shape (n_images, n_images), or array (n_networks, n_images, n_images)
        One RSM per network, e.g. the within-network RSMs.
    method : {"pearson", "spearman", "kendall"}, default "pearson"
        As in :func:`rsm_similarity`.

    Returns
    -------
    pairs : ndarray of int, shape (n_pairs, 2)
        ``(i, j)`` with ``i < j``, in lexicographic order; ``n_pairs = n(n-1)/2``.
    values : ndarray of float64, shape (n_pairs,)
        ``rsm_similarity(rsms[i], rsms[j], method)`` for each pair.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {SIMILARITY_METHODS}, got {method!r}")
    n = len(rsms)
    if n < 2:
        raise ValueError(f"need at least 2 RSMs to compare, got {n}")
    for r in rsms[1:]:
        _check_pair(rsms[0], r)
    _check_pair(rsms[0], rsms[0])
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=int)  # (n_pairs, 2)
    if method == "kendall":
        tri = [lower_triangle(r) for r in rsms]
        values = np.array([_kendall(tri[i], tri[j]) for i, j in pairs])
        return pairs, values
    # Pearson (of ranks for Spearman) of all pairs at once: one (n, m) @ (m, n) product.
    T = np.stack([lower_triangle(r).astype(np.float64) for r in rsms])  # (n, m)
    if method == "spearman":
        from scipy.stats import rankdata

        T = rankdata(T, axis=1)
    T -= T.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.sum(T * T, axis=1, keepdims=True))  # (n, 1)
    if np.any(norm == 0):
        log.warning("pairwise_consistency: a constant RSM lower triangle; its correlations are NaN")
    with np.errstate(invalid="ignore", divide="ignore"):
        T /= norm
    C = T @ T.T  # (n, n)
    return pairs, C[pairs[:, 0], pairs[:, 1]]


def inter_subject_correlation(Xs):
    """Leave-one-out inter-subject correlation (ISC) of every feature.

    For network ``i`` and feature (row) ``f``: the Pearson correlation, across
    images, between ``X_i[f]`` and the mean over the other networks of their
    ``X_j[f]``. Meaningful where rows correspond across networks, e.g. shared
    responses ``S_i = W_iᵀ X_i``.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_features, n_images)
        At least 2 networks with the same features and images.

    Returns
    -------
    isc : ndarray, shape (n_subjects, n_features)
        A feature that is constant for a network has ISC 0.
    """
    Xs = as_network_list(Xs, min_networks=2, what="an inter-network analysis")
    check_same_units(Xs, "inter_subject_correlation")
    n = len(Xs)
    total = np.sum(Xs, axis=0, dtype=np.result_type(*Xs))  # (n_features, n_images)
    out = np.empty((n, Xs[0].shape[0]), dtype=np.result_type(*Xs))
    for i, X in enumerate(Xs):
        others = (total - X) / (n - 1)
        # Rows: transpose, z-score columns, product summed over images.
        out[i] = np.sum(_zscore_columns(X.T) * _zscore_columns(others.T), axis=0)
    return out


def class_mean_rsm(X, labels):
    """RSM of the class-mean activity patterns: ``corr(mean of class a, mean of class b)``.

    The original study's RSM grid (``show_within_network_RSMs.ipynb``) sorted
    all test images by class, averaged them in non-overlapping windows of one
    class's size and correlated the windows' patterns (``np.corrcoef``); with
    classes of equal size that is this matrix.

    Parameters
    ----------
    X : array-like, shape (n_units, n_images)
        Activity of one network.
    labels : array-like, shape (n_images,)
        Class of every image (column).

    Returns
    -------
    rsm : ndarray of float64, shape (n_classes, n_classes)
        Classes in sorted order; ``rsm[a, b]`` the Pearson correlation, across
        units, of the mean patterns of classes ``a`` and ``b``.
    classes : ndarray, shape (n_classes,)
        The sorted classes.
    """
    X = as_matrix(X)
    labels = np.asarray(labels)
    if labels.shape != (X.shape[1],):
        raise ValueError(f"labels must have one entry per image (column), {X.shape[1]}; got shape {labels.shape}")
    classes, index = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"labels must hold at least 2 classes, got {len(classes)}")
    onehot = np.zeros((X.shape[1], len(classes)))
    onehot[np.arange(X.shape[1]), index] = 1.0 / np.bincount(index)[index]  # (n_images, n_classes)
    means = X.astype(np.float64, copy=False) @ onehot  # (n_units, n_classes) class means
    return within_rsm(means), classes
