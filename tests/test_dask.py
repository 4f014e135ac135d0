"""The Dask engine on a real LocalCluster (2 worker processes): same outputs, failures, worker deaths.

One cluster serves the module (started once, closed at the end); the stage
scripts reach it with ``--scheduler``. Its workers are spawned from this
process, so they share the JAX compilation cache of the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import stage_outputs as so
from conftest import PYTHON, ROOT, STAGE3_ARGS, run_script
from nnsrm import atomic, cli
from nnsrm.runner import Job, JobsFailed, run_jobs

distributed = pytest.importorskip("distributed")

# Jobs are shipped to workers by reference (workers import the installed nnsrm); the toy jobs below live
# in this test module, which the workers cannot import, so they travel by value.
cloudpickle = pytest.importorskip("cloudpickle")
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 single-threaded worker processes on the loopback interface."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as lc:
        yield lc


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c


# --------------------------------------------------------------------------- toy jobs (no Keras)

def double(x):
    return 2 * x


def fails_with_input_error(path, log_dir):
    Path(log_dir, f"attempt-{os.getpid()}-{time.monotonic_ns()}-input").touch()
    from nnsrm.errors import MissingInputError

    raise MissingInputError(f"{path} not found; run stage 1 first")


def fails_unexpectedly(log_dir):
    Path(log_dir, f"attempt-{os.getpid()}-{time.monotonic_ns()}-crash").touch()
    raise RuntimeError("disk on fire")


def fails_numerically(log_dir):
    import numpy as np

    Path(log_dir, f"attempt-{os.getpid()}-{time.monotonic_ns()}-linalg").touch()
    raise np.linalg.LinAlgError("SVD did not converge")  # a ValueError, but not bad input


def worker_env():
    import nnsrm

    # The workers import the installed package, not a copy put on their path.
    return {k: os.environ.get(k) for k in ("KERAS_BACKEND", "OPENBLAS_NUM_THREADS")}, nnsrm.__file__


def test_results_and_failures_are_collected(cluster, tmp_path):
    jobs = [Job(f"double {i}", double, {"x": i}) for i in range(5)]
    jobs.insert(2, Job("needs input", fails_with_input_error, {"path": "/nowhere/x.npy", "log_dir": str(tmp_path)}))
    jobs.append(Job("crashes", fails_unexpectedly, {"log_dir": str(tmp_path)}))
    jobs.append(Job("numerics", fails_numerically, {"log_dir": str(tmp_path)}))
    jobs.append(Job("environment", worker_env, {}))
    with pytest.raises(JobsFailed) as exc:
        run_jobs(jobs, scheduler=cluster.scheduler_address, progress=False, retries=1)
    report = exc.value.report
    # Every other job's result is kept, in job order.
    assert list(report.results) == [f"double {i}" for i in range(5)] + ["environment"]
    assert [report.results[f"double {i}"] for i in range(5)] == [0, 2, 4, 6, 8]
    env, nnsrm_file = report.results["environment"]
    assert env == {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"), "OPENBLAS_NUM_THREADS": "1"}
    import nnsrm

    assert nnsrm_file == nnsrm.__file__  # the same installed package as this process
    # Failures name the job and say why; a user error is not retried, anything else is (retries=1).
    assert [(f.name, f.error, f.is_input_error) for f in report.failures] == [
        ("needs input", "MissingInputError: /nowhere/x.npy not found; run stage 1 first", True),
        ("crashes", "RuntimeError: disk on fire", False),
        ("numerics", "LinAlgError: SVD did not converge", False)]
    assert "fails_unexpectedly" in report.failures[1].traceback  # the worker's traceback comes back
    assert len(list(tmp_path.glob("*-input"))) == 1
    assert len(list(tmp_path.glob("*-crash"))) == 2
    assert len(list(tmp_path.glob("*-linalg"))) == 2  # a numerical failure is retried like any other
    assert str(exc.value).splitlines() == [
        "3 of 9 jobs failed (the others' outputs are kept):",
        "  needs input: MissingInputError: /nowhere/x.npy not found; run stage 1 first",
        "  crashes: RuntimeError: disk on fire",
        "  numerics: LinAlgError: SVD did not converge"]
    assert not exc.value.all_input_errors


def test_scheduler_file_works_like_its_address(cluster, tmp_path):
    f = tmp_path / "scheduler.json"
    f.write_text(json.dumps({"type": "Scheduler", "address": cluster.scheduler_address}))
    report = run_jobs([Job("double 21", double, {"x": 21})], scheduler=str(f), progress=False)
    assert report.results == {"double 21": 42}


def test_workers_flag_starts_a_local_cluster_and_closes_it():
    import psutil

    def worker_processes():  # spawned children (not multiprocessing's resource tracker)
        out = set()
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "spawn_main" in " ".join(p.cmdline()):
                    out.add(p)
        return out

    before = worker_processes()
    report = run_jobs([Job(f"double {i}", double, {"x": i}) for i in range(3)], workers=2, progress=False)
    assert report.results == {"double 0": 0, "double 1": 2, "double 2": 4}
    gone, alive = psutil.wait_procs(list(worker_processes() - before), timeout=10)
    assert not alive, f"worker processes left running: {alive}"


def test_unreachable_scheduler_is_a_usage_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(cli.UsageError, match=rf"cannot reach Dask scheduler at tcp://127.0.0.1:{port}: "
                                             r".*start one with `dask scheduler`.*or use --workers N"):
        run_jobs([Job("x", double, {"x": 1})], scheduler=f"tcp://127.0.0.1:{port}", progress=False)
    assert time.monotonic() - t0 < 10  # refused at once, no 20 s connect timeout


# --------------------------------------------------------------------------- the stages, identical to in-process

@pytest.mark.slow  # ~60 s plus a cluster; stage 3 on Dask stays in the default run
def test_stage1_on_dask_matches_in_process(cluster, digits_demo, tmp_path):
    proc = run_script("train_cifar.py", "--root", tmp_path, "--subjects", "2", "--epochs", "3", "--no-progress",
                      "-v", "--scheduler", cluster.scheduler_address)
    assert proc.returncode == 0, proc.stderr
    assert "2 jobs on Dask (2 workers" in proc.stderr
    so.assert_nothing_corrupt(tmp_path, stages=(1,))
    # digits_demo ran in-process with 3 subjects; subjects 0 and 1 do not depend on that.
    so.assert_same_stage1(digits_demo, tmp_path, subjects=(0, 1), epochs=(0, 1, 2, 3))


@pytest.mark.slow  # ~115 s; stage 3 on Dask stays in the default run
def test_stage2_on_dask_matches_in_process(cluster, digits_demo, tmp_path):
    root = so.copy_stage1(digits_demo, tmp_path / "root")
    proc = run_script("save_acts_cifar.py", "--root", root, "--no-progress", "--scheduler", cluster.scheduler_address)
    assert proc.returncode == 0, proc.stderr
    so.assert_nothing_corrupt(root, stages=(1, 2))
    so.assert_same_stage2(digits_demo, root, subjects=(0, 1, 2), epochs=(0, 1, 2, 3))


def test_stage3_on_dask_matches_in_process(cluster, digits_demo, digits_stage3, tmp_path):
    """Stage 3 on real (demo) networks, 4 jobs on the cluster: the same numbers as in-process."""
    root = tmp_path / "root"
    shutil.copytree(digits_demo, root)
    proc = run_script("run_analyses.py", "--root", root, "--no-progress", *STAGE3_ARGS,
                      "--scheduler", cluster.scheduler_address)
    assert proc.returncode == 0, proc.stderr
    so.assert_same_stage3(digits_stage3, root)


# --------------------------------------------------------------------------- a worker dies mid-job

@pytest.mark.slow  # ~40 s; Dask's own retry, checked in the slow suite
def test_worker_killed_mid_job_is_retried_and_the_run_completes(cluster, client, digits_demo, tmp_path):
    lay = so.layout(tmp_path)
    args = [PYTHON, "train_cifar.py", "--root", str(tmp_path), "--subjects", "2", "--epochs", "3", "--no-progress",
            "--scheduler", cluster.scheduler_address]
    driver = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), driver.communicate())))
    reader.start()
    killed = None
    deadline = time.monotonic() + 300
    try:
        # Mid-job: subject 0 has finished an epoch of training but is not complete.
        while killed is None and driver.poll() is None and time.monotonic() < deadline:
            if lay.history_path(0).exists() and not atomic.is_complete(lay.subject_dir(0)):
                for worker, keys in client.processing().items():
                    if any(str(k).startswith("train_subj00-") for k in keys):
                        pid = client.run(os.getpid, workers=[worker])[worker]
                        os.kill(pid, signal.SIGKILL)
                        killed = (worker, pid)
            time.sleep(0.01)
    finally:
        reader.join(timeout=400)
    assert killed is not None, f"could not catch subject 0 mid-job: {out.get('stderr', '')[-2000:]}"
    assert driver.returncode == 0, out["stderr"]
    assert atomic.is_complete(lay.subject_dir(0), verify=True)
    so.assert_nothing_corrupt(tmp_path, stages=(1,))
    so.assert_same_stage1(digits_demo, tmp_path, subjects=(0, 1), epochs=(0, 1, 2, 3))
    # The nanny replaced the dead worker process.
    client.wait_for_workers(2, timeout=60)
    pids = client.run(os.getpid)
    assert killed[1] not in pids.values()
