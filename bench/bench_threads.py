"""Do SRM's building blocks speed up with two threads here? (one process, 1 vs 2 threads)

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_threads.py

Times, with one and with two threads: four 1,000 × 1,000 float32 SVDs through
SciPy and four float64 SVDs through NumPy (two at a time in a thread pool: only
helps where the call releases the GIL), and one float32 GEMM of the paper's
scale (10,000 × 8,000 by 8,000 × 1,000) with one and two BLAS threads. Prints
the machine, versions and the ratios.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import platform  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.linalg  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((1000, 1000)).astype(np.float32) for _ in range(4)]
    svds = {
        "SciPy float32 SVD (gesdd) x4": lambda a: scipy.linalg.svd(a, full_matrices=False, check_finite=False),
        "NumPy float64 SVD x4": lambda a: np.linalg.svd(a.astype(np.float64), full_matrices=False),
    }
    print(f"machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cores; "
          f"numpy {np.__version__}, scipy {scipy.__version__}; one run each")
    for name, fn in svds.items():
        one = timed(lambda: [fn(a) for a in mats])
        with ThreadPoolExecutor(2) as pool:
            two = timed(lambda: list(pool.map(fn, mats)))
        print(f"{name:34s} 1 thread {one:6.2f} s | 2 threads {two:6.2f} s | ratio {one / two:4.2f}")
    x = rng.standard_normal((10000, 8000)).astype(np.float32)
    s = rng.standard_normal((1000, 8000)).astype(np.float32)
    times = []
    for n in (1, 2):
        with threadpool_limits(n):
            times.append(timed(lambda: x.dot(s.T)))
    print(f"{'float32 GEMM X S^T (paper scale)':34s} 1 thread {times[0]:6.2f} s | 2 threads {times[1]:6.2f} s "
          f"| ratio {times[0] / times[1]:4.2f}")


if __name__ == "__main__":
    main()
