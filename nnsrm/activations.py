"""What stage 3 reads: layers, labels and activation arrays, through one source abstraction, and their validation.

A condition's activations come from one of two *sources* (:func:`open_source`):

- :class:`Stage2Source`: the folders stage 2 writes
  (``subj<NN>/epoch_<EEE>/activations/<layer>.npy``, ``layers.json``,
  ``test_labels.npy``);
- :class:`nnsrm.manifest.ManifestSource`: activations made anywhere and
  registered with ``nnsrm register`` (``manifest.json`` in the condition's
  folder lists every file; nothing is copied). See docs/bring-your-own.md.

Both hand out arrays as :class:`nnsrm.activation_files.ActivationArray`
(images × units, memory-mapped or read by slices), so the stage-3 job reads
either the same way.

Every input of stage 3 is checked here, before anything is written (one
validation layer): the subjects, the labels, every activation file's presence,
shape, agreement across subjects and finiteness, and ``k``. Each problem is a
one-line error naming the file(s) and the fix.

Activation files are images × units (as Keras produces them); they are
memory-mapped and transposed once, on loading, to the library's units × images.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nnsrm.activation_files import ActivationArray
from nnsrm.atomic import MARKER_NAME, file_digest, is_complete
from nnsrm.errors import UsageError
from nnsrm.paths import ResultsLayout
from qmvpa import factor, preproc

if TYPE_CHECKING:
    from nnsrm.analysis import AnalysisParams

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- stage 2's files

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
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"{path} is not a readable .npy file ({err}); rerun save_acts_cifar.py") from None
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot
        labels = labels.argmax(axis=1)
    labels = labels.reshape(labels.shape[0], -1)[:, 0] if labels.ndim == 2 else labels
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"{path} must hold integer labels of shape (n_images,), got {labels.dtype} "
                         f"{labels.shape}")
    return labels


def open_activations(path: Path) -> ActivationArray:
    """Memory-map one stage-2 activation file as images × units (trailing dimensions flattened)."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"{path} is not a readable .npy file ({err}); rerun save_acts_cifar.py") from None
    if a.ndim < 2:
        raise UsageError(f"{path} must be images × units, got shape {a.shape}")
    return ActivationArray(a, a.shape, a.dtype, str(path))


# --------------------------------------------------------------------------- sources

#: Names an output layer usually has, for sources that do not record which layer is the output.
OUTPUT_LAYER_NAMES = ("logits", "softmax", "predictions", "output", "outputs", "classifier", "head", "fc")


class ActivationSource(abc.ABC):
    """Where stage 3 reads one condition's inputs from (see the module docstring).

    Subclasses name the arrays in messages and say how to fix bad input
    (:attr:`rerun`, :attr:`more_networks`).
    """

    #: ``"stage2"`` or ``"registered"``.
    kind = ""
    #: How to fix a bad or missing input, at the end of messages.
    rerun = ""
    #: How to get more networks, at the end of the "at least 2" message.
    more_networks = ""

    def __init__(self, layout: ResultsLayout):
        self.layout = layout

    @property
    @abc.abstractmethod
    def labels_name(self) -> str:
        """The labels' file, as messages name it."""

    @abc.abstractmethod
    def layers(self) -> list[str]:
        """Layer names in depth order, shallow to deep."""

    @abc.abstractmethod
    def labels(self) -> np.ndarray:
        """Integer labels of the images, shape (n_images,)."""

    @abc.abstractmethod
    def found_subjects(self) -> list[str]:
        """The networks present, for messages."""

    @abc.abstractmethod
    def check_available(self, subject: int, epoch: int) -> None:
        """Raise a one-line :class:`UsageError` if ``subject``'s arrays at ``epoch`` cannot be read."""

    @abc.abstractmethod
    def array_name(self, subject: int, epoch: int, layer: str) -> str:
        """The array as messages name it (a path, or ``path[key]``)."""

    @abc.abstractmethod
    def has_array(self, subject: int, epoch: int, layer: str) -> bool:
        """True if ``subject`` has an array of ``layer`` at ``epoch``."""

    @abc.abstractmethod
    def open(self, subject: int, epoch: int, layer: str) -> ActivationArray:
        """The array (images × units), memory-mapped or read by slices; close it (or use ``with``) when done."""

    def units_kept(self, subject: int, epoch: int, layer: str) -> np.ndarray | None:
        """Indices of the saved units in the original layer, if the producer capped them (else None)."""
        return None

    def output_layer(self) -> str | None:
        """The analysed layer that is the networks' output layer, or None.

        Here: the last layer if its name is one an output layer usually has
        (:data:`OUTPUT_LAYER_NAMES`); stage 2 records it in ``layers.json``.
        """
        layers = self.layers()
        return layers[-1] if layers and layers[-1].lower() in OUTPUT_LAYER_NAMES else None

    @abc.abstractmethod
    def input_digests(self, epoch: int, subjects: Sequence[int]) -> dict:
        """One checksum per input of an epoch's stage-3 jobs (name -> hex digest, None if missing).

        What a stage-3 job's marker records of what it read: it changes when an
        input is remade.
        """


