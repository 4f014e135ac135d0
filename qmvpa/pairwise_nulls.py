"""Correspondence-broken nulls of statistics averaged over every pair of networks.

Activity matrices are **units × images**, RSMs **images × images** (see
:mod:`qmvpa`). The tests of :mod:`qmvpa.nulls` compare one pair; these give the
null of the **mean over all pairs** of ``N`` networks, the number reported
across networks. In every draw each network's images are shuffled
independently of the others' (the first network's stay in place: only the
relative order matters), which breaks the image correspondence between
networks while keeping each network's own geometry:

- :func:`mantel_consistency_test` — the mean pairwise correlation of the
  networks' RSMs (consistency), each RSM's rows and columns permuted together;
- :func:`mean_cka_null` — the mean pairwise linear CKA, biased and debiased,
  from the same draws;
- :func:`mean_procrustes_null` — the mean pairwise cross-validated angular
  Procrustes distance, each rotation fitted on shuffled fit images and the
  distance measured on the (unshuffled) held-out images.

Every function returns :class:`qmvpa.nulls.NullTest` (observed value, null
draws, one-sided p-value). Draw ``r`` uses the ``r``-th child of
``numpy.random.SeedSequence(random_state)``, as in :mod:`qmvpa.nulls`, and
draws one permutation per network from it in network order.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.stats import rankdata

from qmvpa import cka as _cka
from qmvpa import procrustes as _procrustes
from qmvpa._validation import as_network_list
from qmvpa.nulls import _check_count, _draw_rngs, _result

log = logging.getLogger(__name__)

__all__ = ["mantel_consistency_test", "mean_cka_null", "mean_procrustes_null"]

#: Methods of :func:`mantel_consistency_test`.
METHODS = ("pearson", "spearman")


def _pairs(n):
    return np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=int)  # (n_pairs, 2)


def _network_permutations(rng, n_networks, n_images):
    """One permutation per network; the first network's is the identity."""
    return [np.arange(n_images)] + [rng.permutation(n_images) for _ in range(n_networks - 1)]


