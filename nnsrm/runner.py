"""Run a stage's list of independent jobs: in this process by default, or on Dask.

A stage is a list of :class:`Job` s (stage 1: one per subject; stage 2: one per
subject × epoch; stage 3: one per epoch × layer). Each job is a plain top-level
function of picklable keyword arguments that writes its own outputs atomically
and marks them complete, so any engine can run it and a rerun skips what is
done. A failing job does not stop the others: the runner collects every
failure and reports them together at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from nnsrm.cli import INPUT_ERRORS

log = logging.getLogger(__name__)


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


def _failure(name: str, err: BaseException) -> JobFailure:
    first = str(err).splitlines()[0] if str(err) else ""
    return JobFailure(name=name, error=f"{type(err).__name__}: {first}".rstrip(": "),
                      is_input_error=isinstance(err, INPUT_ERRORS),
                      traceback="".join(traceback.format_exception(err)))


def run_jobs(jobs: Sequence[Job], *, scheduler: str | None = None, workers: int | None = None,
             desc: str = "jobs", progress: bool = True, retries: int = 2) -> RunReport:
    """Run every job and report results and failures.

    Parameters
    ----------
    jobs : sequence of Job
        Independent jobs; order is the in-process execution order.
    scheduler : str, optional
        Address of an existing Dask distributed scheduler.
    workers : int, optional
        Start a local Dask cluster with this many worker processes.
    desc : str
        Label of the progress bar.
    retries : int
        On Dask, how often a job that raised an unexpected error (not one of
        ``nnsrm.cli.INPUT_ERRORS``) is resubmitted. A job whose worker died is
        rescheduled by the Dask scheduler itself (``distributed.scheduler.allowed-failures``).

    Raises
    ------
    JobsFailed
        If any job raised; the message has one line per failed job.
    """
    if scheduler is not None or workers is not None:
        from nnsrm.dask_engine import run_jobs_dask  # imported only when asked for

        report = run_jobs_dask(jobs, scheduler=scheduler, workers=workers, desc=desc,
                               progress=progress, retries=retries)
    else:
        report = RunReport()
        for job in tqdm(jobs, desc=desc, disable=not progress or len(jobs) == 0, unit="job"):
            try:
                report.results[job.name] = job()
            except Exception as err:  # noqa: BLE001 - collected and reported at the end
                log.debug("job %s failed", job.name, exc_info=True)
                report.failures.append(_failure(job.name, err))
    if report.failures:
        for f in report.failures:
            if not f.is_input_error:
                log.error("job %s failed:\n%s", f.name, f.traceback)
        raise JobsFailed(report, len(jobs))
    return report
