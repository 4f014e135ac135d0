"""The stage-3 and figure process pool: how its workers start.

Forking a process whose threads a library started (JAX's, TensorFlow's) can
deadlock the child, so a process that has loaded one starts its workers from a
fork server instead; a process that has not (the commands, which fork before
JAX loads) forks them and saves their imports.
"""

import sys

import pytest

from nnsrm import process_pool
from nnsrm.jobs import Job


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and forkserver are Linux's start methods")
def test_start_method_forks_only_without_a_threaded_runtime(monkeypatch):
    for name in process_pool.THREADED_RUNTIMES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert process_pool.start_method() == "fork"
    monkeypatch.setitem(sys.modules, "jax", sys)  # any module object: only its presence counts
    assert process_pool.start_method() == "forkserver"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and forkserver are Linux's start methods")
def test_workers_of_a_process_with_jax_loaded_are_not_forked_from_it():
    import jax  # noqa: F401 - loaded, as in a notebook that trained first

    # Each job reports the start method its worker would choose: "fork" means the worker has no JAX loaded,
    # so it was not forked from this process.
    jobs = [Job(name=f"job {i}", fn=process_pool.start_method, kwargs={}) for i in range(2)]
    report = process_pool.run_in_processes(jobs, 2, progress=False)
    assert not report.failures
    assert report.results == {"job 0": "fork", "job 1": "fork"}
