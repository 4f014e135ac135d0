"""Stage 3: SRM alignment and RSA of every logged epoch × analysed layer (DESIGN.md section 6).

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

Variance explained (DESIGN.md 6.5) uses, on the fit and on the held-out
images alike, ``S̄ = mean_j W_jᵀ X_j``, the networks' mean shared response on
those images, so the two numbers differ only by how well the maps generalise.
The model's own reconstruction of the fit images, ``W_i S + mu_i`` with
BrainIAK's ``s_`` and unit means ``mu_``, is kept as ``var_exp_fit_model``; it
credits each network's unit means, which after per-image z-scoring can carry
most of the variance of an untrained layer, so it is not comparable with the
held-out value. ``W_i S`` without ``mu_i`` (DESIGN.md's formula read literally
with BrainIAK's ``s_``) would instead count even the shared unit means as
unexplained, because BrainIAK fits demeaned data.
Activation files are images × units; they are transposed once, here, on
loading, to the library's units × images.

:func:`write_summary` then rebuilds ``analyses/summary.csv`` from every complete
job's ``results.npz`` (cheap, and always consistent with them), in tidy long
format: columns ``data, model, epoch, layer, layer_depth, subject, metric, value``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from nnsrm.atomic import (atomic_path, clear_marker, is_complete, remove_stale_temporaries, save_npz,
                          write_marker, write_text)
from nnsrm.atomic import MARKER_NAME
from nnsrm.paths import ResultsLayout
from nnsrm.runner import Job
from qmvpa import factor, preproc, rsa

log = logging.getLogger(__name__)

RESULTS_NAME = "results.npz"
PLOT_NAME = "rsm.png"
SUMMARY_COLUMNS = ("data", "model", "epoch", "layer", "layer_depth", "subject", "metric", "value")
METRICS = ("var_exp_fit", "var_exp_test", "r_shared_irsm_wrsm", "r_native_irsm_wrsm",
           "r_shared_irsm_final_wrsm", "r_native_irsm_final_wrsm", "consistency")


@dataclasses.dataclass(frozen=True)
class AnalysisParams:
    """What a stage-3 job computes with (recorded in every job's marker and ``meta``).

    ``k=None`` means the number of units kept (an orthogonal map, DESIGN.md 6.4),
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


# --------------------------------------------------------------------------- inputs

def read_layers(layout: ResultsLayout) -> tuple[list[str], dict]:
    """Analysed layers in depth order and their saved unit counts, from stage 2's ``layers.json``."""
    path = layout.layers_path
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run save_acts_cifar.py for --data {layout.data} "
                                f"--model {layout.model} --root {layout.root} first")
    try:
        info = json.loads(path.read_text())
        layers = [str(name) for name in info["layers"]]
        units = {str(k): int(v) for k, v in info.get("units", {}).items()}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not valid: expected {{\"layers\": [...], \"units\": {{...}}}} "
                         f"({err}); rerun save_acts_cifar.py") from None
    if not layers:
        raise ValueError(f"{path} lists no layers; rerun save_acts_cifar.py")
    return layers, units


def read_labels(layout: ResultsLayout) -> np.ndarray:
    """Labels of the test images (stage 2's ``test_labels.npy``), shape (n_images,)."""
    path = layout.test_labels_path
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run save_acts_cifar.py first")
    try:
        labels = np.load(path)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npy file ({err}); rerun save_acts_cifar.py") from None
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot
        labels = labels.argmax(axis=1)
    labels = labels.reshape(labels.shape[0], -1)[:, 0] if labels.ndim == 2 else labels
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path} must hold integer labels of shape (n_images,), got {labels.dtype} "
                         f"{labels.shape}")
    return labels


def _open_activations(path: Path) -> np.ndarray:
    """Memory-map one activation file as images × units (trailing dimensions flattened)."""
    try:
        a = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npy file ({err}); rerun save_acts_cifar.py") from None
    if a.ndim < 2:
        raise ValueError(f"{path} must be images × units, got shape {a.shape}")
    if a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    return a


def _check_finite_file(path: Path, chunk_rows: int = 2048) -> None:
    """Raise if the activation file holds NaN or Inf (read in chunks: memory stays small)."""
    a = _open_activations(path)
    for start in range(0, a.shape[0], chunk_rows):
        block = np.asarray(a[start:start + chunk_rows])
        if not np.isfinite(block).all():
            bad = int(np.size(block) - np.isfinite(block).sum())
            raise ValueError(f"{path} contains NaN or Inf activations (at least {bad} values; a diverged "
                             f"network?); retrain that subject or leave it out with --only-subjects")


