"""Comparing two RSMs by rank correlation (Spearman ρ, Kendall τ-a) beside Pearson r.

An RSM is **images × images** (see :mod:`qmvpa.rsa`); two RSMs are compared
through their strict lower triangles (diagonal excluded,
:func:`qmvpa.rsa.lower_triangle`), ``m = n(n-1)/2`` values each.

Why Kendall τ-**a**: when one RSM has tied entries (a categorical model RSM,
a quantised one), τ-b (``scipy.stats.kendalltau``'s default, and what
``qmvpa.rsa.rsm_similarity(..., "kendall")`` computes) divides by the number
of untied pairs and so favours RSMs that predict ties; τ-a divides by all
pairs and does not (Nili et al. 2014, the RSA toolbox's recommendation)::

    τ_a = (concordant - discordant) / (m (m - 1) / 2)

pairs of entries counted over all ``m (m - 1) / 2`` pairs, a tied pair
counting as neither. Without ties ``τ_a = τ_b``. It is computed in
``O(m log m)`` from SciPy's τ-b and the tie counts,
``τ_a = τ_b · sqrt((m₀ - t_x)(m₀ - t_y)) / m₀`` with ``m₀ = m(m-1)/2`` and
``t_x``, ``t_y`` the tied pairs within each vector.

Spearman ρ is Pearson's r of the ranks (average ranks for ties), as
``scipy.stats.spearmanr``.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.stats import kendalltau

from qmvpa import rsa

log = logging.getLogger(__name__)

__all__ = ["COMPARE_METHODS", "kendall_tau_a", "compare_rsms"]

#: Methods of :func:`compare_rsms`.
COMPARE_METHODS = ("pearson", "spearman", "kendall_tau_a")


def _tied_pairs(v):
    """Number of pairs of equal values in ``v``: Σ t(t-1)/2 over groups of ``t`` equal values."""
    _, counts = np.unique(v, return_counts=True)
    counts = counts.astype(np.float64)
    return float(np.sum(counts * (counts - 1)) / 2)


def kendall_tau_a(x, y):
    """Kendall's τ-a between two vectors (ties count as neither concordant nor discordant).

    Parameters
    ----------
    x, y : array-like, shape (m,)
        Paired observations, ``m >= 2``, finite.

    Returns
    -------
    tau : float
        ``(concordant - discordant) / (m (m - 1) / 2)``; equal to
        ``scipy.stats.kendalltau(x, y).statistic`` (τ-b) when neither vector
        has ties, smaller in magnitude when one has. NaN (logged) when a vector
        is constant (no ordering to compare).

    Raises
    ------
    ValueError
        Not 1-D, different lengths, fewer than 2 values, or non-finite values.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if x.size < 2:
        raise ValueError(f"x and y need at least 2 values, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (no NaN or Inf)")
    m = float(x.size)
    pairs = m * (m - 1) / 2
    tx, ty = _tied_pairs(x), _tied_pairs(y)
    if tx == pairs or ty == pairs:
        log.warning("kendall_tau_a: a vector is constant; τ-a of no ordering is undefined (NaN)")
        return float("nan")
    tau_b = float(kendalltau(x, y).statistic)
    return tau_b * np.sqrt((pairs - tx) * (pairs - ty)) / pairs


def compare_rsms(A, B, method="pearson"):
    """Second-order similarity of two RSMs: a correlation of their strict lower triangles.

    Parameters
    ----------
    A, B : array-like, shape (n_images, n_images)
        Two RSMs over the same images (need not be symmetric: only the strict
        lower triangles are used).
    method : {"pearson", "spearman", "kendall_tau_a"}, default "pearson"
        Pearson r; Spearman ρ (Pearson r of average ranks); Kendall τ-a (see
        the module docstring). Pearson and Spearman are
        :func:`qmvpa.rsa.rsm_similarity`'s.

    Returns
    -------
    r : float

    Raises
    ------
    ValueError
        Unknown ``method``, RSMs of different shapes, not square, or smaller
        than 3 × 3.
    """
    if method not in COMPARE_METHODS:
        raise ValueError(f"method must be one of {COMPARE_METHODS}, got {method!r}")
    if method != "kendall_tau_a":
        return rsa.rsm_similarity(A, B, method)
    A, B = np.asarray(A), np.asarray(B)
    if A.shape != B.shape:
        raise ValueError(f"the two RSMs must have the same shape, got {A.shape} and {B.shape}")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 3:
        raise ValueError(f"expected square RSMs of at least 3 × 3 images, got shape {A.shape}")
    return kendall_tau_a(rsa.lower_triangle(A), rsa.lower_triangle(B))
