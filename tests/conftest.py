"""Shared test set-up: JAX is the default Keras backend, BLAS single-threaded, no downloads."""

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]  # the repository: the paper's scripts run from here

import subprocess  # noqa: E402

import pytest  # noqa: E402

PYTHON = sys.executable


@pytest.fixture(scope="session", autouse=True)
def shared_jax_cache(tmp_path_factory):
    """One JAX compilation cache for every results root the tests make (subprocesses inherit it)."""
    os.environ.setdefault("NNSRM_JAX_CACHE", str(tmp_path_factory.mktemp("jax_cache")))


def run_script(*args, env=None, timeout=600, check=False):
    """Run a script of the repository in a subprocess; returns the CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([PYTHON, *map(str, args)], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def digits_demo(tmp_path_factory):
    """A small digits × conv run through stages 1 and 2 (3 subjects, 3 epochs); shared, read-only."""
    root = tmp_path_factory.mktemp("digits_demo")
    run_script("train_cifar.py", "--root", root, "--subjects", "3", "--epochs", "3", "--no-progress",
               check=True)
    run_script("save_acts_cifar.py", "--root", root, "--no-progress", check=True)
    return root
