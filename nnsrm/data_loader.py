"""Datasets of the study, with the paper's preprocessing.

- ``digits``: scikit-learn's 8×8 handwritten digits (1,797 images, shipped with
  scikit-learn: offline). Fixed stratified 50/50 train/test split.
- ``mnist``: ``mnist.npz`` from ``--data-dir``, else downloaded once by
  ``keras.utils.get_file`` into ``~/.keras/datasets``; read with
  ``allow_pickle=False``.
- ``cifar10`` / ``cifar100``: the official python-version archives
  (``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``) from ``--data-dir``,
  else downloaded once the same way (read directly from the archive, nothing
  extracted).

Reading data never runs code from it: the CIFAR batches are pickles and are
read by :mod:`nnsrm.safe_pickle`, which allows only what the official batches
contain, and an archive with an official name but another MD5 is reported by
:mod:`nnsrm.archive_checksums` (see ``docs/security.md``).

Preprocessing as in the paper: pixels as float32, minus the training set's mean
image, divided by 128 for CIFAR (the pixel range of 0..255 becomes about ±1);
digits are scaled to [0, 1] first and then mean-centred the same way. MNIST is
scaled to [0, 1] and, as the original study's loader did, not mean-centred
(``subtract_mean`` of :func:`load_dataset` overrides either default).
Images are channels-last: (n_images, height, width, channels).
"""

from __future__ import annotations

import dataclasses
import pickle
import tarfile
from pathlib import Path

import numpy as np

from nnsrm.errors import MissingInputError, UsageError
from nnsrm.archive_checksums import OFFICIAL_MD5, warn_if_not_official
from nnsrm.safe_pickle import CIFAR_HOME, UnsafeArchiveError, load_cifar_batch

DATASET_NAMES = ("digits", "mnist", "cifar10", "cifar100")

ARCHIVES = {
    "mnist": "mnist.npz",
    "cifar10": "cifar-10-python.tar.gz",
    "cifar100": "cifar-100-python.tar.gz",
}
SOURCES = {
    "mnist": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
# What keras.utils.get_file checks a download against (MNIST: the hash Keras publishes).
DOWNLOAD_HASHES = {
    "mnist": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",  # SHA-256
    "cifar10": OFFICIAL_MD5[ARCHIVES["cifar10"]],
    "cifar100": OFFICIAL_MD5[ARCHIVES["cifar100"]],
}
CIFAR_IMAGE_BYTES = 3 * 32 * 32
#: Whether :func:`load_dataset` subtracts the training set's mean image when not told.
SUBTRACT_MEAN = {"digits": True, "mnist": False, "cifar10": True, "cifar100": True}
DIGITS_TEST_SIZE = 0.5
DIGITS_SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Preprocessed train and test images with integer labels.

    Attributes
    ----------
    x_train, x_test : float32 arrays, (n_images, height, width, channels)
    y_train, y_test : int64 arrays, (n_images,)
    n_classes : int
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_shape(self) -> tuple:
        """Shape of one image, (height, width, channels)."""
        return tuple(self.x_train.shape[1:])

    @property
    def y_train_onehot(self) -> np.ndarray:
        """One-hot training labels, (n_train, n_classes) float32."""
        return one_hot(self.y_train, self.n_classes)

    @property
    def y_test_onehot(self) -> np.ndarray:
        """One-hot test labels, (n_test, n_classes) float32."""
        return one_hot(self.y_test, self.n_classes)

    def describe(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test images of shape "
                f"{self.input_shape}, {self.n_classes} classes")


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) integer labels -> (n, n_classes) float32 one-hot."""
    out = np.zeros((len(labels), n_classes), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def center(x_train: np.ndarray, x_test: np.ndarray, scale: float, subtract_mean: bool = True) -> tuple:
    """float32, minus the training set's mean image (unless ``subtract_mean`` is False), divided by ``scale``."""
    x_train = x_train.astype(np.float32)
    x_test = x_test.astype(np.float32)
    if not subtract_mean:
        return x_train / np.float32(scale), x_test / np.float32(scale)
    mean_image = x_train.mean(axis=0, keepdims=True)  # (1, h, w, c)
    return (x_train - mean_image) / scale, (x_test - mean_image) / scale


def load_dataset(name: str, data_dir: str | Path | None = None, subtract_mean: bool | None = None) -> Dataset:
    """Load one dataset by name, preprocessed.

    Parameters
    ----------
    name : {"digits", "mnist", "cifar10", "cifar100"}
    data_dir : path, optional
        Folder holding the official archive (see module docstring). Without it,
        the archive is downloaded once into ``~/.keras/datasets`` (needs the
        internet the first time).
    subtract_mean : bool, optional
        Subtract the training set's mean image; default :data:`SUBTRACT_MEAN`
        of the dataset (``ExperimentConfig.subtract_mean`` of the registered
        conditions agrees with it).

    Raises
    ------
    nnsrm.errors.UsageError
        Unknown name, or the file is not a readable archive of the dataset
        (every error here is bad input: exit status 2 on the command line).
    nnsrm.errors.MissingInputError
        The archive is missing from ``data_dir``, or cannot be downloaded;
        the message names the file and where to put it (a ``UsageError`` and
        a ``FileNotFoundError``).
    nnsrm.safe_pickle.UnsafeArchiveError
        A CIFAR archive holds a pickle that asks to run anything; nothing of
        it ran (a ``UsageError``; one line naming the file).
    """
    if name not in DATASET_NAMES:
        raise UsageError(f"unknown dataset {name!r}; choose from {', '.join(DATASET_NAMES)}")
    if subtract_mean is None:
        subtract_mean = SUBTRACT_MEAN[name]
    elif not isinstance(subtract_mean, bool):
        raise UsageError(f"subtract_mean must be True, False or None, got {subtract_mean!r}")
    if name == "digits":
        return _load_digits(subtract_mean)
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise MissingInputError(f"--data-dir {data_dir} is not a folder; put {ARCHIVES[name]} "
                                    f"(from {SOURCES[name]}) in a folder and pass that folder")
        archive = data_dir / ARCHIVES[name]
        if not archive.exists():
            raise MissingInputError(f"{ARCHIVES[name]} not found in {data_dir}; download it from "
                                    f"{SOURCES[name]} and put it there (do not unpack it)")
    else:
        archive = _download_with_keras(name)
    raw = _read_mnist_npz(archive) if name == "mnist" else _read_cifar_archive(archive, name)
    (x_train, y_train), (x_test, y_test) = raw
    return _preprocess(name, x_train, y_train, x_test, y_test, subtract_mean)


