"""Cross-checks, nulls and intervals over networks for one layer of several networks (pure).

:func:`infer_layer` is the inference half of one stage-3 job
(:func:`qmvpa.layer_analysis.analyse_layer` calls it after the SRM fit): on
the same held-out images as the RSMs, for every pair of networks and across
networks,

- **RSA by rank** beside Pearson's r: Spearman ρ and Kendall τ-a
  (:mod:`qmvpa.rank_rsa`) of the iRSM–wRSM comparisons and of consistency;
- **linear CKA**, biased and debiased (:mod:`qmvpa.cka`), of the native
  held-out activity, per pair;
- the **angular Procrustes shape distance** (:mod:`qmvpa.procrustes`),
  rotation fitted on the fit images and distance measured on the held-out
  images, per pair;
- **decoding** (:mod:`qmvpa.decoding`): a classifier trained on the shared
  responses of N − 1 networks and tested on the held-out network, every
  network in turn; the same in the native space (near chance); and 5-fold
  decoding within each network (the upper bound);
- **pairwise ISC** of the shared responses and the original study's
  Procrustes **disparity** matrix of the shared responses
  (:mod:`qmvpa.intersubject`);
- **intervals over networks** (:mod:`qmvpa.intervals`) of every
  across-network mean: the jackknife (leave one network out) or bootstrap of
  the networks for means of per-network or per-pair values; the jackknife
  for the iRSM–wRSM r's, recomputed without each network
  (:mod:`qmvpa.network_jackknife`);
- **nulls**: a Mantel test (rows and columns of the wRSM permuted together)
  for every Pearson iRSM–wRSM comparison; and, when ``null_draws > 0``, the
  correspondence-broken nulls, in which each network's images are shuffled
  independently: the SRM refitted on shuffled fit images
  (:func:`qmvpa.nulls.srm_correspondence_null`), CKA on shuffled held-out
  images, Procrustes rotations fitted on shuffled fit images
  (:mod:`qmvpa.pairwise_nulls`), and the consistency's Mantel-type null
  (every network's wRSM relabelled independently).

Everything that goes into the tidy summary is returned as a table,
``stat_metrics`` (names) × :data:`STATS` (``stat_values``): the value, the
interval, the null's mean and one-sided 95% critical value, and the p-value.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.stats import rankdata

from qmvpa import cka, decoding, factor, intersubject, intervals, nulls, pairwise_nulls, procrustes, rank_rsa, rsa
from qmvpa.network_jackknife import leave_one_out_irsms, leave_one_out_means

log = logging.getLogger(__name__)

__all__ = ["MEASURES", "STATS", "SRM_NULL_METRICS", "KENDALL_MAX_PAIRS", "infer_layer"]

#: Optional measures of :func:`infer_layer` (all by default).
MEASURES = ("spearman", "kendall_tau_a", "cka", "cka_debiased", "procrustes", "decoding", "isc",
            "procrustes_disparity")
#: Columns of ``stat_values``: what the summary's ``stat`` column holds.
STATS = ("value", "ci_low", "ci_high", "null_mean", "null_q95", "p")
#: Statistics recomputed on every correspondence-broken SRM refit.
SRM_NULL_METRICS = ("r_shared_irsm_wrsm", "rho_shared_irsm_wrsm", "r_shared_irsm_final_wrsm",
                    "rho_shared_irsm_final_wrsm", "var_exp_test", "var_exp_test_loo", "isc")
#: Kendall τ-a of the consistency pairs only while the RSMs have at most this many lower-triangle
#: entries (500 images): it costs O(m log m) per pair, about 1 s per pair at 2,000 images.
KENDALL_MAX_PAIRS = 125_000
#: Fewest held-out images per class for within-network decoding (its folds).
DECODING_FOLDS = decoding.DEFAULT_N_SPLITS


class _Table:
    """Rows of the stats table: metric name -> {stat: value}."""

    def __init__(self):
        self.rows = {}

    def set(self, metric, **stats):
        row = self.rows.setdefault(metric, {})
        for key, value in stats.items():
            if key not in STATS:
                raise KeyError(key)
            row[key] = float(value)

    def interval(self, metric, iv):
        self.set(metric, value=iv.estimate, ci_low=iv.low, ci_high=iv.high)

    def null(self, metric, test):
        self.set(metric, null_mean=test.null_mean, null_q95=test.null_critical, p=test.p_value)

    def arrays(self):
        names = list(self.rows)
        values = np.full((len(names), len(STATS)), np.nan)  # (n_metrics, n_stats)
        for r, name in enumerate(names):
            for c, stat in enumerate(STATS):
                values[r, c] = self.rows[name].get(stat, np.nan)
        return np.array(names, dtype=str), values


def _ranks(M):
    return rankdata(rsa.lower_triangle(M))


def _pearson_vec(a, b):
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denom) if denom > 0 else float("nan")


def _compare(A, B, method):
    return rank_rsa.compare_rsms(A, B, method)


def _jackknife(estimate, replicates, confidence):
    """Jackknife interval from precomputed leave-one-out replicates (see :func:`qmvpa.intervals.jackknife_interval`)."""
    replicates = np.asarray(replicates, dtype=np.float64)
    lookup = {i: float(v) for i, v in enumerate(replicates)}
    n = len(replicates)

    def statistic(idx):
        if len(idx) == n:
            return float(estimate)
        missing = sorted(set(range(n)) - set(int(i) for i in idx))
        return lookup[missing[0]]

    return intervals.jackknife_interval(statistic, n, confidence)


def _mean_interval(values, method, confidence, n_boot, random_state):
    values = np.asarray(values, dtype=np.float64)
    if values.size < 3 or not np.all(np.isfinite(values)):
        return None
    return intervals.network_mean_interval(values, method, confidence, n_boot, random_state)


def _pair_interval(pairs, values, n, method, confidence, n_boot, random_state):
    values = np.asarray(values, dtype=np.float64)
    if n < 3 or not np.all(np.isfinite(values)):
        return None
    M = intervals.pair_matrix(pairs, values, n, diagonal=0.0)
    return intervals.pair_mean_interval(M, method, confidence, n_boot, random_state)


def _record_mean(table, metric, values, interval):
    if interval is not None:
        table.interval(metric, interval)
    else:
        finite = np.asarray(values, dtype=np.float64)
        table.set(metric, value=float(np.mean(finite)) if finite.size else np.nan)


class _SrmNullStatistic:
    """The :data:`SRM_NULL_METRICS` of one SRM fit's mapped held-out images (``statistic(shared, model)``)."""

    def __init__(self, test, wrsm, reference_wrsm, with_isc):
        self.test = test
        self.ref = [("wrsm", wrsm, rsa.lower_triangle(wrsm).astype(np.float64), _ranks(wrsm))]
        if reference_wrsm is not None:
            self.ref.append(("final", reference_wrsm, rsa.lower_triangle(reference_wrsm).astype(np.float64),
                             _ranks(reference_wrsm)))
        self.with_isc = with_isc

    def __call__(self, shared, model):
        shared = [np.asarray(S, dtype=np.float32) for S in shared]
        irsm = rsa.lower_triangle(rsa.inter_subject_rsm(shared)).astype(np.float64)
        irsm_ranks = rankdata(irsm)
        out = {}
        for name, _, tri, ranks in self.ref:
            suffix = "wrsm" if name == "wrsm" else "final_wrsm"
            out[f"r_shared_irsm_{suffix}"] = _pearson_vec(irsm, tri)
            out[f"rho_shared_irsm_{suffix}"] = _pearson_vec(irsm_ranks, ranks)
        out["var_exp_test"] = float(np.mean(factor.variance_explained(self.test, model.w_, np.mean(shared, axis=0))))
        out["var_exp_test_loo"] = float(np.mean(factor.variance_explained_leave_one_out(self.test, model.w_, shared)))
        if self.with_isc:
            out["isc"] = float(np.mean(intersubject.pairwise_isc(shared)[1]))
        return np.array([out.get(m, np.nan) for m in SRM_NULL_METRICS])


