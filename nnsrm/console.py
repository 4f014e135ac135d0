"""A quiet console and a full log file for every command.

What a person sees on the terminal:

- one progress bar per stage (only on a terminal: piped output gets none, so
  no carriage-return debris ends up in files);
- a summary of a few lines per stage (the commands ``print`` it);
- warnings and errors, one line each.

Everything else — INFO and DEBUG records of nnsrm, qmvpa and the libraries,
tracebacks of failed jobs — goes to ``ROOT/logs/<command>-<time>.log``, and to
the terminal as well with ``-v`` (``-vv`` adds DEBUG). The log file is opened
only once a command has validated its input (:func:`start_log_file`), so bad
input leaves the results root untouched; records logged before that are kept
in memory and written first.
"""

from __future__ import annotations

import datetime
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Iterable, TypeVar

T = TypeVar("T")

#: Loggers of libraries that talk at INFO (JAX's "Unable to initialize backend 'tpu'", Dask's
#: worker starts, BrainIAK's per-iteration lines): kept out of the console unless -vv.
CHATTY_LIBRARIES = ("jax", "jax._src", "absl", "distributed", "brainiak", "matplotlib", "PIL", "h5py",
                    "numexpr", "hypertools", "asyncio", "tornado", "bokeh", "fsspec", "filelock")

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STATE: dict = {"memory": None, "console": None, "file": None}


class _TqdmAwareHandler(logging.StreamHandler):
    """Writes records above any progress bar instead of through it."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup(verbose: int = 0, prog: str | None = None) -> None:
    """Configure logging for a command: quiet console, records kept for the log file.

    Parameters
    ----------
    verbose : int
        0: warnings and errors on the console; 1 (``-v``): also INFO of nnsrm
        and qmvpa; 2 (``-vv``): DEBUG, libraries included.
    prog : str, optional
        Prefix of console lines (the command's name).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_nnsrm", False):
            root.removeHandler(handler)
    root.setLevel(logging.DEBUG)
    console = _TqdmAwareHandler(sys.stderr)
    console._nnsrm = True
    console.setLevel(logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    fmt = f"{prog}: %(levelname)s: %(message)s" if prog and verbose <= 0 else _FORMAT
    console.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    if verbose < 2:
        console.addFilter(_not_chatty)
    memory = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1, target=None)
    memory._nnsrm = True
    memory.setLevel(logging.DEBUG)
    memory.addFilter(_not_debug_of_libraries)
    root.addHandler(console)
    root.addHandler(memory)
    _STATE.update(memory=memory, console=console, file=None)


#: Libraries whose warnings are about their own housekeeping (Dask: "Worker process still alive after
#: 4.0 seconds, killing" when a local cluster closes): kept off the console unless they are errors.
HOUSEKEEPING_LIBRARIES = ("distributed",)


def _from(record: logging.LogRecord, libraries) -> bool:
    return any(record.name == lib or record.name.startswith(lib + ".") for lib in libraries)


def _not_chatty(record: logging.LogRecord) -> bool:
    """Console filter: library records below WARNING (below ERROR for Dask) stay off the terminal."""
    if record.levelno >= logging.ERROR:
        return True
    if _from(record, HOUSEKEEPING_LIBRARIES):
        return False
    return record.levelno >= logging.WARNING or not _from(record, CHATTY_LIBRARIES)


def _not_debug_of_libraries(record: logging.LogRecord) -> bool:
    """Log-file filter: DEBUG of our own code, INFO and above of everything."""
    return record.levelno >= logging.INFO or record.name.split(".")[0] in ("nnsrm", "qmvpa", "__main__")


def start_log_file(root: str | os.PathLike, command: str) -> Path | None:
    """Open ``ROOT/logs/<command>-<time>.log`` and write every record kept so far into it.

    Call this after the command's input is validated. Returns the path, or None
    if :func:`setup` was not called (e.g. a command's ``main`` used from Python).
    """
    memory = _STATE.get("memory")
    if memory is None:
        return None
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / "logs" / f"{command}-{stamp}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler._nnsrm = True
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_not_debug_of_libraries)
    memory.setTarget(handler)
    memory.flush()
    root_logger = logging.getLogger()
    root_logger.removeHandler(memory)
    memory.close()
    root_logger.addHandler(handler)
    _STATE.update(memory=None, file=path)
    logging.getLogger(__name__).info("command line: %s", " ".join(sys.argv))
    return path


def log_file() -> Path | None:
    """The current command's log file, once opened."""
    return _STATE.get("file")


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "job",
             enabled: bool = True) -> Iterable[T]:
    """A progress bar over ``iterable`` on a terminal; the bare iterable elsewhere.

    Off when ``enabled`` is False, when stderr is not a terminal (piped output
    gets no carriage returns), and when there is nothing to do.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if not enabled or total == 0 or not sys.stderr.isatty():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=True)
