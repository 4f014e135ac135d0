"""Ctrl-C in the commands: the first one stops the run cleanly, a second one at once.

The stage commands install :func:`handling` around their work (through
:func:`nnsrm.cli.run_main`). The first SIGINT raises ``KeyboardInterrupt``
as Python's own handler does, so the run unwinds normally and every write in
progress removes its temporary file. It is also *remembered*: a library can
turn a ``KeyboardInterrupt`` raised inside its own code into another
exception (JAX does so while it hashes or compiles), or catch it, and the job
runner (:mod:`nnsrm.runner`) would then count it as one job's failure and go
on with the next job. :func:`received` tells the runner and the command that
the user asked to stop, whatever became of the exception. A second SIGINT
(cleanup taking long, e.g. a Dask cluster shutting down) ends the process at
once with status 130.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130

_STATE = {"count": 0, "prog": "nnsrm"}


def received() -> bool:
    """True once Ctrl-C was pressed during the current command."""
    return _STATE["count"] > 0


def check() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed during the current command (e.g. between two jobs)."""
    if received():
        raise KeyboardInterrupt


def _handler(signum, frame):
    _STATE["count"] += 1
    if _STATE["count"] == 1:
        raise KeyboardInterrupt
    os.write(2, f"{_STATE['prog']}: interrupted again; exiting now\n".encode())
    os._exit(INTERRUPTED)


@contextlib.contextmanager
def handling(prog: str) -> Iterator[None]:
    """Handle SIGINT as described above for the block, then restore the previous handler.

    Only in the main thread (the only one Python delivers signals to);
    elsewhere the block runs with the handler as it is. A Ctrl-C is
    remembered only while the block runs: afterwards (e.g. the library used
    from the same Python session) :func:`check` passes again.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STATE.update(count=0, prog=prog)
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _STATE["count"] = 0