class Stage2Source(ActivationSource):
    """Stage 2's folders under the results root (``subj<NN>/epoch_<EEE>/activations/<layer>.npy``)."""

    kind = "stage2"
    rerun = "rerun save_acts_cifar.py"
    more_networks = "train more subjects"

    @property
    def labels_name(self) -> str:
        return str(self.layout.test_labels_path)

    def layers(self) -> list[str]:
        return read_layers(self.layout)[0]

    def labels(self) -> np.ndarray:
        return read_labels(self.layout)

    def found_subjects(self) -> list[str]:
        cond = self.layout.condition_dir
        return sorted(p.name for p in cond.glob("subj*")) if cond.exists() else []

    def check_available(self, subject: int, epoch: int) -> None:
        adir = self.layout.activations_dir(subject, epoch)
        if not is_complete(adir):
            what = "does not exist" if not adir.exists() else f"has no valid {MARKER_NAME}"
            raise UsageError(f"epoch {epoch} of subject {subject} is missing: {adir} {what}; run "
                             f"save_acts_cifar.py (or train_cifar.py) for it, or drop it with "
                             f"--only-epochs/--only-subjects")

    def array_name(self, subject: int, epoch: int, layer: str) -> str:
        return str(self.layout.activation_path(subject, epoch, layer))

    def has_array(self, subject: int, epoch: int, layer: str) -> bool:
        return self.layout.activation_path(subject, epoch, layer).exists()

    def open(self, subject: int, epoch: int, layer: str) -> ActivationArray:
        return open_activations(self.layout.activation_path(subject, epoch, layer))

    def units_kept(self, subject: int, epoch: int, layer: str) -> np.ndarray | None:
        path = self.layout.units_kept_path(subject, epoch, layer)
        return np.load(path, allow_pickle=False) if path.exists() else None

    def output_layer(self) -> str | None:
        """``layers.json``'s ``output_layer`` (stage 2 records it); by name, as the base class, for older files."""
        try:
            info = json.loads(self.layout.layers_path.read_text())
        except (OSError, ValueError):
            return super().output_layer()
        if "output_layer" in info:
            name = info["output_layer"]
            return str(name) if name is not None and str(name) in self.layers() else None
        return super().output_layer()

    def input_digests(self, epoch: int, subjects: Sequence[int]) -> dict:
        out = {}
        for s in subjects:
            marker = self.layout.activations_dir(s, epoch) / MARKER_NAME
            out[f"activations subj{s:02d} epoch {epoch:03d}"] = file_digest(marker) if marker.is_file() else None
        labels = self.layout.test_labels_path
        out[labels.name] = file_digest(labels) if labels.is_file() else None
        return out


