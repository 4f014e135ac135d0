"""Linear centred kernel alignment (CKA) between two networks' activity, biased and debiased.

Activity matrices are **units × images** (see :mod:`qmvpa`). For ``X``
(``p`` units × ``n`` images) and ``Y`` (``q`` units × the same ``n`` images),
with the linear kernels ``K = XᵀX`` and ``L = YᵀY`` (images × images),

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

(Kornblith et al. 2019). Two estimators of HSIC:

- **biased** (``debiased=False``): ``tr(K H L H) / (n - 1)²`` with the centring
  matrix ``H``. For linear kernels this is the RV coefficient; two independent
  random networks with many units per image get a CKA close to 1 (0.94 for
  1,000 units and 64 images), which is why the debiased form exists.
- **debiased** (``debiased=True``): the unbiased HSIC estimator of Song et al.
  (2012), with ``K̃``, ``L̃`` the kernels with their diagonals set to zero::

      HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))

  as used for debiased CKA by Nguyen, Raghu & Kornblith (2021) and Kornblith's
  reference code. Needs at least 4 images. Independent networks score about 0;
  the value can be slightly negative, and the self-terms can (rarely, with very
  few images) be negative, in which case CKA is undefined (NaN, logged).

Both are computed **in feature space**, never forming an images × images
matrix when units < images. The estimators are invariant to adding a constant
to a unit's activity, so each unit is first centred across images; then, with
``X`` and ``Y`` centred,

- ``tr(KL) = ‖X Yᵀ‖²_F`` (a ``p × q`` product, ``p q n`` multiply-adds),
- ``1ᵀK1 = ‖X 1‖² = 0`` and ``K1 = Xᵀ(X1) = 0``,
- ``diag(K) = d``, the squared column norms, so ``tr(K̃L̃) = tr(KL) - dᵀe``,
  ``1ᵀK̃1 = -‖X‖²_F`` and ``1ᵀK̃L̃1 = dᵀe``,

which gives (the common factor ``1 / (n(n-3))`` cancels in CKA)::

    n(n-3) HSIC₁ = ‖X Yᵀ‖²_F - n/(n-2) dᵀe + ‖X‖²_F ‖Y‖²_F / ((n-1)(n-2)).

When both networks have more units than images the images × images Gram
route, ``tr(KL) = Σ K ⊙ L``, is cheaper and is used instead. The large products
run in the input's floating type (float32 stays float32); every sum is taken
in float64.
"""

from __future__ import annotations

import logging

import numpy as np

from qmvpa._validation import as_matrix, as_network_list

log = logging.getLogger(__name__)

__all__ = ["linear_cka", "pairwise_cka"]

#: Fewest images each estimator is defined for.
MIN_IMAGES = {False: 2, True: 4}


# --------------------------------------------------------------------------- checks

def _check_images(n_images, debiased, what):
    need = MIN_IMAGES[bool(debiased)]
    if n_images < need:
        kind = "the debiased estimator" if debiased else "CKA"
        raise ValueError(f"{kind} needs at least {need} images, got {n_images} ({what})")


# --------------------------------------------------------------------------- building blocks

class _Centred:
    """One network's activity centred across images, with the terms CKA reuses.

    Attributes: ``Xc`` (n_units, n_images); ``d`` (n_images,) float64, the
    squared column norms (``diag(K)``); ``total`` = ``‖Xc‖²_F``; ``gram`` the
    images × images kernel, made only when asked for.
    """

    def __init__(self, X):
        self.Xc = X - X.mean(axis=1, keepdims=True)  # (n_units, n_images)
        self.d = np.einsum("ij,ij->j", self.Xc, self.Xc).astype(np.float64)  # (n_images,)
        self.total = float(self.d.sum())
        self._gram = None

    @property
    def n_units(self):
        return self.Xc.shape[0]

    @property
    def gram(self):
        if self._gram is None:
            self._gram = self.Xc.T @ self.Xc  # (n_images, n_images)
        return self._gram


def _sq_norm(M):
    """``‖M‖²_F`` summed in float64 (row dot products in M's type, then float64)."""
    return float(np.einsum("ij,ij->i", M, M).sum(dtype=np.float64))


def _feature_cross(Xc, Yc):
    """``‖Xc Ycᵀ‖²_F`` from the ``p × q`` product."""
    dtype = np.result_type(Xc, Yc)
    return _sq_norm(Xc.astype(dtype, copy=False) @ Yc.T.astype(dtype, copy=False))  # (p, q)


def _gram_cross(K, L):
    """``tr(KL) = Σ K ⊙ L`` for symmetric images × images kernels."""
    return float(np.einsum("ij,ij->i", K, L).sum(dtype=np.float64))


