"""Time BrainIAK's SRM against qmvpa.srm's engines, in one process.

Run (from the repository root)::

    .venv/bin/python bench/bench_srm.py --scale both
    .venv/bin/python bench/bench_srm.py --scale small --repeats 3 \
        --engines brainiak,numpy-f64,numpy-f32,jax-f32 --json bench/srm_small.json

Scales (10 iterations, as the paper's analyses): ``small`` = 10 subjects x
1,000 units x 2,000 samples, k = 1,000; ``paper`` = 10 x 1,000 x 8,000,
k = 1,000 (the paper's CIFAR fit set). The data imitate z-scored hidden-layer
activity (ReLU units driven by a 100-dimensional latent signal, z-scored per
image), which makes the polar steps as ill-conditioned as real activations;
``--data gaussian`` uses white noise instead.

Prints the machine (CPU model, cores, load, GPU if JAX sees one), library
versions, thread settings, the number of runs, wall-clock and CPU times,
speed-ups against BrainIAK, and each engine's agreement with the reference
(BrainIAK when it ran, else numpy-f64): max relative difference of ``w_`` and
``s_``, relative difference of the log-likelihood (against numpy-f64, which
reproduces BrainIAK's), of the mean variance explained, and 1 - r between the
shared responses' RSMs on 1,000 samples.

BLAS runs on one thread unless ``--threads`` says otherwise (OpenBLAS's SVD
is much slower with two threads on a 2-core machine); JAX on the CPU is held
to one thread too, so every engine gets the same core. The ``*-2t`` engines
(``n_jobs=2``) raise the BLAS threads themselves (threadpoolctl) for their
large products and run two subjects' M-steps at a time: they use both cores.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ENGINES = {
    # name: (implementation, constructor keyword arguments)
    "brainiak": ("brainiak", {}),
    "numpy-f64": ("qmvpa", dict(dtype="float64", backend="numpy")),
    "numpy-f64-eigh": ("qmvpa", dict(dtype="float64", backend="numpy", polar="eigh")),
    "numpy-f32": ("qmvpa", dict(dtype="float32", backend="numpy")),
    "numpy-f32-svd": ("qmvpa", dict(dtype="float32", backend="numpy", polar="svd")),
    # n_jobs=2: products on 2 BLAS threads, subjects' M-steps 2 at a time
    # (polar "auto" -> "eigh" in float32), whatever --threads says.
    "numpy-f32-2t": ("qmvpa", dict(dtype="float32", backend="numpy", n_jobs=2)),
    "numpy-f64-2t": ("qmvpa", dict(dtype="float64", backend="numpy", n_jobs=2)),
    "jax-f32": ("qmvpa", dict(dtype="float32", backend="jax")),
    "jax-f32-ns": ("qmvpa", dict(dtype="float32", backend="jax", polar="newton-schulz")),
    "jax-f64": ("qmvpa", dict(dtype="float64", backend="jax")),
}
SCALES = {"small": (10, 1000, 2000, 1000), "paper": (10, 1000, 8000, 1000)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=["small", "paper", "both"], default="small")
    parser.add_argument("--engines", default="brainiak,numpy-f64,numpy-f32,jax-f32",
                        help="comma-separated, from: " + ", ".join(ENGINES))
    parser.add_argument("--model", choices=["srm", "detsrm"], default="srm")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed fits per engine (JAX: after one compile+run)")
    parser.add_argument("--brainiak-repeats", type=int, default=1)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--subjects", type=int, default=None, help="override the scale's")
    parser.add_argument("--units", type=int, default=None, help="override the scale's")
    parser.add_argument("--samples", type=int, default=None, help="override the scale's")
    parser.add_argument("--features", type=int, default=None, help="override the scale's")
    parser.add_argument("--data", choices=["network", "gaussian"], default="network")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and XLA CPU threads (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        parser.error(f"unknown engine(s) {unknown}; choose from {list(ENGINES)}")
    args.engines = engines
    return args


def set_threads(threads):
    """Thread settings must be in the environment before numpy/JAX load."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()


