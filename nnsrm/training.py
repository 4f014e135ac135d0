"""Stage 1: train a group of subjects (networks) and save their weights at every logged epoch.

One job per group of subjects (``--group-size``; one subject per job is the
sequential case). The job is a plain function of (config, results root,
subjects): for each subject it builds the network from the subject's seed,
saves the untrained weights as epoch 0, trains with the configured optimiser
and learning-rate control (:mod:`nnsrm.lr_control`), and saves the weights
after each logged epoch and ``history.csv`` after every epoch, each write
atomic. How the epochs run is an *engine*'s business:
:class:`nnsrm.compiled_training.CompiledEngine` (JAX: the group's seeds in
compiled programs) or :class:`nnsrm.fit_training.FitEngine` (any backend:
``model.fit``, one subject after another). Both draw the randomness of epoch
``e`` from ``(seed, e)`` (:mod:`nnsrm.seeding`).

At every logged epoch each subject also gets a checkpoint
(:mod:`nnsrm.checkpoint`), so a killed job resumes from the last logged epoch
and ends with the weights an uninterrupted run gives. A completion marker is
written last, recording what made the outputs (:func:`nnsrm.state.stage1_record`),
and the checkpoint removed. A subject complete with other settings stops the
job (:class:`nnsrm.errors.StaleOutputError`) unless ``overwrite``; the job holds
its subjects' locks (:func:`nnsrm.atomic.job_lock`) while it writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nnsrm import atomic, checkpoint, interrupts, state
from nnsrm.errors import StaleOutputError, UsageError
from nnsrm.model_state import save_weights  # noqa: F401 - part of this module's API
from nnsrm.paths import ResultsLayout
from nnsrm.provenance import write_config_json

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


@functools.lru_cache(maxsize=2)
def cached_dataset(name: str, data_dir: str | None, subtract_mean: bool | None = None):
    """Load a dataset once per process (jobs of one stage share it); see :func:`nnsrm.data_loader.load_dataset`."""
    from nnsrm import data_loader

    return data_loader.load_dataset(name, data_dir, subtract_mean=subtract_mean)


ENGINES = ("auto", "compiled", "fit")


def subject_outputs(cfg, layout: ResultsLayout, subject: int) -> list:
    """The files a finished subject has: weights at each logged epoch and history.csv."""
    return [layout.weights_path(subject, e) for e in cfg.logged_epochs] + [layout.history_path(subject)]


def make_engine(kind: str, cfg, data, seeds, strategy: str | None = None):
    """The engine that trains ``seeds`` together: ``"compiled"`` (JAX), ``"fit"`` (any backend) or ``"auto"``.

    Raises
    ------
    UsageError
        ``"compiled"`` asked for on a backend other than JAX, or an unknown kind.
    """
    import keras

    if kind not in ENGINES:
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {kind!r}")
    backend = keras.backend.backend()
    if kind == "auto":
        kind = "compiled" if backend == "jax" else "fit"
    if kind == "compiled":
        if backend != "jax":
            raise UsageError(f"training seeds together needs the JAX backend (KERAS_BACKEND={backend})")
        from nnsrm.compiled_training import CompiledEngine

        return CompiledEngine(cfg, data, seeds, strategy=strategy)
    from nnsrm.fit_training import FitEngine

    return FitEngine(cfg, data, seeds)


@dataclasses.dataclass
class _Subject:
    """A subject being trained: where it is and what it has logged."""

    index: int  # position in the engine
    subject: int
    seed: int
    epoch: int
    rule: object  # lr_control.PlateauRule
    history: list
    seconds: float = 0.0


def _resume_point(cfg, layout, subject, seed):
    """The subject's checkpoint if it can continue this run, else None (with the reason logged)."""
    ckpt = checkpoint.load_checkpoint(layout.subject_dir(subject))
    if ckpt is None:
        return None
    why = None
    if ckpt.seed != seed or not checkpoint.same_config(ckpt.config, cfg.to_dict()):
        why = "it was made with another configuration or seed"
    elif not 0 < ckpt.epoch <= cfg.n_epochs or len(ckpt.history) != ckpt.epoch:
        why = f"its epoch {ckpt.epoch} does not fit this run"
    else:
        missing = [e for e in cfg.logged_epochs if e <= ckpt.epoch and not layout.weights_path(subject, e).exists()]
        if missing:
            why = f"the weights of epoch(s) {missing} are missing"
    if why:
        log.warning("subject %d: not resuming from %s (%s); training from the start",
                    subject, checkpoint.checkpoint_path(layout.subject_dir(subject)), why)
        return None
    return ckpt


