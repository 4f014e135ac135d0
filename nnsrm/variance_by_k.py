"""Stage 3's variance-explained-by-k job: SRM's variance explained for a list of k, beside per-network PCA.

For one epoch × layer (by default the final epoch and the deepest hidden
layer), :func:`qmvpa.variance_by_k.variance_explained_by_k` fits the SRM
for every ``k`` of a list on the stage-3 fit images and reports, per network,
the variance it explains on the fit and on the held-out images, with the
paper's reconstruction (``S̄``, all networks) and the leave-one-out one
(``S̄_{-i}``), beside what each network's own first ``k`` principal components
explain (:func:`qmvpa.variance_by_k.pca_variance_explained`).

Output: ``analyses/variance_by_k/epoch_<EEE>/<layer>/variance_by_k.csv``
(tidy: ``k, method, reconstruction, images, subject, value`` with ``method``
``srm`` or ``pca`` and ``images`` ``fit`` or ``held_out``) and a completion marker.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from nnsrm.activations import EXTRA_JOB_SETTINGS, load_capped, open_source, split_images
from nnsrm.atomic import (clear_marker, complete_with_params, is_complete, remove_stale_temporaries, run_once_locked,
                          write_marker, write_text)
from nnsrm import state
from nnsrm.errors import UsageError
from nnsrm.jobs import Job
from nnsrm.paths import ResultsLayout
from qmvpa import layer_analysis, variance_by_k

log = logging.getLogger(__name__)

CSV_NAME = "variance_by_k.csv"
COLUMNS = ("data", "model", "epoch", "layer", "k", "method", "reconstruction", "images", "subject", "value")


def default_ks(limit: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... below ``limit``, and ``limit`` itself (the largest possible k)."""
    out = [k for decade in (1, 10, 100, 1000, 10000) for k in (decade, 2 * decade, 5 * decade) if k < limit]
    return out + [int(limit)]


def check_ks(ks: Sequence[int], n_units: int, n_fit: int, layer: str) -> list[int]:
    """``ks`` sorted and unique; a one-line :class:`UsageError` if one is below 1 or above the units or fit images."""
    limit = min(int(n_units), int(n_fit))
    bad = [k for k in ks if int(k) < 1 or int(k) > limit]
    if bad:
        raise UsageError(f"--var-by-k-ks {' '.join(map(str, ks))}: k = {bad[0]} is not in 1 .. {limit}: layer "
                         f"{layer!r} keeps {n_units} units and the split leaves {n_fit} fit images")
    return sorted({int(k) for k in ks})


def _record(layout: ResultsLayout, params: dict, epoch: int, layer: str, ks: Sequence[int],
            subjects: Sequence[int]) -> dict:
    """What the job's output depends on: settings, ``ks``, subjects and the checksums of its inputs
    (:func:`nnsrm.state.stage3_inputs`), so activity made again redoes the job instead of leaving it stale."""
    return {**{k: params[k] for k in EXTRA_JOB_SETTINGS}, "epoch": int(epoch), "layer": layer, "ks": list(ks),
            "subjects": [int(s) for s in subjects], "inputs": state.stage3_inputs(layout, epoch, subjects)}


def variance_job(root, data: str, model: str, epoch: int, layer: str, subjects: Sequence[int], ks: Sequence[int],
                 params: dict, overwrite: bool = False) -> dict:
    """Variance explained by k for one epoch × layer; writes ``variance_by_k.csv`` and the marker."""
    layout = ResultsLayout(Path(root), data, model)
    out_dir = layout.variance_by_k_dir(epoch, layer)
    record = _record(layout, params, epoch, layer, ks, subjects)
    return run_once_locked(out_dir, f"variance by k epoch {epoch:03d} layer {layer}", record, overwrite,
                           lambda: _variance(layout, epoch, layer, subjects, ks, params, record))


def _variance(layout: ResultsLayout, epoch: int, layer: str, subjects, ks, params: dict, record: dict) -> dict:
    """The body of :func:`variance_job`, run while holding the job folder's lock."""
    data, model = layout.data, layout.model
    out_dir = layout.variance_by_k_dir(epoch, layer)
    source = open_source(layout)
    fit_idx, test_idx = split_images(source.labels(), params)
    fit, test = [], []
    for s in subjects:
        X_fit, X_test = load_capped(source, s, epoch, layer, fit_idx, test_idx, params)
        fit.append(X_fit)
        test.append(X_test)
    fit = layer_analysis.zscore_networks(fit)
    test = layer_analysis.zscore_networks(test)
    rows = []
    pca_done = False
    for reconstruction in ("mean", "leave_one_out"):
        res = variance_by_k.variance_explained_by_k(fit, test, list(ks), reconstruction=reconstruction,
                                                    n_iter=params["n_iter"], random_state=params["seed"],
                                                    engine=params["engine"])
        curves = [("srm", reconstruction, "fit", res.srm_fit), ("srm", reconstruction, "held_out", res.srm_heldout)]
        if not pca_done:
            curves += [("pca", "own", "fit", res.pca_fit), ("pca", "own", "held_out", res.pca_heldout)]
            pca_done = True
        for method, recon, images, values in curves:
            for a, k in enumerate(res.ks.tolist()):
                rows += [dict(data=data, model=model, epoch=int(epoch), layer=layer, k=int(k), method=method,
                              reconstruction=recon, images=images, subject=str(s), value=float(v))
                         for s, v in zip(subjects, values[a])]
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    clear_marker(out_dir)
    remove_stale_temporaries(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / CSV_NAME, df.to_csv(index=False))
    write_marker(out_dir, [out_dir / CSV_NAME], params=record, subjects=[int(s) for s in subjects])
    log.info("variance by k, epoch %d layer %s: %d values of k", epoch, layer, len(ks))
    return {"status": "done"}


def plan_job(layout: ResultsLayout, epoch: int, layer: str, subjects: Sequence[int], ks: Sequence[int],
             params: dict, overwrite: bool = False) -> list[Job]:
    """The variance-by-k job if it still has to run (complete with the same parameters and inputs: nothing)."""
    out_dir = layout.variance_by_k_dir(epoch, layer)
    record = _record(layout, params, epoch, layer, ks, subjects)
    if not overwrite and complete_with_params(out_dir, record):
        return []
    return [Job(name=f"variance by k epoch {epoch:03d} layer {layer}", fn=variance_job,
                kwargs=dict(root=str(layout.root), data=layout.data, model=layout.model, epoch=int(epoch), layer=layer,
                            subjects=[int(s) for s in subjects], ks=list(ks), params=params, overwrite=overwrite))]


def load(layout: ResultsLayout):
    """Every complete variance-by-k table of the condition, concatenated (a DataFrame; empty if none)."""
    import pandas as pd

    base = layout.analyses_dir / "variance_by_k"
    frames = [pd.read_csv(p, dtype={"subject": str, "layer": str}) for p in sorted(base.glob(f"epoch_*/*/{CSV_NAME}"))
              if is_complete(p.parent)] if base.is_dir() else []
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
