"""Tiny CIFAR-10 / CIFAR-100 archives in the official python-version format, for tests.

The real archives are gzip'd tarballs of pickled dicts: ``data`` (n × 3072
uint8, the R, G and B 32×32 planes one after another), ``labels`` (CIFAR-10) or
``fine_labels``/``coarse_labels`` (CIFAR-100), lists of ints, under
``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``) or
``cifar-100-python/`` (``train``, ``test``). They were written by Python 2
(protocol 2, byte strings as ``str`` opcodes, the array rebuilt by
``numpy.core.multiarray._reconstruct``); :func:`make_cifar_archive` writes its
pickles the same way, so the restricted unpickler sees what it would see in the
official files.

These archives are not the official ones, so their MD5 differs from the
published one: tests that load them declare that with :data:`FIXTURE_ENV`
(``monkeypatch.setenv(*FIXTURE_ENV)`` or :func:`declared_fixtures`).
"""

import contextlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from nnsrm.archive_checksums import EXPECT_UNOFFICIAL_ENV

FIXTURE_ENV = (EXPECT_UNOFFICIAL_ENV, "1")
NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")  # NumPy 1 and NumPy 2 spelling
_RECONSTRUCT = b"c%s\n_reconstruct\n"


class _Python2StylePickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: byte strings as ``str`` opcodes, not ``_codecs.encode`` calls.

    The pure-Python pickler is used because its per-type dispatch table can be
    extended; the C one cannot.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def python2_pickle(obj, numpy_module: str = "numpy.core.multiarray") -> bytes:
    """Pickle ``obj`` as Python 2 with NumPy 1 did; ``numpy_module`` names ``_reconstruct``'s module."""
    buffer = io.BytesIO()
    _Python2StylePickler(buffer, protocol=2).dump(obj)
    blob = buffer.getvalue()
    # Protocol 2 has no frames and memo entries are numbered, so a global's text can change length.
    for module in NUMPY_MODULES:
        blob = blob.replace(_RECONSTRUCT % module.encode(), _RECONSTRUCT % numpy_module.encode())
    return blob


def _batch(rng, n, n_classes, fine):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = (np.arange(n) % n_classes).tolist()  # Python ints, as in the official lists; every class present
    d = {b"data": data, b"batch_label": b"fake", b"filenames": [b"x.png"] * n}
    if fine:
        d[b"fine_labels"] = labels
        d[b"coarse_labels"] = [lab // 5 for lab in labels]
    else:
        d[b"labels"] = labels
    return d


def cifar_members(name="cifar10", n_train_per_batch=20, n_test=30, seed=0) -> dict:
    """What :func:`make_cifar_archive` pickles with the same arguments: member name -> batch dict."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        members = {f"data_batch_{i}": _batch(rng, n_train_per_batch, 10, False) for i in range(1, 6)}
        members["test_batch"] = _batch(rng, n_test, 10, False)
        return members
    return {"train": _batch(rng, max(n_train_per_batch * 5, 100), 100, True),
            "test": _batch(rng, max(n_test, 100), 100, True)}


def write_cifar_tar(path, prefix, blobs: dict) -> Path:
    """A gzip'd tar at ``path`` with each ``prefix/member`` holding its bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for member, blob in blobs.items():
            info = tarfile.TarInfo(f"{prefix}/{member}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def make_cifar_archive(folder, name="cifar10", n_train_per_batch=20, n_test=30, seed=0,
                       numpy_module="numpy.core.multiarray") -> Path:
    """Write ``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz`` into ``folder``; return its path."""
    members = cifar_members(name, n_train_per_batch, n_test, seed)
    if name == "cifar10":
        path, prefix = Path(folder) / "cifar-10-python.tar.gz", "cifar-10-batches-py"
    else:
        path, prefix = Path(folder) / "cifar-100-python.tar.gz", "cifar-100-python"
    return write_cifar_tar(path, prefix, {m: python2_pickle(d, numpy_module) for m, d in members.items()})


@contextlib.contextmanager
def declared_fixtures():
    """Within the block (this process and its subprocesses), archives are declared unofficial on purpose."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(*FIXTURE_ENV)
        yield
