"""Unpickling the official CIFAR batches without ever running code from them.

The python version of CIFAR-10/100 stores each batch as a pickle (protocol 2,
written by Python 2): a dict of byte strings, lists of ints and one NumPy
``uint8`` array. A pickle may name any importable function and have it called
while it is read, so an archive that is not the official one could run anything.
:class:`CifarUnpickler` resolves only the names an official batch contains and
refuses every other before anything is called:

- ``numpy.core.multiarray._reconstruct`` (and its NumPy 2 name
  ``numpy._core.multiarray._reconstruct``), ``numpy.ndarray`` and
  ``numpy.dtype``: rebuilding the ``data`` array.

Dicts, lists, byte strings, strings and numbers need no name at all. The names
are mapped to the objects of the NumPy that is running; nothing is imported by
the name found in the file. ``docs/security.md`` explains what is loaded how.
"""

from __future__ import annotations

import pickle
from typing import BinaryIO

import numpy as np

from nnsrm.errors import UsageError

try:  # NumPy 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1
    from numpy.core.multiarray import _reconstruct

CIFAR_HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"

# (module, name) as written in a pickle -> the object it may stand for.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside :data:`ALLOWED_GLOBALS`; nothing was called."""

    def __init__(self, module: str, name: str):
        # ascii() escapes newlines and the like, so a crafted name cannot break the one-line message.
        self.qualified_name = ascii(f"{module}.{name}")[1:-1]
        super().__init__(f"refused global {self.qualified_name}")


class UnsafeArchiveError(UsageError):
    """An archive's pickle asked for more than official CIFAR data; nothing of it was run.

    Bad input (exit status 2): a ``ValueError`` through :class:`nnsrm.errors.UsageError`.
    """


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that knows only the globals of the official CIFAR batches.

    Every global a pickle names (``GLOBAL``, ``STACK_GLOBAL``, ``INST``,
    ``OBJ`` and the extension-registry opcodes all go through
    :meth:`find_class`) is looked up in :data:`ALLOWED_GLOBALS`; any other
    raises :class:`RefusedGlobal` before it is imported or called.
    """

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid):
        raise RefusedGlobal("persistent id", str(pid))


def load_cifar_batch(file: BinaryIO, source: str) -> object:
    """Unpickle one CIFAR batch (or meta) member, refusing anything but plain data.

    Parameters
    ----------
    file : binary file object
        The member's pickle stream, e.g. ``tarfile.TarFile.extractfile(member)``.
    source : str
        What to name in the error, e.g. ``"data/cifar-10-python.tar.gz
        (member cifar-10-batches-py/data_batch_1)"``.

    Returns
    -------
    object
        What the pickle holds, read with ``encoding="bytes"`` as the official
        instructions say: for a batch, a dict with byte-string keys
        (``b"data"``: uint8 array, shape (n_images, 3072); ``b"labels"`` or
        ``b"fine_labels"``/``b"coarse_labels"``: lists of ints;
        ``b"batch_label"``, ``b"filenames"``: bytes).

    Raises
    ------
    UnsafeArchiveError
        The pickle names a global outside :data:`ALLOWED_GLOBALS` (one-line
        message: the source, that it is not the official format and may be
        unsafe, and where to get the official archive).
    pickle.UnpicklingError, EOFError, ValueError, TypeError
        A damaged stream made only of allowed parts.
    """
    try:
        return CifarUnpickler(file, encoding="bytes").load()
    except RefusedGlobal as err:
        raise UnsafeArchiveError(
            f"{source} is not in the official CIFAR python format and may be unsafe: it names "
            f"{err.qualified_name}, which was refused (nothing from the file ran); download the "
            f"official archive from {CIFAR_HOME}") from None
