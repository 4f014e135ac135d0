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

import importlib.util  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

PYTHON = sys.executable


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


#: BrainIAK (the paper's SRM, our reference) is an optional extra: no wheels for Python >= 3.13.
HAS_BRAINIAK = _importable("brainiak") and _importable("mpi4py")
NO_BRAINIAK = ("BrainIAK is not installed (optional: pip install 'nnsrm[brainiak]'; make test installs it "
               "where a wheel exists, Python 3.11 and 3.12)")
#: Marks a test that compares with BrainIAK itself: skipped, with the reason, where it is not installed.
needs_brainiak = pytest.mark.skipif(not HAS_BRAINIAK, reason=NO_BRAINIAK)
#: The SRM engine of tests that check known answers: BrainIAK's (the paper's) where installed, else ours.
SRM_ENGINE = "brainiak" if HAS_BRAINIAK else "fast"


def pytest_report_header(config):
    return (f"BrainIAK: {'installed' if HAS_BRAINIAK else 'not installed'}; known-answer SRM tests use the "
            f"{SRM_ENGINE!r} engine")


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


#: Stage 3 on the digits demo, restricted to 2 layers × 2 epochs (4 jobs): cheap, on real networks.
STAGE3_ARGS = ("--only-layers", "dense1", "logits", "--only-epochs", "0", "3")


@pytest.fixture(scope="session")
def digits_stage3(digits_demo, tmp_path_factory):
    """The digits demo plus stage 3 (:data:`STAGE3_ARGS`, run in a subprocess); shared, read-only."""
    root = tmp_path_factory.mktemp("digits_stage3") / "root"
    shutil.copytree(digits_demo, root, ignore=shutil.ignore_patterns(".cache", "logs"))
    run_script("run_analyses.py", "--root", root, "--no-progress", *STAGE3_ARGS, check=True)
    return root
