"""Run a stage's list of independent jobs: in this process by default, or on Dask.

A failing job does not stop the others: the runner collects every failure and
reports them together at the end (:class:`~nnsrm.jobs.JobsFailed`). The jobs
themselves are described in :mod:`nnsrm.jobs`; the Dask engine lives in
:mod:`nnsrm.dask_engine` and is imported only when asked for.
"""

from __future__ import annotations

import logging
from typing import Sequence

from nnsrm import console, interrupts
from nnsrm.jobs import Job, JobsFailed, RunReport, job_failure

log = logging.getLogger(__name__)


def run_in_process(jobs: Sequence[Job], desc: str = "jobs", progress: bool = True) -> RunReport:
    """Run ``jobs`` one after another in this process; collect results and failures (raises nothing)."""
    report = RunReport()
    for job in console.progress(jobs, desc=desc, unit="job", enabled=progress):
        interrupts.check()
        try:
            report.results[job.name] = job()
        except Exception as err:  # noqa: BLE001 - collected and reported at the end
            if interrupts.received():  # Ctrl-C, turned into another exception inside a library: stop
                raise KeyboardInterrupt from err
            log.debug("job %s failed", job.name, exc_info=True)
            report.failures.append(job_failure(job.name, err))
    return report


def run_jobs(jobs: Sequence[Job], *, scheduler: str | None = None, workers: int | None = None,
             desc: str = "jobs", progress: bool = True, retries: int = 2) -> RunReport:
    """Run every job and report results and failures.

    Parameters
    ----------
    jobs : sequence of Job
        Independent jobs; order is the in-process execution order.
    scheduler : str, optional
        Address of an existing Dask distributed scheduler, or its scheduler file.
    workers : int, optional
        Start a local Dask cluster with this many worker processes.
    desc : str
        Label of the progress bar.
    progress : bool
        Show a progress bar (only ever on a terminal).
    retries : int
        On Dask, how often a job that raised an unexpected error (not bad
        input, :data:`nnsrm.errors.INPUT_ERRORS`) is resubmitted. A job whose
        worker died is rescheduled by the Dask scheduler itself
        (``distributed.scheduler.allowed-failures``).

    Raises
    ------
    JobsFailed
        If any job raised; the message has one line per failed job.
    """
    if scheduler is not None or workers is not None:
        from nnsrm.dask_engine import run_jobs_dask  # Dask is imported only when asked for

        report = run_jobs_dask(jobs, scheduler=scheduler, workers=workers, desc=desc,
                               progress=progress, retries=retries)
    else:
        report = run_in_process(jobs, desc=desc, progress=progress)
    if report.failures:
        for f in report.failures:
            if not f.is_input_error:
                log.info("job %s failed:\n%s", f.name, f.traceback)  # the console gets one line
        raise JobsFailed(report, len(jobs))
    return report
