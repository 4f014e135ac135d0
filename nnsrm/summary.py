"""Stage 3's tidy summary table, rebuilt from every complete job.

``analyses/summary.csv`` is long format, one value per row, that seaborn plots
directly: columns ``data, model, epoch, layer, layer_depth, subject, metric,
value``; ``subject`` is a network id (``"3"``), a pair (``"0-3"``) or ``"all"``.
It is rebuilt from the jobs' ``results.npz`` files at the end of every run
(cheap, and always consistent with them). The metrics are listed in
:data:`METRICS`; docs/analyses.md gives their formulas.

A job's rows come from :func:`job_rows`, whether the job's result is a
``results.npz`` on disk (:func:`build_summary`) or a dict in memory
(:func:`nnsrm.compare`), so both routes give the same table.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from nnsrm.atomic import is_complete, write_text
from nnsrm.paths import ResultsLayout
from qmvpa import rsa

log = logging.getLogger(__name__)

RESULTS_NAME = "results.npz"
SUMMARY_COLUMNS = ("data", "model", "epoch", "layer", "layer_depth", "subject", "metric", "value")
METRICS = ("var_exp_fit", "var_exp_test", "r_shared_irsm_wrsm", "r_native_irsm_wrsm",
           "r_shared_irsm_final_wrsm", "r_native_irsm_final_wrsm", "consistency")


_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


def completed_jobs(layout: ResultsLayout) -> list[tuple[int, str, Path]]:
    """``(epoch, layer, folder)`` of every complete stage-3 job under the condition."""
    out = []
    if not layout.analyses_dir.exists():
        return out
    for edir in sorted(layout.analyses_dir.iterdir()):
        m = _EPOCH_DIR.match(edir.name)
        if not m or not edir.is_dir():
            continue
        for ldir in sorted(edir.iterdir()):
            if ldir.is_dir() and is_complete(ldir):
                out.append((int(m.group(1)), ldir.name, ldir))
    return out


def final_reference(result) -> tuple[np.ndarray, np.ndarray]:
    """``(wrsm_native, test_idx)`` of a layer's final-epoch job: what the ``*_final_wrsm`` metrics compare with.

    ``result`` is a job's result: an open ``results.npz`` or the dict
    :func:`nnsrm.analysis.job_result` returns.
    """
    return np.asarray(result["wrsm_native"]), np.asarray(result["test_idx"])


def job_rows(result, data: str, model: str, epoch: int, layer: str, final=None, where: str = "") -> list[dict]:
    """The summary rows of one job, from its result in memory or on disk (the same rows either way).

    Parameters
    ----------
    result : mapping
        The job's arrays: an open ``results.npz`` (``np.load``) or the dict
        :func:`nnsrm.analysis.job_result` returns.
    data, model : str
        The condition.
    epoch : int
    layer : str
    final : tuple, optional
        :func:`final_reference` of the layer's final epoch; None leaves out the ``*_final_wrsm`` metrics.
    where : str
        The job in warnings (e.g. its ``results.npz``).

    Returns
    -------
    list of dict
        One dict per row, keys :data:`SUMMARY_COLUMNS`.
    """
    meta = json.loads(str(result["meta"]))
    base = dict(data=data, model=model, epoch=int(epoch), layer=layer, layer_depth=int(meta["layer_depth"]))
    rows = []
    subjects = np.asarray(result["subjects"]).tolist()
    for metric in ("var_exp_fit", "var_exp_test"):
        rows += [dict(base, subject=str(s), metric=metric, value=float(v))
                 for s, v in zip(subjects, result[metric])]
    for metric in ("r_shared_irsm_wrsm", "r_native_irsm_wrsm"):
        rows.append(dict(base, subject="all", metric=metric, value=float(result[metric])))
    if final is not None:
        final_wrsm, final_test_idx = final
        if np.array_equal(result["test_idx"], final_test_idx):
            for space in ("shared", "native"):
                r = rsa.rsm_similarity(result[f"irsm_{space}"], final_wrsm)
                rows.append(dict(base, subject="all", metric=f"r_{space}_irsm_final_wrsm", value=r))
        else:
            log.warning("summary: %s used other held-out images than the final epoch; no *_final_wrsm "
                        "metrics for it", where or f"epoch {epoch} layer {layer}")
    rows += [dict(base, subject=f"{i}-{j}", metric="consistency", value=float(v))
             for (i, j), v in zip(np.asarray(result["consistency_pairs"]).tolist(), result["consistency"])]
    return rows


def summary_frame(rows):
    """The tidy summary table of ``rows`` (from :func:`job_rows`), sorted by epoch, depth and metric."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if len(df):
        df["metric_order"] = df["metric"].map({m: i for i, m in enumerate(METRICS)})
        df = df.sort_values(["epoch", "layer_depth", "metric_order"], kind="stable").drop(columns="metric_order")
    return df.reset_index(drop=True)