def _cross_term(a, b):
    """``tr(KL) = ‖Xc Ycᵀ‖²_F`` by the cheaper of the feature and Gram routes."""
    n = a.Xc.shape[1]
    p, q = a.n_units, b.n_units
    if p * q <= n * (p + q):
        return _feature_cross(a.Xc, b.Xc)
    return _gram_cross(a.gram, b.gram)


def _self_term(a):
    """``tr(K²) = ‖Xc Xcᵀ‖²_F``: a units × units product, or the Gram matrix if smaller."""
    n = a.Xc.shape[1]
    if a.n_units <= n:
        return _sq_norm(a.Xc @ a.Xc.T)  # (p, p)
    return _sq_norm(a.gram)


def _debias(cross, d_a, d_b, total_a, total_b):
    """``n(n-3)`` times the unbiased HSIC, from ``tr(KL)``, the kernels' diagonals and traces."""
    n = d_a.shape[0]
    return cross - n / (n - 2.0) * float(d_a @ d_b) + total_a * total_b / ((n - 1.0) * (n - 2.0))


def _hsic(cross, a, b, debiased):
    """HSIC up to a factor common to all pairs of the same images (cancels in CKA)."""
    return _debias(cross, a.d, b.d, a.total, b.total) if debiased else cross


def _ratio(hxy, hxx, hyy, where):
    denom = hxx * hyy
    if not np.isfinite(denom) or denom <= 0 or hxx <= 0 or hyy <= 0:
        log.warning("linear CKA undefined for %s: a network has no variance across images or a "
                    "negative debiased self-similarity (HSIC(K,K) = %.3g, HSIC(L,L) = %.3g); NaN",
                    where, hxx, hyy)
        return float("nan")
    return float(hxy / np.sqrt(denom))


# --------------------------------------------------------------------------- public API

def linear_cka(X, Y, debiased=False):
    """Linear CKA between two networks' activity on the same images.

    Parameters
    ----------
    X : array-like, shape (n_units_x, n_images)
        Activity of network A.
    Y : array-like, shape (n_units_y, n_images)
        Activity of network B on the same images, in the same order; the unit
        counts may differ.
    debiased : bool, default False
        False: the biased (plug-in) HSIC estimator, i.e. the RV coefficient;
        in [0, 1]. True: the unbiased HSIC estimator of Song et al. (2012)
        (debiased CKA); about 0 for independent networks, can be negative.

    Returns
    -------
    cka : float
        1 for ``Y = c Q X`` (``Q`` with orthonormal columns, ``c != 0``); NaN
        (logged) when a network is constant across images or a debiased
        self-term is not positive.

    Raises
    ------
    ValueError
        ``X`` or ``Y`` not 2-D, different image counts, or fewer than 2 images
        (4 for ``debiased=True``).
    """
    X, Y = as_matrix(X, "X"), as_matrix(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same number of images (columns): "
                         f"X has {X.shape[1]}, Y has {Y.shape[1]}")
    _check_images(X.shape[1], debiased, "X and Y")
    a, b = _Centred(X), _Centred(Y)
    hxy = _hsic(_cross_term(a, b), a, b, debiased)
    hxx = _hsic(_self_term(a), a, a, debiased)
    hyy = _hsic(_self_term(b), b, b, debiased)
    return _ratio(hxy, hxx, hyy, "X, Y")


def pairwise_cka(Xs, debiased=False):
    """Linear CKA between every pair of networks (each network's terms computed once).

    Parameters
    ----------
    Xs : sequence of array-like, element i of shape (n_units_i, n_images)
        Activity of each network on the same images (unit counts may differ);
        or an array of shape (n_networks, n_units, n_images).
    debiased : bool, default False
        As in :func:`linear_cka`.

    Returns
    -------
    pairs : ndarray of int, shape (n_pairs, 2)
        ``(i, j)`` with ``i < j`` in lexicographic order, ``n_pairs = n(n-1)/2``
        (as :func:`qmvpa.rsa.pairwise_consistency`).
    values : ndarray of float64, shape (n_pairs,)
        ``linear_cka(Xs[i], Xs[j], debiased)`` for each pair.

    Raises
    ------
    ValueError
        Fewer than 2 networks, an array not 2-D, image counts that differ, or
        too few images for the estimator.
    """
    Xs = as_network_list(Xs, min_networks=2, what="pairwise CKA")
    _check_images(Xs[0].shape[1], debiased, "Xs")
    cents = [_Centred(X) for X in Xs]
    selfs = [_hsic(_self_term(c), c, c, debiased) for c in cents]
    n = len(Xs)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=int)  # (n_pairs, 2)
    values = np.array([_ratio(_hsic(_cross_term(cents[i], cents[j]), cents[i], cents[j], debiased),
                              selfs[i], selfs[j], f"networks {i}, {j}") for i, j in pairs])
    return pairs, values
