"""Tiny CIFAR-10 / CIFAR-100 archives in the official python-version format, for tests.

The real archives are gzip'd tarballs of pickled dicts: ``data`` (n × 3072
uint8, the R, G and B 32×32 planes one after another), ``labels`` (CIFAR-10) or
``fine_labels``/``coarse_labels`` (CIFAR-100), under ``cifar-10-batches-py/``
(``data_batch_1..5``, ``test_batch``) or ``cifar-100-python/`` (``train``,
``test``).
"""

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np


def _batch(rng, n, n_classes, fine):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = list(np.arange(n) % n_classes)  # every class present
    d = {b"data": data, b"batch_label": b"fake", b"filenames": [b"x.png"] * n}
    if fine:
        d[b"fine_labels"] = labels
        d[b"coarse_labels"] = [lab // 5 for lab in labels]
    else:
        d[b"labels"] = labels
    return d


def make_cifar_archive(folder, name="cifar10", n_train_per_batch=20, n_test=30, seed=0) -> Path:
    """Write ``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz`` into ``folder``; return its path."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        path, prefix = folder / "cifar-10-python.tar.gz", "cifar-10-batches-py"
        members = {f"data_batch_{i}": _batch(rng, n_train_per_batch, 10, False) for i in range(1, 6)}
        members["test_batch"] = _batch(rng, n_test, 10, False)
    else:
        path, prefix = folder / "cifar-100-python.tar.gz", "cifar-100-python"
        members = {"train": _batch(rng, max(n_train_per_batch * 5, 100), 100, True),
                   "test": _batch(rng, max(n_test, 100), 100, True)}
    with tarfile.open(path, "w:gz") as tar:
        for member, content in members.items():
            blob = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"{prefix}/{member}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def read_member(path, member):
    """The unpickled dict of one member of an archive made by :func:`make_cifar_archive`."""
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            if Path(m.name).name == member:
                return pickle.load(tar.extractfile(m), encoding="bytes")
    raise KeyError(member)
