"""The command lines of nnsrm, one module per command, and the ``nnsrm`` dispatcher.

Each module has ``build_parser()`` and ``main(argv)``; the paper's script names
at the top of the repository (``train_cifar.py``, ``save_acts_cifar.py``,
``run_analyses.py``, ``make_figures.py``, ``status.py``,
``simulation/run_sim.py``) and the installed ``nnsrm`` command call the same
``main``::

    nnsrm train    ...   = python train_cifar.py ...       stage 1
    nnsrm extract  ...   = python save_acts_cifar.py ...   stage 2
    nnsrm register ...                                     your own activations instead of stages 1-2
    nnsrm analyse  ...   = python run_analyses.py ...      stage 3
    nnsrm figures  ...   = python make_figures.py ...
    nnsrm status   ...   = python status.py ...
    nnsrm simulate ...   = python simulation/run_sim.py ...
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

#: command name -> (module under nnsrm.commands, the repository script it stands for or None, one line of help)
COMMANDS = {
    "train": ("train", "train_cifar.py", "stage 1: train N seeds of a network"),
    "extract": ("extract", "save_acts_cifar.py", "stage 2: save hidden activity on the test images"),
    "register": ("register", None, "bring your own activations: register a folder of them as a condition"),
    "analyse": ("analyse", "run_analyses.py", "stage 3: SRM alignment and RSA per epoch × layer"),
    "figures": ("figures", "make_figures.py", "the paper's figures for a condition"),
    "status": ("status", "status.py", "what is complete, missing, stale or corrupt under a root"),
    "simulate": ("simulate", "simulation/run_sim.py", "the XOR simulation (paper Fig. 5-6)"),
}


def run_command(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run command ``name`` with ``argv``; returns its exit status (2 for bad input, 130 for Ctrl-C)."""
    from nnsrm.cli import run_main

    module = importlib.import_module(f"nnsrm.commands.{COMMANDS[name][0]}")
    return run_main(module.main, argv, prog=prog or COMMANDS[name][1] or f"nnsrm {name}")


def main(argv: Sequence[str] | None = None) -> int:
    """``nnsrm <command> [options]``: the installed entry point; returns the exit status.

    After Ctrl-C it does not return: it ends the process with status 130
    through :func:`nnsrm.cli.exit_process` (no interpreter teardown).
    """
    from nnsrm.cli import INTERRUPTED, exit_process

    argv = list(sys.argv[1:] if argv is None else argv)
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items())
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: nnsrm <command> [options]   (nnsrm <command> --help for its options)\n\n"
              f"commands:\n{listing}")
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"nnsrm: error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)} "
              f"(see nnsrm --help)", file=sys.stderr)
        return 2
    code = run_command(argv[0], argv[1:], prog=f"nnsrm {argv[0]}")
    if code == INTERRUPTED:
        exit_process(code)
    return code
