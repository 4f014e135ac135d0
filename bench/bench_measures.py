"""Cost of the inference measures and nulls at the paper's scale, against one SRM fit, in one process.

Run from the repository root (the paper's scale is the default; one run takes
about an hour on one core, most of it the SRM refits of the null)::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.bench_measures --json bench/measures.json
    .venv/bin/python -m bench.bench_measures --networks 4 --units 100 --fit 800 --test 200 \
        --refits 3 --variant-refits 2                                   # a quick smoke run

Data: ``--networks`` networks of ``--units`` units on ``--fit`` + ``--test``
images, float32, each a random rotation of one class-structured activity
pattern (10 classes) plus independent noise (as ``bench_analysis_memory.py``).

Timed, in this order, each with its wall and CPU time (``time.process_time``),
the ratio of its CPU time to the baseline's, and its peak of traced memory
above what was allocated when it started (``tracemalloc``, numpy's
allocations included; the input data are not traced; ``--no-tracemalloc`` to
skip):

1. **baseline**: one SRM fit (``qmvpa.factor.fit_srm``, engine "fast",
   float32, ``k = units``, 10 iterations) on the fit images;
2. the rest of a stage-3 job's computation (transform, variance explained,
   the four RSMs, pairwise consistency, the two r values), so that
   ``stage-3 compute = 1 + 2``;
3. the new measures for all pairs: linear CKA biased and debiased on the
   held-out images, Procrustes distances (same images on the held-out
   images, and cross-validated: rotation on the fit images), Spearman and
   Kendall τ-a of r(shared iRSM, wRSM), the pair-matrix jackknife;
4. the Mantel test of r(shared iRSM, wRSM) alone, and of r(shared iRSM,
   wRSM) and r(native iRSM, wRSM) in one call (sharing the permutations),
   ``--perms`` permutations;
5. ``--refits`` correspondence-broken SRM refits with the observed fit's
   settings (the null as specified);
6. cheaper variants of the SRM null (fewer iterations, a subsample of the fit
   images), ``--variant-refits`` refits each, with the null's mean, SD and
   maximum so the trade-off can be judged;
7. the CKA and Procrustes permutation nulls for one pair (``--perms`` and
   ``--procrustes-perms`` permutations), extrapolated to all pairs;
8. one SRM-aligned RSA pair similarity (a 2-network SRM fit), the unit of the
   layer-identification cost.

Prints the machine (CPU model, cores, load), library versions and thread
settings first, and the peak resident memory of the process (``ru_maxrss``)
last.
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

from qmvpa import cka, factor, intervals, layer_identification, nulls, procrustes, rank_rsa, rsa  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", type=int, default=10)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--fit", type=int, default=8000, help="fit images")
    parser.add_argument("--test", type=int, default=2000, help="held-out images")
    parser.add_argument("--n-iter", type=int, default=10, help="SRM iterations of the baseline")
    parser.add_argument("--perms", type=int, default=1000, help="Mantel and CKA permutations")
    parser.add_argument("--procrustes-perms", type=int, default=20,
                        help="Procrustes null permutations timed (extrapolated to --perms)")
    parser.add_argument("--refits", type=int, default=20, help="SRM null refits as specified")
    parser.add_argument("--variant-refits", type=int, default=5, help="refits per cheaper variant")
    parser.add_argument("--subsample", type=int, default=2000,
                        help="fit images of the subsampled null variants")
    parser.add_argument("--layers", type=int, default=4,
                        help="layers per network, to extrapolate the layer-identification cost")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def machine_info():
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average_start": os.getloadavg(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - informative only
        pass
    try:
        import threadpoolctl
        info["blas_threads"] = [(p["internal_api"], p["num_threads"])
                                for p in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    return info


def make_networks(rng, n_networks, n_units, n_images, n_classes=10, noise=0.5):
    """Rotated noisy copies of one class-structured pattern, float32 (units, images) each."""
    labels = np.arange(n_images) % n_classes
    pattern = rng.standard_normal((n_units, n_classes))[:, labels]  # (units, images)
    pattern += 0.8 * rng.standard_normal((n_units, n_images))
    pattern = pattern.astype(np.float32)
    out = []
    for _ in range(n_networks):
        Q, _ = np.linalg.qr(rng.standard_normal((n_units, n_units)))
        X = Q.astype(np.float32) @ pattern
        X += noise * rng.standard_normal(X.shape, dtype=np.float32)
        out.append(X)
    return out


def warm_up(Xf, Xt):
    """Run every timed function once on a small slice, so no phase pays for first-call imports."""
    f = [X[:20, :100] for X in Xf[:3]]
    t = [X[:20, :30] for X in Xt[:3]]
    model = factor.fit_srm(f, n_iter=2)
    factor.transform(model, t)
    cka.pairwise_cka(t, debiased=True)
    procrustes.pairwise_procrustes(f, t)
    A, B = rsa.inter_subject_rsm(t), rsa.mean_within_rsm(t)
    rank_rsa.compare_rsms(A, B, "kendall_tau_a")
    nulls.mantel_test(A, B, n_perm=2)
    nulls.srm_correspondence_null(f, t, n_refits=1, n_iter=1)
    nulls.cka_permutation_test(t[0], t[1], n_perm=2)
    nulls.procrustes_permutation_test(f[0], f[1], t[0], t[1], n_perm=2)
    intervals.pair_mean_interval(np.ones((3, 3)))


class Timer:
    """Runs phases, records wall/CPU time and traced peak memory, prints one line each."""

    def __init__(self, trace):
        self.trace = trace
        self.rows = []
        self.baseline_cpu = None

    def __call__(self, name, fn, note=""):
        if self.trace:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        # the phase's own peak: traced peak above what was allocated when it started
        peak = (tracemalloc.get_traced_memory()[1] - before) / 2 ** 20 if self.trace else float("nan")
        if self.baseline_cpu is None:
            self.baseline_cpu = cpu
        row = dict(name=name, wall_s=wall, cpu_s=cpu, ratio_cpu=cpu / self.baseline_cpu,
                   peak_traced_mib=peak, load=os.getloadavg()[0], note=note)
        self.rows.append(row)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {row['ratio_cpu']:.3f} | {peak:.0f} | "
              f"{row['load']:.1f} | {note} |", flush=True)
        return out


def summary(res):
    null = np.asarray(res.null)
    return dict(observed=float(np.ravel(res.observed)[0]), null_mean=float(np.nanmean(null)),
                null_sd=float(np.nanstd(null, ddof=1)) if null.size > 1 else float("nan"),
                null_max=float(np.nanmax(null)), p_value=float(np.ravel(res.p_value)[0]),
                n_null=int(null.shape[0]))


def main(argv=None):
    args = parse_args(argv)
    info = machine_info()
    print("# Inference measures benchmark")
    print("command: " + " ".join([Path(sys.executable).name, "-m", "bench.bench_measures"] + sys.argv[1:]))
    for key, value in info.items():
        print(f"{key}: {value}")
    n_nets, units = args.networks, args.units
    print(f"scale: {n_nets} networks x {units} units, {args.fit} fit + {args.test} held-out images, "
          f"float32, k = {units}, SRM {args.n_iter} iterations (engine fast)\n", flush=True)

    rng = np.random.default_rng(args.seed)
    data = make_networks(rng, n_nets, units, args.fit + args.test)
    Xf = [np.ascontiguousarray(X[:, :args.fit]) for X in data]
    Xt = [np.ascontiguousarray(X[:, args.fit:]) for X in data]
    del data
    warm_up(Xf, Xt)
    if not args.no_tracemalloc:
        tracemalloc.start()
    timer = Timer(not args.no_tracemalloc)
    print("| phase | wall (s) | CPU (s) | CPU / baseline | peak extra memory (MiB) | load | note |")
    print("|---|---|---|---|---|---|---|")
    extra = {}

    # 1-2. the stage-3 job's own computation
    fit = timer("baseline: SRM fit", lambda: factor.fit_srm(Xf, n_iter=args.n_iter, random_state=args.seed,
                                                             engine="fast"))

    def stage3_rest():
        S_bar_fit = sum(w.T @ X for w, X in zip(fit.w_, Xf)) / n_nets
        factor.variance_explained(Xf, fit.w_, S_bar_fit)
        factor.variance_explained(Xf, fit.w_, fit.s_, mu=getattr(fit, "mu_", None))
        St = [S.astype(np.float32) for S in factor.transform(fit, Xt)]
        factor.variance_explained(Xt, fit.w_, np.mean(St, axis=0))
        wrsms = [rsa.within_rsm(X) for X in Xt]
        wrsm_native = np.mean(wrsms, axis=0)
        consistency = rsa.pairwise_consistency(wrsms)
        rsa.mean_within_rsm(St)
        irsm_native, irsm_shared = rsa.inter_subject_rsm(Xt), rsa.inter_subject_rsm(St)
        return St, wrsm_native, consistency, irsm_native, irsm_shared

    St, wrsm_native, (pairs, consistency), irsm_native, irsm_shared = timer(
        "stage-3 rest (transform, VE, 4 RSMs, consistency)", stage3_rest)
    r_shared = rsa.rsm_similarity(irsm_shared, wrsm_native)
    r_native = rsa.rsm_similarity(irsm_native, wrsm_native)
    extra.update(r_shared=r_shared, r_native=r_native)
    stage3_cpu = timer.rows[0]["cpu_s"] + timer.rows[1]["cpu_s"]

    # 3. measures for all pairs
    _, cka_b = timer("CKA biased, all pairs (held-out)", lambda: cka.pairwise_cka(Xt))
    _, cka_d = timer("CKA debiased, all pairs (held-out)", lambda: cka.pairwise_cka(Xt, debiased=True))
    D_same = timer("Procrustes, all pairs (held-out images)", lambda: procrustes.pairwise_procrustes(Xt))
    D_cv = timer("Procrustes cross-validated, all pairs", lambda: procrustes.pairwise_procrustes(Xf, Xt))
    timer("Spearman r(shared iRSM, wRSM)", lambda: rank_rsa.compare_rsms(irsm_shared, wrsm_native, "spearman"))
    tau = timer("Kendall tau-a r(shared iRSM, wRSM)",
                lambda: rank_rsa.compare_rsms(irsm_shared, wrsm_native, "kendall_tau_a"))
    M = intervals.pair_matrix(pairs, cka_d, n_nets)
    ci = timer("jackknife of the mean pairwise CKA", lambda: intervals.pair_mean_interval(M))
    extra.update(cka_biased_mean=float(np.mean(cka_b)), cka_debiased_mean=float(np.mean(cka_d)),
                 procrustes_same_mean=float(D_same[np.triu_indices(n_nets, 1)].mean()),
                 procrustes_cv_mean=float(D_cv[np.triu_indices(n_nets, 1)].mean()),
                 kendall_tau_a=tau, cka_debiased_ci=[ci.low, ci.high])

    # 4. Mantel tests
    m_shared = timer(f"Mantel r(shared iRSM, wRSM), {args.perms} perms",
                     lambda: nulls.mantel_test(irsm_shared, wrsm_native, n_perm=args.perms))
    m_both = timer(f"Mantel shared and native iRSM vs wRSM in one call, {args.perms} perms",
                   lambda: nulls.mantel_test([irsm_shared, irsm_native], wrsm_native, n_perm=args.perms))
    m_native = nulls.NullTest(m_both.observed[1], m_both.null[:, 1], m_both.p_value[1])
    extra.update(mantel_shared=summary(m_shared), mantel_native=summary(m_native))

    # 5. the SRM null as specified (the observed value is the stage-3 job's)
    statistic = nulls.IrsmWrsmStatistic(Xt)
    null_specs = [(f"SRM null as specified: {args.refits} refits, n_iter {args.n_iter}",
                   dict(n_iter=args.n_iter), args.refits)]
    # 6. cheaper variants
    for n_iter in (3, 1):
        null_specs.append((f"SRM null variant: n_iter {n_iter}, {args.variant_refits} refits",
                           dict(n_iter=n_iter), args.variant_refits))
    if args.subsample < args.fit:
        for n_iter in (args.n_iter, 3):
            null_specs.append((f"SRM null variant: {args.subsample} fit images, n_iter {n_iter}, "
                               f"{args.variant_refits} refits",
                               dict(n_iter=n_iter, fit_subsample=args.subsample), args.variant_refits))
    null_rows = []
    for name, options, n_refits in null_specs:
        if n_refits < 1:
            continue
        res = timer(name, lambda: nulls.srm_correspondence_null(
            Xf, Xt, statistic=statistic, n_refits=n_refits, observed=r_shared, random_state=args.seed,
            **options))
        row = dict(name=name, options=options, **summary(res),
                   cpu_per_refit_s=timer.rows[-1]["cpu_s"] / n_refits)
        row["cpu_per_refit_over_baseline"] = row["cpu_per_refit_s"] / timer.baseline_cpu
        null_rows.append(row)
    extra["srm_null"] = null_rows

    # 7. CKA and Procrustes permutation nulls for one pair
    c_null = timer(f"CKA (debiased) null, one pair, {args.perms} perms",
                   lambda: nulls.cka_permutation_test(Xt[0], Xt[1], debiased=True, n_perm=args.perms))
    p_null = timer(f"Procrustes CV null, one pair, {args.procrustes_perms} perms",
                   lambda: nulls.procrustes_permutation_test(Xf[0], Xf[1], Xt[0], Xt[1],
                                                             n_perm=args.procrustes_perms))
    n_pairs = n_nets * (n_nets - 1) // 2
    extra.update(cka_null_pair=summary(c_null), procrustes_null_pair=summary(p_null),
                 cka_null_all_pairs_cpu_s=timer.rows[-2]["cpu_s"] * n_pairs,
                 procrustes_null_all_pairs_cpu_s=(timer.rows[-1]["cpu_s"] / args.procrustes_perms
                                                  * args.perms * n_pairs))

    # 8. the unit cost of SRM-aligned RSA layer identification
    timer("SRM-aligned RSA, one pair of layers (2-network SRM)",
          lambda: layer_identification.srm_rsa_similarity(Xf[0], Xt[0], Xf[1], Xt[1], n_iter=args.n_iter))
    extra["layer_id_srm_rsa_cpu_s"] = timer.rows[-1]["cpu_s"] * n_pairs * args.layers ** 2

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux -> GiB
    print(f"\nstage-3 compute (baseline + rest): {stage3_cpu:.1f} s CPU")
    print(f"r(shared iRSM, wRSM) = {r_shared:.4f}, r(native iRSM, wRSM) = {r_native:.4f}, "
          f"Kendall tau-a (shared) = {tau:.4f}")
    print(f"mean pairwise CKA biased {extra['cka_biased_mean']:.4f}, debiased {extra['cka_debiased_mean']:.4f} "
          f"(jackknife 95% CI {ci.low:.4f} .. {ci.high:.4f}); Procrustes same-images "
          f"{extra['procrustes_same_mean']:.4f} rad, cross-validated {extra['procrustes_cv_mean']:.4f} rad")
    for key in ("mantel_shared", "mantel_native"):
        s = extra[key]
        print(f"{key}: observed {s['observed']:.4f}, null mean {s['null_mean']:.4f} sd {s['null_sd']:.4f} "
              f"max {s['null_max']:.4f}, p {s['p_value']:.4g}")
    print("\n| SRM null | refits | CPU per refit (s) | per refit / baseline | refits in 50% of stage 3 | "
          "null mean | null SD | null max | p |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in null_rows:
        budget = 0.5 * stage3_cpu / row["cpu_per_refit_s"]
        print(f"| {row['name']} | {row['n_null']} | {row['cpu_per_refit_s']:.2f} | "
              f"{row['cpu_per_refit_over_baseline']:.3f} | {budget:.1f} | {row['null_mean']:.4f} | "
              f"{row['null_sd']:.4f} | {row['null_max']:.4f} | {row['p_value']:.4g} |")
    print(f"\nCKA debiased null, one pair: observed {extra['cka_null_pair']['observed']:.4f}, null mean "
          f"{extra['cka_null_pair']['null_mean']:.4f}; all {n_pairs} pairs x {args.perms} perms ~ "
          f"{extra['cka_null_all_pairs_cpu_s']:.0f} s CPU")
    print(f"Procrustes CV null, one pair: observed {extra['procrustes_null_pair']['observed']:.4f}, null mean "
          f"{extra['procrustes_null_pair']['null_mean']:.4f}; all {n_pairs} pairs x {args.perms} perms ~ "
          f"{extra['procrustes_null_all_pairs_cpu_s']:.0f} s CPU")
    print(f"SRM-aligned RSA layer identification, {n_pairs} pairs x {args.layers}^2 layer pairs ~ "
          f"{extra['layer_id_srm_rsa_cpu_s']:.0f} s CPU")
    print(f"peak resident memory of the process (ru_maxrss): {peak_rss:.2f} GiB")
    print(f"load average at end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(dict(machine=info, args=vars(args) | {"json": str(args.json)},
                                             phases=timer.rows, results=extra, stage3_cpu_s=stage3_cpu,
                                             peak_rss_gib=peak_rss), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
