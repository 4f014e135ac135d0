"""The errors the pipeline tells apart: bad input (exit status 2) and everything else (exit status 1).

Misuse — a bad flag, an unknown name, a missing or malformed file, outputs
made with other settings — is the user's to fix and fails the same way every
time, so it is reported as one line with exit status 2, and a distributed
engine does not retry it. Only :class:`UsageError` (and its subclasses) means
that: every check of user input in :mod:`nnsrm` raises it.

Any other exception inside a job (a numerical failure such as
``numpy.linalg.LinAlgError``, a ``ValueError`` from a library, a full disk, a
lost worker) fails that job: exit status 1, with the job named and the cause
in one line, and Dask retries it like any other failure.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A problem the user can fix on the command line or on disk (exit status 2).

    A ``ValueError``, so Python callers that catch ``ValueError`` for bad
    arguments catch it too.
    """


class MissingInputError(UsageError, FileNotFoundError):
    """A file or folder the user must provide, or an earlier stage must write, does not exist (exit status 2).

    Also a ``FileNotFoundError``, for callers that catch that.
    """


class StaleOutputError(UsageError):
    """A complete job's outputs were made with other settings or inputs than this run's (exit status 2).

    The message names the first difference and the way out (``--overwrite``,
    or another ``--root``); nothing has been written when it is raised.
    """


#: Exceptions that mean "bad input": reported as one line with exit status 2, never retried.
INPUT_ERRORS = (UsageError,)
