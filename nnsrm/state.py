"""What made each output, and whether a complete job still matches what a run asks for.

Every completion marker (:mod:`nnsrm.atomic`) carries a *record* under
``"made_with"``: the settings and the inputs that determine the job's outputs.

- stage 1 (one subject): the training fields of the resolved configuration
  (:data:`STAGE1_FIELDS`; ``seed`` is the ``--seed`` of subject 0; a record
  written before ``rmsprop_form`` and ``subtract_mean`` were recorded reads
  as their values of that time, :data:`RECORDED_LATER`);
- stage 2 (one subject × epoch): ``stage1``, the SHA-256 of the subject's
  stage-1 marker (which lists every weight file's checksum), and the
  extraction parameters ``max_units`` and ``analysed_layers``;
- stage 3 (one epoch × layer): ``params`` (:class:`nnsrm.analysis.AnalysisParams`),
  ``subjects``, and ``inputs``: the SHA-256 of every subject's stage-2 marker
  for that epoch (and for the final epoch, which the ``*_final_wrsm``
  comparisons read), and of ``test_labels.npy``.

A job is *complete* if its marker and files are whole
(:func:`nnsrm.atomic.marker_status`); a complete job is *stale* if its record
differs from the one the current run (or, for ``status.py``, the current
configuration and inputs) would write. The stage commands check every job
before writing anything: a stale job stops the run with one line naming the
first difference and the way out (:class:`nnsrm.errors.StaleOutputError`, exit
status 2); ``--overwrite`` redoes it. A marker written before records existed
counts as stale.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterable, Sequence

from nnsrm import atomic
from nnsrm.errors import StaleOutputError
from nnsrm.paths import ResultsLayout

log = logging.getLogger(__name__)

RECORD_KEY = "made_with"

#: The configuration fields that determine a subject's stage-1 outputs, in the order differences are named.
STAGE1_FIELDS = ("data", "model", "seed", "n_epochs", "batch_size", "logged_epochs", "optimizer",
                 "learning_rate", "lr_decay", "plateau_factor", "plateau_patience", "plateau_min_lr",
                 "augment", "resnet_variant", "rmsprop_form", "subtract_mean")

#: Fields recorded since a later version, with the value every run made before then used: a record
#: without one of them was made with that value.
RECORDED_LATER = {"rmsprop_form": "keras3", "subtract_mean": True}

#: The command-line flag that sets each recorded field (fields without one come from nnsrm/config.py).
FLAGS = {"data": "--data", "model": "--model", "seed": "--seed", "n_epochs": "--epochs",
         "batch_size": "--batch-size", "max_units": "--max-units", "k": "--k", "n_iter": "--n-iter",
         "test_size": "--test-size", "engine": "--srm-engine", "class_order": "--class-order",
         "subjects": "--only-subjects"}

#: What each stage's record of its inputs is called in messages.
_UPSTREAM = {"stage1": "stage-1 outputs", "inputs": "stage-2 outputs"}

_LEGACY = "was made by an earlier nnsrm that did not record its settings and inputs"


def as_json(value):
    """``value`` as JSON gives it back (tuples become lists), so records compare equal after a round trip."""
    return json.loads(json.dumps(value, default=str))


# --------------------------------------------------------------------------- the records

def stage1_record(cfg) -> dict:
    """What determines one subject's stage-1 outputs: :data:`STAGE1_FIELDS` of ``cfg`` (an ExperimentConfig).

    ``n_subjects`` is not part of it (subject ``s`` trains with seed
    ``seed + s`` however many there are), nor are the fields only later stages use.
    """
    d = cfg.to_dict()
    return as_json({name: d[name] for name in STAGE1_FIELDS})


def stage2_record(cfg, layout: ResultsLayout, subject: int) -> dict:
    """What determines one subject × epoch's stage-2 outputs: its stage-1 outputs and the extraction parameters."""
    return as_json({"stage1": atomic.marker_digest(layout.subject_dir(subject)),
                    "max_units": cfg.max_units, "analysed_layers": list(cfg.analysed_layers)})


