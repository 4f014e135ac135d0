"""Stage 2's outputs as stage 3 reads them: layers, labels, activation files, and their validation.

Every input of stage 3 is checked here, before anything is written (one
validation layer): the subjects, the labels, every activation file's presence,
shape, agreement across subjects and finiteness, and ``k``. Each problem is a
one-line error naming the file(s) and the fix.

Activation files are images × units (as Keras produces them); they are
memory-mapped and transposed once, on loading, to the library's units × images.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nnsrm.atomic import MARKER_NAME, is_complete
from nnsrm.errors import UsageError
from nnsrm.paths import ResultsLayout
from qmvpa import factor, preproc

if TYPE_CHECKING:
    from nnsrm.analysis import AnalysisParams

log = logging.getLogger(__name__)


def read_layers(layout: ResultsLayout) -> tuple[list[str], dict]:
    """Analysed layers in depth order and their saved unit counts, from stage 2's ``layers.json``."""
    path = layout.layers_path
    if not path.exists():
        raise UsageError(f"{path} not found: run save_acts_cifar.py for --data {layout.data} "
                                f"--model {layout.model} --root {layout.root} first")
    try:
        info = json.loads(path.read_text())
        layers = [str(name) for name in info["layers"]]
        units = {str(k): int(v) for k, v in info.get("units", {}).items()}
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{path} is not valid: expected {{\"layers\": [...], \"units\": {{...}}}} "
                         f"({err}); rerun save_acts_cifar.py") from None
    if not layers:
        raise UsageError(f"{path} lists no layers; rerun save_acts_cifar.py")
    return layers, units


def read_labels(layout: ResultsLayout) -> np.ndarray:
    """Labels of the test images (stage 2's ``test_labels.npy``), shape (n_images,)."""
    path = layout.test_labels_path
    if not path.exists():
        raise UsageError(f"{path} not found: run save_acts_cifar.py first")
    try:
        labels = np.load(path)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"{path} is not a readable .npy file ({err}); rerun save_acts_cifar.py") from None
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot
        labels = labels.argmax(axis=1)
    labels = labels.reshape(labels.shape[0], -1)[:, 0] if labels.ndim == 2 else labels
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"{path} must hold integer labels of shape (n_images,), got {labels.dtype} "
                         f"{labels.shape}")
    return labels


def open_activations(path: Path) -> np.ndarray:
    """Memory-map one activation file as images × units (trailing dimensions flattened)."""
    try:
        a = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"{path} is not a readable .npy file ({err}); rerun save_acts_cifar.py") from None
    if a.ndim < 2:
        raise UsageError(f"{path} must be images × units, got shape {a.shape}")
    if a.ndim > 2:
        a = a.reshape(a.shape[0], -1)
    return a


def check_finite_file(path: Path, chunk_rows: int = 2048) -> None:
    """Raise if the activation file holds NaN or Inf (read in chunks: memory stays small)."""
    a = open_activations(path)
    for start in range(0, a.shape[0], chunk_rows):
        block = np.asarray(a[start:start + chunk_rows])
        if not np.isfinite(block).all():
            bad = int(np.size(block) - np.isfinite(block).sum())
            raise UsageError(f"{path} contains NaN or Inf activations (at least {bad} values; a diverged "
                             f"network?); retrain that subject or leave it out with --only-subjects")


def resolve_k(k: int | None, n_units: int, n_fit: int, where: str = "") -> int:
    """The number of shared features: ``k`` checked, or by default ``min(n_units, n_fit)``."""
    if k is None:
        if n_fit < n_units:
            log.warning("%s: %d units but only %d fit images; using k = %d", where, n_units, n_fit, n_fit)
        return min(n_units, n_fit)
    try:
        return factor.check_n_components(k, [n_units], n_fit)
    except ValueError as err:  # qmvpa's message about the user's k
        raise UsageError(f"{where}: {err}") from None


@dataclasses.dataclass
class _Plan:
    """What :func:`check_inputs` found out about one condition."""

    n_images: int
    n_fit: int
    units: dict  # layer -> units kept after the cap
    k: dict  # layer -> resolved k


