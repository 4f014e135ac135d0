"""Stage 3: SRM alignment and RSA of every logged epoch × analysed layer.

One job per (epoch, layer), :func:`analyse_job`, a plain function of picklable
arguments that reads stage 2's activations of every subject (network) and
writes, atomically, into ``ResultsLayout.analysis_dir(epoch, layer)``:

``results.npz`` (uncompressed, no pickles), with ``n`` subjects, ``u`` units
kept, ``k`` shared features, ``m`` fit images and ``t`` held-out images:

==========================  =====================  ==============================================
key                         shape, dtype           what
==========================  =====================  ==============================================
``subjects``                (n,) int               subject (network) ids, ``subj<NN>``
``labels_test``             (t,) int               labels of the held-out images, in their order
``fit_idx``, ``test_idx``   (m,), (t,) int         indices into ``test_labels.npy``'s images
``units_kept``              (n, u) int             kept units, indices into the saved layer
``native_test``             (n, u, t) float32      held-out activity X_i, z-scored per image
``shared_test``             (n, k, t) float32      held-out shared responses S_i = W_iᵀ X_i
``W``                       (n, u, k) float32      SRM maps W_i
``S``                       (k, m) float32         SRM shared response of the fit images
``mu``                      (n, u) float32         unit means the SRM removed (0 if none)
``var_exp_fit``             (n,) float64           1 - mean((W_i S̄ - X_i)²)/var(X_i), fit images
``var_exp_test``            (n,) float64           the same on the held-out images
``var_exp_fit_model``       (n,) float64           1 - mean((W_i S + mu_i - X_i)²)/var(X_i), fit
``wrsm_native``             (t, t) float32         mean within-network RSM, native space
``wrsm_shared``             (t, t) float32         mean within-network RSM, shared space
``irsm_native``             (t, t) float32         leave-one-out inter-network RSM, native space
``irsm_shared``             (t, t) float32         leave-one-out inter-network RSM, shared space
``r_shared_irsm_wrsm``      () float64             r(irsm_shared, wrsm_native)
``r_native_irsm_wrsm``      () float64             r(irsm_native, wrsm_native)
``consistency_pairs``       (n(n-1)/2, 2) int      subject-id pairs (i < j)
``consistency``             (n(n-1)/2,) float64    r between the pair's native wRSMs
``meta``                    () str                 JSON: condition, epoch, layer, depth, params
==========================  =====================  ==============================================

plus ``rsm.png`` (the four RSMs as a 2 × 2 heatmap) and the completion marker.

Variance explained uses, on the fit and on the held-out
images alike, ``S̄ = mean_j W_jᵀ X_j``, the networks' mean shared response on
those images, so the two numbers differ only by how well the maps generalise.
The model's own reconstruction of the fit images, ``W_i S + mu_i`` with
BrainIAK's ``s_`` and unit means ``mu_``, is kept as ``var_exp_fit_model``; it
credits each network's unit means, which after per-image z-scoring can carry
most of the variance of an untrained layer, so it is not comparable with the
held-out value. ``W_i S`` without ``mu_i`` would instead count even the
shared unit means as unexplained, because BrainIAK fits demeaned data.
Activation files are images × units; they are transposed once, here, on
loading, to the library's units × images.

The science is :func:`qmvpa.layer_analysis.analyse_layer` (arrays in, arrays
out); :func:`job_result` is everything one job computes from its networks'
arrays (what ``results.npz`` holds), shared with the in-memory route
(:func:`nnsrm.compare`); this module reads its inputs through the condition's
source (stage 2's folders or a registered manifest, :mod:`nnsrm.activations`,
which validates them), writes its outputs atomically, and decides which jobs
still have to run. The summary table is rebuilt by :mod:`nnsrm.summary`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from nnsrm import state
from nnsrm.activations import check_inputs, load_network, open_source, resolve_k
from nnsrm.atomic import atomic_path, clear_marker, remove_stale_temporaries, save_npz, write_marker
from nnsrm.cli import check_srm_engine
from nnsrm.errors import StaleOutputError, UsageError
from nnsrm.jobs import Job
from nnsrm.paths import ResultsLayout
from nnsrm.summary import RESULTS_NAME
from qmvpa import factor, layer_analysis, preproc, vis

log = logging.getLogger(__name__)

PLOT_NAME = "rsm.png"


@dataclasses.dataclass(frozen=True)
class AnalysisParams:
    """What a stage-3 job computes with (recorded in every job's marker and ``meta``).

    ``k=None`` means the number of units kept (an orthogonal map, see docs/analyses.md),
    or the number of fit images if that is smaller.
    """

    k: int | None = None
    n_iter: int = 10
    test_size: float = 0.2
    seed: int = 0
    engine: str = factor.DEFAULT_ENGINE
    max_units: int | None = 1000
    class_order: tuple | None = None

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["class_order"] = None if self.class_order is None else [int(c) for c in self.class_order]
        return d


def job_status(layout: ResultsLayout, epoch: int, layer: str, params: AnalysisParams,
               subjects: Sequence[int]) -> str:
    """``"todo"``, ``"done"`` (complete, made with these parameters from these inputs) or ``"stale"``."""
    st, _ = state.job_state(layout.analysis_dir(epoch, layer),
                            state.stage3_record(layout, epoch, subjects, params.as_dict()))
    return {"complete": "done", "stale": "stale"}.get(st, "todo")


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for pkg in ("numpy", "scipy", "scikit-learn", "brainiak"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def job_result(networks, labels: np.ndarray, subjects: Sequence[int], params: AnalysisParams, *, data: str,
               model: str, epoch: int, layer: str, layer_depth: int, saved_units=None) -> dict:
    """Everything one stage-3 job computes from its networks' arrays: what ``results.npz`` holds.

    Split the images (stratified by label), keep at most ``params.max_units``
    units (the same for every network), read each network's fit and
    held-out activity, and run :func:`qmvpa.layer_analysis.analyse_layer`.
    The file route (:func:`analyse_job`) and the in-memory route
    (:func:`nnsrm.compare`) both call this, so they give the same numbers.

    Parameters
    ----------
    networks : sequence of ActivationArray, element i of shape (n_images, n_units)
        One array per network (:class:`nnsrm.activation_files.ActivationArray`), images × units;
        each is closed once read.
    labels : ndarray of int, shape (n_images,)
        Label of every image.
    subjects : sequence of int
        The networks' ids, in the order of ``networks``.
    params : AnalysisParams
    data, model, epoch, layer, layer_depth
        The job's condition, checkpoint, layer and the layer's position in depth order (recorded in ``meta``).
    saved_units : sequence of (ndarray of int or None), optional
        Per network, the original unit indices of the saved units, if its producer capped them.

    Returns
    -------
    dict
        The arrays of the module docstring's table.
    """
    p = params
    fit_idx, test_idx = preproc.stratified_split(labels, p.test_size, p.seed, p.class_order)
    n_saved = networks[0].shape[1]
    units_idx = preproc.subsample_units(n_saved, p.max_units, p.seed)  # same units for every subject
    k = resolve_k(p.k, len(units_idx), len(fit_idx), where=f"layer {layer!r} ({networks[0].name}, ...)")
    saved_units = list(saved_units) if saved_units is not None else [None] * len(networks)
    fit, test, units_kept = [], [], []
    for arr, saved in zip(networks, saved_units):
        X_fit, X_test = load_network(arr, units_idx, fit_idx, test_idx)  # (u, m), (u, t)
        arr.close()  # let the mapped file go now: its pages would otherwise count until the job ends
        fit.append(X_fit)
        test.append(X_test)
        units_kept.append(saved[units_idx] if saved is not None else units_idx)  # a producer may have capped units
    res = layer_analysis.analyse_layer(fit, test, n_components=k, n_iter=p.n_iter, random_state=p.seed,
                                       engine=p.engine)
    del fit, test
    subjects = [int(s) for s in subjects]
    meta = {"data": data, "model": model, "epoch": int(epoch), "layer": layer,
            "layer_depth": int(layer_depth), "k": int(k), "params": p.as_dict(), "subjects": subjects}
    subj = np.array(subjects)
    return dict(res, subjects=subj, labels_test=labels[test_idx], fit_idx=fit_idx, test_idx=test_idx,
                units_kept=np.stack(units_kept), k=np.int64(res["k"]),
                r_shared_irsm_wrsm=np.float64(res["r_shared_irsm_wrsm"]),
                r_native_irsm_wrsm=np.float64(res["r_native_irsm_wrsm"]),
                consistency_pairs=subj[res["consistency_pairs"]], meta=np.array(json.dumps(meta)))


def analyse_job(root, data: str, model: str, epoch: int, layer: str, subjects: Sequence[int],
                params: dict, layer_depth: int, overwrite: bool = False, provenance: dict | None = None) -> dict:
    """Analyse one epoch × layer: split, z-score, fit SRM, map, variance explained, RSMs; write outputs.

    Parameters
    ----------
    root : path
        Results root.
    data, model : str
        Condition.
    epoch : int
        Logged epoch.
    layer : str
        Layer name (as in ``layers.json``).
    subjects : sequence of int
        Subject (network) ids, at least 2.
    params : dict
        :meth:`AnalysisParams.as_dict` (a dict, so the job pickles simply).
    layer_depth : int
        Position of ``layer`` in ``layers.json``'s depth order, from 0.
    overwrite : bool
        Redo a complete job.
    provenance : dict, optional
        Extra JSON-able facts recorded in the marker (e.g. the git commit).

    Returns
    -------
    dict
        ``{"status": "done" | "skipped", ...}`` with the headline numbers.
    """
    layout = ResultsLayout(Path(root), data, model)
    p = AnalysisParams(**{**params, "class_order": None if params.get("class_order") is None
                          else tuple(params["class_order"])})
    subjects = [int(s) for s in subjects]
    record = state.stage3_record(layout, epoch, subjects, p.as_dict())
    return state.run_job(layout.analysis_dir(epoch, layer), record, f"epoch {epoch:03d} layer {layer}", overwrite,
                         lambda: _analyse(layout, epoch, layer, subjects, p, layer_depth, record, provenance),
                         skipped={"status": "skipped"})


def _analyse(layout: ResultsLayout, epoch: int, layer: str, subjects: list, p: AnalysisParams, layer_depth: int,
             record: dict, provenance: dict | None) -> dict:
    """The body of :func:`analyse_job`, run while holding the job folder's lock."""
    data, model = layout.data, layout.model
    out_dir = layout.analysis_dir(epoch, layer)
    source = open_source(layout)
    labels = source.labels()
    networks = []
    try:
        for s in subjects:
            networks.append(source.open(s, epoch, layer))  # images × units, memory-mapped or read by slices
        arrays = job_result(networks, labels, subjects, p, data=data, model=model, epoch=epoch, layer=layer,
                            layer_depth=layer_depth,
                            saved_units=[source.units_kept(s, epoch, layer) for s in subjects])
    finally:
        for arr in networks:
            arr.close()
    r_shared, r_native = float(arrays["r_shared_irsm_wrsm"]), float(arrays["r_native_irsm_wrsm"])
    k = int(arrays["k"])
    clear_marker(out_dir)
    remove_stale_temporaries(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_npz(out_dir / RESULTS_NAME, **arrays)
    fig = vis.plot_rsm_quad(arrays["wrsm_native"], arrays["irsm_native"], arrays["wrsm_shared"],
                            arrays["irsm_shared"],
                            title=f"{data} {model}, epoch {epoch}, layer {layer}: r(shared iRSM, wRSM) = "
                                  f"{r_shared:.2f}, r(native iRSM, wRSM) = {r_native:.2f}")
    with atomic_path(out_dir / PLOT_NAME, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    write_marker(out_dir, [out_dir / RESULTS_NAME, out_dir / PLOT_NAME], params=p.as_dict(),
                 subjects=subjects, k=int(k), versions=_versions(), **(provenance or {}),
                 **state.marker_fields(record))
    var_exp_test = float(np.mean(arrays["var_exp_test"]))
    log.info("epoch %d layer %s: k=%d, var exp test %.3f, r shared %.3f, native %.3f",
             epoch, layer, k, var_exp_test, r_shared, r_native)
    return {"status": "done", "k": int(k), "r_shared_irsm_wrsm": r_shared, "r_native_irsm_wrsm": r_native,
            "var_exp_test": var_exp_test}


def plan_jobs(layout: ResultsLayout, epochs: Sequence[int], layers: Sequence[str] | None,
              subjects: Sequence[int], params: AnalysisParams, overwrite: bool = False,
              provenance: dict | None = None) -> list[Job]:
    """Validate all inputs (nothing is written) and list the jobs still to run.

    Complete jobs made with the same parameters from the same stage-2
    outputs are left out unless ``overwrite``; a complete job made otherwise
    is an error (mixing them would make an inconsistent summary) unless
    ``overwrite``.

    Raises
    ------
    nnsrm.errors.UsageError
        For any bad input (see :func:`nnsrm.activations.check_inputs`).
    nnsrm.errors.StaleOutputError
        If a complete job was made with other parameters or inputs, naming the first difference.
    """
    source = open_source(layout)
    all_layers = source.layers()
    if layers is None:
        layers = all_layers
    unknown = [name for name in layers if name not in all_layers]
    if unknown:
        listed = layout.manifest_path if source.kind == "registered" else layout.layers_path
        raise UsageError(f"unknown layer(s) {unknown}: {listed} lists {all_layers}")
    layers = [name for name in all_layers if name in layers]  # depth order
    check_srm_engine(params.engine)  # an unknown or uninstalled engine fails now, not in every job
    todo, stale = [], []
    for epoch in epochs:
        for layer in layers:
            status = job_status(layout, epoch, layer, params, subjects)
            if status == "stale" and not overwrite:
                stale.append((epoch, layer))
            elif status != "done" or overwrite:
                todo.append((epoch, layer))
    check_inputs(source, subjects, epochs, layers, params, check_finite=todo)
    if stale:
        epoch, layer = stale[0]
        directory = layout.analysis_dir(epoch, layer)
        _, diff = state.job_state(directory, state.stage3_record(layout, epoch, subjects, params.as_dict()))
        raise StaleOutputError(state.stale_message(f"epoch {epoch:03d} layer {layer}", directory, diff,
                                                   len(stale) - 1))
    return [Job(name=f"epoch {epoch:03d} layer {layer}", fn=analyse_job,
                kwargs=dict(root=str(layout.root), data=layout.data, model=layout.model, epoch=int(epoch),
                            layer=layer, subjects=[int(s) for s in subjects], params=params.as_dict(),
                            layer_depth=all_layers.index(layer), overwrite=overwrite, provenance=provenance))
            for epoch, layer in todo]


