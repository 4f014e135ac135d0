"""Orthogonal Procrustes shape distance between two networks (angular form).

Activity matrices are **units × images** (see :mod:`qmvpa`). The angular
Procrustes distance of Williams et al. (2021) — netrep's ``LinearMetric`` with
``alpha=1`` (rotations only) and ``score_method="angular"`` — between ``X``
(``p`` units × ``n`` images) and ``Y`` (``q`` units × the same images):

1. centre every unit across the images (``X̂ = X - mean over images``), and
   scale to unit Frobenius norm, ``‖X̂‖_F = ‖Ŷ‖_F = 1``;
2. if ``p != q``, pad the smaller with zero units to ``u = max(p, q)`` (zero
   units change neither norms nor inner products);
3. ``d(X, Y) = min over orthogonal Q (u × u) of arccos <X̂, Q Ŷ>``
   ``= arccos ‖X̂ Ŷᵀ‖_*`` (nuclear norm: sum of singular values), in [0, π/2]
   for centred data. It is a metric on shapes (symmetric, zero exactly for
   ``Y = c Q X + offset``, triangle inequality).

**Cross-validated form** (fit and held-out images): the rotation ``Q`` is fitted
on the fit images, ``X̂ Ŷᵀ = U Σ Vᵀ``, ``Q = U Vᵀ``, and the distance is
``arccos <X̂ₜ, Q Ŷₜ>`` on the held-out images, each held-out set centred across
its own images and scaled to unit norm. (netrep subtracts the fit images'
unit means from held-out data instead; with thousands of images the two
differ by the sampling error of those means.) This form is symmetric but not
a metric: an overfitted rotation does not transfer, so it is larger than the
same-images distance.

Only the block ``Q[:p, :q]`` (from the thin SVD of the ``p × q`` matrix
``X̂ Ŷᵀ``) matters for the distance; nothing is padded in memory. Cost per
pair: one ``p × q`` product over the images and one ``p × q`` SVD; products
run in the input's floating type. Near 0 the arccos amplifies rounding: an
exact copy gives about 1e-8 in float64 but about 1e-3 in float32, so compute
in float64 when networks are nearly identical.
"""

from __future__ import annotations

import logging

import numpy as np

from qmvpa._validation import as_matrix, as_network_list
import scipy.linalg

log = logging.getLogger(__name__)

__all__ = ["procrustes_rotation", "procrustes_distance", "pairwise_procrustes"]


# --------------------------------------------------------------------------- helpers

def _check_pair(X, Y, nx, ny):
    X, Y = as_matrix(X, nx), as_matrix(Y, ny)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"{nx} and {ny} must have the same number of images (columns): "
                         f"{nx} has {X.shape[1]}, {ny} has {Y.shape[1]}")
    if X.shape[1] < 2:
        raise ValueError(f"{nx} and {ny} need at least 2 images, got {X.shape[1]}")
    return X, Y


def _check_list(Xs, name):
    Xs = as_network_list(Xs, min_networks=2, name=name, what="a Procrustes distance matrix")
    n_images = [X.shape[1] for X in Xs]
    if n_images[0] < 2:
        raise ValueError(f"{name} needs at least 2 images, got {n_images[0]}")
    return Xs


def _normalised(X):
    """Each unit centred across images, whole matrix scaled to unit Frobenius norm.

    Returns None when ``X`` is constant across images: it has no shape.
    """
    Xc = X - X.mean(axis=1, keepdims=True)  # (n_units, n_images)
    norm = np.sqrt(float(np.einsum("ij,ij->i", Xc, Xc).sum(dtype=np.float64)))
    if norm <= np.finfo(Xc.dtype).tiny:
        return None
    Xc /= Xc.dtype.type(norm)
    return Xc


def _svd(M):
    """Thin SVD; LAPACK's gesdd, falling back to gesvd on its rare non-convergence."""
    try:
        return scipy.linalg.svd(M, full_matrices=False, check_finite=False)
    except np.linalg.LinAlgError:
        return scipy.linalg.svd(M, full_matrices=False, check_finite=False, lapack_driver="gesvd")


def _cross(A, B):
    dtype = np.result_type(A, B)
    return A.astype(dtype, copy=False) @ B.T.astype(dtype, copy=False)  # (p, q)