def is_registered(layout: ResultsLayout) -> bool:
    """True if the condition's activations were registered with ``nnsrm register`` (it has a manifest)."""
    return layout.manifest_path.is_file()


def open_source(layout: ResultsLayout) -> ActivationSource:
    """The source of a condition's activations: its manifest if registered, else stage 2's folders."""
    if is_registered(layout):
        from nnsrm.manifest import ManifestSource

        return ManifestSource(layout)
    return Stage2Source(layout)


# --------------------------------------------------------------------------- validation

def check_finite_array(arr: ActivationArray, remedy: str) -> None:
    """Raise if the array holds NaN or Inf (read by blocks: memory stays small)."""
    if arr.dtype.kind != "f":
        return
    for _, block in arr.blocks():
        finite = np.isfinite(block)
        if not finite.all():
            bad = int(np.size(block) - np.count_nonzero(finite))
            raise UsageError(f"{arr.name} contains NaN or Inf activations (at least {bad} values; a diverged "
                             f"network?); {remedy}")


def check_finite_file(path: Path) -> None:
    """Raise if the stage-2 activation file holds NaN or Inf (read by blocks: memory stays small)."""
    check_finite_array(open_activations(path), "retrain that subject or leave it out with --only-subjects")


def resolve_k(k: int | None, n_units: int, n_fit: int, where: str = "") -> int:
    """The number of shared features: ``k`` checked, or by default ``min(n_units, n_fit)``."""
    if k is None:
        if n_fit < n_units:
            log.warning("%s: %d units but only %d fit images; using k = %d", where, n_units, n_fit, n_fit)
        return min(n_units, n_fit)
    try:
        return factor.check_n_components(k, [n_units], n_fit)
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None


@dataclasses.dataclass
class _Plan:
    """What :func:`check_inputs` found out about one condition."""

    n_images: int
    n_fit: int
    units: dict  # layer -> units kept after the cap
    k: dict  # layer -> resolved k


def check_inputs(source: ActivationSource, subjects: Sequence[int], epochs: Sequence[int],
                 layers: Sequence[str], params: "AnalysisParams", check_finite: Sequence[tuple] = ()) -> _Plan:
    """Validate every input of stage 3 before anything is written.

    Checks: at least 2 subjects; labels present; every subject × epoch is
    available (stage 2: a complete activations folder; registered: every file
    unchanged since registration) with every layer's array; within each
    epoch × layer the subjects' arrays agree on image count (also with the
    labels) and unit count; ``k`` fits the units and the fit images; and, for
    the ``(epoch, layer)`` pairs in ``check_finite`` (the jobs about to run),
    that no array holds NaN or Inf. Each problem is a :class:`~nnsrm.errors.UsageError`
    whose one-line message names the file(s).
    """
    subjects = list(subjects)
    if len(subjects) < 2:
        raise UsageError(f"SRM needs at least 2 subjects (networks), got {subjects} under "
                         f"{source.layout.condition_dir} (found: {source.found_subjects() or 'none'}); "
                         f"{source.more_networks}")
    labels = source.labels()
    n_images = labels.shape[0]
    try:
        fit_idx, _ = preproc.stratified_split(labels, params.test_size, params.seed, params.class_order)
    except ValueError as err:
        raise UsageError(f"{source.labels_name}: {err}") from None
    n_fit = len(fit_idx)
    for epoch in epochs:
        for s in subjects:
            source.check_available(s, epoch)
    units = {}
    k = {}
    check_finite = set(check_finite)
    for layer in layers:
        for epoch in epochs:
            names = [source.array_name(s, epoch, layer) for s in subjects]
            missing = [name for s, name in zip(subjects, names) if not source.has_array(s, epoch, layer)]
            if missing:
                raise UsageError(f"layer {layer!r} missing: {', '.join(missing)}; {source.rerun}")
            shapes = []
            for s in subjects:
                with source.open(s, epoch, layer) as arr:
                    shapes.append(arr.shape)
            counts = [sh[0] for sh in shapes]
            if len(set(counts)) > 1 or counts[0] != n_images:
                odd = [f"{p} ({c})" for p, c in zip(names, counts) if c != n_images]
                raise UsageError(f"image counts disagree with the {n_images} labels in "
                                 f"{source.labels_name}: {', '.join(odd)}; {source.rerun} "
                                 f"for those subjects")
            n_units = {sh[1] for sh in shapes}
            if len(n_units) > 1:
                raise UsageError("unit counts disagree across subjects: "
                                 + ", ".join(f"{p} ({sh[1]})" for p, sh in zip(names, shapes)))
            kept = len(preproc.subsample_units(shapes[0][1], params.max_units, params.seed))
            if units.setdefault(layer, kept) != kept:
                raise UsageError(f"layer {layer!r} has {kept} units in {names[0]} but {units[layer]} in "
                                 f"epoch {epochs[0]}'s files; {source.rerun}")
            if layer not in k:
                k[layer] = resolve_k(params.k, kept, n_fit,
                                     where=f"layer {layer!r} ({names[0]} and the other subjects' files, "
                                           f"{kept} units kept, {n_fit} fit images)")
            if (epoch, layer) in check_finite:
                for s in subjects:
                    with source.open(s, epoch, layer) as arr:
                        check_finite_array(arr, "retrain that subject or leave it out with --only-subjects")
    return _Plan(n_images=n_images, n_fit=n_fit, units=units, k=k)