def network_like(rng, subjects, units, samples, latent=100):
    """(units, samples) arrays: ReLU(mixing @ latent + noise - 0.5), z-scored per image."""
    import numpy as np
    signal = rng.standard_normal((latent, samples)) * np.logspace(0, -2, latent)[:, None]
    data = []
    for _ in range(subjects):
        x = rng.standard_normal((units, latent)) @ signal
        x += 0.3 * rng.standard_normal((units, samples)) - 0.5
        np.maximum(x, 0, out=x)
        x -= x.mean(0)
        x /= x.std(0) + 1e-8
        data.append(x)
    return data


def machine_info(engines):
    import numpy as np
    import scipy
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                   / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - informative only
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                            capture_output=True, text=True,
                                            check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    if "brainiak" in engines:
        from importlib.metadata import version
        info["brainiak"] = version("brainiak")
    if any(e.startswith("jax") for e in engines):
        import jax
        import jaxlib
        info["jax"] = jax.__version__
        info["jaxlib"] = jaxlib.__version__
        info["jax_devices"] = [f"{d.platform}:{getattr(d, 'device_kind', d)}"
                               for d in jax.devices()]
    return info


def make_model(engine, model, n_iter, features, seed):
    implementation, kwargs = ENGINES[engine]
    if implementation == "brainiak":
        from brainiak.funcalign import srm as brainiak_srm
        cls = brainiak_srm.SRM if model == "srm" else brainiak_srm.DetSRM
        return cls(n_iter=n_iter, features=features, rand_seed=seed)
    import numpy as np
    from qmvpa import srm
    cls = srm.SRM if model == "srm" else srm.DetSRM
    kwargs = dict(kwargs, dtype=np.dtype(kwargs["dtype"]).type)
    return cls(n_iter=n_iter, features=features, rand_seed=seed, **kwargs)


