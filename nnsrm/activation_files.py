"""Reading activation arrays from ``.npy``, ``.npz`` and HDF5 files without loading them, and never unpickling.

Every array is opened as an :class:`ActivationArray`: images × units (trailing
dimensions flattened), read by blocks of images, so memory stays bounded by
what the caller keeps.

- ``.npy``: memory-mapped (``np.load(..., mmap_mode="r")``).
- ``.npz``: a member stored uncompressed (``np.savez``) is memory-mapped in
  place (its offset inside the zip file is computed from the zip headers); a
  compressed member (``np.savez_compressed``) cannot be mapped, so it is
  decompressed into memory whole on its first read (one array at a time).
- HDF5 (``.h5``, ``.hdf5``): an ``h5py`` dataset, read by slices of images.

Shapes and dtypes come from the headers alone (no data read). Object,
string, structured and complex dtypes are refused before anything is read:
``.npy`` and ``.npz`` members are never unpickled (``allow_pickle=False``),
HDF5 string, object and compound datasets are refused.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from nnsrm.errors import UsageError

#: Suffixes of the files that hold one network's activations under keys (members or datasets).
NPZ_SUFFIXES = (".npz",)
HDF5_SUFFIXES = (".h5", ".hdf5")

#: numpy dtype kinds accepted as activations: booleans, signed and unsigned integers, floats.
NUMERIC_KINDS = "biuf"

#: Bytes of activations read per block (rows of images) when scanning or selecting units.
BLOCK_BYTES = 64 * 2**20


def describe(path, key: str | None = None) -> str:
    """How an array is named in messages: ``path`` or ``path[key]``."""
    return str(path) if key is None else f"{path}[{key}]"


def check_dtype(dtype, name: str) -> np.dtype:
    """``dtype`` if it is a plain number type; a one-line :class:`UsageError` naming ``name`` otherwise."""
    dtype = np.dtype(dtype)
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UsageError(f"{name} holds {dtype} values, not numbers: activations must be a numeric array "
                         f"(float, int or bool; never objects or strings); save it with "
                         f"np.asarray(a, dtype=np.float32)")
    return dtype


def check_shape(shape, name: str) -> tuple[int, int]:
    """The (n_images, n_units) of an array of ``shape``; a :class:`UsageError` for fewer than 2 dimensions."""
    shape = tuple(int(n) for n in shape)
    if len(shape) < 2:
        raise UsageError(f"{name} has shape {shape}, but activations must be images × units (2-D, or more "
                         f"dimensions flattened after the first); a single unit is a[:, None]")
    return shape[0], int(np.prod(shape[1:], dtype=np.int64))


class ActivationArray:
    """One network's activations of one layer at one checkpoint, images × units, read by blocks.

    Parameters
    ----------
    data : array-like, shape (n_images, ...)
        Anything sliceable along its first axis: an ndarray, a ``np.memmap``
        or an ``h5py.Dataset`` (whose file must stay open while it is read);
        or a callable returning such an array, called on the first read.
    shape : tuple of int
        The stored shape (checked to have at least 2 dimensions).
    dtype : numpy dtype
        The stored dtype (checked to be numeric).
    name : str
        The array in messages (a path, ``path[key]``, or ``activations[...]``).
    """

    def __init__(self, data, shape, dtype, name: str):
        self.name = name
        self.dtype = check_dtype(dtype, name)
        self.stored_shape = tuple(int(n) for n in shape)
        self.shape = check_shape(self.stored_shape, name)  # (n_images, n_units)
        self._data = data
        self._closers = []

    def _source(self):
        if callable(self._data):
            self._data = self._data()
        return self._data

    @property
    def block_rows(self) -> int:
        """Images per block, so that a block is about :data:`BLOCK_BYTES` of stored data."""
        row_bytes = max(1, self.shape[1] * self.dtype.itemsize)
        return max(1, BLOCK_BYTES // row_bytes)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as an array of shape (stop - start, n_units), in the stored dtype."""
        block = np.asarray(self._source()[start:stop])
        return block.reshape(block.shape[0], self.shape[1])

    def blocks(self):
        """Yield ``(start, block)`` over all images, each block (b, n_units)."""
        step = self.block_rows
        for start in range(0, self.shape[0], step):
            yield start, self.rows(start, min(start + step, self.shape[0]))

    def columns(self, units: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
        """Every image's activity of ``units`` (all if None), shape (n_images, len(units)), as ``dtype``."""
        n_cols = self.shape[1] if units is None else len(units)
        out = np.empty((self.shape[0], n_cols), dtype=dtype)
        for start, block in self.blocks():
            out[start:start + len(block)] = block if units is None else block[:, units]
        return out

    def count_nonfinite(self) -> int:
        """NaN and Inf values in the array (read by blocks: memory stays small)."""
        if self.dtype.kind != "f":
            return 0
        return int(sum(np.size(block) - np.count_nonzero(np.isfinite(block)) for _, block in self.blocks()))

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers = []
        self._data = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- .npy and .npz headers

def _read_npy_header(f, name: str) -> tuple[tuple, bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from an open ``.npy`` stream positioned at its magic string."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise UsageError(f"{name} is not a readable .npy array ({err}); save it with np.save") from None
    return shape, fortran, dtype


def npy_info(path) -> tuple[tuple, np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header (nothing else is read)."""
    try:
        with open(path, "rb") as f:
            shape, _, dtype = _read_npy_header(f, str(path))
    except OSError as err:
        raise UsageError(f"{path} cannot be read ({err.strerror})") from None
    return shape, dtype


def open_npy(path) -> ActivationArray:
    """A ``.npy`` file, memory-mapped, as an :class:`ActivationArray` (dtype and shape checked first)."""
    shape, dtype = npy_info(path)
    name = str(path)
    check_dtype(dtype, name)
    check_shape(shape, name)
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"{path} is not a readable .npy array ({err}); save it with np.save") from None
    return ActivationArray(data, shape, dtype, name)


def _npz_member(zf: zipfile.ZipFile, key: str, name: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(f"{key}.npy")
    except KeyError:
        raise UsageError(f"{name} does not exist: the .npz file has no member {key!r}") from None


def npz_keys(path) -> list[str]:
    """Member names of an ``.npz`` file in the order they were saved (without ``.npy``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (OSError, zipfile.BadZipFile) as err:
        raise UsageError(f"{path} is not a readable .npz file ({err}); save it with np.savez") from None
    odd = [n for n in names if not n.endswith(".npy")]
    if odd:
        raise UsageError(f"{path} holds {odd[0]!r}, which is not an array saved by np.savez; keep only "
                         f"arrays in the file")
    return [n[:-4] for n in names]


def npz_info(path, key: str) -> tuple[tuple, np.dtype, bool]:
    """Shape, dtype, and whether the member is stored uncompressed (so can be memory-mapped)."""
    name = describe(path, key)
    try:
        with zipfile.ZipFile(path) as zf:
            info = _npz_member(zf, key, name)
            with zf.open(info) as f:
                shape, _, dtype = _read_npy_header(f, name)
    except (OSError, zipfile.BadZipFile) as err:
        raise UsageError(f"{path} is not a readable .npz file ({err}); save it with np.savez") from None
    return shape, dtype, info.compress_type == zipfile.ZIP_STORED


def _npz_memmap(path, info: zipfile.ZipInfo, name: str) -> np.memmap:
    """Map an uncompressed ``.npz`` member in place: its data start after the zip and .npy headers."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the zip local file header; its name and extra fields follow
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise UsageError(f"{name}: the .npz file is damaged (bad local header); save it again with np.savez")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        shape, fortran, dtype = _read_npy_header(f, name)
        offset = f.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape),
                     order="F" if fortran else "C")


def open_npz_member(path, key: str) -> ActivationArray:
    """One ``.npz`` member as an :class:`ActivationArray`: mapped if stored, else decompressed on first read."""
    name = describe(path, key)
    shape, dtype, stored = npz_info(path, key)
    check_dtype(dtype, name)
    check_shape(shape, name)
    if stored:
        with zipfile.ZipFile(path) as zf:
            info = _npz_member(zf, key, name)
        return ActivationArray(_npz_memmap(path, info, name), shape, dtype, name)

    def load():
        with np.load(path, allow_pickle=False) as z:
            return z[key]

    return ActivationArray(load, shape, dtype, name)


# --------------------------------------------------------------------------- HDF5

def _h5py():
    import h5py

    return h5py


def hdf5_check_dataset(ds, name: str) -> None:
    """Refuse string, object (variable-length) and compound HDF5 datasets before reading them."""
    h5py = _h5py()
    if h5py.check_string_dtype(ds.dtype) is not None or h5py.check_vlen_dtype(ds.dtype) is not None:
        raise UsageError(f"{name} is a string or variable-length dataset, not numbers: activations must be a "
                         f"numeric array (float, int or bool)")
    check_dtype(ds.dtype, name)


def hdf5_datasets(path) -> list[tuple[str, bool]]:
    """``(dataset path, creation order tracked)`` of every dataset in an HDF5 file, in its stored order.

    The order is the creation order where the file tracks it (``track_order=True``),
    else the alphabetical order HDF5 uses by default; the flag says which.
    """
    h5py = _h5py()
    out = []
    try:
        with h5py.File(path, "r") as f:
            def walk(group, prefix):
                tracked = bool(group.id.get_create_plist().get_link_creation_order())
                for name in group:
                    obj = group.get(name, getlink=False)
                    full = f"{prefix}{name}"
                    if isinstance(obj, h5py.Group):
                        walk(obj, full + "/")
                    elif isinstance(obj, h5py.Dataset):
                        out.append((full, tracked))
            walk(f, "")
    except OSError as err:
        raise UsageError(f"{path} is not a readable HDF5 file ({err}); write it with h5py") from None
    return out


def hdf5_info(path, key: str) -> tuple[tuple, np.dtype]:
    """Shape and dtype of an HDF5 dataset (checked to be numeric)."""
    h5py = _h5py()
    name = describe(path, key)
    try:
        with h5py.File(path, "r") as f:
            ds = f.get(key)
            if not isinstance(ds, h5py.Dataset):
                raise UsageError(f"{name} does not exist: the file has no dataset {key!r}")
            hdf5_check_dataset(ds, name)
            return tuple(ds.shape), np.dtype(ds.dtype)
    except OSError as err:
        raise UsageError(f"{path} is not a readable HDF5 file ({err}); write it with h5py") from None


def open_hdf5_dataset(path, key: str) -> ActivationArray:
    """An HDF5 dataset as an :class:`ActivationArray` (the file stays open until ``close()``)."""
    h5py = _h5py()
    name = describe(path, key)
    shape, dtype = hdf5_info(path, key)
    check_shape(shape, name)
    f = h5py.File(path, "r")
    arr = ActivationArray(f[key], shape, dtype, name)
    arr._closers.append(f.close)
    return arr


# --------------------------------------------------------------------------- any file

def array_info(path, key: str | None) -> tuple[tuple, np.dtype]:
    """Stored shape and dtype of the array ``key`` of ``path`` (``key`` None for a ``.npy`` file)."""
    suffix = Path(path).suffix.lower()
    if suffix in NPZ_SUFFIXES:
        shape, dtype, _ = npz_info(path, key)
    elif suffix in HDF5_SUFFIXES:
        shape, dtype = hdf5_info(path, key)
    else:
        shape, dtype = npy_info(path)
    return tuple(int(n) for n in shape), dtype


def open_array(path, key: str | None) -> ActivationArray:
    """Open the array ``key`` of ``path`` (a ``.npy`` file if ``key`` is None) as an :class:`ActivationArray`."""
    suffix = Path(path).suffix.lower()
    if suffix in NPZ_SUFFIXES:
        return open_npz_member(path, key)
    if suffix in HDF5_SUFFIXES:
        return open_hdf5_dataset(path, key)
    return open_npy(path)


def is_compressed(path, key: str | None) -> bool:
    """True for a compressed ``.npz`` member (read whole into memory, not mapped)."""
    if Path(path).suffix.lower() not in NPZ_SUFFIXES:
        return False
    return not npz_info(path, key)[2]


# --------------------------------------------------------------------------- labels

def labels_from_array(labels, name: str) -> np.ndarray:
    """Integer class labels of shape (n_images,) from ``labels`` (1-D, a column, or one-hot rows).

    Raises
    ------
    UsageError
        Naming ``name``, if the labels are not integers of one of those shapes.
    """
    labels = np.asarray(labels)
    if labels.dtype.hasobject or labels.dtype.kind not in "biuf":
        raise UsageError(f"{name} holds {labels.dtype} values: labels must be integers 0..C-1, one per image "
                         f"(map class names to integers first)")
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot
        labels = labels.argmax(axis=1)
    elif labels.ndim == 2:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise UsageError(f"{name} must hold one integer label per image, shape (n_images,), got shape "
                         f"{labels.shape}")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise UsageError(f"{name} holds non-integer labels; labels must be integers 0..C-1, one per image")
        labels = labels.astype(np.int64)
    return labels.astype(np.int64, copy=False)


def read_labels_file(path) -> np.ndarray:
    """Integer labels (n_images,) from a ``.npy`` file (never unpickled) or a text file (one per line)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        shape, dtype = npy_info(path)
        if dtype.hasobject:
            raise UsageError(f"{path} holds Python objects; labels must be integers 0..C-1 "
                             f"(save them with np.save(path, np.asarray(labels, dtype=np.int64)))")
        try:
            labels = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise UsageError(f"{path} is not a readable .npy file ({err}); save the labels with np.save") from None
    else:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"{path} cannot be read as text ({err}); write one integer label per line") from None
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        try:
            labels = np.array([int(line) for line in lines], dtype=np.int64)
        except ValueError:
            bad = next(line for line in lines if not line.lstrip("+-").isdigit())
            raise UsageError(f"{path} holds {bad!r}, not an integer: write one integer label (0..C-1) per line, "
                             f"in the order of the images") from None
    return labels_from_array(labels, str(path))
