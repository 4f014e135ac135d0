"""Run a stage's jobs on Dask distributed: an existing scheduler, or a local cluster started here.

:func:`nnsrm.runner.run_jobs` calls :func:`run_jobs_dask` when a stage script
gets ``--scheduler ADDRESS`` (connect to a running ``dask scheduler``, e.g. one
that dask-jobqueue started on a Slurm cluster) or ``--workers N`` (start a
``LocalCluster`` of N single-threaded worker processes on this machine, closed
again at the end). Each :class:`~nnsrm.runner.Job` becomes one Dask task whose
key reads like the job's name (``train_subj03-<random>``), so the dashboard
shows which job is where.

What happens on failure:

- A job that raises a *user* error (``nnsrm.errors.INPUT_ERRORS``: a missing
  file, bad data) fails at once; it would fail the same way again.
- A job that raises anything else is resubmitted up to ``retries`` times
  (transient trouble: a full disk that was cleaned, a flaky network file system).
- A job whose worker process dies (killed, out of memory, pre-empted) is
  rescheduled by the Dask scheduler on another worker, up to its
  ``distributed.scheduler.allowed-failures`` (3 by default).

Every job writes its outputs atomically and marks them complete, so a job
that runs again (after a death, or twice) does no harm. Failed jobs end up in
the :class:`~nnsrm.runner.RunReport`; every other job's output is kept.

The workers must see the same files as this process (the results root), as on
a cluster's shared file system, and import the same installed ``nnsrm``
(jobs are plain functions of the package, shipped by reference); as Dask
itself recommends, the scheduler, the workers and this process share one
software environment. Dask itself is imported only inside the functions that
use it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import uuid
from pathlib import Path
from typing import Sequence

from nnsrm import console, interrupts
from nnsrm.errors import INPUT_ERRORS, UsageError
from nnsrm.jobs import Job, JobFailure, RunReport, job_failure

log = logging.getLogger(__name__)

DEFAULT_PORT = 8786  # `dask scheduler`'s
CONNECT_TIMEOUT_S = 20


# --------------------------------------------------------------------------- connecting

def _unreachable(address: str, reason: str) -> UsageError:
    return UsageError(f"cannot reach Dask scheduler at {address}: {reason}; start one with `dask scheduler` "
                      f"(and workers with `dask worker {address}`) or use --workers N for a local cluster")


def scheduler_address(scheduler: str) -> str:
    """The address in ``scheduler``: an address itself, or a scheduler file (``dask scheduler --scheduler-file``).

    Raises
    ------
    UsageError
        If ``scheduler`` is a file but not a readable scheduler file.
    """
    import json

    if not os.path.isfile(scheduler):
        return scheduler
    try:
        address = json.loads(Path(scheduler).read_text())["address"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"--scheduler {scheduler} is a file but not a Dask scheduler file with an \"address\" "
                         f"({type(err).__name__}: {err}); pass the file written by `dask scheduler "
                         f"--scheduler-file FILE`, or an address such as tcp://host:8786") from None
    if not isinstance(address, str):
        raise UsageError(f"--scheduler {scheduler}: its \"address\" is {address!r}, not an address string")
    return address


def check_scheduler(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line that says what to do, if nothing listens at a TCP scheduler ``address``.

    ``address`` is ``tcp://HOST:PORT``, ``HOST:PORT`` or ``HOST`` (port 8786).
    Other protocols (``tls://``, ``ucx://``, ...) are left to Dask's own connect.

    Raises
    ------
    UsageError
        If the address is malformed, the host unknown, or the port closed.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
    except (TypeError, ValueError) as err:
        raise _unreachable(address, str(err)) from None
    if scheme != "tcp":
        return
    try:
        host, port = parse_host_port(location, DEFAULT_PORT)
    except ValueError as err:
        raise _unreachable(address, str(err)) from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except (OSError, OverflowError) as err:  # OverflowError: a port over 65535
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise _unreachable(address, reason) from None


def count_workers(scheduler: str) -> int:
    """How many workers the Dask scheduler ``scheduler`` (an address or a scheduler file) has now.

    Raises
    ------
    UsageError
        If the scheduler cannot be reached.
    """
    from distributed import Client

    address = scheduler_address(scheduler)
    check_scheduler(address)
    with _quiet_dask_logs():
        try:
            with Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False) as client:
                return len(client.nthreads())
        except (OSError, TimeoutError) as err:
            raise _unreachable(address, str(err).splitlines()[0] if str(err) else type(err).__name__) from None


def _worker_env() -> dict:
    """Environment the workers should have, as this process does (Keras backend, quiet TensorFlow, XLA flags)."""
    env = {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    for name in ("TF_CPP_MIN_LOG_LEVEL", "OPENBLAS_NUM_THREADS", "JAX_PLATFORMS", "NNSRM_JAX_CACHE", "MPLBACKEND",
                 "XLA_FLAGS"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _apply_env(env: dict) -> None:
    """Set ``env`` on this worker where it has no value of its own (before any job imports Keras)."""
    for name, value in env.items():
        os.environ.setdefault(name, value)


def _private_sizeof_rng() -> None:
    """Give ``dask.sizeof`` a random generator of its own on this worker.

    A Dask worker sizes every message it sends (heartbeats, twice a second)
    with ``dask.sizeof``, which samples long lists with the *global* Python
    RNG, from the worker's event-loop thread. A job that seeds that RNG and then
    draws from it would draw other numbers than in-process. Every initialiser
    and dropout layer of our models has an explicit seed, so this is a second
    line of defence.
    """
    import random

    import dask.sizeof

    if getattr(dask.sizeof, "random", None) is random:
        dask.sizeof.random = random.Random(0)


def worker_facts(env: dict | None = None) -> dict:
    """Runs on a worker: what we need to know about it (process id, host, Keras backend, nnsrm)."""
    import nnsrm

    _apply_env(env or {})
    return {"pid": os.getpid(), "host": socket.gethostname(), "keras_backend": os.environ.get("KERAS_BACKEND"),
            "python": sys.version.split()[0], "nnsrm": getattr(nnsrm, "__version__", None)}


@contextlib.contextmanager
def _quiet_dask_logs():
    """Keep Dask's INFO chatter (every worker start and stop) out of our log, unless we log DEBUG."""
    logger = logging.getLogger("distributed")
    before = logger.level
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client`` on ``scheduler`` (an address or a scheduler file), or on a new local cluster.

    The local cluster (``threads_per_worker=1``: a job already uses every core
    it is given through XLA/BLAS) listens on the loopback interface only and
    is closed when the block ends, as is the client.

    Raises
    ------
    UsageError
        If the scheduler cannot be reached.
    """
    import importlib.util

    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet_dask_logs())
        if scheduler is not None:
            address = scheduler_address(scheduler)
            check_scheduler(address)
            try:
                client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except (OSError, TimeoutError) as err:
                raise _unreachable(address, str(err).splitlines()[0] if str(err) else type(err).__name__) from None
            stack.enter_context(client)
        else:
            if workers is None or workers < 1:
                raise ValueError(f"workers must be a positive integer, got {workers!r}")
            bokeh = importlib.util.find_spec("bokeh") is not None
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=":0", silence_logs=logging.ERROR))  # ":0": any free port
            client = stack.enter_context(Client(cluster, set_as_default=False))
            if bokeh:
                log.info("local Dask cluster of %d workers, dashboard %s", workers, cluster.dashboard_link)
        yield client


# --------------------------------------------------------------------------- running jobs

def task_key(name: str) -> str:
    """A unique Dask key that reads like the job's name: ``"train subj03"`` → ``"train_subj03-1a2b3c4d…"``."""
    slug = re.sub(r"[^0-9A-Za-z_.]+", "_", name).strip("_") or "job"
    return f"{slug}-{uuid.uuid4().hex}"