def mantel_consistency_test(rsms, method="pearson", n_perm=1000, random_state=0):
    """Mantel-type test of the mean consistency: every network's RSM relabelled independently.

    The statistic is the mean over pairs ``i < j`` of the correlation of the
    strict lower triangles of ``rsms[i]`` and ``rsms[j]``
    (:func:`qmvpa.rsa.pairwise_consistency`). Its null: each RSM's rows and
    columns permuted together by a permutation of its own.

    Parameters
    ----------
    rsms : array-like, shape (n_networks, n_images, n_images), or a list of such matrices
        Symmetric RSMs (e.g. each network's within-network RSM), at least 2.
    method : {"pearson", "spearman"}, default "pearson"
    n_perm : int, default 1000
    random_state : int, default 0

    Returns
    -------
    NullTest
        ``observed`` the mean consistency, ``null`` (n_perm,), one-sided p ("greater").

    Notes
    -----
    A permutation of a symmetric RSM permutes its lower-triangle values, so
    each network's standardised lower triangle ``a_i`` (unit norm, mean 0) is
    computed once; with ``g_i`` its permuted copy and ``S = Σ_i g_i``, the
    mean over pairs is ``(‖S‖² - N) / (N (N - 1))``. Cost per permutation:
    ``N`` gathers of the ``n_images × n_images`` matrices (row then column
    ``take``, which stays in cache), in float32 for float32 RSMs.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n_perm = _check_count(n_perm, "n_perm")
    mats = [np.asarray(M) for M in rsms]
    if len(mats) < 2:
        raise ValueError(f"rsms must hold at least 2 RSMs, got {len(mats)}")
    shape = mats[0].shape
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 3:
        raise ValueError(f"expected square RSMs of at least 3 × 3 images, got shape {shape}")
    for i, M in enumerate(mats):
        if M.shape != shape:
            raise ValueError(f"rsms[{i}] has shape {M.shape}, rsms[0] {shape}; give every network's RSM "
                             f"over the same images")
        scale = float(np.max(np.abs(M))) or 1.0
        if not np.allclose(M, M.T, rtol=0, atol=1e-6 * scale):
            raise ValueError(f"rsms[{i}] is not symmetric; the consistency test permutes symmetric RSMs "
                             f"(within-network RSMs)")
    n, n_net = shape[0], len(mats)
    rows, cols = np.tril_indices(n, k=-1)  # (m,), (m,)
    dtype = np.result_type(np.float32, *mats)
    full = []  # each network's standardised values on both triangles, zero diagonal
    for M in mats:
        a = M[rows, cols].astype(np.float64)
        if method == "spearman":
            a = rankdata(a)
        a -= a.mean()
        norm = np.sqrt(np.dot(a, a))
        a = a / norm if norm > 0 else np.full_like(a, np.nan)
        F = np.zeros((n, n), dtype=dtype)
        F[rows, cols] = a
        F[cols, rows] = a
        full.append(F)

    def statistic(perms):
        total = np.zeros((n, n), dtype=dtype)
        for F, p in zip(full, perms):
            total += F.take(p, axis=0).take(p, axis=1)  # the permuted RSM's values, (n, n)
        # both triangles hold S, the diagonal is zero: ‖S‖² is half the squared Frobenius norm
        return (float(np.einsum("ij,ij->i", total, total).sum(dtype=np.float64)) / 2 - n_net) \
            / (n_net * (n_net - 1))

    observed = statistic([np.arange(n)] * n_net)
    null = np.array([statistic(_network_permutations(rng, n_net, n)) for rng in _draw_rngs(random_state, n_perm)])
    return _result(observed, null, "greater")


def mean_cka_null(Xs, n_draws=20, random_state=0):
    """Null of the mean pairwise linear CKA (biased and debiased) with each network's images shuffled.

    Parameters
    ----------
    Xs : list of array, element i of shape (n_units_i, n_images)
        Every network's activity on the same images (e.g. the held-out
        images), at least 2 networks and 4 images.
    n_draws : int, default 20
    random_state : int, default 0

    Returns
    -------
    biased, debiased : NullTest
        Observed mean over pairs of :func:`qmvpa.cka.linear_cka` (the
        debiased estimator for the second), ``null`` (n_draws,), one-sided p
        ("greater").

    Notes
    -----
    Shuffling images leaves each network's self-terms unchanged; a draw
    recomputes the ``N(N-1)/2`` cross terms (``p q n`` multiply-adds each,
    or the images × images kernels' route when that is cheaper).
    """
    Xs = as_network_list(Xs, min_networks=2, what="a mean pairwise CKA")
    n_draws = _check_count(n_draws, "n_draws")
    n_images = Xs[0].shape[1]
    _cka._check_images(n_images, True, "Xs")
    cents = [_cka._Centred(X) for X in Xs]
    selfs = {d: [_cka._hsic(_cka._self_term(c), c, c, d) for c in cents] for d in (False, True)}
    pairs = _pairs(len(Xs))

    def statistic(perms):
        values = {False: [], True: []}
        permuted = [c.Xc[:, p] for c, p in zip(cents, perms)]
        d_perm = [c.d[p] for c, p in zip(cents, perms)]
        for i, j in pairs:
            a, b = cents[i], cents[j]
            if a.n_units * b.n_units <= n_images * (a.n_units + b.n_units):
                cross = _cka._feature_cross(permuted[i], permuted[j])
            else:
                Ki = permuted[i].T @ permuted[i]  # (n_images, n_images)
                cross = _cka._gram_cross(Ki, permuted[j].T @ permuted[j])
            for debiased in (False, True):
                hxy = _cka._debias(cross, d_perm[i], d_perm[j], a.total, b.total) if debiased else cross
                values[debiased].append(_cka._ratio(hxy, selfs[debiased][i], selfs[debiased][j],
                                                    f"networks {i}, {j}"))
        return [float(np.mean(values[False])), float(np.mean(values[True]))]

    identity = [np.arange(n_images)] * len(Xs)
    observed = statistic(identity)
    null = np.array([statistic(_network_permutations(rng, len(Xs), n_images))
                     for rng in _draw_rngs(random_state, n_draws)])  # (n_draws, 2)
    return _result(observed[0], null[:, 0], "greater"), _result(observed[1], null[:, 1], "greater")


def mean_procrustes_null(Xs_fit, Xs_test, n_draws=20, random_state=0):
    """Null of the mean pairwise cross-validated Procrustes distance with each network's fit images shuffled.

    Parameters
    ----------
    Xs_fit : list of array, element i of shape (n_units_i, n_fit)
        Every network's activity on the fit images (the rotations are fitted there).
    Xs_test : list of array, element i of shape (n_units_i, n_test)
        The same networks on the held-out images (the distances are measured there).
    n_draws : int, default 20
    random_state : int, default 0

    Returns
    -------
    NullTest
        Observed mean over pairs of :func:`qmvpa.procrustes.procrustes_distance`
        ``(X_i, X_j, X_i_test, X_j_test)``, ``null`` (n_draws,), one-sided p
        with ``alternative="less"`` (a small distance is the evidence).

    Raises
    ------
    ValueError
        Mismatched lists or units, or a network constant across images.
    """
    Xs_fit = as_network_list(Xs_fit, min_networks=2, name="Xs_fit", what="a mean pairwise Procrustes distance")
    Xs_test = as_network_list(Xs_test, min_networks=2, name="Xs_test", what="a mean pairwise Procrustes distance")
    if len(Xs_fit) != len(Xs_test):
        raise ValueError(f"Xs_fit has {len(Xs_fit)} networks but Xs_test has {len(Xs_test)}")
    for i, (F, T) in enumerate(zip(Xs_fit, Xs_test)):
        if F.shape[0] != T.shape[0]:
            raise ValueError(f"Xs_test[{i}] has {T.shape[0]} units but Xs_fit[{i}] has {F.shape[0]}")
    n_draws = _check_count(n_draws, "n_draws")
    fit = [_procrustes._normalised(X) for X in Xs_fit]
    test = [_procrustes._normalised(X) for X in Xs_test]
    if any(X is None for X in fit + test):
        raise ValueError("a network is constant across images: the Procrustes distance is undefined")
    pairs = _pairs(len(fit))
    C_test = [_procrustes._cross(test[i], test[j]) for i, j in pairs]  # each (p, q), fixed under the null
    n_fit = Xs_fit[0].shape[1]

    def statistic(perms):
        shuffled = [X[:, p] for X, p in zip(fit, perms)]
        return float(np.mean([_procrustes._angle(_procrustes._heldout_cosine(
            _procrustes._cross(shuffled[i], shuffled[j]), C)) for (i, j), C in zip(pairs, C_test)]))

    observed = statistic([np.arange(n_fit)] * len(fit))
    null = np.array([statistic(_network_permutations(rng, len(fit), n_fit))
                     for rng in _draw_rngs(random_state, n_draws)])
    return _result(observed, null, "less")
