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
``var_exp_*_loo``           (n,) float64           variance explained with S̄ of the other networks
``consistency_rho|_tau``    (P,) float64           Spearman ρ / Kendall τ-a of the pair's wRSMs
``cka``, ``cka_debiased``   (P,) float64           linear CKA of the pair's held-out activity
``procrustes``              (P,) float64           angular Procrustes distance, cross-validated
``isc``                     (P,) float64           mean ISC of matching shared features
``procrustes_disparity``    (P,) float64           the original's scipy disparity, shared space
``decoding_*``              (n,) float64           accuracy per held-out network (shared, native
                                                   transfer) or within network (5-fold)
``rho_*``, ``tau_*``        () float64             rank versions of the iRSM–wRSM comparisons
``r_*_final_wrsm`` etc.     () float64             against the final epoch's mean native wRSM
``srm_null``                (R, 7) float64         the SRM null's draws of SRM_NULL_METRICS
``stat_metrics``            (M,) str               names of the summary's "all" rows
``stat_values``             (M, 6) float64         value, ci_low, ci_high, null_mean, null_q95, p
``class_rsm``               (C, C) float32         class-mean RSM of all images (original grid)
``class_labels``            (C,) int               its classes
``meta``                    () str                 JSON: condition, epoch, layer, depth, params
==========================  =====================  ==============================================

(P = n(n-1)/2 pairs, in ``consistency_pairs``' order; measures not asked for
with ``--measures`` are absent), plus ``rsm.png`` (the four RSMs as a 2 × 2
image, :mod:`nnsrm.rsm_image`) and the completion marker. docs/results-layout.md
and docs/analyses.md describe every array and statistic.

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

from nnsrm import null_budget, state
from nnsrm.activations import check_inputs, load_network, open_source, resolve_k
from nnsrm.atomic import clear_marker, remove_stale_temporaries, save_npz, write_marker
from nnsrm.cli import check_srm_engine
from nnsrm.errors import StaleOutputError, UsageError
from nnsrm.jobs import Job
from nnsrm.paths import ResultsLayout
from nnsrm.rsm_image import write_rsm_quad
from nnsrm.summary import RESULTS_NAME
from qmvpa import factor, intervals, layer_analysis, layer_inference, preproc, rsa

log = logging.getLogger(__name__)

PLOT_NAME = "rsm.png"


#: Measures a stage-3 job can compute beside Pearson RSA, variance explained and consistency.
MEASURES = layer_inference.MEASURES
#: Networks and units of the original study's RSM grid (class-mean patterns of all test images).
CLASS_RSM_NETWORKS, CLASS_RSM_UNITS = 5, 500