def call_job(job: Job, env: dict | None = None):
    """Runs on a worker: ``("ok", value)``, or ``("failed", JobFailure)`` for a user error.

    User errors (``INPUT_ERRORS``) come back as values, so Dask does not retry a
    job that would fail the same way again; any other exception is raised, and
    Dask retries it. ``env`` is set where the worker has no value of its own.
    """
    _apply_env(env or {})
    _private_sizeof_rng()
    try:
        return "ok", job()
    except INPUT_ERRORS as err:
        return "failed", job_failure(job.name, err)


def _describe_workers(client, env: dict) -> str:
    """Check that the workers can run our jobs; one line about them for the log."""
    try:
        facts = client.run(worker_facts, env)
    except ImportError as err:
        raise UsageError(f"the Dask workers cannot import nnsrm ({err}); install it in the workers' "
                         f"environment (pip install nnsrm, or pip install -e on a shared file system)") from None
    if not facts:
        log.warning("the Dask scheduler has no workers yet; the jobs start when workers join")
        return "no workers yet"
    mine = os.environ.get("KERAS_BACKEND", "jax")
    other = {f["keras_backend"] for f in facts.values()} - {mine}
    if other:
        log.warning("Dask workers use Keras backend %s, this process %s; results may differ from an "
                    "in-process run (set KERAS_BACKEND for the workers)", sorted(map(str, other)), mine)
    hosts = sorted({f["host"] for f in facts.values()})
    return f"{len(facts)} workers on {', '.join(hosts)}"


