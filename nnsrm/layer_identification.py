"""Stage 3's layer-identification benchmark (Kornblith et al. 2019, Table 2) on the user's own seeds.

For a pair of networks (A, B) at the final epoch, every measure of
:data:`qmvpa.layer_identification.MEASURES` (SRM-aligned RSA, native RSA,
linear CKA biased and debiased, cross-validated Procrustes distance) is
computed between every layer of A and every layer of B, on the held-out
images of the stage-3 split (SRM-aligned RSA and the Procrustes rotation are
fitted on the fit images). A measure identifies layer ``l`` of A if layer
``l`` of B is its best match; its **accuracy** is the share of layers
identified, counted in both directions and averaged over pairs.

One job per pair of networks (:func:`pair_job`, folder
``analyses/layer_identification/pair_<A>-<B>/`` with ``similarity.npz`` and
a completion marker); the table ``analyses/layer_identification.csv``
(:func:`write_table`) is rebuilt from the complete pairs at the end of every
stage-3 run: one row per measure with the accuracy, its 95% interval over
networks (jackknife; with disjoint pairs, over independent pairs) and the
pairs and layers it covers.

Pairs (:func:`choose_pairs`): ``"disjoint"`` (default), networks 0-1, 2-3,
…, each network in one pair, N // 2 pairs: SRM-aligned RSA fits an SRM for
every pair of layers (16 fits per pair of networks for 4 layers), which for
all N(N-1)/2 pairs would cost more than the rest of stage 3 on the offline
demo; ``"all"``, every pair, on request.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from nnsrm.activations import EXTRA_JOB_SETTINGS, load_capped, open_source, split_images
from nnsrm.atomic import (clear_marker, complete_with_params, is_complete, remove_stale_temporaries, run_once_locked,
                          save_npz, write_marker, write_text)
from nnsrm import state
from nnsrm.errors import UsageError
from nnsrm.jobs import Job
from nnsrm.paths import ResultsLayout
from qmvpa import intervals, layer_analysis, layer_identification

log = logging.getLogger(__name__)

PAIR_CHOICES = ("disjoint", "all")
SIMILARITY_NAME = "similarity.npz"
TABLE_COLUMNS = ("data", "model", "epoch", "measure", "higher_is_similar", "accuracy", "ci_low", "ci_high",
                 "n_pairs", "n_layers", "chance")


def choose_pairs(subjects: Sequence[int], mode: str = "disjoint") -> list[tuple[int, int]]:
    """The pairs of networks compared: ``"disjoint"`` (0-1, 2-3, ...) or ``"all"`` (every pair)."""
    subjects = sorted(int(s) for s in subjects)
    if mode not in PAIR_CHOICES:
        raise UsageError(f"layer-identification pairs must be one of {', '.join(PAIR_CHOICES)}, got {mode!r}")
    if mode == "all":
        return [(a, b) for i, a in enumerate(subjects) for b in subjects[i + 1:]]
    return [(subjects[i], subjects[i + 1]) for i in range(0, len(subjects) - 1, 2)]


def _params_record(layout: ResultsLayout, params: dict, epoch: int, layers: Sequence[str], a: int, b: int) -> dict:
    """What a pair job's output depends on: the split, units and SRM settings, and the checksums of its inputs
    (:func:`nnsrm.state.stage3_inputs`), so a pair whose activity was made again is redone, never left stale."""
    return {**{k: params[k] for k in EXTRA_JOB_SETTINGS}, "epoch": int(epoch), "layers": list(layers),
            "inputs": state.stage3_inputs(layout, epoch, [a, b])}


def _network_layers(source, subject, epoch, layers, fit_idx, test_idx, params):
    """One network's layers, z-scored per image: lists of (u_l, m) fit and (u_l, t) held-out arrays."""
    fits, tests = [], []
    for layer in layers:
        X_fit, X_test = load_capped(source, subject, epoch, layer, fit_idx, test_idx, params)
        fits.append(layer_analysis.zscore_networks([X_fit])[0])
        tests.append(layer_analysis.zscore_networks([X_test])[0])
    return fits, tests


def pair_job(root, data: str, model: str, epoch: int, layers: Sequence[str], a: int, b: int, params: dict,
             overwrite: bool = False) -> dict:
    """Every measure between every layer of network ``a`` and every layer of network ``b`` at ``epoch``.

    Writes ``similarity.npz`` (one ``(n_layers, n_layers)`` float64 array per
    measure, rows = layers of ``a``; ``layers``, ``subjects``, ``meta``) and
    the completion marker. ``params`` is the stage's
    :meth:`nnsrm.analysis.AnalysisParams.as_dict` (split, units, SRM settings).
    """
    layout = ResultsLayout(Path(root), data, model)
    out_dir = layout.layer_identification_pair_dir(a, b)
    record = _params_record(layout, params, epoch, layers, a, b)
    name = f"layer identification networks {a}-{b}"
    return run_once_locked(out_dir, name, record, overwrite,
                           lambda: _pair(layout, epoch, layers, a, b, params, record))