#: The analysis settings (keys of :meth:`nnsrm.analysis.AnalysisParams.as_dict`) that stage 3's extra jobs
#: (layer identification, variance by k) read: the split, the unit cap and SRM's.
EXTRA_JOB_SETTINGS = ("n_iter", "test_size", "seed", "engine", "max_units", "class_order")


def split_images(labels: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """The fit and held-out image indices, (m,) and (t,), of ``params`` (an ``AnalysisParams.as_dict()``)."""
    order = None if params.get("class_order") is None else tuple(params["class_order"])
    return preproc.stratified_split(labels, params["test_size"], params["seed"], order)


def load_capped(source, subject: int, epoch: int, layer: str, fit_idx, test_idx,
                params: dict) -> tuple[np.ndarray, np.ndarray]:
    """One network's layer with ``params``' unit cap: fit (u × m) and held-out (u × t) float32 matrices."""
    with source.open(subject, epoch, layer) as arr:
        units = preproc.subsample_units(arr.shape[1], params["max_units"], params["seed"])
        return load_network(arr, units, fit_idx, test_idx)


def load_network(arr: ActivationArray, units_idx: np.ndarray, fit_idx, test_idx) -> tuple[np.ndarray, np.ndarray]:
    """One network's activations as float32 fit (units × m) and held-out (units × t) matrices.

    Parameters
    ----------
    arr : ActivationArray, shape (n_images, n_units_saved)
        One network's array of the layer (memory-mapped or read by slices).
    units_idx : ndarray of int, shape (u,)
        Units to keep (the analysis' unit cap), indices into the array's units.
    fit_idx, test_idx : ndarray of int, shapes (m,) and (t,)
        Images of the fit and held-out sets, indices into the array's images.
    """
    units = None if len(units_idx) == arr.shape[1] else units_idx
    sel = arr.columns(units, dtype=np.float32)  # (n_images, u), read by blocks
    if not np.isfinite(sel).all():
        raise UsageError(f"{arr.name} contains NaN or Inf activations (a diverged network?); retrain that "
                         f"subject or leave it out with --only-subjects")
    X = sel.T  # (n_units, n_images): the library's orientation
    return X[:, fit_idx], X[:, test_idx]  # (u, m), (u, t): copies, the mapped file is let go
