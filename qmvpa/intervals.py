"""Confidence intervals over networks: leave-one-network-out jackknife and bootstrap.

The unit of replication is the **network** (a trained seed), never the pair
of networks: the ``N(N-1)/2`` pairwise values of ``N`` networks share
networks and are not independent, so an interval computed as if they were
(e.g. a t-interval over pairs) is too narrow. Here a statistic is a function
of a set of network indices and is recomputed on subsets of networks.

**Jackknife** (default; :func:`jackknife_interval`). With ``θ̂`` the statistic
on all ``N`` networks and ``θ₍ᵢ₎`` on all but network ``i``::

    θ̄  = mean_i θ₍ᵢ₎
    SE = sqrt((N - 1) / N · Σ_i (θ₍ᵢ₎ - θ̄)²)
    CI = θ̂ ± t_{N-1, (1 + confidence)/2} · SE

(Efron & Stein; Student's t with ``N - 1`` degrees of freedom for the few
networks one has). For the mean of per-network values this is exactly the
classic t-interval ``x̄ ± t · s / √N``. For a mean over pairs it is the
jackknife of a U-statistic, which accounts for the pairs' dependence.
The estimate reported is ``θ̂`` itself, not bias-corrected.

**Bootstrap** (:func:`bootstrap_interval`): ``n_boot`` resamples of ``N``
networks drawn with replacement, the statistic recomputed on each, and the
percentile interval of the replicates. For pair statistics a network drawn
twice is not compared with itself (:func:`pair_mean_interval` skips pairs of
the same network); a resample with no valid pair gives NaN and is left out.
With ten networks the bootstrap's percentile interval tends to be narrow;
the jackknife-t is the safer default.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)

__all__ = ["Interval", "jackknife_interval", "bootstrap_interval", "network_mean_interval",
           "pair_mean_interval", "pair_matrix", "METHODS"]

METHODS = ("jackknife", "bootstrap")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A statistic over networks with its confidence interval.

    Attributes
    ----------
    estimate : float
        The statistic on all networks.
    low, high : float
        Bounds of the interval.
    se : float
        Jackknife standard error, or the standard deviation of the bootstrap
        replicates.
    confidence : float
        Nominal coverage, e.g. 0.95.
    method : {"jackknife", "bootstrap"}
    replicates : ndarray, shape (n_networks,) or (n_boot,)
        Leave-one-out values (network ``i`` left out at index ``i``) or
        bootstrap values (NaN for a resample without a valid value).
    """

    estimate: float
    low: float
    high: float
    se: float
    confidence: float
    method: str
    replicates: np.ndarray


def _check_confidence(confidence):
    if isinstance(confidence, bool) or not isinstance(confidence, (float, int, np.floating)) \
            or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_n_networks(n_networks, minimum):
    if isinstance(n_networks, bool) or not isinstance(n_networks, (int, np.integer)) \
            or n_networks < minimum:
        raise ValueError(f"n_networks must be an integer >= {minimum}, got {n_networks!r}")
    return int(n_networks)


def jackknife_interval(statistic, n_networks, confidence=0.95):
    """Leave-one-network-out jackknife interval of a statistic of networks.

    Parameters
    ----------
    statistic : callable
        ``statistic(indices) -> float`` with ``indices`` an int array of
        network indices (sorted, no repeats), e.g. a mean over those networks'
        values or over their pairs.
    n_networks : int
        ``N``, at least 3 (leaving one out of 2 leaves no pair).
    confidence : float, default 0.95

    Returns
    -------
    Interval
        See the module docstring for the formula; ``replicates[i]`` is the
        statistic without network ``i``.
    """
    confidence = _check_confidence(confidence)
    n = _check_n_networks(n_networks, 3)
    all_idx = np.arange(n)
    estimate = float(statistic(all_idx))
    loo = np.array([float(statistic(np.delete(all_idx, i))) for i in range(n)])  # (n,)
    se = float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))
    half = stats.t.ppf((1 + confidence) / 2, df=n - 1) * se
    return Interval(estimate, estimate - half, estimate + half, se, confidence, "jackknife", loo)