def _pair(layout: ResultsLayout, epoch: int, layers, a: int, b: int, params: dict, record: dict) -> dict:
    """The body of :func:`pair_job`, run while holding the pair folder's lock."""
    data, model = layout.data, layout.model
    out_dir = layout.layer_identification_pair_dir(a, b)
    source = open_source(layout)
    fit_idx, test_idx = split_images(source.labels(), params)
    fa, ta = _network_layers(source, a, epoch, layers, fit_idx, test_idx, params)
    fb, tb = _network_layers(source, b, epoch, layers, fit_idx, test_idx, params)
    arrays = {}
    for measure in layer_identification.MEASURES:
        arrays[measure] = layer_identification.layer_similarity_matrix(
            ta, tb, measure, fa, fb, n_iter=params["n_iter"], engine=params["engine"], random_state=params["seed"])
    clear_marker(out_dir)
    remove_stale_temporaries(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"data": data, "model": model, "epoch": int(epoch), "subjects": [int(a), int(b)], "params": record}
    save_npz(out_dir / SIMILARITY_NAME, layers=np.array(list(layers), dtype=str), subjects=np.array([a, b]),
             meta=np.array(json.dumps(meta)), **arrays)
    write_marker(out_dir, [out_dir / SIMILARITY_NAME], params=record, subjects=[int(a), int(b)])
    log.info("layer identification, networks %d and %d at epoch %d: done", a, b, epoch)
    return {"status": "done"}


def plan_pair_jobs(layout: ResultsLayout, epoch: int, layers: Sequence[str], subjects: Sequence[int],
                   params: dict, mode: str = "disjoint", overwrite: bool = False) -> list[Job]:
    """The pair jobs still to run (complete ones with the same parameters and inputs are left out)."""
    if len(layers) < 2:
        log.info("layer identification needs at least 2 layers; skipped")
        return []
    jobs = []
    for a, b in choose_pairs(subjects, mode):
        record = _params_record(layout, params, epoch, layers, a, b)
        if not overwrite and complete_with_params(layout.layer_identification_pair_dir(a, b), record):
            continue
        jobs.append(Job(name=f"layer identification networks {a}-{b}", fn=pair_job,
                        kwargs=dict(root=str(layout.root), data=layout.data, model=layout.model, epoch=int(epoch),
                                    layers=list(layers), a=int(a), b=int(b), params=params, overwrite=overwrite)))
    return jobs


def load_pairs(layout: ResultsLayout, pairs: Sequence[tuple[int, int]] | None = None) -> dict:
    """The complete pair results: ``{"layers", "epoch", "pairs" (P, 2), measure: (P, L, L)}`` (empty if none).

    Only pairs made at the same epoch and on the same layers as the first
    are combined (a rerun with other settings rewrites them all).
    """
    base = layout.layer_identification_dir
    if not base.is_dir():
        return {}
    found, layers, epoch = [], None, None
    for folder in sorted(base.iterdir()):
        if not folder.is_dir() or not is_complete(folder):
            continue
        with np.load(folder / SIMILARITY_NAME, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            pair = tuple(int(s) for s in z["subjects"])
            if pairs is not None and pair not in pairs:
                continue
            if layers is None:
                layers, epoch = [str(x) for x in z["layers"]], int(meta["epoch"])
            if [str(x) for x in z["layers"]] != layers or int(meta["epoch"]) != epoch:
                continue
            found.append((pair, {m: np.asarray(z[m]) for m in layer_identification.MEASURES}))
    if not found:
        return {}
    out = {"layers": layers, "epoch": epoch, "pairs": np.array([p for p, _ in found])}
    for m in layer_identification.MEASURES:
        out[m] = np.stack([sims[m] for _, sims in found])  # (P, L, L)
    return out


def accuracy_table(layout: ResultsLayout, pairs=None):
    """One row per measure: accuracy over the complete pairs and its 95% interval over networks (a DataFrame)."""
    import pandas as pd

    res = load_pairs(layout, pairs)
    rows = []
    if res:
        P, L = len(res["pairs"]), len(res["layers"])
        networks = sorted(set(res["pairs"].ravel().tolist()))
        index = {s: i for i, s in enumerate(networks)}
        for m, higher in layer_identification.MEASURES.items():
            per_pair = np.array([layer_identification.identification_accuracy(S, higher, both_directions=True)
                                 for S in res[m]])  # (P,)
            low = high = np.nan
            if len(networks) >= 3:
                idx = np.array([[index[a], index[b]] for a, b in res["pairs"]])

                def statistic(sel, idx=idx):
                    keep = np.isin(idx[:, 0], sel) & np.isin(idx[:, 1], sel)
                    return float(per_pair[keep].mean()) if keep.any() else float("nan")

                iv = intervals.jackknife_interval(statistic, len(networks))
                low, high = iv.low, iv.high
            rows.append(dict(data=layout.data, model=layout.model, epoch=res["epoch"], measure=m,
                             higher_is_similar=bool(higher), accuracy=float(per_pair.mean()), ci_low=low,
                             ci_high=high, n_pairs=P, n_layers=L, chance=1.0 / L))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def write_table(layout: ResultsLayout, pairs=None):
    """Rebuild ``analyses/layer_identification.csv`` (atomically) from the complete pairs; returns it."""
    df = accuracy_table(layout, pairs)
    if len(df):
        write_text(layout.layer_identification_path, df.to_csv(index=False))
        log.info("wrote %s (%d measures over %d pairs)", layout.layer_identification_path, len(df),
                 int(df["n_pairs"].iloc[0]))
    return df