def timed_fit(engine, data, args, features):
    model = make_model(engine, args.model, args.n_iter, features, args.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(data)
    return model, time.perf_counter() - wall, time.process_time() - cpu


def compare(model, reference, loglike_reference, data, rsm_samples):
    """Agreement of ``model`` with ``reference`` (see the module docstring)."""
    import numpy as np

    def rel(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    def variance_explained(m):
        values = []
        for w, x in zip(m.w_, data):
            xc = x - x.mean(1, keepdims=True)
            residual = np.asarray(w, np.float64) @ np.asarray(m.s_, np.float64) - xc
            values.append(1 - np.mean(residual ** 2) / np.var(xc))
        return float(np.mean(values))

    def rsm_lower(m):
        r = np.corrcoef(np.asarray(m.s_, np.float64)[:, rsm_samples].T)
        return r[np.tril_indices_from(r, k=-1)]

    out = {"w_max_rel": max(rel(a, b) for a, b in zip(model.w_, reference.w_)),
           "s_max_rel": rel(model.s_, reference.s_)}
    objective = getattr(model, "objective_", None)
    if objective is not None and loglike_reference is not None and len(objective):
        out["objective_rel"] = float(abs(objective[-1] - loglike_reference[-1])
                                     / abs(loglike_reference[-1]))
    out["variance_explained"] = variance_explained(model)
    out["variance_explained_diff"] = out["variance_explained"] - variance_explained(reference)
    out["one_minus_rsm_r"] = float(1 - np.corrcoef(rsm_lower(model), rsm_lower(reference))[0, 1])
    return out


def run_scale(name, args):
    import numpy as np
    subjects, units, samples, features = SCALES[name]
    subjects = args.subjects or subjects
    units = args.units or units
    samples = args.samples or samples
    features = args.features or features
    rng = np.random.default_rng(args.seed)
    if args.data == "network":
        data = network_like(rng, subjects, units, samples)
    else:
        data = [rng.standard_normal((units, samples)) for _ in range(subjects)]
    print(f"\n## scale {name}: {subjects} subjects x {units} units x {samples} samples, "
          f"k = {features}, {args.n_iter} iterations, model {args.model}, data {args.data}",
          flush=True)
    rsm_samples = np.sort(rng.choice(samples, size=min(1000, samples), replace=False))
    rows, models = [], {}
    for engine in args.engines:
        repeats = args.brainiak_repeats if engine == "brainiak" else args.repeats
        row = {"engine": engine, "runs": repeats, "load_before": os.getloadavg()[0]}
        if engine.startswith("jax"):
            _, wall, cpu = timed_fit(engine, data, args, features)
            row["first_call_wall_s"] = wall          # includes tracing + compilation
            print(f"  {engine}: first call (compile + run) {wall:.2f} s wall", flush=True)
        walls, cpus = [], []
        for _ in range(repeats):
            model, wall, cpu = timed_fit(engine, data, args, features)
            walls.append(wall)
            cpus.append(cpu)
            print(f"  {engine}: {wall:.2f} s wall, {cpu:.2f} s CPU "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
        row.update(wall_min_s=min(walls), wall_median_s=float(np.median(walls)),
                   cpu_min_s=min(cpus), walls_s=walls, cpus_s=cpus)
        if hasattr(model, "polar_"):
            row["polar"] = model.polar_
        models[engine] = model
        rows.append(row)
    reference_name = "brainiak" if "brainiak" in models else (
        "numpy-f64" if "numpy-f64" in models else None)
    loglike_reference = getattr(models.get("numpy-f64"), "objective_", None)
    base = next((r for r in rows if r["engine"] == "brainiak"), None)
    for row in rows:
        if reference_name and row["engine"] != reference_name:
            row.update(compare(models[row["engine"]], models[reference_name],
                               loglike_reference, data, rsm_samples))
        if base is not None:
            row["speedup_wall"] = base["wall_min_s"] / row["wall_min_s"]
            row["speedup_cpu"] = base["cpu_min_s"] / row["cpu_min_s"]
    print_table(rows, reference_name)
    return dict(scale=name, subjects=subjects, units=units, samples=samples,
                features=features, n_iter=args.n_iter, model=args.model, data=args.data,
                reference=reference_name, rows=rows)


def print_table(rows, reference_name):
    print(f"\n| engine | polar | runs | wall min (s) | CPU min (s) | speed-up wall | "
          f"speed-up CPU | w_ max rel | s_ max rel | loglik rel | VE diff | 1-r RSM |  "
          f"(reference: {reference_name})")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def fmt(row, key, spec):
        value = row.get(key)
        return "-" if value is None else format(value, spec)

    for row in rows:
        print(f"| {row['engine']} | {row.get('polar', 'svd')} | {row['runs']} | "
              f"{row['wall_min_s']:.2f} | {row['cpu_min_s']:.2f} | "
              f"{fmt(row, 'speedup_wall', '.2f')} | {fmt(row, 'speedup_cpu', '.2f')} | "
              f"{fmt(row, 'w_max_rel', '.1e')} | {fmt(row, 's_max_rel', '.1e')} | "
              f"{fmt(row, 'objective_rel', '.1e')} | "
              f"{fmt(row, 'variance_explained_diff', '.1e')} | "
              f"{fmt(row, 'one_minus_rsm_r', '.1e')} |", flush=True)


def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    info = machine_info(args.engines)
    print("# SRM benchmark")
    print("command: " + " ".join([Path(sys.executable).name] + sys.argv))
    for key, value in info.items():
        print(f"{key}: {value}")
    print(f"load average at start: {os.getloadavg()}")
    scales = ["small", "paper"] if args.scale == "both" else [args.scale]
    results = [run_scale(scale, args) for scale in scales]
    print(f"\nload average at end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(dict(machine=info, command=sys.argv,
                                             results=results), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