def run_jobs_dask(jobs: Sequence[Job], scheduler: str | None = None, workers: int | None = None,
                  desc: str = "jobs", progress: bool = True, retries: int = 2) -> RunReport:
    """Run ``jobs`` as Dask tasks and collect every result and failure.

    Parameters
    ----------
    jobs : sequence of Job
        Independent jobs; they run in any order, as many at once as there are
        worker threads.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``), or the
        scheduler file it wrote (``dask scheduler --scheduler-file FILE``).
    workers : int, optional
        Without ``scheduler``: start a local cluster of this many processes.
    desc : str
        Label of the progress bar.
    progress : bool
        Show a progress bar of finished jobs.
    retries : int
        How often a job that raised an unexpected (not a user) error is resubmitted.

    Returns
    -------
    RunReport
        ``results`` and ``failures`` in the order of ``jobs``. Raises nothing
        for failed jobs: the caller (:func:`nnsrm.runner.run_jobs`) does.

    Raises
    ------
    UsageError
        If the scheduler cannot be reached or its workers cannot import our code.
    """
    from distributed import as_completed

    jobs = list(jobs)
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique, got duplicates {sorted({n for n in names if names.count(n) > 1})}")
    report = RunReport()
    if not jobs:
        return report
    results, failures = {}, {}
    with dask_client(scheduler, workers) as client:
        env = _worker_env()
        log.info("%s: %d jobs on Dask (%s, scheduler %s)", desc, len(jobs), _describe_workers(client, env),
                 client.scheduler.address)
        futures = {}
        for job in jobs:
            fut = client.submit(call_job, job, env, key=task_key(job.name), pure=False, retries=retries)
            futures[fut] = job.name
        try:
            for fut in console.progress(as_completed(futures, loop=client.loop), total=len(futures), desc=desc,
                                        unit="job", enabled=progress):
                interrupts.check()  # Ctrl-C that a library turned into something else
                name = futures[fut]
                if fut.status == "finished":
                    kind, value = fut.result()
                    if kind == "ok":
                        results[name] = value
                    else:
                        failures[name] = value
                elif fut.status == "error":
                    err = fut.exception()
                    failures[name] = job_failure(name, err.with_traceback(fut.traceback()))
                else:  # cancelled: the scheduler went away or forgot the task
                    failures[name] = JobFailure(name=name, error=f"Dask task {fut.key} was {fut.status} "
                                                "(scheduler lost?); rerun to resume", is_input_error=False)
                fut.release()
        except BaseException:
            # Ctrl-C or a lost scheduler: drop what is still queued; complete outputs are kept.
            client.cancel(list(futures))
            raise
    report.results = {n: results[n] for n in names if n in results}
    report.failures = [failures[n] for n in names if n in failures]
    return report