def train_group(cfg, root: str | Path, subjects, data_dir: str | None = None, overwrite: bool = False,
                progress: bool = True, engine: str = "auto", strategy: str | None = None) -> list:
    """Train the subjects ``subjects`` of experiment ``cfg`` together (one stage-1 job).

    Subjects complete with the same settings are skipped (unless
    ``overwrite``); a subject with a checkpoint from this configuration
    continues from it.

    Parameters
    ----------
    cfg : nnsrm.config.ExperimentConfig
    root : path
        Results root.
    subjects : sequence of int
    data_dir : str, optional
        Folder of the dataset archive (see :func:`nnsrm.data_loader.load_dataset`).
    overwrite : bool
        Retrain complete subjects from scratch (their checkpoints are ignored too).
    progress : bool
        A per-epoch progress bar on a terminal.
    engine : {"auto", "compiled", "fit"}
        See :func:`make_engine`.
    strategy : {"vmap", "loop"}, optional
        How the compiled engine runs a group (default: by device; see
        :mod:`nnsrm.compiled_training`).

    Returns
    -------
    list of dict
        Per subject, ``{"subject", "skipped", "final_val_accuracy", "seconds",
        "resumed_from"}`` (only ``subject`` and ``skipped`` for a skipped one).

    Raises
    ------
    nnsrm.errors.StaleOutputError
        If a subject is complete but was trained with other settings (and not ``overwrite``).
    """
    layout = ResultsLayout(root, cfg.data, cfg.model)
    subjects = [int(s) for s in subjects]
    record = state.stage1_record(cfg)
    results = {s: {"subject": s, "skipped": True} for s in subjects}
    todo = _to_train(layout, subjects, record, overwrite)
    if not todo:
        return [results[s] for s in subjects]
    with contextlib.ExitStack() as locks:
        for s in todo:  # in subject order, so two jobs sharing subjects cannot wait on each other
            locks.enter_context(atomic.job_lock(layout.subject_dir(s), _job_name(s)))
        # A writer that held a lock may have completed its subjects meanwhile.
        todo = _to_train(layout, todo, record, overwrite)
        if todo:
            results.update(_train(cfg, root, layout, todo, record, data_dir, overwrite, progress, engine, strategy))
    return [results[s] for s in subjects]


def _job_name(subject: int) -> str:
    return f"train subj{subject:02d}"


def _to_train(layout, subjects, record, overwrite) -> list:
    """The subjects to train: not complete with ``record`` (all of them with ``overwrite``).

    Raises
    ------
    nnsrm.errors.StaleOutputError
        A subject complete with another record, without ``overwrite``.
    """
    todo = []
    for s in subjects:
        subj_dir = layout.subject_dir(s)
        if overwrite:
            todo.append(s)
            continue
        st, diff = state.job_state(subj_dir, record)
        if st == "stale":
            raise StaleOutputError(state.stale_message(_job_name(s), subj_dir, diff))
        if st == "complete":
            checkpoint.remove_checkpoint(subj_dir)  # left if a run died between marker and clean-up
            log.info("subject %d already trained; skipped (use --overwrite to redo)", s)
        else:
            todo.append(s)
    return todo


