"""Wall time and peak memory of one stage-3 job at the paper's scale (it must stay under 8 GB).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_analysis_memory.py              # paper scale
    .venv/bin/python bench/bench_analysis_memory.py --subjects 4 --units 200 --images 1000   # quick

Writes a synthetic condition (``--subjects`` networks × ``--images`` test images ×
``--units`` units, float32 images × units on disk, as stage 2 leaves it: rotated
copies of one class-structured activity pattern plus noise) into a temporary
results root, then runs :func:`nnsrm.analysis.analyse_job` — load, split, z-score,
SRM with k = units, variance explained, the four RSMs, consistency, results.npz,
rsm.png, marker — in a fresh child process, and reports the child's wall time and
peak resident memory (``ru_maxrss``), with the machine and library versions.
One run; the numbers go to bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

DATA, MODEL, LAYER, EPOCH = "cifar10", "conv", "pool2", 50


def make_condition(root: Path, n_subjects: int, n_units: int, n_images: int, n_classes: int = 10,
                   noise: float = 0.5, seed: int = 0) -> None:
    """Write a synthetic stage-2 condition with one epoch and one layer."""
    from nnsrm import atomic
    from nnsrm.paths import ResultsLayout

    layout = ResultsLayout(root, DATA, MODEL)
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % n_classes
    atomic.save_npy(layout.test_labels_path, labels.astype(np.int64))
    atomic.write_json(layout.layers_path, {"layers": [LAYER], "units": {LAYER: n_units}})
    A = rng.standard_normal((n_units, n_classes))[:, labels]  # (units, images)
    A += 0.8 * rng.standard_normal((n_units, n_images))
    A = A.astype(np.float32)
    for s in range(n_subjects):
        Q, _ = np.linalg.qr(rng.standard_normal((n_units, n_units)))
        X = Q.astype(np.float32) @ A  # (units, images)
        X += noise * rng.standard_normal(X.shape, dtype=np.float32)
        path = layout.activation_path(s, EPOCH, LAYER)
        atomic.save_npy(path, np.ascontiguousarray(X.T))  # on disk: images × units
        atomic.write_marker(layout.activations_dir(s, EPOCH), [path])
        del X


def child(root: str, n_subjects: int, engine: str) -> None:
    """Run the job in this (fresh) process and print its wall time and peak RSS as JSON."""
    from nnsrm import analysis

    params = analysis.AnalysisParams(engine=engine, max_units=1000)
    t0, c0 = time.perf_counter(), time.process_time()
    out = analysis.analyse_job(root, DATA, MODEL, EPOCH, LAYER, list(range(n_subjects)), params.as_dict(),
                               layer_depth=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_gib": peak_kib / 2**20, **out}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--engine", default="brainiak", choices=("brainiak", "fast"))
    parser.add_argument("--keep", type=Path, default=None, help="write the root here and keep it")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.subjects, args.engine)
        return 0

    from importlib import metadata

    versions = {p: metadata.version(p) for p in ("numpy", "scipy", "brainiak")}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, {versions}")
    print(f"job: {args.subjects} networks × {args.units} units × {args.images} images, engine {args.engine}, "
          f"1 run")
    with tempfile.TemporaryDirectory(prefix="bench_analysis_") as tmp:
        root = args.keep or Path(tmp)
        t0 = time.perf_counter()
        make_condition(root, args.subjects, args.units, args.images)
        print(f"wrote synthetic activations in {time.perf_counter() - t0:.1f} s")
        load0 = os.getloadavg()
        proc = subprocess.run([sys.executable, __file__, "--child", str(root), "--subjects", str(args.subjects),
                               "--engine", args.engine], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        npz = root / DATA / MODEL / "analyses" / f"epoch_{EPOCH:03d}" / LAYER / "results.npz"
        print(f"load average before/after: {load0} / {os.getloadavg()}")
        print(f"wall time {res['wall_s']:.1f} s (CPU time {res.get('cpu_s', float('nan')):.1f} s), peak RSS {res['peak_rss_gib']:.2f} GiB "
              f"(limit 8 GB), results.npz {npz.stat().st_size / 2**20:.0f} MiB; "
              f"r(shared iRSM, wRSM) {res['r_shared_irsm_wrsm']:.3f}, "
              f"r(native iRSM, wRSM) {res['r_native_irsm_wrsm']:.3f}, var exp test {res['var_exp_test']:.3f}")
        return 0 if res["peak_rss_gib"] * 2**30 < 8e9 else 1


if __name__ == "__main__":
    sys.exit(main())
