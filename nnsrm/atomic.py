"""Atomic writes, completion markers and job locks, so a killed or doubled run never leaves a file that looks complete.

Every output is written to a temporary name in the same folder, flushed to disk
(``fsync``) and renamed into place (``os.replace`` is atomic on POSIX), and the
folder is flushed after the rename, so a crash of the machine cannot leave a
renamed but empty file. A job that writes several files ends by writing a small
JSON *completion marker* listing each file with its size and SHA-256; a job
counts as complete only if its marker exists and every file it lists is still
there, whole and unchanged.

A job holds :func:`job_lock` on its folder while it writes there, so a second
writer of the same job (another driver on the same root, or a job that Dask
runs twice) waits for the first instead of racing it, and only the lock holder
removes leftover temporary files: those of writers that died.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

MARKER_NAME = "_complete.json"
#: The lock file of the job that writes a folder (hidden; see :func:`job_lock`).
LOCK_NAME = ".lock"

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    ``suffix`` is kept on the temporary name (some writers, e.g. Keras' weight
    saver or ``np.save``, insist on an extension). On error the temporary file
    is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should be shareable like any file
    tmp = Path(tmp)
    try:
        yield tmp
        fsync_file(tmp)  # the bytes reach the disk before the name does
        os.replace(tmp, path)
        fsync_directory(path.parent)  # and the rename itself is durable
    finally:
        if tmp.exists():
            tmp.unlink()


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a closed file's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk, where the system allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. a platform that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save arrays into one (uncompressed) ``.npz`` atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_marker(directory: str | os.PathLike, files: Iterable[str | os.PathLike], **info) -> Path:
    """Mark the job whose outputs are ``files`` (inside ``directory``) as complete.

    The marker records each file's path relative to ``directory``, its size and
    its SHA-256, plus any extra JSON-able ``info``.
    """
    directory = Path(directory)
    entries = {}
    for f in files:
        f = Path(f)
        entries[str(f.resolve().relative_to(directory.resolve()))] = {
            "bytes": f.stat().st_size,
            "sha256": file_digest(f),
        }
    marker = directory / MARKER_NAME
    write_json(marker, {"files": entries, **info})
    return marker


def read_marker(directory: str | os.PathLike) -> dict | None:
    """The completion marker of ``directory`` as a dict, or None if it is absent or unreadable."""
    try:
        info = json.loads((Path(directory) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def marker_digest(directory: str | os.PathLike) -> str | None:
    """SHA-256 of ``directory``'s completion marker (it lists every output's checksum), or None if absent.

    One string that changes whenever the job's outputs are remade: what a later
    stage records of the outputs it read.
    """
    marker = Path(directory) / MARKER_NAME
    return file_digest(marker) if marker.is_file() else None


def marker_status(directory: str | os.PathLike, verify: bool = False) -> str:
    """State of the job whose marker lives in ``directory``.

    Returns ``"complete"`` (marker present, every listed file present with the
    recorded size, and with ``verify=True`` also the recorded checksum),
    ``"missing"`` (no marker) or ``"corrupt"`` (marker unreadable, or a listed
    file missing or changed).
    """
    marker = Path(directory) / MARKER_NAME
    if not marker.exists():
        return "missing"
    try:
        files = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return "corrupt"
    for rel, meta in files.items():
        f = Path(directory) / rel
        if not f.exists() or f.stat().st_size != meta["bytes"]:
            return "corrupt"
        if verify and file_digest(f) != meta["sha256"]:
            return "corrupt"
    return "complete"


def is_complete(directory: str | os.PathLike, verify: bool = False) -> bool:
    """True if the job whose marker lives in ``directory`` finished (see :func:`marker_status`)."""
    return marker_status(directory, verify=verify) == "complete"


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete temporary files that a killed writer left in ``directory`` (not recursive).

    Only call this while holding :func:`job_lock` on ``directory``: every other
    writer of that folder holds the lock while it writes, so the temporary files
    found then belong to writers that died. Returns how many were removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    stale = [p for p in directory.glob(".*.tmp*") if p.is_file()]
    for p in stale:
        p.unlink()
    return len(stale)


def clear_marker(directory: str | os.PathLike) -> None:
    """Remove a completion marker (before a job rewrites its outputs)."""
    marker = Path(directory) / MARKER_NAME
    if marker.exists():
        marker.unlink()


@contextlib.contextmanager
def job_lock(directory: str | os.PathLike, name: str | None = None) -> Iterator[Path]:
    """Hold the lock of the job that writes ``directory`` (created if needed) for the block.

    The lock is an advisory file lock (the ``filelock`` package: ``flock`` on
    POSIX) on ``directory/.lock``. If another process holds it, a warning says
    so and the call waits until it is free; the caller then checks again whether
    the job is complete. The operating system releases the lock when its holder
    dies, so a killed writer never blocks a rerun. The lock file stays behind
    (removing it would race a waiting writer); it holds no data.

    Parameters
    ----------
    directory : path
        The job's output folder.
    name : str, optional
        The job's name, for the message.
    """
    import filelock

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        log.warning("%s: another process is writing it (it holds %s); waiting until it is done",
                    name or directory, path)
        lock.acquire()
    try:
        yield path
    finally:
        lock.release()


def run_once_locked(directory: str | os.PathLike, name: str, params: dict, overwrite: bool,
                    work: Callable[[], dict]) -> dict:
    """Run ``work`` for the job writing ``directory`` unless it is complete with the same ``params``.

    The check is made before and again after taking the job's lock
    (:func:`job_lock`), so a second driver on the same root waits for the
    first and then skips the job. ``params`` is compared with the marker's
    ``"params"`` field; ``overwrite`` runs ``work`` regardless. Returns
    ``{"status": "skipped"}`` or what ``work`` returns.
    """
    if not overwrite and complete_with_params(directory, params):
        return {"status": "skipped"}
    with job_lock(directory, name):
        if not overwrite and complete_with_params(directory, params):
            return {"status": "skipped"}
        return work()


def complete_with_params(directory: str | os.PathLike, params: dict) -> bool:
    """True if ``directory`` is a complete job whose marker records ``params`` as its ``"params"``."""
    directory = Path(directory)
    if not is_complete(directory):
        return False
    try:
        return json.loads((directory / MARKER_NAME).read_text()).get("params") == params
    except ValueError:
        return False
