"""Run a stage's jobs side by side on this machine's cores: a pool of worker processes.

Stage 3's jobs are independent and CPU-bound (an SRM fit, matrix products,
permutations); a BLAS library that spreads one job over several cores gains
little at these sizes (OpenBLAS's SVD is even slower on two threads than on
one on small machines), so the pool runs one job per process with **one BLAS
thread per process**. Where the operating system has ``fork`` (Linux, macOS
with care) the workers are forked from the command before it starts any
thread, so they inherit its imported modules instead of importing NumPy,
SciPy and scikit-learn again (seconds per worker); elsewhere they are
spawned. Workers forward their log records to the command, so its log file
and console see them as if the jobs ran in-process.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Sequence

from nnsrm import console
from nnsrm.jobs import Job, RunReport, job_failure

log = logging.getLogger(__name__)

#: prctl's option that sends a signal to the calling process when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: Environment of every worker: one thread for each numerical library.
WORKER_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def default_processes() -> int:
    """The cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where that is missing)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class _Forward(logging.Handler):
    """In the command: hand a worker's record to the logger it was logged on (and so to every handler)."""

    def emit(self, record):
        logging.getLogger(record.name).handle(record)


def _init_worker(queue, level: int) -> None:
    """In each worker: one BLAS thread, every record of ``level`` or above sent to the command, no Ctrl-C.

    Ctrl-C reaches every process of the terminal's process group; the command
    handles it (and stops the workers), so a worker does not print a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    os.environ.update(WORKER_THREADS)
    try:
        from threadpoolctl import threadpool_limits

        _init_worker.limits = threadpool_limits(1)  # kept alive: the limit lasts the worker's life
    except ImportError:  # the environment variables above already apply to libraries loaded later
        pass
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(queue))
    root.setLevel(level)


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when the command dies (even by SIGKILL), mid-job or not.

    Without it a worker whose command was killed would finish its job and
    only then find the command gone. Its outputs are written atomically, so a
    worker killed mid-job leaves nothing half written; the rerun redoes it.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # no prctl: the worker exits when it next reads the closed job queue
        pass


def _call(fn, kwargs):
    return fn(**kwargs)


def run_in_processes(jobs: Sequence[Job], processes: int, desc: str = "jobs", progress: bool = True) -> RunReport:
    """Run ``jobs`` on ``processes`` worker processes; collect results and failures (raises nothing).

    Jobs are submitted in order (put the longest first for the best balance);
    a job that raises is recorded as a failure and the others go on, as in
    :func:`nnsrm.runner.run_in_process`. Ctrl-C cancels the jobs not started
    and stops the workers.
    """
    report = RunReport()
    if not jobs:
        return report
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    listener = logging.handlers.QueueListener(queue, _Forward())
    old_env = {k: os.environ.get(k) for k in WORKER_THREADS}
    os.environ.update(WORKER_THREADS)  # spawned workers inherit it before they import numpy
    pool = ProcessPoolExecutor(max_workers=min(int(processes), len(jobs)), mp_context=ctx,
                               initializer=_init_worker, initargs=(queue, logging.INFO))
    try:
        # The workers start (are forked) at the first submission, before the listener's thread exists.
        futures = {pool.submit(_call, job.fn, job.kwargs): job for job in jobs}
        listener.start()
        for future in console.progress(as_completed(futures), desc=desc, total=len(futures), unit="job",
                                       enabled=progress):
            job = futures[future]
            try:
                report.results[job.name] = future.result()
            except Exception as err:  # noqa: BLE001 - collected and reported at the end
                log.debug("job %s failed", job.name, exc_info=err)
                report.failures.append(job_failure(job.name, err))
    except BaseException:  # Ctrl-C (or an error of this process): stop the workers, keep what is complete
        workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()  # a job cut short leaves no output: it writes atomically, marker last
        for process in workers:
            process.join(timeout=10)
        raise
    finally:
        pool.shutdown(wait=True)
        if listener._thread is not None:
            listener.stop()
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    # Keep the jobs' order in the report, as run_in_process does.
    report.results = {job.name: report.results[job.name] for job in jobs if job.name in report.results}
    return report