def stage3_inputs(layout: ResultsLayout, epoch: int, subjects: Sequence[int], final_epoch: int | None = None) -> dict:
    """The checksums of what one epoch's stage-3 jobs read (see :meth:`nnsrm.activations.ActivationSource.input_digests`).

    Stage 2's folders: every subject's stage-2 marker and the labels; a
    registered condition: every array file and the labels. With
    ``final_epoch`` (another epoch), that epoch's too: the ``*_final_wrsm``
    comparisons read its activity.
    """
    from nnsrm.activations import open_source  # activations imports this module's neighbours

    source = open_source(layout)
    out = dict(source.input_digests(epoch, subjects))
    if final_epoch is not None and int(final_epoch) != int(epoch):
        out.update(source.input_digests(int(final_epoch), subjects))
    return out


def stage3_record(layout: ResultsLayout, epoch: int, subjects: Sequence[int], params: dict) -> dict:
    """What determines one epoch × layer's stage-3 outputs: the analysis parameters, the subjects, their inputs
    (the final epoch's too, ``params["final_epoch"]``)."""
    return as_json({"params": params, "subjects": [int(s) for s in subjects],
                    "inputs": stage3_inputs(layout, epoch, subjects, params.get("final_epoch"))})


def recorded(directory) -> dict | None:
    """The record in ``directory``'s completion marker (None if the marker has none or is unreadable)."""
    info = atomic.read_marker(directory)
    record = None if info is None else info.get(RECORD_KEY)
    return record if isinstance(record, dict) else None


# --------------------------------------------------------------------------- comparing

def _show(value) -> str:
    if value is None:
        return "(default)"
    if isinstance(value, (list, tuple)):
        return " ".join(_show(v) for v in value) if value else "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _setting(key: str, value) -> str:
    flag = FLAGS.get(key)
    return f"{flag} {_show(value)}" if flag else f"{key}={_show(value)}"


def difference(old: dict | None, new: dict) -> str | None:
    """The first difference between a recorded and a wanted record, in words; None if they agree.

    Examples: ``"was made with --seed 0, this run asks for --seed 5"``;
    ``"was made from other stage-2 outputs: activations subj01 epoch 001 changed since"``.
    """
    if old is None:
        return _LEGACY
    old, new = as_json(old), as_json(new)
    for key in new:
        a, b = old.get(key, RECORDED_LATER.get(key)), new[key]
        if a == b:
            continue
        if key in _UPSTREAM:
            if isinstance(b, dict):  # stage 3: one checksum per input
                a = a if isinstance(a, dict) else {}
                changed = next((name for name in b if a.get(name) != b[name]), key)
                now = "is missing or incomplete now" if b.get(changed) is None else "changed since"
                return f"was made from other {_UPSTREAM[key]}: {changed} {now}"
            now = "are incomplete now" if b is None else "were made again since"
            return f"was made from other {_UPSTREAM[key]}: the subject's weights {now}"
        if isinstance(b, dict):  # the analysis parameters: name the first that differs
            a = a if isinstance(a, dict) else {}
            sub = next((k for k in b if a.get(k) != b[k]), key)
            return f"was made with {_setting(sub, a.get(sub))}, this run asks for {_setting(sub, b.get(sub))}"
        return f"was made with {_setting(key, a)}, this run asks for {_setting(key, b)}"
    return None


def job_state(directory, wanted: dict | None, verify: bool = False) -> tuple[str, str]:
    """``(state, detail)`` of the job whose marker lives in ``directory``.

    ``state`` is ``"complete"``, ``"stale"`` (complete, but :func:`difference`
    finds its record differs from ``wanted``; ``detail`` says how),
    ``"missing"`` or ``"corrupt"`` (see :func:`nnsrm.atomic.marker_status`).
    ``wanted=None`` skips the comparison.
    """
    state = atomic.marker_status(directory, verify=verify)
    if state != "complete" or wanted is None:
        return state, ""
    diff = difference(recorded(directory), wanted)
    return ("stale", diff) if diff else ("complete", "")