def resolve_k(k: int | None, n_units: int, n_fit: int, where: str = "") -> int:
    """The number of shared features: ``k`` checked, or by default ``min(n_units, n_fit)``."""
    if k is None:
        if n_fit < n_units:
            log.warning("%s: %d units but only %d fit images; using k = %d", where, n_units, n_fit, n_fit)
        return min(n_units, n_fit)
    try:
        return factor.check_n_components(k, [n_units], n_fit)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


@dataclasses.dataclass
class _Plan:
    """What :func:`check_inputs` found out about one condition."""

    n_images: int
    n_fit: int
    units: dict  # layer -> units kept after the cap
    k: dict  # layer -> resolved k


def check_inputs(layout: ResultsLayout, subjects: Sequence[int], epochs: Sequence[int],
                 layers: Sequence[str], params: AnalysisParams, check_finite: Sequence[tuple] = ()) -> _Plan:
    """Validate every input of stage 3 before anything is written.

    Checks: at least 2 subjects; labels present; every subject × epoch has a
    complete activations folder with every layer's file; within each epoch ×
    layer the subjects' files agree on image count (also with the labels) and
    unit count; ``k`` fits the units and the fit images; and, for the
    ``(epoch, layer)`` pairs in ``check_finite`` (the jobs about to run), that
    no file holds NaN or Inf. Each problem is a ``ValueError`` or
    ``FileNotFoundError`` whose one-line message names the file(s).
    """
    subjects = list(subjects)
    if len(subjects) < 2:
        found = sorted(p.name for p in layout.condition_dir.glob("subj*")) if layout.condition_dir.exists() else []
        raise ValueError(f"SRM needs at least 2 subjects (networks), got {subjects} under "
                         f"{layout.condition_dir} (found: {found or 'none'}); train more subjects")
    labels = read_labels(layout)
    n_images = labels.shape[0]
    try:
        fit_idx, _ = preproc.stratified_split(labels, params.test_size, params.seed, params.class_order)
    except ValueError as err:
        raise ValueError(f"{layout.test_labels_path}: {err}") from None
    n_fit = len(fit_idx)
    for epoch in epochs:
        for s in subjects:
            adir = layout.activations_dir(s, epoch)
            if not is_complete(adir):
                what = "does not exist" if not adir.exists() else f"has no valid {MARKER_NAME}"
                raise FileNotFoundError(f"epoch {epoch} of subject {s} is missing: {adir} {what}; run "
                                        f"save_acts_cifar.py (or train_cifar.py) for it, or drop it with "
                                        f"--only-epochs/--only-subjects")
    units = {}
    k = {}
    check_finite = set(check_finite)
    for layer in layers:
        for epoch in epochs:
            paths = [layout.activation_path(s, epoch, layer) for s in subjects]
            missing = [str(p) for p in paths if not p.exists()]
            if missing:
                raise FileNotFoundError(f"layer {layer!r} missing: {', '.join(missing)}; rerun "
                                        f"save_acts_cifar.py")
            shapes = [_open_activations(p).shape for p in paths]
            counts = [sh[0] for sh in shapes]
            if len(set(counts)) > 1 or counts[0] != n_images:
                odd = [f"{p} ({c})" for p, c in zip(paths, counts) if c != n_images]
                raise ValueError(f"image counts disagree with the {n_images} labels in "
                                 f"{layout.test_labels_path}: {', '.join(odd)}; rerun save_acts_cifar.py "
                                 f"for those subjects")
            n_units = {sh[1] for sh in shapes}
            if len(n_units) > 1:
                raise ValueError("unit counts disagree across subjects: "
                                 + ", ".join(f"{p} ({sh[1]})" for p, sh in zip(paths, shapes)))
            kept = len(preproc.subsample_units(shapes[0][1], params.max_units, params.seed))
            if units.setdefault(layer, kept) != kept:
                raise ValueError(f"layer {layer!r} has {kept} units in {paths[0]} but {units[layer]} in "
                                 f"epoch {epochs[0]}'s files; rerun save_acts_cifar.py")
            if layer not in k:
                k[layer] = resolve_k(params.k, kept, n_fit,
                                     where=f"layer {layer!r} ({paths[0]} and the other subjects' files, "
                                           f"{kept} units kept, {n_fit} fit images)")
            if (epoch, layer) in check_finite:
                for p in paths:
                    _check_finite_file(p)
    return _Plan(n_images=n_images, n_fit=n_fit, units=units, k=k)