def bootstrap_interval(statistic, n_networks, n_boot=2000, confidence=0.95, random_state=0):
    """Bootstrap-over-networks percentile interval of a statistic of networks.

    Parameters
    ----------
    statistic : callable
        ``statistic(indices) -> float`` with ``indices`` an int array of
        ``N`` network indices drawn with replacement (repeats possible; a
        pair statistic must skip pairs of the same network).
    n_networks : int
        ``N``, at least 2.
    n_boot : int, default 2000
        Resamples.
    confidence : float, default 0.95
    random_state : int, default 0

    Returns
    -------
    Interval
        ``low``, ``high``: the ``(1 - confidence)/2`` and ``(1 + confidence)/2``
        quantiles of the finite replicates; ``se`` their standard deviation.
    """
    confidence = _check_confidence(confidence)
    n = _check_n_networks(n_networks, 2)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    rng = np.random.default_rng(random_state)
    estimate = float(statistic(np.arange(n)))
    reps = np.array([float(statistic(np.sort(rng.integers(0, n, size=n)))) for _ in range(n_boot)])
    finite = reps[np.isfinite(reps)]
    if finite.size < reps.size:
        log.info("bootstrap_interval: %d of %d resamples gave no value and are left out",
                 reps.size - finite.size, reps.size)
    if finite.size < 2:
        raise ValueError("fewer than 2 bootstrap resamples gave a finite statistic")
    low, high = np.quantile(finite, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(estimate, float(low), float(high), float(np.std(finite, ddof=1)), confidence,
                    "bootstrap", reps)


def _interval(statistic, n, method, confidence, n_boot, random_state):
    if method == "jackknife":
        return jackknife_interval(statistic, n, confidence)
    if method == "bootstrap":
        return bootstrap_interval(statistic, n, n_boot, confidence, random_state)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def network_mean_interval(values, method="jackknife", confidence=0.95, n_boot=2000, random_state=0):
    """Interval of the mean of one value per network (e.g. each network's variance explained).

    Parameters
    ----------
    values : array-like, shape (n_networks,)
        One finite value per network.
    method : {"jackknife", "bootstrap"}, default "jackknife"
        The jackknife gives the t-interval ``mean ± t_{N-1} · s / √N``.
    confidence : float, default 0.95
    n_boot, random_state :
        For ``method="bootstrap"``.

    Returns
    -------
    Interval
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D (n_networks,), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite (no NaN or Inf)")
    return _interval(lambda idx: values[idx].mean(), values.shape[0], method, confidence, n_boot,
                     random_state)


def pair_mean_interval(M, method="jackknife", confidence=0.95, n_boot=2000, random_state=0):
    """Interval of the mean over pairs of networks of a pairwise value, resampling networks.

    Parameters
    ----------
    M : array-like, shape (n_networks, n_networks)
        Symmetric matrix of pairwise values (CKA, Procrustes distance,
        consistency ...); the diagonal is ignored. From ``(pairs, values)``
        build it with :func:`pair_matrix`.
    method : {"jackknife", "bootstrap"}, default "jackknife"
        Jackknife: the mean over the ``(N-1)(N-2)/2`` pairs without network
        ``i``, for each ``i``. Bootstrap: the mean over pairs of distinct
        draws that are different networks.
    confidence : float, default 0.95
    n_boot, random_state :
        For ``method="bootstrap"``.

    Returns
    -------
    Interval
        ``estimate`` is the mean over all ``N(N-1)/2`` pairs.

    Raises
    ------
    ValueError
        ``M`` not square, not symmetric, non-finite off the diagonal, or fewer
        than 3 networks.
    """
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be a square (n_networks, n_networks) matrix, got shape {M.shape}")
    n = M.shape[0]
    if n < 3:
        raise ValueError(f"M must cover at least 3 networks, got {n}")
    off = ~np.eye(n, dtype=bool)
    if not np.all(np.isfinite(M[off])):
        raise ValueError("M must be finite off the diagonal (no NaN or Inf)")
    if not np.allclose(M[off], M.T[off], rtol=1e-10, atol=1e-12):
        raise ValueError("M must be symmetric (M[i, j] == M[j, i])")

    def mean_over_pairs(idx):
        a, b = np.triu_indices(len(idx), k=1)
        distinct = idx[a] != idx[b]
        if not distinct.any():
            return float("nan")
        return float(M[idx[a][distinct], idx[b][distinct]].mean())

    return _interval(mean_over_pairs, n, method, confidence, n_boot, random_state)


def pair_matrix(pairs, values, n_networks, diagonal=np.nan):
    """Symmetric matrix from pairwise values, e.g. :func:`qmvpa.cka.pairwise_cka`'s output.

    Parameters
    ----------
    pairs : array-like of int, shape (n_pairs, 2)
        Network indices ``(i, j)``, ``i != j``.
    values : array-like, shape (n_pairs,)
    n_networks : int
    diagonal : float, default NaN
        Value put on the diagonal.

    Returns
    -------
    M : ndarray of float64, shape (n_networks, n_networks)
        ``M[i, j] = M[j, i] = value``; pairs not given are NaN.
    """
    pairs = np.asarray(pairs)
    values = np.asarray(values, dtype=np.float64)
    n = _check_n_networks(n_networks, 2)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or values.shape != (pairs.shape[0],):
        raise ValueError(f"pairs must have shape (n_pairs, 2) and values (n_pairs,), got "
                         f"{pairs.shape} and {values.shape}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n or np.any(pairs[:, 0] == pairs[:, 1])):
        raise ValueError(f"pairs must hold two different network indices in [0, {n}) each")
    M = np.full((n, n), np.nan)
    M[pairs[:, 0], pairs[:, 1]] = values
    M[pairs[:, 1], pairs[:, 0]] = values
    np.fill_diagonal(M, diagonal)
    return M
