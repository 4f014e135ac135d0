"""Cross-network decoding at demo scale: ours (fixed C) against the original's grid-searched LinearSVC.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_decoding.py [--no-original]

Synthetic shared responses of the demo's size: 10 networks × 1,000 features ×
360 held-out images, 10 classes, each network a noisy copy of one labelled
signal (accuracies well below 1, so the solvers do real work). Times, in one
process: our cross-network transfer over all 10 held-out networks, our
within-network 5-fold baseline, and, for **one** held-out network, ours
against the original study's ``GridSearchCV(LinearSVC(class_weight="balanced"),
C in logspace(-5, 4, 10))`` (3-fold, as scikit-learn's default was then).
Prints the machine, versions, times, accuracies and the per-fit ratio.

The original's grid search is slow: about 5 minutes on 2 cores for an easily
separable signal, and it had not finished after 37 minutes on this one (on a
machine loaded by other jobs), where ``LinearSVC`` at large ``C`` runs to its
iteration limit. ``--no-original`` skips it.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

from qmvpa import decoding  # noqa: E402

N_NETWORKS, N_FEATURES, N_IMAGES, N_CLASSES = 10, 1000, 360, 10


def make_shared(seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(N_IMAGES) % N_CLASSES
    loadings = 0.1 * rng.standard_normal((N_FEATURES, 20))  # a weak class signal: accuracies below 1
    signal = loadings @ rng.standard_normal((20, N_CLASSES))[:, labels]  # (features, images)
    signal += 4.0 * rng.standard_normal(signal.shape)
    return [signal + 6.0 * rng.standard_normal(signal.shape) for _ in range(N_NETWORKS)], labels


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    shared, labels = make_shared()
    transfer, t_transfer = timed(lambda: decoding.cross_network_accuracy(shared, labels))
    within, t_within = timed(lambda: decoding.within_network_accuracy(shared, labels))
    print(f"ours, {N_NETWORKS} networks × {N_FEATURES} features × {N_IMAGES} images: transfer "
          f"{t_transfer:.1f} s (mean accuracy {transfer.mean():.3f}), within 5-fold {t_within:.1f} s "
          f"(mean accuracy {within.mean():.3f}), chance {1 / N_CLASSES:.2f}")

    if "--no-original" in sys.argv[1:]:
        return
    # One held-out network, both ways.
    train_x = np.concatenate([S.T for S in shared[1:]])
    train_y = np.tile(labels, N_NETWORKS - 1)
    ours, t_ours = timed(lambda: decoding.default_classifier().fit(train_x, train_y))
    grid = GridSearchCV(LinearSVC(class_weight="balanced"), {"C": np.logspace(-5, 4, 10)}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, t_orig = timed(lambda: grid.fit(train_x, train_y))
    acc_ours = np.mean(ours.predict(shared[0].T) == labels)
    acc_orig = np.mean(grid.best_estimator_.predict(shared[0].T) == labels)
    print(f"one held-out network: ours {t_ours:.2f} s (accuracy {acc_ours:.3f}); original grid search "
          f"{t_orig:.1f} s (best C {grid.best_params_['C']:g}, accuracy {acc_orig:.3f}); "
          f"ratio {t_orig / t_ours:.1f}x")


if __name__ == "__main__":
    main()