def job_status(layout: ResultsLayout, epoch: int, layer: str, params: AnalysisParams,
               subjects: Sequence[int]) -> str:
    """``"todo"``, ``"done"`` (complete with the same parameters) or ``"stale"`` (other parameters)."""
    out = layout.analysis_dir(epoch, layer)
    if not is_complete(out):
        return "todo"
    try:
        info = json.loads((out / MARKER_NAME).read_text())
        same = info.get("params") == params.as_dict() and info.get("subjects") == [int(s) for s in subjects]
    except ValueError:
        return "todo"
    return "done" if same else "stale"


# --------------------------------------------------------------------------- the job

def _load_subject(path: Path, units_idx: np.ndarray, fit_idx, test_idx, fit_dtype):
    """One subject's activations → z-scored fit (units × m) and held-out (units × t) matrices."""
    a = _open_activations(path)  # (n_images, n_units_saved), memory-mapped
    sel = np.asarray(a[:, units_idx], dtype=np.float32) if len(units_idx) < a.shape[1] else np.asarray(a, np.float32)
    if not np.isfinite(sel).all():
        raise ValueError(f"{path} contains NaN or Inf activations (a diverged network?); retrain that "
                         f"subject or leave it out with --only-subjects")
    X = sel.T  # (n_units, n_images): the library's orientation
    X_fit = preproc.zscore_images(X[:, fit_idx], dtype=fit_dtype)  # (n_units, m)
    X_test = preproc.zscore_images(X[:, test_idx], dtype=np.float32)  # (n_units, t)
    return X_fit, X_test


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for pkg in ("numpy", "scipy", "scikit-learn", "brainiak"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


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
    out_dir = layout.analysis_dir(epoch, layer)
    status = job_status(layout, epoch, layer, p, subjects)
    if status == "done" and not overwrite:
        log.info("epoch %d layer %s: complete, skipped", epoch, layer)
        return {"status": "skipped"}
    if status == "stale" and not overwrite:
        raise ValueError(f"{out_dir} was made with other parameters; pass --overwrite to redo it")

    labels = read_labels(layout)
    fit_idx, test_idx = preproc.stratified_split(labels, p.test_size, p.seed, p.class_order)
    paths = [layout.activation_path(s, epoch, layer) for s in subjects]
    n_saved = _open_activations(paths[0]).shape[1]
    units_idx = preproc.subsample_units(n_saved, p.max_units, p.seed)  # same units for every subject
    fit_dtype = np.float64 if p.engine == "brainiak" else np.float32
    Xf, Xt, units_kept = [], [], []
    for s, path in zip(subjects, paths):
        X_fit, X_test = _load_subject(path, units_idx, fit_idx, test_idx, fit_dtype)
        Xf.append(X_fit)
        Xt.append(X_test)
        stage2 = layout.units_kept_path(s, epoch, layer)  # stage 2 may have capped units already
        units_kept.append(np.load(stage2)[units_idx] if stage2.exists() else units_idx)
    k = resolve_k(p.k, len(units_idx), len(fit_idx), where=f"layer {layer!r} ({paths[0]}, ...)")

    # SRM on the fit images (DESIGN 6.4); held-out images into the shared space.
    srm = factor.fit_srm(Xf, n_components=k, n_iter=p.n_iter, random_state=p.seed, engine=p.engine)
    mu = getattr(srm, "mu_", None)
    # Variance explained on the fit images with the same estimator as on held-out ones (S̄, the
    # mean of the mapped networks), so the two are comparable; see the module docstring.
    S_bar_fit = sum(w.T @ X for w, X in zip(srm.w_, Xf)) / len(Xf)  # (k, m), one accumulator
    var_exp_fit = factor.variance_explained(Xf, srm.w_, S_bar_fit)
    var_exp_fit_model = factor.variance_explained(Xf, srm.w_, srm.s_, mu=mu)
    del Xf, S_bar_fit
    St = [S.astype(np.float32) for S in factor.transform(srm, Xt)]  # each (k, t)
    var_exp_test = factor.variance_explained(Xt, srm.w_, np.mean(St, axis=0))

    # RSMs on the held-out images (DESIGN 6.6).
    wrsms = [rsa.within_rsm(X) for X in Xt]  # each (t, t) float32
    wrsm_native = np.mean(wrsms, axis=0)
    pairs, consistency = rsa.pairwise_consistency(wrsms)
    del wrsms
    wrsm_shared = rsa.mean_within_rsm(St)
    irsm_native = rsa.inter_subject_rsm(Xt)
    irsm_shared = rsa.inter_subject_rsm(St)
    r_shared = rsa.rsm_similarity(irsm_shared, wrsm_native)
    r_native = rsa.rsm_similarity(irsm_native, wrsm_native)

    meta = {"data": data, "model": model, "epoch": int(epoch), "layer": layer,
            "layer_depth": int(layer_depth), "k": int(k), "params": p.as_dict(), "subjects": subjects}
    subj = np.array(subjects)
    arrays = dict(
        subjects=subj, labels_test=labels[test_idx], fit_idx=fit_idx, test_idx=test_idx,
        units_kept=np.stack(units_kept),
        native_test=np.stack(Xt), shared_test=np.stack(St),
        W=np.stack([w.astype(np.float32) for w in srm.w_]), S=np.asarray(srm.s_, dtype=np.float32),
        mu=(np.stack([np.asarray(m, np.float32) for m in mu]) if mu is not None
            else np.zeros((len(subjects), len(units_idx)), np.float32)),
        var_exp_fit=var_exp_fit, var_exp_test=var_exp_test, var_exp_fit_model=var_exp_fit_model,
        wrsm_native=wrsm_native, wrsm_shared=wrsm_shared, irsm_native=irsm_native, irsm_shared=irsm_shared,
        r_shared_irsm_wrsm=np.float64(r_shared), r_native_irsm_wrsm=np.float64(r_native),
        consistency_pairs=subj[pairs], consistency=consistency,
        meta=np.array(json.dumps(meta)),
    )
    clear_marker(out_dir)
    remove_stale_temporaries(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_npz(out_dir / RESULTS_NAME, **arrays)
    plot_rsms(out_dir / PLOT_NAME, wrsm_native, irsm_native, wrsm_shared, irsm_shared,
              title=f"{data} {model}, epoch {epoch}, layer {layer}: r(shared iRSM, wRSM) = {r_shared:.2f}, "
                    f"r(native iRSM, wRSM) = {r_native:.2f}")
    write_marker(out_dir, [out_dir / RESULTS_NAME, out_dir / PLOT_NAME], params=p.as_dict(),
                 subjects=subjects, k=int(k), versions=_versions(), **(provenance or {}))
    log.info("epoch %d layer %s: k=%d, var exp test %.3f, r shared %.3f, native %.3f",
             epoch, layer, k, float(np.mean(var_exp_test)), r_shared, r_native)
    return {"status": "done", "k": int(k), "r_shared_irsm_wrsm": r_shared, "r_native_irsm_wrsm": r_native,
            "var_exp_test": float(np.mean(var_exp_test))}


def plot_rsms(path, wrsm_native, irsm_native, wrsm_shared, irsm_shared, title=""):
    """Save the four RSMs as a labelled 2 × 2 heatmap (rows native/shared, columns within/inter)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend (Agg)

    fig = Figure(figsize=(9, 8.5), layout="constrained")
    axes = fig.subplots(2, 2)
    panels = [[wrsm_native, irsm_native], [wrsm_shared, irsm_shared]]
    im = None
    for r, space in enumerate(("native space", "shared space")):
        for c, kind in enumerate(("within network (wRSM)", "inter network, leave-one-out (iRSM)")):
            ax = axes[r, c]
            im = ax.imshow(panels[r][c], vmin=-1, vmax=1, cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(kind, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{space}\nheld-out images", fontsize=10)
            if r == 1:
                ax.set_xlabel("held-out images (sorted by class)", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.6, label="Pearson r")
    fig.suptitle(title, fontsize=10)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)


# --------------------------------------------------------------------------- jobs and summary

def plan_jobs(layout: ResultsLayout, epochs: Sequence[int], layers: Sequence[str] | None,
              subjects: Sequence[int], params: AnalysisParams, overwrite: bool = False,
              provenance: dict | None = None) -> list[Job]:
    """Validate all inputs (nothing is written) and list the jobs still to run.

    Complete jobs made with the same parameters are left out unless
    ``overwrite``; a complete job made with other parameters is an error
    (mixing them would make an inconsistent summary) unless ``overwrite``.
    """
    all_layers, _ = read_layers(layout)
    if layers is None:
        layers = all_layers
    unknown = [name for name in layers if name not in all_layers]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}: {layout.layers_path} lists {all_layers}")
    layers = [name for name in all_layers if name in layers]  # depth order
    if params.engine not in factor.ENGINES:
        raise ValueError(f"engine must be one of {factor.ENGINES}, got {params.engine!r}")
    factor.srm_class(params.engine)  # an unavailable engine fails now, not in every job
    todo, stale = [], []
    for epoch in epochs:
        for layer in layers:
            status = job_status(layout, epoch, layer, params, subjects)
            if status == "stale" and not overwrite:
                stale.append(layout.analysis_dir(epoch, layer))
            elif status != "done" or overwrite:
                todo.append((epoch, layer))
    check_inputs(layout, subjects, epochs, layers, params, check_finite=todo)
    if stale:
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise ValueError(f"{stale[0]}{more} was made with other parameters or subjects (see its "
                         f"{MARKER_NAME}); pass --overwrite to redo it, or use another --root")
    return [Job(name=f"epoch {epoch:03d} layer {layer}", fn=analyse_job,
                kwargs=dict(root=str(layout.root), data=layout.data, model=layout.model, epoch=int(epoch),
                            layer=layer, subjects=[int(s) for s in subjects], params=params.as_dict(),
                            layer_depth=all_layers.index(layer), overwrite=overwrite, provenance=provenance))
            for epoch, layer in todo]


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
    to the latest analysed epoch.
    """
    import pandas as pd

    rows = []
    by_layer = {}
    for epoch, layer, folder in completed_jobs(layout):
        by_layer.setdefault(layer, {})[epoch] = folder / RESULTS_NAME
    for layer, files in by_layer.items():
        final = max(files) if final_epoch is None else final_epoch
        final_wrsm = final_test_idx = None
        if final in files:
            with np.load(files[final]) as z:
                final_wrsm, final_test_idx = z["wrsm_native"], z["test_idx"]
        else:
            log.warning("summary: layer %s has no analysed final epoch %s; leaving out the *_final_wrsm "
                        "metrics", layer, final)
        for epoch in sorted(files):
            with np.load(files[epoch]) as z:
                meta = json.loads(str(z["meta"]))
                base = dict(data=layout.data, model=layout.model, epoch=epoch, layer=layer,
                            layer_depth=int(meta["layer_depth"]))
                subjects = z["subjects"].tolist()
                for metric in ("var_exp_fit", "var_exp_test"):
                    rows += [dict(base, subject=str(s), metric=metric, value=float(v))
                             for s, v in zip(subjects, z[metric])]
                for metric in ("r_shared_irsm_wrsm", "r_native_irsm_wrsm"):
                    rows.append(dict(base, subject="all", metric=metric, value=float(z[metric])))
                if final_wrsm is not None:
                    if np.array_equal(z["test_idx"], final_test_idx):
                        for space in ("shared", "native"):
                            r = rsa.rsm_similarity(z[f"irsm_{space}"], final_wrsm)
                            rows.append(dict(base, subject="all", metric=f"r_{space}_irsm_final_wrsm", value=r))
                    else:
                        log.warning("summary: %s used other held-out images than epoch %d; no *_final_wrsm "
                                    "metrics for it", files[epoch], final)
                rows += [dict(base, subject=f"{i}-{j}", metric="consistency", value=float(v))
                         for (i, j), v in zip(z["consistency_pairs"].tolist(), z["consistency"])]
    df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if len(df):
        df["metric_order"] = df["metric"].map({m: i for i, m in enumerate(METRICS)})
        df = df.sort_values(["epoch", "layer_depth", "metric_order"], kind="stable").drop(columns="metric_order")
    return df.reset_index(drop=True)


def write_summary(layout: ResultsLayout, final_epoch: int | None = None):
    """Rebuild ``analyses/summary.csv`` from the complete jobs (atomically); returns the DataFrame."""
    df = build_summary(layout, final_epoch=final_epoch)
    write_text(layout.summary_path, df.to_csv(index=False))
    log.info("wrote %s (%d rows from %d jobs)", layout.summary_path, len(df),
             df.groupby(["epoch", "layer"]).ngroups if len(df) else 0)
    return df
