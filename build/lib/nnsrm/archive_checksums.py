"""Is a dataset archive the official one? Its MD5 against the published value.

A mismatch is only a warning: the archive is still read, and
:mod:`nnsrm.safe_pickle` still refuses anything in it that is not plain data.
Archives made on purpose (the tests' tiny ones, a re-packed copy) can say so
with the environment variable :data:`EXPECT_UNOFFICIAL_ENV` set to ``1``, which
silences the warning and skips the hashing; it changes nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from nnsrm.safe_pickle import CIFAR_HOME

log = logging.getLogger(__name__)

# Published on the CIFAR page for the python versions.
OFFICIAL_MD5 = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
}
EXPECT_UNOFFICIAL_ENV = "NNSRM_EXPECT_UNOFFICIAL_ARCHIVES"
_CHUNK_BYTES = 1 << 20


def file_md5(path: str | os.PathLike) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unofficial_expected() -> bool:
    """Whether the user declared unofficial archives expected (``NNSRM_EXPECT_UNOFFICIAL_ARCHIVES=1``)."""
    return os.environ.get(EXPECT_UNOFFICIAL_ENV, "") == "1"


def warn_if_not_official(path: str | os.PathLike) -> bool:
    """Log one warning line if an archive with an official name has another MD5.

    Parameters
    ----------
    path : path
        The archive. Only names in :data:`OFFICIAL_MD5` are checked.

    Returns
    -------
    bool
        True if a warning was logged.
    """
    path = Path(path)
    expected = OFFICIAL_MD5.get(path.name)
    if expected is None:
        return False
    if unofficial_expected():
        log.debug("%s: checksum not checked (%s=1)", path, EXPECT_UNOFFICIAL_ENV)
        return False
    actual = file_md5(path)
    if actual == expected:
        return False
    log.warning("%s is not the official %s (MD5 %s, official %s); it was read with pickles limited to "
                "plain data, but for the paper's results download the official one from %s "
                "(set %s=1 if you made this archive on purpose)", path, path.name, actual, expected,
                CIFAR_HOME, EXPECT_UNOFFICIAL_ENV)
    return True
