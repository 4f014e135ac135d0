"""The errors the pipeline tells apart: bad input (exit status 2) and everything else (exit status 1).

Misuse — a bad flag, an unknown name, a missing or malformed file — is the
user's to fix and fails the same way every time, so it is reported as one
line and exit status 2, and a distributed engine does not retry it. Any other
exception inside a job (a numerical failure, a full disk, a lost worker) fails
that job: exit status 1, with the job named.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A problem the user can fix on the command line or on disk (exit status 2).

    A ``ValueError``, so Python callers that catch ``ValueError`` for bad
    arguments catch it too.
    """


# Exceptions that mean "bad input", reported as one line with exit status 2.
INPUT_ERRORS = (UsageError, ValueError, FileNotFoundError, NotADirectoryError, FileExistsError)