def check_inputs(layout: ResultsLayout, subjects: Sequence[int], epochs: Sequence[int],
                 layers: Sequence[str], params: "AnalysisParams", check_finite: Sequence[tuple] = ()) -> _Plan:
    """Validate every input of stage 3 before anything is written.

    Checks: at least 2 subjects; labels present; every subject × epoch has a
    complete activations folder with every layer's file; within each epoch ×
    layer the subjects' files agree on image count (also with the labels) and
    unit count; ``k`` fits the units and the fit images; and, for the
    ``(epoch, layer)`` pairs in ``check_finite`` (the jobs about to run), that
    no file holds NaN or Inf (see also :func:`check_finite_inputs`). Each
    problem is a :class:`~nnsrm.errors.UsageError` whose one-line message
    names the file(s).
    """
    subjects = list(subjects)
    if len(subjects) < 2:
        found = sorted(p.name for p in layout.condition_dir.glob("subj*")) if layout.condition_dir.exists() else []
        raise UsageError(f"SRM needs at least 2 subjects (networks), got {subjects} under "
                         f"{layout.condition_dir} (found: {found or 'none'}); train more subjects")
    labels = read_labels(layout)
    n_images = labels.shape[0]
    try:
        fit_idx, _ = preproc.stratified_split(labels, params.test_size, params.seed, params.class_order)
    except ValueError as err:
        raise UsageError(f"{layout.test_labels_path}: {err}") from None
    n_fit = len(fit_idx)
    for epoch in epochs:
        for s in subjects:
            adir = layout.activations_dir(s, epoch)
            if not is_complete(adir):
                what = "does not exist" if not adir.exists() else f"has no valid {MARKER_NAME}"
                raise UsageError(f"epoch {epoch} of subject {s} is missing: {adir} {what}; run "
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
                raise UsageError(f"layer {layer!r} missing: {', '.join(missing)}; rerun "
                                        f"save_acts_cifar.py")
            shapes = [open_activations(p).shape for p in paths]
            counts = [sh[0] for sh in shapes]
            if len(set(counts)) > 1 or counts[0] != n_images:
                odd = [f"{p} ({c})" for p, c in zip(paths, counts) if c != n_images]
                raise UsageError(f"image counts disagree with the {n_images} labels in "
                                 f"{layout.test_labels_path}: {', '.join(odd)}; rerun save_acts_cifar.py "
                                 f"for those subjects")
            n_units = {sh[1] for sh in shapes}
            if len(n_units) > 1:
                raise UsageError("unit counts disagree across subjects: "
                                 + ", ".join(f"{p} ({sh[1]})" for p, sh in zip(paths, shapes)))
            kept = len(preproc.subsample_units(shapes[0][1], params.max_units, params.seed))
            if units.setdefault(layer, kept) != kept:
                raise UsageError(f"layer {layer!r} has {kept} units in {paths[0]} but {units[layer]} in "
                                 f"epoch {epochs[0]}'s files; rerun save_acts_cifar.py")
            if layer not in k:
                k[layer] = resolve_k(params.k, kept, n_fit,
                                     where=f"layer {layer!r} ({paths[0]} and the other subjects' files, "
                                           f"{kept} units kept, {n_fit} fit images)")
            if (epoch, layer) in check_finite:
                for p in paths:
                    check_finite_file(p)
    return _Plan(n_images=n_images, n_fit=n_fit, units=units, k=k)


def check_finite_inputs(layout: ResultsLayout, subjects: Sequence[int], jobs: Sequence[tuple]) -> None:
    """Raise a one-line :class:`~nnsrm.errors.UsageError` if an input of the ``(epoch, layer)`` jobs holds NaN or Inf."""
    for epoch, layer in jobs:
        for s in subjects:
            check_finite_file(layout.activation_path(s, epoch, layer))




def load_network(path: Path, units_idx: np.ndarray, fit_idx, test_idx) -> tuple[np.ndarray, np.ndarray]:
    """One network's activations as float32 fit (units × m) and held-out (units × t) matrices.

    Parameters
    ----------
    path : Path
        Stage 2's activation file, images × units (memory-mapped here).
    units_idx : ndarray of int, shape (u,)
        Units to keep (the analysis' unit cap), indices into the file's units.
    fit_idx, test_idx : ndarray of int, shapes (m,) and (t,)
        Images of the fit and held-out sets, indices into the file's images.
    """
    a = open_activations(path)  # (n_images, n_units_saved), memory-mapped
    sel = np.asarray(a[:, units_idx], dtype=np.float32) if len(units_idx) < a.shape[1] else np.asarray(a, np.float32)
    if not np.isfinite(sel).all():
        raise UsageError(f"{path} contains NaN or Inf activations (a diverged network?); retrain that "
                         f"subject or leave it out with --only-subjects")
    X = sel.T  # (n_units, n_images): the library's orientation
    return X[:, fit_idx], X[:, test_idx]  # (u, m), (u, t): copies, the mapped file is let go
