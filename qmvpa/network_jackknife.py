"""Leave-one-network-out versions of the inter-network RSMs, for jackknife intervals over networks.

Activity matrices are **units × images**, RSMs **images × images** (see
:mod:`qmvpa`). The headline statistics, e.g. r(shared iRSM, mean wRSM),
depend on all ``N`` networks at once: the iRSM correlates each network with
the mean of the others. A jackknife over networks (:mod:`qmvpa.intervals`)
needs the statistic recomputed without each network ``j`` in turn, i.e. the
iRSM of the other ``N - 1`` networks, ``iRSM^{(-j)}``, for every ``j``.

:func:`leave_one_out_irsms` computes all ``N`` of them. Written out,
``iRSM^{(-j)} = mean_{i != j} corr(X_i, M_i^{(-j)})`` with ``M_i^{(-j)}``
the mean of the networks other than ``i`` and ``j``. Correlations of image
columns only need the columns centred across units (a linear operation), so
with ``X̃_i`` the column-centred data, ``T̃ = Σ_l X̃_l`` and ``X̂_i`` the
columns of ``X̃_i`` scaled to unit length::

    corr(X_i, M_i^{(-j)})[a, b] = (P_i - Q_ii - Q_ij)[a, b] / ‖T̃_b - X̃_ib - X̃_jb‖

with ``P_i = X̂_iᵀ T̃`` and ``Q_il = X̂_iᵀ X̃_l``. Each unordered pair's product
``X̃_iᵀ X̃_l`` serves both ``Q_il`` and ``Q_li``, so the ``N`` replicates
cost ``N(N - 1)/2 + 2N`` products of ``n_images² × n_units`` instead of the
``N(N - 1)`` of recomputing each iRSM (the column norms are ``O(n_units ×
n_images)`` per pair). Memory: ``3N`` matrices of ``n_images²`` in the input's
floating type (``P_i``, ``Q_ii`` and the ``N`` results).

:func:`leave_one_out_means` gives the matching mean within-network RSMs,
``wRSM^{(-j)} = (N · wRSM - wRSM_j) / (N - 1)``, from the per-network RSMs.
"""

from __future__ import annotations

import logging

import numpy as np

from qmvpa._validation import as_network_list, check_same_units

log = logging.getLogger(__name__)

__all__ = ["leave_one_out_irsms", "leave_one_out_means"]


def _centred(X, dtype):
    """Columns centred across units; returns (X̃, column norms)."""
    Xc = np.array(X, dtype=dtype, copy=True)  # (n_units, n_images)
    Xc -= Xc.mean(axis=0, keepdims=True)
    return Xc, np.sqrt(np.sum(np.square(Xc, dtype=np.float64), axis=0))  # (n_images,)


def _inverse(norms, dtype):
    """1 / norm, 0 for a zero norm (a constant column correlates 0 with everything, as in :mod:`qmvpa.rsa`)."""
    out = np.zeros(norms.shape, dtype=dtype)
    ok = norms > np.finfo(dtype).tiny
    out[ok] = 1.0 / norms[ok]
    return out


def leave_one_out_irsms(Xs):
    """The leave-one-out iRSM of the networks other than ``j``, for every ``j``.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units, n_images)
        At least 3 networks (2 remain when one is left out), all with the
        same units and images (e.g. the shared responses ``S_i``).

    Returns
    -------
    irsms : ndarray, shape (n_networks, n_images, n_images)
        ``irsms[j]`` equals ``qmvpa.rsa.inter_subject_rsm([X for l, X in
        enumerate(Xs) if l != j])`` (to rounding), in the inputs' floating type.

    Raises
    ------
    ValueError
        Fewer than 3 networks, unit or image counts that differ.
    """
    Xs = as_network_list(Xs, min_networks=3, what="a leave-one-network-out iRSM")
    check_same_units(Xs, "leave_one_out_irsms")
    n = len(Xs)
    dtype = np.result_type(np.float32, *Xs)
    cents, norms = zip(*[_centred(X, dtype) for X in Xs])
    inv = [_inverse(v, dtype) for v in norms]  # each (n_images,)
    total = np.sum(cents, axis=0)  # T̃, (n_units, n_images)
    # Squared norms of the columns of T̃ - X̃_i - X̃_j need the column dot products below.
    tt = np.sum(np.square(total, dtype=np.float64), axis=0)  # (n_images,)
    tx = [np.einsum("ub,ub->b", total, Xc, dtype=np.float64) for Xc in cents]  # each (n_images,)
    xx = [v ** 2 for v in norms]
    P = [(Xc * w).T @ total for Xc, w in zip(cents, inv)]  # P_i = X̂_iᵀ T̃, each (n_images, n_images)
    Q_own = [(Xc * w).T @ Xc for Xc, w in zip(cents, inv)]  # Q_ii
    out = np.zeros((n, Xs[0].shape[1], Xs[0].shape[1]), dtype=dtype)

    def add(i, j, Q_ij, xij):
        """Add corr(X_i, M_i^{(-j)}) into out[j]."""
        sq = tt + xx[i] + xx[j] - 2 * tx[i] - 2 * tx[j] + 2 * xij  # ‖T̃_b - X̃_ib - X̃_jb‖², (n_images,)
        scale = _inverse(np.sqrt(np.maximum(sq, 0.0)), dtype)  # (n_images,)
        out[j] += (P[i] - Q_own[i] - Q_ij) * scale  # scale column b

    for i in range(n):
        for l in range(i + 1, n):
            C = cents[i].T @ cents[l]  # X̃_iᵀ X̃_l, (n_images, n_images)
            xil = np.einsum("ub,ub->b", cents[i], cents[l], dtype=np.float64)  # column dot products
            add(i, l, inv[i][:, None] * C, xil)  # Q_il: network i without l
            add(l, i, inv[l][:, None] * C.T, xil)  # Q_li: network l without i
            del C
    out /= n - 1
    return out


def leave_one_out_means(stack):
    """Mean over all items but ``j``, for every ``j`` (e.g. the mean wRSM without network ``j``).

    Parameters
    ----------
    stack : array, shape (n_items, ...)
        At least 2 items, e.g. per-network RSMs of shape (n_networks, n_images, n_images).

    Returns
    -------
    means : ndarray, shape (n_items, ...)
        ``means[j] = mean(stack[l] for l != j)``, float64 for float64 input,
        else float32.
    """
    stack = np.asarray(stack)
    if stack.ndim < 1 or stack.shape[0] < 2:
        raise ValueError(f"stack needs at least 2 items along its first axis, got shape {stack.shape}")
    dtype = np.result_type(np.float32, stack)
    total = np.sum(stack, axis=0, dtype=np.float64)
    return ((total[None] - stack) / (stack.shape[0] - 1)).astype(dtype)
