"""What a stage is made of: independent jobs, and what happened to them.

A stage is a list of :class:`Job` s (stage 1: one per group of subjects; stage
2: one per subject; stage 3: one per epoch × layer). Each job is a plain top-level
function of picklable keyword arguments that writes its own outputs atomically
and marks them complete, so any engine (:mod:`nnsrm.runner` in this process,
:mod:`nnsrm.dask_engine` on Dask) can run it and a rerun skips what is done.
"""

from __future__ import annotations

import dataclasses
import traceback
from typing import Any, Callable

from nnsrm.errors import INPUT_ERRORS


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(**kwargs)``; ``name`` is what people read in reports."""

    name: str
    fn: Callable[..., Any]
    kwargs: dict

    def __call__(self):
        return self.fn(**self.kwargs)


@dataclasses.dataclass
class JobFailure:
    """A job that raised: its name, the error in one line, and whether it was bad input."""

    name: str
    error: str  # one line: "ExceptionType: message"
    is_input_error: bool
    traceback: str = ""


@dataclasses.dataclass
class RunReport:
    """What happened to a stage's jobs."""

    results: dict = dataclasses.field(default_factory=dict)  # job name -> return value
    failures: list = dataclasses.field(default_factory=list)  # list[JobFailure]

    @property
    def ok(self) -> bool:
        return not self.failures


class JobsFailed(Exception):
    """Some jobs failed; the others' outputs are kept. ``str()`` is one line per failure."""

    def __init__(self, report: RunReport, n_jobs: int):
        self.report = report
        lines = [f"{len(report.failures)} of {n_jobs} jobs failed (the others' outputs are kept):"]
        lines += [f"  {f.name}: {f.error}" for f in report.failures]
        super().__init__("\n".join(lines))

    @property
    def all_input_errors(self) -> bool:
        return all(f.is_input_error for f in self.report.failures)


def job_failure(name: str, err: BaseException) -> JobFailure:
    """The :class:`JobFailure` of job ``name`` that raised ``err``."""
    first = str(err).splitlines()[0] if str(err) else ""
    return JobFailure(name=name, error=f"{type(err).__name__}: {first}".rstrip(": "),
                      is_input_error=isinstance(err, INPUT_ERRORS),
                      traceback="".join(traceback.format_exception(err)))
