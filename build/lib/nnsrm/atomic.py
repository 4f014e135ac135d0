"""Atomic writes and completion markers, so a killed run never leaves a file that looks complete.

Every output is written to a temporary name in the same folder and renamed into
place (``os.replace`` is atomic on POSIX). A job that writes several files ends
by writing a small JSON *completion marker* listing each file with its size and
SHA-256; a job counts as complete only if its marker exists and every file it
lists is still there, whole and unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

MARKER_NAME = "_complete.json"


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
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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

    Only call this from the job that owns ``directory``: a temporary file of a
    write in progress elsewhere would be removed too. Returns how many were removed.
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