def _train(cfg, root, layout, todo, record, data_dir, overwrite, progress, engine, strategy) -> dict:
    """The body of :func:`train_group` for the subjects ``todo``, run while holding their locks."""
    from tqdm.auto import tqdm

    from nnsrm.jax_cache import enable_compilation_cache
    from nnsrm.lr_control import PlateauRule, decayed_rate

    results = {}
    enable_compilation_cache(root)
    t_start = time.perf_counter()
    data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir), cfg.subtract_mean)
    seeds = [cfg.subject_seed(s) for s in todo]
    eng = make_engine(engine, cfg, data, seeds, strategy=strategy)
    steps = eng.steps_per_epoch
    members = []
    for i, (s, seed) in enumerate(zip(todo, seeds)):
        subj_dir = layout.subject_dir(s)
        atomic.clear_marker(subj_dir)
        atomic.remove_stale_temporaries(subj_dir)
        ckpt = None if overwrite else _resume_point(cfg, layout, s, seed)
        if ckpt is not None:
            try:
                eng.set_state(i, ckpt.state)
            except ValueError as err:
                log.warning("subject %d: not resuming from its checkpoint (%s); training from the start", s, err)
                ckpt = None
        if ckpt is not None:
            log.info("subject %d: resuming from its checkpoint at epoch %d", s, ckpt.epoch)
            members.append(_Subject(i, s, seed, ckpt.epoch, PlateauRule.from_dict(ckpt.plateau), list(ckpt.history)))
            atomic.write_text(layout.history_path(s), _history_csv(ckpt.history))
            continue
        checkpoint.remove_checkpoint(subj_dir)
        write_config_json(subj_dir / "config.json", cfg.to_dict(), subject=s, seed=seed)
        eng.save_weights(i, layout.weights_path(s, 0))  # epoch 0: the untrained network
        members.append(_Subject(i, s, seed, 0, PlateauRule.from_config(cfg), []))
    resumed = {m.subject: m.epoch for m in members}
    label = f"train subj{todo[0]:02d}" + (f"+{len(todo) - 1}" if len(todo) > 1 else "")
    bar = tqdm(total=cfg.n_epochs, initial=min(m.epoch for m in members), desc=label, unit="epoch", leave=False,
               disable=not progress or not sys.stderr.isatty())
    while True:
        interrupts.check()  # Ctrl-C that a library caught or converted: stop between epochs
        pending = [m for m in members if m.epoch < cfg.n_epochs]
        if not pending:
            break
        # Subjects resumed at different epochs catch up one epoch at a time, in the same group.
        now = min(m.epoch for m in pending)
        active = [m.epoch == now for m in members]
        t0 = time.perf_counter()
        metrics = eng.run_epoch([m.epoch for m in members], active)
        share = (time.perf_counter() - t0) / sum(active)
        for m, met in zip(members, metrics):
            if met is None:
                continue
            lr = decayed_rate(m.rule.base_lr, cfg.lr_decay, m.epoch * steps)
            m.epoch += 1  # our epoch e means "after e epochs"
            m.seconds += share
            m.history.append({"epoch": m.epoch, **met, "learning_rate": lr, "seconds": share})
            if m.rule.update(met["val_loss"]):
                eng.set_base_rate(m.index, m.rule.base_lr)
                log.info("subject %d epoch %d: learning rate reduced to %.3g", m.subject, m.epoch, m.rule.base_lr)
            if m.epoch in cfg.logged_epochs:
                eng.save_weights(m.index, layout.weights_path(m.subject, m.epoch))
            atomic.write_text(layout.history_path(m.subject), _history_csv(m.history))
            if m.epoch in cfg.logged_epochs:
                checkpoint.save_checkpoint(layout.subject_dir(m.subject), checkpoint.Checkpoint(
                    epoch=m.epoch, state=eng.get_state(m.index), plateau=m.rule.to_dict(), history=m.history,
                    seed=m.seed, config=cfg.to_dict()))
        bar.update(1)
        last = [m.history[-1] for m in members if m.history]
        if last:
            bar.set_postfix(loss=f"{np.mean([r['loss'] for r in last]):.3f}",
                            val_acc=f"{np.mean([r['val_accuracy'] for r in last]):.3f}")
    bar.close()
    for m in members:
        subj_dir = layout.subject_dir(m.subject)
        atomic.write_marker(subj_dir, subject_outputs(cfg, layout, m.subject), seed=m.seed,
                            engine=getattr(eng, "name", type(eng).__name__), trained_with=todo,
                            **state.marker_fields(record))
        checkpoint.remove_checkpoint(subj_dir)
        val_acc = float(m.history[-1]["val_accuracy"])
        results[m.subject] = {"subject": m.subject, "skipped": False, "final_val_accuracy": val_acc,
                              "seconds": m.seconds, "resumed_from": resumed[m.subject]}
        log.info("subject %d trained (%s), test accuracy %.3f", m.subject, eng.name, val_acc)
    log.info("subjects %s: %.1f s in all", todo, time.perf_counter() - t_start)
    return results


def train_subject(cfg, root: str | Path, subject: int, data_dir: str | None = None,
                  overwrite: bool = False, progress: bool = True, engine: str = "auto") -> dict:
    """Train one subject (:func:`train_group` of one); returns its result dict."""
    return train_group(cfg, root, [subject], data_dir=data_dir, overwrite=overwrite, progress=progress,
                       engine=engine)[0]


def _history_csv(rows) -> str:
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS).to_csv(index=False)
