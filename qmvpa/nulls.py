"""Null distributions and permutation p-values for RSA, SRM, CKA and Procrustes statistics.

Activity matrices are **units × images**, RSMs **images × images** (see
:mod:`qmvpa`). Every test returns a :class:`NullTest`: the observed statistic,
its null distribution and the one-sided permutation p-value

    p = (1 + #{null ≥ observed}) / (1 + n_null)        (alternative="greater")
    p = (1 + #{null ≤ observed}) / (1 + n_null)        (alternative="less", for distances)

which counts the observed value as one draw of the null, so ``p`` is never 0
and a test at level α is exact when the null draws are exchangeable with the
observed one. The smallest reachable p is ``1 / (1 + n_null)``.

- :func:`mantel_test` — rows and columns of one RSM permuted together
  (image labels shuffled) against a fixed second RSM; Pearson, Spearman or
  Kendall τ-a (:mod:`qmvpa.rank_rsa`).
- :func:`srm_correspondence_null` — the SRM refitted ``n_refits`` times with
  each network's fit images shuffled independently (the image correspondence
  the SRM relies on is broken); held-out images mapped with each refit; a
  statistic of the mapped held-out data (default
  :class:`IrsmWrsmStatistic`, r(shared iRSM, mean native wRSM)).
- :func:`cka_permutation_test` — one network's images shuffled relative to the
  other's.
- :func:`procrustes_permutation_test` — the same, with the rotation fitted on
  the shuffled fit images and the distance measured on the held-out images.

Randomness: permutation ``r`` of a test is drawn from the ``r``-th child of
``numpy.random.SeedSequence(random_state)``, so the null draws are
reproducible and draw ``r`` is the same whatever ``n_perm``.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from scipy.stats import rankdata

from qmvpa._validation import as_matrix, as_network_list
from qmvpa import cka as _cka
from qmvpa import factor, rank_rsa, rsa
from qmvpa import procrustes as _procrustes

log = logging.getLogger(__name__)

__all__ = ["NullTest", "permutation_p_value", "mantel_test", "IrsmWrsmStatistic",
           "srm_correspondence_null", "cka_permutation_test", "procrustes_permutation_test"]

ALTERNATIVES = ("greater", "less")
#: RSMs symmetric to this relative tolerance take the Mantel test's fast path.
SYMMETRY_RTOL = 1e-6


# --------------------------------------------------------------------------- result

def permutation_p_value(observed, null, alternative="greater"):
    """One-sided permutation p-value, ``(1 + #{null at least as extreme}) / (1 + n_null)``.

    Parameters
    ----------
    observed : float or array, shape (n_stats,)
        The statistic on the real data.
    null : array, shape (n_null,) or (n_null, n_stats)
        The statistic on ``n_null`` null draws. NaN draws are left out (logged).
    alternative : {"greater", "less"}, default "greater"
        "greater": large values are evidence (similarities); "less": small
        values are (distances).

    Returns
    -------
    p : float, or ndarray of shape (n_stats,)
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    observed = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    if null.shape[1:] != observed.shape:
        raise ValueError(f"null must have shape (n_null,) + observed's shape {observed.shape}, "
                         f"got {null.shape}")
    finite = np.isfinite(null)
    if not finite.all():
        log.warning("permutation_p_value: %d NaN null draws left out", int((~finite).sum()))
    extreme = null >= observed if alternative == "greater" else null <= observed
    p = (1.0 + np.sum(extreme & finite, axis=0)) / (1.0 + np.sum(finite, axis=0))
    return float(p) if p.ndim == 0 else p


@dataclasses.dataclass(frozen=True)
class NullTest:
    """Observed statistic, its null distribution and one-sided permutation p-value.

    Attributes
    ----------
    observed : float or ndarray, shape (n_stats,)
        The statistic on the real data.
    null : ndarray, shape (n_null,) or (n_null, n_stats)
        The statistic on each null draw (permutation or refit), in draw order.
    p_value : float or ndarray, shape (n_stats,)
        :func:`permutation_p_value` of ``observed`` against ``null``.
    alternative : {"greater", "less"}
        Which tail is evidence against the null.
    """

    observed: float | np.ndarray
    null: np.ndarray
    p_value: float | np.ndarray
    alternative: str = "greater"

    @property
    def null_mean(self):
        """Mean of the null draws (NaN draws ignored)."""
        return _scalar(np.nanmean(self.null, axis=0))

    @property
    def null_std(self):
        """Standard deviation of the null draws (ddof=1, NaN draws ignored)."""
        return _scalar(np.nanstd(self.null, axis=0, ddof=1))

    def null_quantile(self, q):
        """Quantile ``q`` (in [0, 1]) of the null draws (NaN draws ignored)."""
        return _scalar(np.nanquantile(self.null, q, axis=0))

    @property
    def null_critical(self):
        """The null's 95th percentile ("greater") or 5th percentile ("less")."""
        return self.null_quantile(0.95 if self.alternative == "greater" else 0.05)


def _scalar(v):
    return float(v) if np.ndim(v) == 0 else np.asarray(v)


def _result(observed, null, alternative):
    observed = _scalar(observed)
    null = np.asarray(null, dtype=np.float64)
    return NullTest(observed, null, permutation_p_value(observed, null, alternative), alternative)


def _check_count(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _draw_rngs(random_state, n):
    """One independent generator per null draw (draw r is the same whatever n)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(random_state).spawn(n)]


# --------------------------------------------------------------------------- Mantel

def _lower_values(B, rows, cols, method):
    b = B[rows, cols].astype(np.float64)
    return rankdata(b) if method == "spearman" else b


def _pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denom) if denom > 0 else float("nan")


def _vector_statistic(method):
    """``stat(a, b)`` for ``a`` from :func:`_lower_values` (ranked once) and a raw triangle ``b``."""
    if method == "pearson":
        return _pearson
    if method == "spearman":
        return lambda a, b: _pearson(a, rankdata(b))
    return rank_rsa.kendall_tau_a


def _is_symmetric(B):
    scale = float(np.max(np.abs(B))) if B.size else 0.0
    return bool(np.allclose(B, B.T, rtol=0, atol=SYMMETRY_RTOL * max(scale, np.finfo(float).tiny)))


def mantel_test(A, B, method="pearson", n_perm=1000, random_state=0, alternative="greater"):
    """Mantel permutation test of the similarity of two RSMs (or of several RSMs with one).

    The statistic is :func:`qmvpa.rank_rsa.compare_rsms` ``(A, B, method)``
    (correlation of the strict lower triangles). Its null: the images of ``B``
    relabelled at random, i.e. its rows and columns permuted together
    (``B[π][:, π]``), ``A`` fixed.

    Parameters
    ----------
    A : array-like, shape (n_images, n_images), or a sequence of such
        The fixed RSM (e.g. the shared-space iRSM; need not be symmetric).
        Several RSMs (a list, or an array of shape (n_rsms, n_images,
        n_images)) are each tested against ``B`` under the same permutations,
        which then cost little more than one test (e.g. the shared and the
        native iRSM against the mean native wRSM).
    B : array-like, shape (n_images, n_images)
        The permuted RSM (e.g. the mean native wRSM).
    method : {"pearson", "spearman", "kendall_tau_a"}, default "pearson"
        As in :func:`qmvpa.rank_rsa.compare_rsms`.
    n_perm : int, default 1000
        Permutations.
    random_state : int, default 0
        Seed (see the module docstring).
    alternative : {"greater", "less"}, default "greater"
        Tail of the p-value.

    Returns
    -------
    NullTest
        ``observed`` (float; shape (n_rsms,) for several ``A``), ``null``
        (shape (n_perm,) or (n_perm, n_rsms)), ``p_value``. The observed
        value is computed the same way as the null draws; for float32 RSMs on
        the fast path it agrees with ``compare_rsms`` to about 1e-6.

    Notes
    -----
    Fast path (Pearson or Spearman, ``B`` symmetric to 1e-6 relative): a
    permutation of a symmetric RSM permutes its lower-triangle values, so
    their mean and spread, and for Spearman their ranks, are computed once;
    each permutation is then a gather of ``B[π][:, π]`` and a weighted sum
    with ``A``'s standardised lower triangle, both ``O(n_images²)`` in ``B``'s
    floating type (sums in float64). The gather is done in blocks of rows,
    each only as far as the lower triangle reaches, which keeps it in cache:
    about 10–15 ms per permutation for 2,000 images on one core, a few ms
    more per extra ``A`` (``bench/bench_measures.py``). Otherwise (an asymmetric ``B``, or
    Kendall τ-a, ``O(m log m)`` per permutation for ``m = n(n-1)/2``; about
    1 s for 2,000 images) the permuted lower triangle is gathered through
    precomputed indices and the statistic recomputed.
    """
    if method not in rank_rsa.COMPARE_METHODS:
        raise ValueError(f"method must be one of {rank_rsa.COMPARE_METHODS}, got {method!r}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    n_perm = _check_count(n_perm, "n_perm")
    several = isinstance(A, (list, tuple)) or np.ndim(A) == 3
    As = [np.asarray(M) for M in A] if several else [np.asarray(A)]
    if not As:
        raise ValueError("A must hold at least one RSM")
    B = np.asarray(B)
    for M in As:
        if M.shape != B.shape:
            raise ValueError(f"the two RSMs must have the same shape, got {M.shape} and {B.shape}")
    if B.ndim != 2 or B.shape[0] != B.shape[1] or B.shape[0] < 3:
        raise ValueError(f"expected square RSMs of at least 3 × 3 images, got shape {B.shape}")
    n = B.shape[0]
    rows, cols = np.tril_indices(n, k=-1)  # (m,), (m,)
    a_list = [_lower_values(M, rows, cols, method) for M in As]  # each (m,) float64
    rngs = _draw_rngs(random_state, n_perm)
    if method != "kendall_tau_a" and _is_symmetric(B):
        observed, null = _mantel_symmetric(a_list, B, rows, cols, method, rngs)
    else:
        stat = _vector_statistic(method)
        b = B[rows, cols].astype(np.float64)
        observed = np.array([stat(a, b) for a in a_list])
        null = np.empty((n_perm, len(a_list)))
        flat = np.ascontiguousarray(B).ravel()
        for r, rng in enumerate(rngs):
            p = rng.permutation(n)
            b = flat[p[rows] * n + p[cols]].astype(np.float64)  # (m,) lower triangle of B[p][:, p]
            null[r] = [stat(a, b) for a in a_list]
    if not np.all(np.isfinite(observed)):
        log.warning("mantel_test: an observed statistic is NaN (a constant RSM triangle)")
    if not several:
        observed, null = observed[0], null[:, 0]
    return _result(observed, null, alternative)


class _PermutedLowerSums:
    """``Σ_{j <= i} W_k[i, j] · B[p_i, p_j]`` for weight matrices ``W_k`` and any permutation ``p``.

    The gather of ``B[p][:, p]`` is done in blocks of rows, each only as far as
    the lower triangle reaches (``j <= i``): about half of ``n²`` entries, and
    a block of ``B`` and of each ``W_k`` stays in cache (3-4x faster than
    gathering the whole matrix at 2,000 images).

    Ws : list of array, each (n, n); only the lower triangle and diagonal are used.
    B : array (n, n).
    """

    block_rows = 128

    def __init__(self, Ws, B):
        n = B.shape[0]
        self.B = B
        self.edges = list(range(0, n, self.block_rows)) + [n]
        self.blocks = []  # per W: per row block r0:r1, the rows' lower triangle, columns :r1
        for W in Ws:
            blocks = []
            for r0, r1 in zip(self.edges[:-1], self.edges[1:]):
                block = np.tril(W[r0:r1, :r1], k=r0).astype(B.dtype)  # (r1 - r0, r1), j <= i
                blocks.append(block)
            self.blocks.append(blocks)

    def __call__(self, p):
        out = np.zeros(len(self.blocks))
        for i, (r0, r1) in enumerate(zip(self.edges[:-1], self.edges[1:])):
            G = self.B.take(p[r0:r1], axis=0).take(p[:r1], axis=1)  # (r1 - r0, r1) of B[p][:, p]
            for k, blocks in enumerate(self.blocks):
                out[k] += np.einsum("ij,ij->i", blocks[i], G).sum(dtype=np.float64)
        return out


def _mantel_symmetric(a_list, B, rows, cols, method, rngs):
    """Pearson (of ranks for Spearman) of each ``a`` with the lower triangle of each ``B[π][:, π]``.

    Returns observed (n_a,) and null (n_perm, n_a).
    """
    n = B.shape[0]
    dtype = B.dtype if B.dtype in (np.float32, np.float64) else np.float64
    b = _lower_values(B, rows, cols, method)
    b -= b.mean()
    b_norm = np.sqrt(np.dot(b, b))
    Bc = np.zeros((n, n), dtype=dtype)  # centred values (ranks) of B, both triangles, zero diagonal
    Bc[rows, cols] = b
    Bc[cols, rows] = b
    Ws = []
    for a in a_list:
        a = a - a.mean()
        norm = np.sqrt(np.dot(a, a)) * b_norm
        W = np.zeros((n, n), dtype=dtype)  # A's standardised strict lower triangle, zeros elsewhere
        W[rows, cols] = a / norm if norm > 0 else np.nan
        Ws.append(W)
    sums = _PermutedLowerSums(Ws, Bc)
    del Ws
    observed = sums(np.arange(n))
    null = np.array([sums(rng.permutation(n)) for rng in rngs]).reshape(len(rngs), len(a_list))
    return observed, null


# --------------------------------------------------------------------------- SRM null

class IrsmWrsmStatistic:
    """r(shared-space iRSM, mean native wRSM) on held-out images: the paper's headline statistic.

    The mean native wRSM does not depend on the SRM, so it is computed once,
    here; each call computes the leave-one-out iRSM of the mapped held-out
    data (:func:`qmvpa.rsa.inter_subject_rsm`) and compares it with
    :func:`qmvpa.rank_rsa.compare_rsms`.

    Parameters
    ----------
    Xs_test : list of array, element i of shape (n_units_i, n_test)
        Native held-out activity of every network.
    method : {"pearson", "spearman", "kendall_tau_a"}, default "pearson"

    Notes
    -----
    Called as ``statistic(shared_test, model=None) -> float`` with
    ``shared_test`` a list of arrays, element i of shape (k, n_test) (the
    signature :func:`srm_correspondence_null` uses; ``model`` is ignored).
    """

    def __init__(self, Xs_test, method="pearson"):
        if method not in rank_rsa.COMPARE_METHODS:
            raise ValueError(f"method must be one of {rank_rsa.COMPARE_METHODS}, got {method!r}")
        self.method = method
        self.wrsm = rsa.mean_within_rsm(Xs_test)  # (n_test, n_test)

    def __call__(self, shared_test, model=None):
        return rank_rsa.compare_rsms(rsa.inter_subject_rsm(shared_test), self.wrsm, self.method)


def _check_networks(Xs, name):
    return as_network_list(Xs, min_networks=2, name=name, what="the correspondence-broken SRM null")


def srm_correspondence_null(Xs_fit, Xs_test, statistic=None, n_refits=20, n_components=None,
                            n_iter=10, engine=factor.DEFAULT_ENGINE, random_state=0, observed=None,
                            fit_subsample=None, alternative="greater"):
    """Null distribution of an SRM statistic with the networks' image correspondence broken.

    Each refit shuffles every network's fit images independently (so image
    ``j`` of one network is paired with a random image of another), fits the
    SRM on them with :func:`qmvpa.factor.fit_srm`, maps the held-out images
    (unshuffled) with :func:`qmvpa.factor.transform` and evaluates
    ``statistic``. A statistic that reflects shared structure only through
    the image correspondence falls to its chance level under this null.

    Parameters
    ----------
    Xs_fit : list of array, element i of shape (n_units_i, n_fit)
        Each network's activity on the fit images (at least 2 networks).
    Xs_test : list of array, element i of shape (n_units_i, n_test)
        Each network's activity on the held-out images.
    statistic : callable, optional
        ``statistic(shared_test, model) -> float or 1-D array``, where
        ``shared_test`` is the list of mapped held-out arrays (element i of
        shape (k, n_test)) and ``model`` the fitted SRM (``w_``, ``s_``).
        Return several numbers to get the null of several statistics from one
        refit. Default: :class:`IrsmWrsmStatistic` ``(Xs_test)``.
    n_refits : int, default 20
        Null refits. The smallest reachable p is ``1 / (1 + n_refits)``.
    n_components, n_iter, engine :
        As in :func:`qmvpa.factor.fit_srm` (``k`` defaults to the smallest
        unit count). Use the observed fit's values, or say which you changed:
        the null then is that of a different fit.
    random_state : int, default 0
        Seeds the shuffles and each refit's SRM initialisation (refit ``r``
        from the ``r``-th child of ``SeedSequence(random_state)``); the
        observed fit, if made here, uses ``random_state`` itself as the SRM
        seed.
    observed : float or array, optional
        The statistic of the real (unshuffled) fit, if already computed (the
        pipeline has it). Default: fit the SRM on the unshuffled fit images
        here (one more fit) and evaluate ``statistic``.
    fit_subsample : int, optional
        Fit each null refit on this many fit images, drawn at random without
        replacement independently for every network (shuffling and
        subsampling in one draw). Cheaper (the SRM's products scale with the
        images) but the null of a fit on fewer images; ``None`` (default)
        uses all ``n_fit``. Must be at least ``k``.
    alternative : {"greater", "less"}, default "greater"

    Returns
    -------
    NullTest
        ``observed``, ``null`` of shape (n_refits,) or (n_refits, n_stats),
        ``p_value``.

    Raises
    ------
    ValueError
        Fewer than 2 networks, mismatched lists, units or images, bad counts,
        or whatever :func:`qmvpa.factor.fit_srm` rejects.
    """
    Xs_fit = _check_networks(Xs_fit, "Xs_fit")
    Xs_test = _check_networks(Xs_test, "Xs_test")
    if len(Xs_fit) != len(Xs_test):
        raise ValueError(f"Xs_fit has {len(Xs_fit)} networks but Xs_test has {len(Xs_test)}")
    for i, (F, T) in enumerate(zip(Xs_fit, Xs_test)):
        if F.shape[0] != T.shape[0]:
            raise ValueError(f"Xs_test[{i}] has {T.shape[0]} units but Xs_fit[{i}] has {F.shape[0]}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    n_refits = _check_count(n_refits, "n_refits")
    n_fit = Xs_fit[0].shape[1]
    k = factor.check_n_components(n_components, [X.shape[0] for X in Xs_fit], n_fit)
    n_null_images = n_fit
    if fit_subsample is not None:
        n_null_images = _check_count(fit_subsample, "fit_subsample", minimum=k)
        if n_null_images > n_fit:
            raise ValueError(f"fit_subsample must be at most the {n_fit} fit images, got {n_null_images}")
    if statistic is None:
        statistic = IrsmWrsmStatistic(Xs_test)
    elif not callable(statistic):
        raise ValueError(f"statistic must be callable (shared_test, model) -> float, got {statistic!r}")

    def evaluate(fit_data, seed):
        model = factor.fit_srm(fit_data, n_components=k, n_iter=n_iter, random_state=seed, engine=engine)
        return np.asarray(statistic(factor.transform(model, Xs_test), model), dtype=np.float64)

    if observed is None:
        observed = evaluate(Xs_fit, random_state)
    null = []
    for r, rng in enumerate(_draw_rngs(random_state, n_refits)):
        shuffled = [X[:, rng.permutation(n_fit)[:n_null_images]] for X in Xs_fit]  # each (units_i, n)
        seed = int(rng.integers(2 ** 31 - 1))
        null.append(evaluate(shuffled, seed))
        log.debug("SRM null refit %d/%d: %s", r + 1, n_refits, null[-1])
    null = np.stack(null)  # (n_refits,) or (n_refits, n_stats)
    observed = np.asarray(observed, dtype=np.float64)
    if observed.shape != null.shape[1:]:
        raise ValueError(f"observed has shape {observed.shape} but the statistic returns shape "
                         f"{null.shape[1:]}")
    return _result(observed, null, alternative)


# --------------------------------------------------------------------------- CKA, Procrustes

#: The CKA null permutes an images × images kernel instead of recomputing X Yᵀ when
#: units_x · units_y exceeds this many times n_images (a gather costs about as much as
#: this many multiply-adds per entry).
_GRAM_PERMUTE_RATIO = 100


def cka_permutation_test(X, Y, debiased=False, n_perm=1000, random_state=0):
    """Permutation test of linear CKA: ``Y``'s images shuffled relative to ``X``'s.

    Parameters
    ----------
    X : array-like, shape (n_units_x, n_images)
    Y : array-like, shape (n_units_y, n_images)
        Activity of two networks on the same images (e.g. held-out images).
    debiased : bool, default False
        As in :func:`qmvpa.cka.linear_cka`.
    n_perm : int, default 1000
    random_state : int, default 0

    Returns
    -------
    NullTest
        ``observed`` = ``linear_cka(X, Y, debiased)``, ``null`` (n_perm,) of
        ``linear_cka(X, Y[:, π], debiased)``, one-sided ("greater") p.

    Notes
    -----
    Shuffling images leaves each network's self-similarity unchanged, so only
    the cross term is recomputed: ``‖X Y[:, π]ᵀ‖²`` (``p q n`` multiply-adds)
    or, when ``p q > 100 n``, the blocked gather ``Σ K ⊙ L[π][:, π]`` of the
    images × images kernels made once (``O(n²)`` per permutation, about
    ``2 n²`` floats of memory).
    """
    X, Y = as_matrix(X, "X"), as_matrix(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same number of images (columns): "
                         f"X has {X.shape[1]}, Y has {Y.shape[1]}")
    n = X.shape[1]
    _cka._check_images(n, debiased, "X and Y")
    n_perm = _check_count(n_perm, "n_perm")
    a, b = _cka._Centred(X), _cka._Centred(Y)
    hxx = _cka._hsic(_cka._self_term(a), a, a, debiased)
    hyy = _cka._hsic(_cka._self_term(b), b, b, debiased)
    use_gram = a.n_units * b.n_units > _GRAM_PERMUTE_RATIO * n
    if use_gram:
        # tr(K L') = Σ_{j<=i} W[i, j] L'[i, j] with W = 2 tril(K, -1) + diag(K), both symmetric
        K = a.gram  # (n, n)
        W = np.tril(K, k=-1) * 2
        W[np.diag_indices(n)] = np.diag(K)
        cross_sum = _PermutedLowerSums([W], b.gram)
        del K, W
        a._gram = None

    def value(p):
        if use_gram:
            cross = float(cross_sum(p)[0])
        else:
            cross = _cka._feature_cross(a.Xc, b.Xc[:, p])
        hxy = _cka._debias(cross, a.d, b.d[p], a.total, b.total) if debiased else cross
        return _cka._ratio(hxy, hxx, hyy, "X, Y (permuted)")

    observed = value(np.arange(n))
    null = np.array([value(rng.permutation(n)) for rng in _draw_rngs(random_state, n_perm)])
    return _result(observed, null, "greater")


def procrustes_permutation_test(X, Y, X_test=None, Y_test=None, n_perm=1000, random_state=0):
    """Permutation test of the angular Procrustes distance: ``Y``'s fit images shuffled.

    Parameters
    ----------
    X : array-like, shape (n_units_x, n_fit)
    Y : array-like, shape (n_units_y, n_fit)
        Two networks' activity on the fit images.
    X_test : array-like, shape (n_units_x, n_test), optional
    Y_test : array-like, shape (n_units_y, n_test), optional
        Held-out activity (both or neither). With them, each null draw fits the
        rotation on ``(X, Y[:, π])`` and measures the distance on the
        unshuffled held-out images; without them, the distance on the fit
        images between ``X`` and ``Y[:, π]``.
    n_perm : int, default 1000
        Each permutation costs a ``p × q`` product over the fit images and a
        ``p × q`` SVD (about 0.4 s for 1,000 × 1,000 units and 8,000 images
        on one core in float32).
    random_state : int, default 0

    Returns
    -------
    NullTest
        ``observed`` = :func:`qmvpa.procrustes.procrustes_distance`, ``null``
        (n_perm,), one-sided p with ``alternative="less"`` (a small distance
        is the evidence).
    """
    X, Y = _procrustes._check_pair(X, Y, "X", "Y")
    if (X_test is None) != (Y_test is None):
        raise ValueError("give both X_test and Y_test (cross-validated distance) or neither "
                         "(distance on the fit images)")
    n_perm = _check_count(n_perm, "n_perm")
    Xn, Yn = _procrustes._normalised(X), _procrustes._normalised(Y)
    held_out = X_test is not None
    if held_out:
        Xt, Yt = _procrustes._check_pair(X_test, Y_test, "X_test", "Y_test")
        if Xt.shape[0] != X.shape[0] or Yt.shape[0] != Y.shape[0]:
            raise ValueError(f"held-out arrays must have the fit arrays' units: X {X.shape[0]} vs "
                             f"X_test {Xt.shape[0]}, Y {Y.shape[0]} vs Y_test {Yt.shape[0]}")
        Xtn, Ytn = _procrustes._normalised(Xt), _procrustes._normalised(Yt)
    if Xn is None or Yn is None or (held_out and (Xtn is None or Ytn is None)):
        raise ValueError("a network is constant across images: the Procrustes distance is undefined")
    C_test = _procrustes._cross(Xtn, Ytn) if held_out else None  # (p, q), fixed under the null

    def value(p):
        if held_out:
            M = _procrustes._cross(Xn, Yn[:, p])  # (p, q), rotation fitted on shuffled fit images
            return _procrustes._angle(_procrustes._heldout_cosine(M, C_test))
        return _procrustes._angle(_procrustes._same_images_cosine(Xn, Yn[:, p]))

    n = X.shape[1]
    observed = value(np.arange(n))
    null = np.array([value(rng.permutation(n)) for rng in _draw_rngs(random_state, n_perm)])
    return _result(observed, null, "less")