def _angle(cosine):
    return float(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _same_images_cosine(Xn, Yn):
    """``max_Q <X̂, QŶ> = ‖X̂ Ŷᵀ‖_*``."""
    s = scipy.linalg.svdvals(_cross(Xn, Yn), check_finite=False)
    return float(np.sum(s, dtype=np.float64))


def _heldout_cosine(M_fit, C_test):
    """``<X̂ₜ, Q Ŷₜ> = Σ Q[:p, :q] ⊙ X̂ₜŶₜᵀ`` with ``Q`` the rotation of ``M_fit = X̂ Ŷᵀ``.

    M_fit, C_test : (p, q) cross products of the normalised fit and held-out data.
    """
    U, _, Vt = _svd(M_fit)  # (p, r), (r,), (r, q)
    Q = U @ Vt  # (p, q): the block of the padded rotation the distance sees
    return float(np.einsum("ij,ij->i", Q, C_test).sum(dtype=np.float64))


def _nan(where):
    log.warning("Procrustes distance undefined for %s: a network is constant across images; NaN", where)
    return float("nan")


# --------------------------------------------------------------------------- public API

def procrustes_rotation(X, Y):
    """The orthogonal map that best aligns ``Y`` onto ``X`` after centring each unit.

    Solves ``max over orthogonal Q of <X̂, Q Ŷ>``, i.e. ``min ‖X̂ - Q Ŷ‖_F``
    (scaling does not change it): ``Q = U Vᵀ`` for the SVD ``X̂ Ŷᵀ = U Σ Vᵀ``.
    Equal to ``scipy.linalg.orthogonal_procrustes(Ŷ.T, X̂.T)[0].T``.

    Parameters
    ----------
    X : array-like, shape (n_units_x, n_images)
        Target network's activity.
    Y : array-like, shape (n_units_y, n_images)
        Activity to rotate, same images.

    Returns
    -------
    Q : ndarray, shape (u, u), ``u = max(n_units_x, n_units_y)``
        Orthogonal; apply to ``Y`` zero-padded to ``u`` units. With different
        unit counts only ``Q[:n_units_x, :n_units_y]`` is determined by the
        data; the rest is one valid completion.

    Raises
    ------
    ValueError
        ``X`` or ``Y`` not 2-D, or different image counts.
    """
    X, Y = _check_pair(X, Y, "X", "Y")
    u = max(X.shape[0], Y.shape[0])
    Xc = X - X.mean(axis=1, keepdims=True)
    Yc = Y - Y.mean(axis=1, keepdims=True)
    M = np.zeros((u, u), dtype=np.result_type(Xc, Yc))
    M[:X.shape[0], :Y.shape[0]] = _cross(Xc, Yc)  # (u, u), zero-padded
    U, _, Vt = np.linalg.svd(M)
    return U @ Vt



def procrustes_distance(X, Y, X_test=None, Y_test=None):
    """Angular Procrustes distance between two networks, on the same images or cross-validated.

    Parameters
    ----------
    X : array-like, shape (n_units_x, n_fit)
        Network A's activity on the images the rotation is fitted on.
    Y : array-like, shape (n_units_y, n_fit)
        Network B's activity on the same images (unit counts may differ).
    X_test : array-like, shape (n_units_x, n_test), optional
        Network A's activity on held-out images. Give both ``X_test`` and
        ``Y_test`` for the cross-validated distance, neither for the distance
        on the fit images.
    Y_test : array-like, shape (n_units_y, n_test), optional
        Network B's activity on the held-out images.

    Returns
    -------
    distance : float
        In radians, in [0, π/2] on the same images (0 for ``Y = c Q X + b``),
        in [0, π] cross-validated. NaN (logged) for a network constant across
        images.

    Raises
    ------
    ValueError
        Arrays not 2-D, image counts or unit counts that do not match, fewer
        than 2 images, or only one of ``X_test``, ``Y_test``.
    """
    X, Y = _check_pair(X, Y, "X", "Y")
    if (X_test is None) != (Y_test is None):
        raise ValueError("give both X_test and Y_test (cross-validated distance) or neither "
                         "(distance on the fit images)")
    Xn, Yn = _normalised(X), _normalised(Y)
    if X_test is None:
        if Xn is None or Yn is None:
            return _nan("X, Y")
        return _angle(_same_images_cosine(Xn, Yn))
    Xt, Yt = _check_pair(X_test, Y_test, "X_test", "Y_test")
    if Xt.shape[0] != X.shape[0] or Yt.shape[0] != Y.shape[0]:
        raise ValueError(f"held-out arrays must have the fit arrays' units: X {X.shape[0]} vs "
                         f"X_test {Xt.shape[0]}, Y {Y.shape[0]} vs Y_test {Yt.shape[0]}")
    Xtn, Ytn = _normalised(Xt), _normalised(Yt)
    if any(a is None for a in (Xn, Yn, Xtn, Ytn)):
        return _nan("X, Y (fit or held-out)")
    return _angle(_heldout_cosine(_cross(Xn, Yn), _cross(Xtn, Ytn)))


def pairwise_procrustes(Xs, Xs_test=None):
    """Angular Procrustes distance between every pair of networks, as a distance matrix.

    Parameters
    ----------
    Xs : sequence of array-like, element i of shape (n_units_i, n_fit)
        Each network's activity on the fit images (or an array of shape
        (n_networks, n_units, n_fit)).
    Xs_test : sequence of array-like, element i of shape (n_units_i, n_test), optional
        Each network's activity on held-out images: then every pair's rotation
        is fitted on ``Xs`` and the distance measured on ``Xs_test``.

    Returns
    -------
    D : ndarray of float64, shape (n_networks, n_networks)
        Symmetric, zero diagonal; ``D[i, j] = procrustes_distance(Xs[i], Xs[j],
        Xs_test[i], Xs_test[j])``.

    Raises
    ------
    ValueError
        Fewer than 2 networks, arrays not 2-D, image counts that differ, or a
        held-out list of another length or with other unit counts.
    """
    Xs = _check_list(Xs, "Xs")
    n = len(Xs)
    normed = [_normalised(X) for X in Xs]
    if Xs_test is not None:
        Xs_test = _check_list(Xs_test, "Xs_test")
        if len(Xs_test) != n:
            raise ValueError(f"Xs_test has {len(Xs_test)} networks but Xs has {n}")
        for i, (X, Xt) in enumerate(zip(Xs, Xs_test)):
            if X.shape[0] != Xt.shape[0]:
                raise ValueError(f"Xs_test[{i}] has {Xt.shape[0]} units but Xs[{i}] has {X.shape[0]}")
        normed_test = [_normalised(X) for X in Xs_test]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if normed[i] is None or normed[j] is None or (
                    Xs_test is not None and (normed_test[i] is None or normed_test[j] is None)):
                D[i, j] = _nan(f"networks {i}, {j}")
            elif Xs_test is None:
                D[i, j] = _angle(_same_images_cosine(normed[i], normed[j]))
            else:
                D[i, j] = _angle(_heldout_cosine(_cross(normed[i], normed[j]),
                                                 _cross(normed_test[i], normed_test[j])))
            D[j, i] = D[i, j]
    return D
