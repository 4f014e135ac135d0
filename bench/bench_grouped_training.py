"""Stage 1 on the digits demo: 10 networks trained one after another (``model.fit``) against one group.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_grouped_training.py             # 10 seeds × 30 epochs
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_grouped_training.py --epochs 5  # a quicker check

Both run in this process, on the same configuration (digits × conv, the
demo's), each into a temporary results root through
:func:`nnsrm.training.train_group`:

- sequential: ``engine="fit"``, one ``model.fit`` per subject and epoch, the
  path every Keras backend runs (and stage 1's path before groups);
- grouped: ``engine="compiled"``, all subjects in one group, the JAX programs
  of :mod:`nnsrm.compiled_training` (on a CPU the per-core step loop, one
  XLA device per core).

Each path is first warmed up on one subject for one epoch, so the timed runs
exclude compilation (XLA's, and Keras' tracing of its train function). Prints
the machine, the wall time of each run, the ratio, and the largest difference
of the final test accuracies.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from nnsrm import cli

cli.prepare_environment(blas_threads=1, cpu_devices=True)  # before JAX loads: one XLA device per core


def timed(cfg, root, subjects, engine):
    """Wall seconds of ``train_group`` and the final test accuracy of each subject."""
    from nnsrm.training import train_group

    t0 = time.perf_counter()
    results = train_group(cfg, root, subjects, engine=engine, progress=False)
    return time.perf_counter() - t0, [r["final_val_accuracy"] for r in results]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30, help="epochs per network (default: the demo's 30)")
    args = parser.parse_args(argv)

    import jax
    import keras

    from nnsrm import config

    cfg = config.get_config("digits", "conv", n_subjects=args.subjects, n_epochs=args.epochs)
    warm = config.get_config("digits", "conv", n_subjects=1, n_epochs=1)
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores; JAX devices: {len(jax.devices())} × {jax.default_backend()}")
    print(f"keras {keras.__version__}, jax {jax.__version__}; digits × conv, {args.subjects} networks × "
          f"{args.epochs} epochs, batch {cfg.batch_size}; one timed run each after a one-epoch warm-up")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("NNSRM_JAX_CACHE", os.path.join(tmp, "jax-cache"))
        subjects = list(range(args.subjects))
        timed(warm, os.path.join(tmp, "warm-fit"), [0], "fit")
        timed(warm, os.path.join(tmp, "warm-grouped"), [0], "compiled")
        t_seq, acc_seq = timed(cfg, os.path.join(tmp, "sequential"), subjects, "fit")
        print(f"sequential (model.fit, one subject at a time): {t_seq:7.1f} s")
        t_grp, acc_grp = timed(cfg, os.path.join(tmp, "grouped"), subjects, "compiled")
        print(f"grouped    (one group of {args.subjects}, compiled):      {t_grp:7.1f} s")
    print(f"ratio sequential / grouped: {t_seq / t_grp:.2f}x")
    print(f"final test accuracy: sequential {min(acc_seq):.3f}-{max(acc_seq):.3f}, grouped "
          f"{min(acc_grp):.3f}-{max(acc_grp):.3f}; largest per-seed difference "
          f"{max(abs(a - b) for a, b in zip(acc_seq, acc_grp)):.4f}")


if __name__ == "__main__":
    main()
