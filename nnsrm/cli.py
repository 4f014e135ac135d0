"""What the three stage scripts share on the command line.

Misuse (a bad flag, an unknown name, a missing file, bad data) becomes one line
on stderr, ``<prog>: error: <what is wrong and how to fix it>``, and exit
status 2. Nothing is written before the arguments are validated.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence


from nnsrm import console, interrupts
from nnsrm.interrupts import INTERRUPTED
from nnsrm.errors import INPUT_ERRORS, UsageError
from nnsrm.jobs import JobsFailed

__all__ = ["UsageError", "OneLineArgumentParser", "positive_int", "non_negative_int", "non_negative_float",
           "fraction", "add_condition_args", "add_engine_args", "add_verbosity_args", "check_engine", "check_root",
           "prepare_environment", "setup_logging", "run_main", "exit_process", "check_srm_engine", "INTERRUPTED"]


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


def condition_name(text: str) -> str:
    """argparse type: a name that can name a condition's folder (letters, digits, ``_ . + -``)."""
    import re

    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$", text):
        raise argparse.ArgumentTypeError(f"{text!r} cannot name a folder: use letters, digits and _ . + -")
    return text


def add_condition_args(parser: argparse.ArgumentParser, data_choices, model_choices,
                       registered: bool = False) -> None:
    """Flags that name the experiment condition and the results root.

    With ``registered``, ``--data`` and ``--model`` also accept the names of
    activations registered with ``nnsrm register`` (any folder name); the
    command checks them (:func:`check_condition`).
    """
    if registered:
        also = ", or a condition registered with nnsrm register"
        parser.add_argument("--data", default="digits", type=condition_name,
                            help=f"dataset: {', '.join(sorted(data_choices))}{also} (default: %(default)s)")
        parser.add_argument("--model", default="conv", type=condition_name,
                            help=f"architecture: {', '.join(sorted(model_choices))}{also} (default: %(default)s)")
    else:
        parser.add_argument("--data", default="digits", choices=sorted(data_choices),
                            help="dataset (default: %(default)s, the offline default)")
        parser.add_argument("--model", default="conv", choices=sorted(model_choices),
                            help="architecture (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("results"),
                        help="results root; every output goes under ROOT/<data>/<model>/ (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo every job, also complete ones and those made with other settings or inputs "
                             "(default: skip complete jobs, stop before writing anything if one is stale; "
                             "see docs/state.md)")


def check_condition(root: Path, data: str, model: str, data_choices, model_choices) -> None:
    """Raise a one-line error if ``data`` × ``model`` is neither a configured nor a registered condition."""
    from nnsrm.paths import ResultsLayout

    if (data in data_choices and model in model_choices) or ResultsLayout(root, data, model).manifest_path.is_file():
        return
    bad = f"--data {data!r}" if data not in data_choices else f"--model {model!r}"
    raise UsageError(f"{bad}: not a configured condition (data: {', '.join(sorted(data_choices))}; model: "
                     f"{', '.join(sorted(model_choices))}), and nothing is registered as {data}×{model} under {root}; "
                     f"register your activations first: nnsrm register --source DIR --data {data} --model {model} "
                     f"--root {root}")


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


def check_root(root: Path, flag: str = "--root") -> Path:
    """Validate an output folder (the results root): it may not exist yet, but it may not be a file.

    ``flag`` names the option in the messages (``--root``, ``--out``).
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{flag} {root} is a file, not a folder; pass a folder for the results")
    for parent in root.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {root}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK) and not root.exists():
                raise UsageError(f"{flag} {root}: cannot create it, {parent} is not writable")
            break
    if root.exists() and not os.access(root, os.W_OK):
        raise UsageError(f"{flag} {root} is not writable; pass a folder you can write to")
    return root


def check_srm_engine(engine: str, flag: str = "--srm-engine") -> None:
    """Fail now, in one line that says how to install it, if the SRM ``engine`` cannot be imported."""
    from qmvpa import factor

    try:
        factor.srm_class(engine)
    except ImportError as err:
        if engine == "brainiak":
            raise UsageError(f"{flag} brainiak needs BrainIAK and MPI, which cannot be imported here; install "
                             f"them with pip install 'nnsrm[brainiak]' (make test installs them where wheels exist: "
                             f"Python 3.11 and 3.12), or use {flag} fast") from None
        raise UsageError(f"{flag} {engine} cannot be used here ({err})") from None
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None


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


_PROGRAM = {"name": None}


def program_name(default: str) -> str:
    """The name this command was started as (``run_main``'s ``prog``: ``nnsrm train`` or ``train_cifar.py``)."""
    return _PROGRAM["name"] or default


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
             prog: str | None = None) -> int:
    """Run a script's ``main``; bad input becomes one stderr line with exit status 2, Ctrl-C status 130.

    Failed jobs give one line each and status 1 (2 if every failure was bad
    input). Exit the process with :func:`exit_process`, which after Ctrl-C
    skips the interpreter's teardown.
    """
    prog = prog or Path(sys.argv[0]).name
    _PROGRAM["name"] = prog
    with interrupts.handling(prog):
        try:
            code = int(main(argv) or 0)
            interrupts.check()  # a library caught the first Ctrl-C; the user still asked to stop
            return code
        except KeyboardInterrupt:
            return _interrupted(prog)
        except BaseException as err:
            if interrupts.received():  # Ctrl-C, turned into another exception by a library
                return _interrupted(prog)
            if isinstance(err, JobsFailed):
                return _jobs_failed(prog, err)
            if isinstance(err, INPUT_ERRORS):
                message = str(err).splitlines()[0] if str(err) else type(err).__name__
                print(f"{prog}: error: {message}", file=sys.stderr)
                return 2
            raise


def _interrupted(prog: str) -> int:
    print(f"{prog}: interrupted; complete outputs are kept, rerun to resume", file=sys.stderr)
    return INTERRUPTED


def _jobs_failed(prog: str, err: JobsFailed) -> int:
    """One line per failed job (the other jobs' outputs are kept); status 2 if all were bad input, else 1."""
    where = console.log_file()
    hint = f"\n  (tracebacks in {where})" if where and not err.all_input_errors else ""
    print(f"{prog}: error: {err}{hint}", file=sys.stderr)
    return 2 if err.all_input_errors else 1


def exit_process(code: int) -> None:
    """End the process with ``code``: the last call of every command-line entry point.

    After Ctrl-C (``code == 130``) the output streams and log files are flushed
    and the process ends with ``os._exit``, without the interpreter's teardown:
    an interrupt can leave native libraries mid-operation (XLA's thread pools
    still running work that JAX dispatched asynchronously, an HDF5 file being
    written), and finalising their Python objects then can crash the process.
    Every output was already written atomically or removed, and file locks are
    released by the operating system, so skipping the teardown loses nothing.
    """
    if code != INTERRUPTED:
        sys.exit(code)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C cannot interrupt the flushing
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        logging.shutdown()
    os._exit(code)