@dataclasses.dataclass(frozen=True)
class AnalysisParams:
    """What a stage-3 job computes with (recorded in every job's marker and ``meta``).

    ``k=None`` means the number of units kept (an orthogonal map, see docs/analyses.md),
    or the number of fit images if that is smaller. ``final_epoch`` is the
    checkpoint the ``*_final_wrsm`` comparisons use (None: none).
    ``null_epochs`` are the epochs whose jobs run the correspondence-broken
    nulls with ``null_draws`` draws, where affordable
    (:mod:`nnsrm.null_budget`) or ``force_nulls``.
    """

    k: int | None = None
    n_iter: int = 10
    test_size: float = 0.2
    seed: int = 0
    engine: str = factor.DEFAULT_ENGINE
    max_units: int | None = 1000
    class_order: tuple | None = None
    measures: tuple = MEASURES
    n_perm: int = 1000
    null_draws: int = 20
    null_epochs: tuple = ()
    force_nulls: bool = False
    interval: str = "jackknife"
    n_boot: int = 2000
    final_epoch: int | None = None

    def __post_init__(self):
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown:
            raise UsageError(f"unknown measure(s) {', '.join(map(repr, unknown))}; choose from "
                             f"{', '.join(MEASURES)}")
        if isinstance(self.n_perm, bool) or not isinstance(self.n_perm, int) or self.n_perm < 1:
            raise UsageError(f"the permutation count must be at least 1 (Mantel tests), got {self.n_perm!r}")
        if isinstance(self.null_draws, bool) or not isinstance(self.null_draws, int) or self.null_draws < 1:
            raise UsageError(f"the null refit count must be at least 1, got {self.null_draws!r}; "
                             f"to run no correspondence-broken nulls pass --null-epochs none")
        if self.interval not in intervals.METHODS:
            raise UsageError(f"interval must be one of {', '.join(intervals.METHODS)}, got {self.interval!r}")
        object.__setattr__(self, "measures", tuple(m for m in MEASURES if m in self.measures))
        object.__setattr__(self, "null_epochs", tuple(sorted(int(e) for e in self.null_epochs)))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["class_order"] = None if self.class_order is None else [int(c) for c in self.class_order]
        d["measures"] = list(self.measures)
        d["null_epochs"] = list(self.null_epochs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AnalysisParams":
        """The inverse of :meth:`as_dict` (what a job receives)."""
        d = dict(d)
        for key in ("class_order", "measures", "null_epochs"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def null_applies(self, epoch: int, n_networks: int, n_units: int, k: int, n_fit: int, n_test: int) -> bool:
        """Whether the job of ``epoch`` runs the correspondence-broken nulls: a null epoch, affordable or forced."""
        if int(epoch) not in self.null_epochs:
            return False
        return self.force_nulls or null_budget.is_affordable(n_networks, n_units, k, n_fit, n_test, self.n_iter,
                                                             self.null_draws, self.n_perm)


#: ``--null-epochs`` words: the first and last logged epochs, every one, none.
NULL_EPOCH_CHOICES = ("ends", "all", "none")


def resolve_null_epochs(choice, epochs: Sequence[int]) -> tuple:
    """The epochs whose jobs run the correspondence-broken nulls: ``"ends"`` (first and last), ``"all"``,
    ``"none"``, or a sequence of epochs (each must be one of ``epochs``)."""
    epochs = sorted(int(e) for e in epochs)
    if isinstance(choice, str):
        if choice not in NULL_EPOCH_CHOICES:
            raise UsageError(f"null epochs must be one of {', '.join(NULL_EPOCH_CHOICES)} or a list of epochs, "
                             f"got {choice!r}")
        return {"ends": tuple(sorted({epochs[0], epochs[-1]})) if epochs else (), "all": tuple(epochs),
                "none": ()}[choice]
    chosen = sorted({int(e) for e in choice})
    unknown = [e for e in chosen if e not in epochs]
    if unknown:
        raise UsageError(f"null epochs {unknown} are not logged epochs; choose from {epochs}")
    return tuple(chosen)


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


def _class_rsm_units(units_idx, seed):
    """The units of the original study's RSM grid: at most :data:`CLASS_RSM_UNITS` of the units kept."""
    if len(units_idx) <= CLASS_RSM_UNITS:
        return units_idx
    return np.sort(np.random.default_rng(seed).choice(units_idx, CLASS_RSM_UNITS, replace=False))


def _class_rsm(arr, units, labels):
    """One network's cell of the original study's RSM grid: the class-mean RSM of all images (C, C)."""
    X = arr.columns(None if len(units) == arr.shape[1] else units, dtype=np.float32).T  # (units, images)
    return rsa.class_mean_rsm(X, labels)


def job_result(networks, labels: np.ndarray, subjects: Sequence[int], params: AnalysisParams, *, data: str,
               model: str, epoch: int, layer: str, layer_depth: int, saved_units=None, reference=None) -> dict:
    """Everything one stage-3 job computes from its networks' arrays: what ``results.npz`` holds.

    Split the images (stratified by label), keep at most ``params.max_units``
    units (the same for every network), read each network's fit and
    held-out activity, and run :func:`qmvpa.layer_analysis.analyse_layer`
    (with the inference of :mod:`qmvpa.layer_inference`). The file route
    (:func:`analyse_job`) and the in-memory route (:func:`nnsrm.compare`)
    both call this, so they give the same numbers.

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
    reference : sequence of ActivationArray, optional
        The same networks' arrays of this layer at ``params.final_epoch`` (for
        the ``*_final_wrsm`` metrics); None when ``epoch`` is the final epoch
        or there is none.

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
    # The original's RSM grid: mean class-mean RSM of all images of the first networks, read before closing.
    class_units, class_total, classes = _class_rsm_units(units_idx, p.seed), None, None
    for i, (arr, saved) in enumerate(zip(networks, saved_units)):
        X_fit, X_test = load_network(arr, units_idx, fit_idx, test_idx)  # (u, m), (u, t)
        if i < CLASS_RSM_NETWORKS:
            rsm_i, classes = _class_rsm(arr, class_units, labels)  # (C, C)
            class_total = rsm_i if class_total is None else class_total + rsm_i
        arr.close()  # let the mapped file go now: its pages would otherwise count until the job ends
        fit.append(X_fit)
        test.append(X_test)
        units_kept.append(saved[units_idx] if saved is not None else units_idx)  # a producer may have capped units
    reference_test = None
    if reference is not None:
        # the final epoch's files have the same units (checked by check_inputs); only its held-out images
        reference_test = [load_network(arr, units_idx, fit_idx[:0], test_idx)[1] for arr in reference]  # (u, t)
    is_final = p.final_epoch is not None and int(epoch) == int(p.final_epoch)
    run_null = p.null_applies(epoch, len(networks), len(units_idx), k, len(fit_idx), len(test_idx))
    if int(epoch) in p.null_epochs and not run_null:
        log.info("epoch %d layer %s: correspondence-broken nulls skipped: about %.0f s > budget %.0f s "
                 "(pass --force to run them)", epoch, layer,
                 null_budget.null_seconds(len(networks), len(units_idx), k, len(fit_idx), len(test_idx),
                                          p.n_iter, p.null_draws, p.n_perm), null_budget.BUDGET_SECONDS)
    res = layer_analysis.analyse_layer(fit, test, n_components=k, n_iter=p.n_iter, random_state=p.seed,
                                       engine=p.engine, labels=labels[test_idx], reference_test=reference_test,
                                       is_reference=is_final, measures=p.measures, n_perm=p.n_perm,
                                       null_draws=p.null_draws if run_null else 0, interval=p.interval,
                                       n_boot=p.n_boot)
    del fit, test, reference_test
    class_rsm = class_total / min(len(networks), CLASS_RSM_NETWORKS)  # (C, C)
    subjects = [int(s) for s in subjects]
    meta = {"data": data, "model": model, "epoch": int(epoch), "layer": layer,
            "layer_depth": int(layer_depth), "k": int(k), "params": p.as_dict(), "subjects": subjects,
            "final_epoch": p.final_epoch, "nulls": bool(run_null),
            "class_rsm": {"networks": min(len(networks), CLASS_RSM_NETWORKS),
                          "units": int(min(len(units_idx), CLASS_RSM_UNITS))}}
    subj = np.array(subjects)
    return dict(res, subjects=subj, labels_test=labels[test_idx], fit_idx=fit_idx, test_idx=test_idx,
                units_kept=np.stack(units_kept), k=np.int64(res["k"]),
                r_shared_irsm_wrsm=np.float64(res["r_shared_irsm_wrsm"]),
                r_native_irsm_wrsm=np.float64(res["r_native_irsm_wrsm"]),
                consistency_pairs=subj[res["consistency_pairs"]], class_rsm=class_rsm.astype(np.float32),
                class_labels=np.asarray(classes), meta=np.array(json.dumps(meta)))


def analyse_job(root, data: str, model: str, epoch: int, layer: str, subjects: Sequence[int],
                params: dict, layer_depth: int, overwrite: bool = False, provenance: dict | None = None) -> dict:
    """Analyse one epoch × layer (:func:`job_result`) and write its outputs.

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
    p = AnalysisParams.from_dict(params)
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
    networks, reference = [], []
    final = p.final_epoch
    try:
        for s in subjects:
            networks.append(source.open(s, epoch, layer))  # images × units, memory-mapped or read by slices
        if final is not None and int(final) != int(epoch):
            for s in subjects:
                reference.append(source.open(s, int(final), layer))
        arrays = job_result(networks, labels, subjects, p, data=data, model=model, epoch=epoch, layer=layer,
                            layer_depth=layer_depth, reference=reference or None,
                            saved_units=[source.units_kept(s, epoch, layer) for s in subjects])
    finally:
        for arr in networks + reference:
            arr.close()
    r_shared, r_native = float(arrays["r_shared_irsm_wrsm"]), float(arrays["r_native_irsm_wrsm"])
    k = int(arrays["k"])
    clear_marker(out_dir)
    remove_stale_temporaries(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_npz(out_dir / RESULTS_NAME, **arrays)
    write_rsm_quad(out_dir / PLOT_NAME, arrays["wrsm_native"], arrays["irsm_native"], arrays["wrsm_shared"],
                   arrays["irsm_shared"], title=f"{data} {model}, epoch {epoch}, layer {layer}: r(shared iRSM, wRSM) "
                                                f"= {r_shared:.2f}, r(native iRSM, wRSM) = {r_native:.2f}")
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
              provenance: dict | None = None, explicit_null_draws: bool = False) -> list[Job]:
    """Validate all inputs (nothing is written) and list the jobs still to run.

    Complete jobs made with the same parameters from the same stage-2
    outputs are left out unless ``overwrite``; a complete job made otherwise
    is an error (mixing them would make an inconsistent summary) unless
    ``overwrite``. With ``explicit_null_draws`` (the user asked for a number
    of null draws), a null epoch whose nulls are not affordable
    (:mod:`nnsrm.null_budget`) is an error unless ``params.force_nulls``;
    otherwise such jobs skip their nulls (logged).

    Raises
    ------
    nnsrm.errors.UsageError
        For any bad input (see :func:`nnsrm.activations.check_inputs`), or
        unaffordable nulls asked for explicitly.
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
    checked = list(epochs)
    if params.final_epoch is not None and int(params.final_epoch) not in checked:
        checked.append(int(params.final_epoch))  # the *_final_wrsm metrics read it
    plan = check_inputs(source, subjects, checked, layers, params, check_finite=todo)
    if stale:
        epoch, layer = stale[0]
        directory = layout.analysis_dir(epoch, layer)
        _, diff = state.job_state(directory, state.stage3_record(layout, epoch, subjects, params.as_dict()))
        raise StaleOutputError(state.stale_message(f"epoch {epoch:03d} layer {layer}", directory, diff,
                                                   len(stale) - 1))
    if explicit_null_draws and not params.force_nulls:
        n_test = plan.n_images - plan.n_fit
        for epoch, layer in todo:
            if epoch not in params.null_epochs:
                continue
            size = (len(subjects), plan.units[layer], plan.k[layer], plan.n_fit, n_test, params.n_iter)
            if not null_budget.is_affordable(*size, params.null_draws, params.n_perm):
                seconds = null_budget.null_seconds(*size, params.null_draws, params.n_perm)
                most = null_budget.affordable_draws(*size, params.n_perm)
                raise UsageError(f"--null-refits {params.null_draws}: the correspondence-broken nulls of layer "
                                 f"{layer!r} ({plan.units[layer]} units, {len(subjects)} networks, {plan.n_fit} fit "
                                 f"images) would take about {seconds:.0f} s per job, more than the "
                                 f"{null_budget.BUDGET_SECONDS:.0f} s that is affordable (at most {most} refits); "
                                 f"pass --force to run them anyway, fewer refits, or --null-epochs none")
    return [Job(name=f"epoch {epoch:03d} layer {layer}", fn=analyse_job,
                kwargs=dict(root=str(layout.root), data=layout.data, model=layout.model, epoch=int(epoch),
                            layer=layer, subjects=[int(s) for s in subjects], params=params.as_dict(),
                            layer_depth=all_layers.index(layer), overwrite=overwrite, provenance=provenance))
            for epoch, layer in todo]
