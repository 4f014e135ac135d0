"""Training throughput (images/s) of the paper's networks on CIFAR-shaped data, one model through ``fit``.

    .venv/bin/python bench/bench_train_throughput.py                    # conv and resnet18, batch 32
    .venv/bin/python bench/bench_train_throughput.py --steps 20 --models conv   # a quick CPU check

Random 32×32×3 images (no download). Each model is compiled and warmed up with
one short ``fit`` first; then ``--steps`` batches are timed. Prints the machine,
backend, versions and images per second. Issue 6 quotes, for an H200: the
Keras conv net at about 9,000 images/s and a Keras-JAX pre-activation ResNet-18
at about 8,200 images/s (batch 32, float32), plain PyTorch ResNet-18 at about
47,000 images/s (batch 512, bf16).
"""

import argparse
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402


def throughput(model_name: str, batch_size: int, steps: int, augment: bool) -> float:
    """Images per second of ``model.fit`` on random CIFAR-shaped data, after a warm-up."""
    import keras

    from nnsrm import models

    model = models.build_model(model_name, (32, 32, 3), 10, seed=0, augment=augment)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size * steps, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=len(x))
    model.fit(x[: batch_size * 2], y[: batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return len(x) / (time.perf_counter() - t0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["conv", "resnet18"], choices=["conv", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300, help="timed batches per model")
    args = parser.parse_args(argv)
    import keras

    devices = "cpu"
    if keras.backend.backend() == "jax":
        import jax

        devices = ", ".join(str(d) for d in jax.devices())
    print(f"machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores; devices: {devices}")
    print(f"keras {keras.__version__} on {keras.backend.backend()}; batch {args.batch_size}, "
          f"{args.steps} timed steps, one run each")
    for name in args.models:
        ips = throughput(name, args.batch_size, args.steps, augment=name == "resnet18")
        print(f"{name:9s} {ips:10.0f} images/s  (one CIFAR epoch of 50,000 images: {50000 / ips:7.1f} s)")


if __name__ == "__main__":
    main()
