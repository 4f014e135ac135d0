"""Peak memory of one paper-scale stage-3 job on registered activations (bring your own; limit 8 GB).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_byo_memory.py                 # .npz, paper scale
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_byo_memory.py --format h5
    .venv/bin/python bench/bench_byo_memory.py --subjects 4 --units 200 --images 1000   # quick

Writes a synthetic source folder in the documented format (docs/bring-your-own.md):
``--subjects`` networks, one ``.npz`` (stored, memory-mapped), HDF5 file or ``.npy``
folder each, one checkpoint and one layer of ``--units`` units × ``--images`` images
(float32, images × units: rotated copies of one class-structured pattern plus noise,
as bench/bench_analysis_memory.py), plus labels.npy. Then, each in a fresh child
process, ``nnsrm register`` (which reads every array once for NaN/Inf) and the
stage-3 job :func:`nnsrm.analysis.analyse_job` on the registered condition; reports
each child's wall time and peak resident memory (``ru_maxrss``) with the machine and
library versions. One run; the numbers go to bench/RESULTS.md by hand.
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

import numpy as np  # noqa: E402

DATA, MODEL, LAYER, EPOCH = "bench", "byo", "pool2", 50


def write_source(src: Path, fmt: str, n_subjects: int, n_units: int, n_images: int, n_classes: int = 10,
                 noise: float = 0.5, seed: int = 0) -> None:
    """A source folder with one checkpoint and one layer per network, in format ``fmt``."""
    import h5py

    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % n_classes
    np.save(src / "labels.npy", labels.astype(np.int64))
    A = rng.standard_normal((n_units, n_classes))[:, labels]  # (units, images)
    A += 0.8 * rng.standard_normal((n_units, n_images))
    A = A.astype(np.float32)
    for s in range(n_subjects):
        Q, _ = np.linalg.qr(rng.standard_normal((n_units, n_units)))
        X = Q.astype(np.float32) @ A  # (units, images)
        X += noise * rng.standard_normal(X.shape, dtype=np.float32)
        X = np.ascontiguousarray(X.T)  # images × units
        key = f"epoch_{EPOCH}/{LAYER}"
        if fmt == "npz":
            np.savez(src / f"seed{s}.npz", **{key: X})
        elif fmt == "h5":
            with h5py.File(src / f"seed{s}.h5", "w") as f:
                f.create_dataset(key, data=X)
        else:
            (src / f"seed{s}" / f"epoch_{EPOCH}").mkdir(parents=True)
            np.save(src / f"seed{s}" / f"epoch_{EPOCH}" / f"{LAYER}.npy", X)
        del X


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def child(step: str, src: str, root: str, n_subjects: int, engine: str) -> None:
    """Run one step in this (fresh) process and print its wall time and peak RSS as JSON."""
    t0, c0 = time.perf_counter(), time.process_time()
    if step == "register":
        from nnsrm.manifest import register_source

        reg = register_source(src, root, DATA, MODEL)
        out = {"status": reg.status, "compressed": reg.compressed}
    else:
        from nnsrm import analysis

        params = analysis.AnalysisParams(engine=engine, max_units=1000)
        out = analysis.analyse_job(root, DATA, MODEL, EPOCH, LAYER, list(range(n_subjects)), params.as_dict(),
                                   layer_depth=0)
    out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0, peak_rss_gib=_peak_gib())
    print(json.dumps(out))


def run_child(*args) -> dict:
    proc = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--format", choices=("npz", "h5", "npy"), default="npz")
    parser.add_argument("--engine", default="fast", choices=("brainiak", "fast"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--src", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.src, args.root, args.subjects, args.engine)
        return 0

    from importlib import metadata

    versions = {p: metadata.version(p) for p in ("numpy", "scipy", "h5py")}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, {versions}")
    print(f"job: {args.subjects} networks × {args.units} units × {args.images} images, format {args.format}, "
          f"engine {args.engine}, 1 run")
    with tempfile.TemporaryDirectory(prefix="bench_byo_") as tmp:
        src, root = Path(tmp) / "source", Path(tmp) / "root"
        t0 = time.perf_counter()
        write_source(src, args.format, args.subjects, args.units, args.images)
        size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
        print(f"wrote the source ({size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")
        common = ["--src", src, "--root", root, "--subjects", args.subjects, "--engine", args.engine]
        load0 = os.getloadavg()
        reg = run_child("--child", "register", *common)
        print(f"nnsrm register: wall {reg['wall_s']:.1f} s, peak RSS {reg['peak_rss_gib']:.2f} GiB "
              f"({reg['compressed']} compressed members)")
        job = run_child("--child", "job", *common)
        print(f"load average before/after: {load0} / {os.getloadavg()}")
        print(f"stage-3 job: wall {job['wall_s']:.1f} s (CPU {job['cpu_s']:.1f} s), peak RSS "
              f"{job['peak_rss_gib']:.2f} GiB (limit 8 GB); r(shared iRSM, wRSM) {job['r_shared_irsm_wrsm']:.3f}, "
              f"r(native iRSM, wRSM) {job['r_native_irsm_wrsm']:.3f}, var exp test {job['var_exp_test']:.3f}")
        return 0 if max(reg["peak_rss_gib"], job["peak_rss_gib"]) * 2**30 < 8e9 else 1


if __name__ == "__main__":
    sys.exit(main())