def stale_message(name: str, directory, diff: str, n_more: int = 0) -> str:
    """The one line that stops a run on a stale job."""
    more = f" (and {n_more} more complete job{'s' if n_more > 1 else ''} of this stage)" if n_more else ""
    return (f"{name} ({directory}) {diff}; pass --overwrite to redo it{more}, or use another --root "
            f"(status.py lists such jobs as stale)")


def refuse_stale(jobs: Iterable[tuple[str, Path, dict]], overwrite: bool = False) -> None:
    """Stop before anything is written if a complete job was made otherwise than ``jobs`` ask.

    Parameters
    ----------
    jobs : iterable of (name, directory, wanted record)
        Every job the run is about to consider.
    overwrite : bool
        ``--overwrite``: stale jobs will be redone, so nothing is refused.

    Raises
    ------
    StaleOutputError
        Naming the first stale job and its first difference, and the way out.
    """
    if overwrite:
        return
    stale = []
    for name, directory, wanted in jobs:
        state, diff = job_state(directory, wanted)
        if state == "stale":
            stale.append((name, directory, diff))
    if stale:
        name, directory, diff = stale[0]
        raise StaleOutputError(stale_message(name, directory, diff, len(stale) - 1))


def _done(directory, wanted: dict, name: str, overwrite: bool) -> bool:
    """True if the job is complete with ``wanted`` (skip it); raises if complete otherwise and not ``overwrite``."""
    if overwrite:
        return False
    state, diff = job_state(directory, wanted)
    if state == "stale":
        raise StaleOutputError(stale_message(name, directory, diff))
    return state == "complete"


def run_job(directory, wanted: dict, name: str, overwrite: bool, work: Callable[[], dict], skipped: dict) -> dict:
    """Run one job's ``work`` under its lock, unless it is already complete with the same record.

    A complete job with the same record returns ``skipped`` without waiting for
    the lock. Otherwise the job's lock (:func:`nnsrm.atomic.job_lock`) is taken,
    waiting if another process holds it, and the state is checked again: a
    writer that held the lock may just have completed the job. ``work`` writes
    the outputs and the marker (with ``wanted`` as its record).

    Raises
    ------
    StaleOutputError
        If the job is complete with another record and ``overwrite`` is False.
    """
    if _done(directory, wanted, name, overwrite):
        log.info("%s: complete, skipped (--overwrite redoes it)", name)
        return skipped
    with atomic.job_lock(directory, name):
        if _done(directory, wanted, name, overwrite):
            log.info("%s: completed by another process meanwhile; skipped", name)
            return skipped
        return work()


def marker_fields(wanted: dict) -> dict:
    """The keyword arguments of :func:`nnsrm.atomic.write_marker` that store ``wanted`` as the record."""
    return {RECORD_KEY: as_json(wanted)}


# --------------------------------------------------------------------------- condition-level metadata

def write_json_if_changed(path, obj: dict, same: Callable[[dict], bool] | None = None) -> bool:
    """Write ``obj`` as JSON (atomically) unless ``path`` already holds the same; True if written.

    ``same(existing)`` decides sameness (default: equal after a JSON round trip),
    e.g. to ignore the time a ``config.json`` was written.
    """
    path = Path(path)
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except (OSError, ValueError):
            existing = None
        if existing is not None and (same(existing) if same else existing == as_json(obj)):
            return False
    atomic.write_json(path, obj)
    return True


def write_npy_if_changed(path, array) -> bool:
    """Save ``array`` as ``.npy`` (atomically) unless ``path`` already holds the same array; True if written."""
    import numpy as np

    path = Path(path)
    if path.is_file():
        try:
            old = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            old = None
        if old is not None and old.dtype == array.dtype and np.array_equal(old, array):
            return False
    atomic.save_npy(path, array)
    return True

