"""What the three stage scripts share on the command line.

Misuse (a bad flag, an unknown name, a missing file, bad data) becomes one line
on stderr, ``<prog>: error: <what is wrong and how to fix it>``, and exit
status 2. Nothing is written before the arguments are validated.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence


from nnsrm import console
from nnsrm.errors import INPUT_ERRORS, UsageError
from nnsrm.jobs import JobsFailed

__all__ = ["UsageError", "OneLineArgumentParser", "positive_int", "non_negative_int", "non_negative_float",
           "fraction", "add_condition_args", "add_engine_args", "add_verbosity_args", "check_engine", "check_root",
           "prepare_environment", "setup_logging", "run_main"]


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump) with exit status 2."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value


def add_condition_args(parser: argparse.ArgumentParser, data_choices, model_choices) -> None:
    """Flags that name the experiment condition and the results root."""
    parser.add_argument("--data", default="digits", choices=sorted(data_choices),
                        help="dataset (default: %(default)s, the offline default)")
    parser.add_argument("--model", default="conv", choices=sorted(model_choices),
                        help="architecture (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("results"),
                        help="results root; every output goes under ROOT/<data>/<model>/ (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo jobs whose outputs already exist (default: skip complete jobs)")


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """Flags that choose where the stage's jobs run (in-process by default)."""
    group = parser.add_argument_group("where jobs run (default: in this process, one after another)")
    ex = group.add_mutually_exclusive_group()
    ex.add_argument("--scheduler", metavar="ADDRESS", default=None,
                    help="address of a running Dask scheduler (tcp://host:8786) or its scheduler file")
    ex.add_argument("--workers", type=positive_int, default=None, metavar="N",
                    help="start a local Dask cluster with N worker processes")


def check_engine(args) -> None:
    """Fail now, before anything is written, if ``--scheduler`` names no reachable scheduler."""
    if getattr(args, "scheduler", None):
        from nnsrm.dask_engine import check_scheduler, scheduler_address

        check_scheduler(scheduler_address(args.scheduler))


def check_root(root: Path) -> Path:
    """Validate the results root: it may not exist yet, but it may not be a file."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root} is a file, not a directory; pass a folder for the results")
    for parent in root.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--root {root}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK) and not root.exists():
                raise UsageError(f"--root {root}: cannot create it, {parent} is not writable")
            break
    if root.exists() and not os.access(root, os.W_OK):
        raise UsageError(f"--root {root} is not writable; pass a folder you can write to")
    return root


def add_verbosity_args(parser: argparse.ArgumentParser) -> None:
    """``-v`` (details on the console; ``-vv`` also the libraries' debug output) and ``--no-progress``."""
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show details on the console (-vv: also debug output); they always go to ROOT/logs/")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def prepare_environment(blas_threads: int | None = None, cpu_devices: bool = False) -> None:
    """Defaults a command sets before Keras, JAX or NumPy load (values the user set are kept).

    JAX is Keras' backend unless ``KERAS_BACKEND`` says otherwise (with
    TensorFlow installed Keras would pick it); TensorFlow's C++ start-up chatter
    is off; matplotlib draws off-screen. ``blas_threads`` caps OpenBLAS: its SVD
    is several times slower with two threads than with one on small machines.
    ``cpu_devices`` makes JAX show each CPU core as a device of its own
    (``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``): stages 1
    and 2 run one network per core there, as XLA's CPU backend barely spreads
    one small network's step over several cores. Harmless on a GPU machine.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")
    if blas_threads is not None:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(blas_threads))
    flags = os.environ.get("XLA_FLAGS", "")
    if cpu_devices and "xla_force_host_platform_device_count" not in flags:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={max(1, cores)}".strip()


def setup_logging(verbose: int = 0, prog: str | None = None) -> None:
    """A quiet console (warnings only; ``verbose`` adds details) and records kept for the log file.

    See :mod:`nnsrm.console`; the command opens ``ROOT/logs/`` with
    :func:`nnsrm.console.start_log_file` once its input is validated.
    """
    console.setup(int(verbose), prog=prog)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
             prog: str | None = None) -> int:
    """Run a script's ``main`` and turn input errors into one stderr line with exit status 2."""
    prog = prog or Path(sys.argv[0]).name
    try:
        return int(main(argv) or 0)
    except JobsFailed as err:
        # One line per failed job; the other jobs' outputs are kept.
        where = console.log_file()
        hint = f"\n  (tracebacks in {where})" if where and not err.all_input_errors else ""
        print(f"{prog}: error: {err}{hint}", file=sys.stderr)
        return 2 if err.all_input_errors else 1
    except INPUT_ERRORS as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; complete outputs are kept, rerun to resume", file=sys.stderr)
        return 130