def infer_layer(fit, test, shared, model, wrsms, *, labels=None, reference_wrsms=None, network_values=None,
                measures=MEASURES, n_perm=1000, null_draws=0, n_iter=10, engine=factor.DEFAULT_ENGINE,
                random_state=0, interval="jackknife", n_boot=2000, confidence=0.95) -> dict:
    """Rank RSA, CKA, Procrustes, decoding, ISC, intervals and nulls of one layer (see the module docstring).

    Parameters
    ----------
    fit : list of array, element i of shape (n_units, n_fit)
        Network i's preprocessed (z-scored) activity on the fit images.
    test : list of array, element i of shape (n_units, n_test)
        The same on the held-out images (sorted by class).
    shared : list of array, element i of shape (k, n_test)
        The held-out images in the shared space, ``S_i = W_iᵀ X_i``.
    model : fitted SRM
        With ``w_`` (list of (n_units, k) arrays); its settings are those of
        the null refits (``k``, ``n_iter``, ``engine``).
    wrsms : array, shape (n_networks, n_test, n_test)
        Each network's native within-network RSM of the held-out images.
    labels : array of int, shape (n_test,), optional
        Classes of the held-out images; needed for decoding (skipped without).
    reference_wrsms : array, shape (n_networks, n_test, n_test), optional
        Each network's native wRSM of the same images at a reference
        checkpoint (the final epoch): adds the ``*_final_wrsm`` comparisons.
        Pass ``wrsms`` itself when this is the reference checkpoint (its
        comparisons are then the same-checkpoint ones, not recomputed).
    network_values : dict of str to array of shape (n_networks,), optional
        Per-network values whose mean and interval go into the table (the
        variance explained); ``var_exp_test`` and ``var_exp_test_loo`` also
        get the SRM null.
    measures : sequence of str
        Which of :data:`MEASURES` to compute (Pearson RSA, variance explained
        and consistency always are).
    n_perm : int, default 1000
        Permutations of every Mantel test (>= 1).
    null_draws : int, default 0
        Draws of the correspondence-broken nulls (SRM refits; CKA, Procrustes
        and consistency use ``null_draws`` shuffles, the consistency
        ``n_perm``); 0 skips them.
    n_iter, engine, random_state
        SRM settings of the null refits (use the observed fit's) and the seed
        of every random draw.
    interval : {"jackknife", "bootstrap"}, default "jackknife"
        Interval over networks of means of per-network and per-pair values
        (the iRSM–wRSM r's always use the jackknife).
    n_boot : int, default 2000
        Bootstrap resamples.
    confidence : float, default 0.95

    Returns
    -------
    dict
        Per pair (P = N(N-1)/2, pairs in :func:`qmvpa.rsa.pairwise_consistency`'s
        order), float64 arrays of shape (P,): ``consistency_rho``,
        ``consistency_tau`` (NaN above :data:`KENDALL_MAX_PAIRS`), ``cka``,
        ``cka_debiased``, ``procrustes``, ``isc``, ``procrustes_disparity``;
        per network, shape (N,): ``decoding_shared``, ``decoding_native``,
        ``decoding_within``;
        scalars ``rho_*``/``tau_*`` of the iRSM–wRSM comparisons and, with a
        reference, ``r_*_final_wrsm``; ``srm_null`` (null_draws,
        len(SRM_NULL_METRICS)) float64 (empty without nulls);
        ``stat_metrics`` (M,) str and ``stat_values`` (M, len(STATS))
        float64, NaN where a statistic does not apply. Measures not asked
        for are absent.

    Raises
    ------
    ValueError
        An unknown measure or interval method, ``n_perm < 1`` or
        ``null_draws < 0``, or inputs whose shapes disagree.
    """
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; choose from {', '.join(MEASURES)}")
    if interval not in intervals.METHODS:
        raise ValueError(f"interval must be one of {intervals.METHODS}, got {interval!r}")
    nulls._check_count(n_perm, "n_perm")
    if isinstance(null_draws, bool) or not isinstance(null_draws, (int, np.integer)) or null_draws < 0:
        raise ValueError(f"null_draws must be an integer >= 0, got {null_draws!r}")
    n = len(test)
    if not (len(fit) == len(shared) == n == len(wrsms)):
        raise ValueError(f"fit, test, shared and wrsms must hold the same networks, got {len(fit)}, {n}, "
                         f"{len(shared)}, {len(wrsms)}")
    measures = set(measures)
    iv = dict(method=interval, confidence=confidence, n_boot=n_boot, random_state=random_state)
    table = _Table()
    out = {}
    wrsms_in = wrsms
    wrsms = np.asarray(wrsms)
    wrsm = wrsms.mean(axis=0)  # (t, t)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=int).reshape(-1, 2)
    irsm = {"shared": rsa.inter_subject_rsm(shared), "native": rsa.inter_subject_rsm(test)}
    refs = {"wrsm": (wrsm, wrsms)}
    is_reference = reference_wrsms is not None and reference_wrsms is wrsms_in
    if reference_wrsms is not None and not is_reference:
        reference_wrsms = np.asarray(reference_wrsms)
        if reference_wrsms.shape != wrsms.shape:
            raise ValueError(f"reference_wrsms has shape {reference_wrsms.shape}, wrsms {wrsms.shape}")
        refs["final_wrsm"] = (reference_wrsms.mean(axis=0), reference_wrsms)
    methods = [("r", "pearson")] + [("rho", "spearman")] * ("spearman" in measures) \
        + [("tau", "kendall_tau_a")] * ("kendall_tau_a" in measures)

    # --- the iRSM–wRSM comparisons: values, jackknife over networks, Mantel tests
    loo_irsm = {space: leave_one_out_irsms(list(irsm_space_data)) if n >= 3 else None
                for space, irsm_space_data in (("shared", shared), ("native", test))}
    for suffix, (ref_mean, ref_stack) in refs.items():
        loo_ref = leave_one_out_means(ref_stack) if n >= 3 else None
        for space in ("shared", "native"):
            for prefix, method in methods:
                metric = f"{prefix}_{space}_irsm_{suffix}"
                value = _compare(irsm[space], ref_mean, method)
                if suffix == "final_wrsm" or prefix != "r":
                    out[metric] = np.float64(value)
                table.set(metric, value=value)
                if method != "kendall_tau_a" and loo_irsm[space] is not None:
                    reps = [_compare(loo_irsm[space][j], loo_ref[j], method) for j in range(n)]
                    ci = _jackknife(value, reps, confidence)
                    table.set(metric, ci_low=ci.low, ci_high=ci.high)
        mantel = nulls.mantel_test([irsm["shared"], irsm["native"]], ref_mean, "pearson", n_perm, random_state)
        for s, space in enumerate(("shared", "native")):
            table.set(f"r_{space}_irsm_{suffix}", p=mantel.p_value[s])
    del loo_irsm
    if is_reference:  # this checkpoint is the reference: its *_final_wrsm comparisons are the ones above
        for metric in list(table.rows):
            if metric.endswith("_irsm_wrsm"):
                final = metric[:-len("wrsm")] + "final_wrsm"
                table.rows[final] = dict(table.rows[metric])
                if not metric.startswith("r_"):
                    out[final] = out[metric]
        for space in ("shared", "native"):
            out[f"r_{space}_irsm_final_wrsm"] = np.float64(table.rows[f"r_{space}_irsm_wrsm"]["value"])

    # --- consistency (native wRSMs per pair)
    _, cons = rsa.pairwise_consistency(wrsms)
    _record_mean(table, "consistency", cons, _pair_interval(pairs, cons, n, **iv))
    if "spearman" in measures:
        _, out["consistency_rho"] = rsa.pairwise_consistency(wrsms, "spearman")
        _record_mean(table, "consistency_rho", out["consistency_rho"],
                     _pair_interval(pairs, out["consistency_rho"], n, **iv))
    if "kendall_tau_a" in measures:
        m = wrsms.shape[1] * (wrsms.shape[1] - 1) // 2
        if m <= KENDALL_MAX_PAIRS:
            tri = [rsa.lower_triangle(W) for W in wrsms]
            out["consistency_tau"] = np.array([rank_rsa.kendall_tau_a(tri[i], tri[j]) for i, j in pairs])
            _record_mean(table, "consistency_tau", out["consistency_tau"],
                         _pair_interval(pairs, out["consistency_tau"], n, **iv))
        else:
            log.info("consistency: Kendall τ-a skipped (%d RSM entries > %d)", m, KENDALL_MAX_PAIRS)
            out["consistency_tau"] = np.full(len(pairs), np.nan)

    # --- CKA, Procrustes, ISC, disparity
    if "cka" in measures:
        _, out["cka"] = cka.pairwise_cka(test)
        _record_mean(table, "cka", out["cka"], _pair_interval(pairs, out["cka"], n, **iv))
    if "cka_debiased" in measures:
        _, out["cka_debiased"] = cka.pairwise_cka(test, debiased=True)
        _record_mean(table, "cka_debiased", out["cka_debiased"],
                     _pair_interval(pairs, out["cka_debiased"], n, **iv))
    if "procrustes" in measures:
        D = procrustes.pairwise_procrustes(fit, test)
        out["procrustes"] = D[pairs[:, 0], pairs[:, 1]]
        _record_mean(table, "procrustes", out["procrustes"], _pair_interval(pairs, out["procrustes"], n, **iv))
    if "isc" in measures:
        _, isc = intersubject.pairwise_isc(shared)  # (P, k)
        out["isc"] = isc.mean(axis=1)
        _record_mean(table, "isc", out["isc"], _pair_interval(pairs, out["isc"], n, **iv))
    if "procrustes_disparity" in measures:
        D = intersubject.procrustes_disparity_matrix(shared)
        out["procrustes_disparity"] = D[pairs[:, 0], pairs[:, 1]]
        _record_mean(table, "procrustes_disparity", out["procrustes_disparity"],
                     _pair_interval(pairs, out["procrustes_disparity"], n, **iv))

    # --- per-network values computed by the caller (variance explained)
    for metric, values in (network_values or {}).items():
        _record_mean(table, metric, values, _mean_interval(values, **iv))

    # --- decoding
    if "decoding" in measures and labels is not None:
        labels = np.asarray(labels)
        out["decoding_shared"] = decoding.cross_network_accuracy(shared, labels)
        out["decoding_native"] = decoding.cross_network_accuracy(test, labels)
        counts = np.unique(labels, return_counts=True)[1]
        folds = min(DECODING_FOLDS, int(counts.min()))
        if folds >= 2:
            out["decoding_within"] = decoding.within_network_accuracy(test, labels, n_splits=folds,
                                                                      random_state=random_state)
        else:
            log.warning("within-network decoding skipped: a class has fewer than 2 held-out images")
            out["decoding_within"] = np.full(n, np.nan)
        for metric in ("decoding_shared", "decoding_native", "decoding_within"):
            _record_mean(table, metric, out[metric], _mean_interval(out[metric], **iv))
        table.set("decoding_chance", value=1.0 / len(counts))

    # --- correspondence-broken nulls
    out["srm_null"] = np.empty((0, len(SRM_NULL_METRICS)))
    if null_draws > 0:
        final_ref = refs["final_wrsm"][0] if "final_wrsm" in refs else (wrsm if is_reference else None)
        statistic = _SrmNullStatistic(test, wrsm, final_ref, with_isc="isc" in measures)
        observed = np.array([table.rows.get(m, {}).get("value", np.nan) for m in SRM_NULL_METRICS])
        res = nulls.srm_correspondence_null(fit, test, statistic=statistic, n_refits=int(null_draws),
                                            n_components=model.w_[0].shape[1], n_iter=n_iter, engine=engine,
                                            random_state=random_state, observed=np.nan_to_num(observed))
        out["srm_null"] = res.null
        for s, metric in enumerate(SRM_NULL_METRICS):
            if metric in table.rows and np.isfinite(observed[s]):
                null = res.null[:, s]
                table.set(metric, null_mean=float(np.nanmean(null)), null_q95=float(np.nanquantile(null, 0.95)))
                if not metric.startswith("r_"):  # the r's p-value is the Mantel test's
                    table.set(metric, p=nulls.permutation_p_value(observed[s], null))
        cons_test = pairwise_nulls.mantel_consistency_test(wrsms, "pearson", n_perm, random_state)
        table.null("consistency", cons_test)
        if "cka" in measures or "cka_debiased" in measures:
            biased, debiased = pairwise_nulls.mean_cka_null(test, int(null_draws), random_state)
            for metric, test_ in (("cka", biased), ("cka_debiased", debiased)):
                if metric in measures:
                    table.null(metric, test_)
        if "procrustes" in measures:
            table.null("procrustes", pairwise_nulls.mean_procrustes_null(fit, test, int(null_draws), random_state))

    out["stat_metrics"], out["stat_values"] = table.arrays()
    return out