def _preprocess(name, x_train, y_train, x_test, y_test, subtract_mean) -> Dataset:
    if name == "mnist":
        x_train, x_test = x_train[..., None] / 255.0, x_test[..., None] / 255.0
        scale, n_classes = 1.0, 10
    else:
        scale, n_classes = 128.0, 10 if name == "cifar10" else 100
    x_train, x_test = center(x_train, x_test, scale, subtract_mean)
    return Dataset(name, x_train, np.asarray(y_train, np.int64).ravel(), x_test,
                   np.asarray(y_test, np.int64).ravel(), n_classes)


def _load_digits(subtract_mean: bool = True) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images[..., None] / 16.0  # (1797, 8, 8, 1) in [0, 1]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_SIZE, stratify=y, random_state=DIGITS_SPLIT_SEED)
    x_train, x_test = center(x_train, x_test, 1.0, subtract_mean)
    return Dataset("digits", x_train, y_train, x_test, y_test, 10)


def _read_mnist_npz(path: Path):
    try:
        # allow_pickle=False: an object array (the only kind that needs a pickle) is refused.
        with np.load(path, allow_pickle=False) as f:
            return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    except (OSError, ValueError, KeyError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(f"{path} is not a readable {ARCHIVES['mnist']} of plain arrays x_train, y_train, "
                         f"x_test, y_test ({reason}); download it again from {SOURCES['mnist']}") from None


def _cifar_images(batch: dict) -> np.ndarray:
    """(n, 3072) uint8 rows, channel-major (R then G then B planes) -> (n, 32, 32, 3)."""
    return np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _check_cifar_batch(batch, label_key: bytes, source: str) -> None:
    """Refuse a member that unpickled safely but is not an official batch."""
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(label_key) if isinstance(batch, dict) else None
    if (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == CIFAR_IMAGE_BYTES and isinstance(labels, list) and len(labels) == len(data)
            and all(type(v) is int for v in labels)):
        return
    raise UsageError(f"{source} is not in the official CIFAR python format (expected a dict with b'data', "
                     f"a uint8 array of shape (n, {CIFAR_IMAGE_BYTES}), and {label_key!r}, a list of n ints); "
                     f"download the official archive from {CIFAR_HOME}")


def _read_cifar_archive(path: Path, name: str):
    """Read the official python-version CIFAR archive without unpacking it.

    Each batch is unpickled by :func:`nnsrm.safe_pickle.load_cifar_batch`
    (plain data and NumPy arrays only); the archive's MD5 is compared with the
    published one once it has been read.
    """
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    train_names = ([f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"])
    test_names = ["test_batch"] if name == "cifar10" else ["test"]
    batches, sources = {}, {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                base = Path(member.name).name
                if member.isfile() and base in train_names + test_names:
                    sources[base] = f"{path} (member {member.name})"
                    batches[base] = load_cifar_batch(tar.extractfile(member), sources[base])
    except UnsafeArchiveError:
        raise
    # Besides the archive's own errors: a damaged pickle made only of allowed parts.
    except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, IndexError, KeyError) as err:
        raise UsageError(f"{path} is not a readable {ARCHIVES[name]} archive ({err}); "
                         f"download it again from {SOURCES[name]}") from None
    missing = [b for b in train_names + test_names if b not in batches]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}; is it the python version of "
                         f"{name} ({ARCHIVES[name]})?")

    for base, batch in batches.items():
        _check_cifar_batch(batch, label_key, sources[base])
    warn_if_not_official(path)

    def stack(names):
        x = np.concatenate([_cifar_images(batches[n]) for n in names])
        y = np.concatenate([np.asarray(batches[n][label_key]) for n in names])
        return x, y

    return stack(train_names), stack(test_names)


def _download_with_keras(name: str) -> Path:
    """The official archive, downloaded once into Keras' cache (``~/.keras/datasets``) and checked.

    Only the download is Keras'; the file is read by this module's own readers,
    so reading never depends on how a Keras version parses its datasets.
    """
    import keras

    try:
        return Path(keras.utils.get_file(fname=ARCHIVES[name], origin=SOURCES[name],
                                         file_hash=DOWNLOAD_HASHES[name]))
    except Exception as err:  # noqa: BLE001 - any download failure becomes one clear line
        raise MissingInputError(
            f"{name} is not cached and could not be downloaded ({type(err).__name__}); download "
            f"{ARCHIVES[name]} from {SOURCES[name]} and pass its folder with --data-dir") from None