def build_summary(layout: ResultsLayout, final_epoch: int | None = None):
    """The tidy summary table of every complete job, as a pandas DataFrame.

    Columns ``data, model, epoch, layer, layer_depth, subject, metric, value``;
    ``subject`` is a subject id (``"3"``), a pair (``"0-3"``) or ``"all"``.
    Metrics: ``var_exp_fit``, ``var_exp_test`` (per subject),
    ``r_shared_irsm_wrsm``, ``r_native_irsm_wrsm`` (against the same epoch's
    native mean wRSM), ``r_shared_irsm_final_wrsm``, ``r_native_irsm_final_wrsm``
    (against the final epoch's native mean wRSM; left out, with a warning, for a
    layer whose final epoch has not been analysed or used other held-out
    images), ``consistency`` (per pair). ``final_epoch`` defaults, per layer,
    to the latest analysed epoch. The rows of each job are :func:`job_rows`'s,
    as for the in-memory route (:func:`nnsrm.compare`).
    """
    rows = []
    by_layer = {}
    for epoch, layer, folder in completed_jobs(layout):
        by_layer.setdefault(layer, {})[epoch] = folder / RESULTS_NAME
    for layer, files in by_layer.items():
        final = max(files) if final_epoch is None else final_epoch
        reference = None
        if final in files:
            with np.load(files[final]) as z:
                reference = final_reference(z)
        else:
            log.warning("summary: layer %s has no analysed final epoch %s; leaving out the *_final_wrsm "
                        "metrics", layer, final)
        for epoch in sorted(files):
            with np.load(files[epoch]) as z:
                rows += job_rows(z, layout.data, layout.model, epoch, layer, reference, where=str(files[epoch]))
    return summary_frame(rows)


def write_summary(layout: ResultsLayout, final_epoch: int | None = None):
    """Rebuild ``analyses/summary.csv`` from the complete jobs (atomically); returns the DataFrame."""
    df = build_summary(layout, final_epoch=final_epoch)
    write_text(layout.summary_path, df.to_csv(index=False))
    log.info("wrote %s (%d rows from %d jobs)", layout.summary_path, len(df),
             df.groupby(["epoch", "layer"]).ngroups if len(df) else 0)
    return df


def headline(df) -> list[str]:
    """A few lines for the console: the final epoch's main numbers per layer (empty for an empty table)."""
    if df is None or not len(df):
        return []
    final = int(df["epoch"].max())
    rows = df[df["epoch"] == final]
    means = rows.groupby(["layer_depth", "layer", "metric"])["value"].mean()
    lines = [f"epoch {final}: r(iRSM, wRSM) shared / native, held-out variance explained"]
    for (depth, layer), _ in rows.groupby(["layer_depth", "layer"]):
        get = lambda m: means.get((depth, layer, m), float("nan"))  # noqa: E731
        lines.append(f"  {layer:<12s} {get('r_shared_irsm_wrsm'):6.3f} / {get('r_native_irsm_wrsm'):6.3f}   "
                     f"{get('var_exp_test'):.3f}")
    return lines
