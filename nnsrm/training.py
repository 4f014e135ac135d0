"""Stage 1: train one subject (network) and save its weights at every logged epoch.

One job per subject. The job is a plain function of (config, results root,
subject): it builds the network from the subject's seed, saves the untrained
weights as epoch 0, trains with the configured optimiser and schedule, and
saves the weights after each logged epoch and ``history.csv`` after every
epoch, each write atomic. A completion marker is written last; a subject
without one (a killed run) is trained again from scratch, which gives the same
result because everything is seeded.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nnsrm import atomic, state
from nnsrm.paths import ResultsLayout
from nnsrm.provenance import write_config_json

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


@functools.lru_cache(maxsize=2)
def cached_dataset(name: str, data_dir: str | None, subtract_mean: bool | None = None):
    """Load a dataset once per process (jobs of one stage share it); see :func:`nnsrm.data_loader.load_dataset`."""
    from nnsrm import data_loader

    return data_loader.load_dataset(name, data_dir, subtract_mean=subtract_mean)


def _callbacks(cfg, layout, subject, n_steps_per_epoch, progress):
    import keras
    from tqdm.auto import tqdm

    class LearningRateControl(keras.callbacks.Callback):
        """Inverse-time decay plus ReduceLROnPlateau on the validation loss.

        Keras 2's ``decay`` gave ``lr / (1 + decay * step)`` at every step; we
        set it at the start of each epoch from the step count (at the paper's
        1e-6 per step this differs from per-step decay by < 0.2 %). The plateau
        rule matches ``keras.callbacks.ReduceLROnPlateau`` (min_delta 1e-4,
        cooldown 0) acting on the base rate.
        """

        def __init__(self):
            super().__init__()
            self.base_lr = cfg.learning_rate
            self.best = np.inf
            self.wait = 0

        def current_lr(self, epoch):
            return self.base_lr / (1.0 + cfg.lr_decay * epoch * n_steps_per_epoch)

        def on_epoch_begin(self, epoch, logs=None):
            self.model.optimizer.learning_rate.assign(self.current_lr(epoch))

        def on_epoch_end(self, epoch, logs=None):
            logs["learning_rate"] = self.current_lr(epoch)
            val_loss = logs.get("val_loss", np.inf)
            if val_loss < self.best - 1e-4:
                self.best, self.wait = val_loss, 0
            else:
                self.wait += 1
                if self.wait >= cfg.plateau_patience and self.base_lr > cfg.plateau_min_lr:
                    self.base_lr = max(self.base_lr * cfg.plateau_factor, cfg.plateau_min_lr)
                    self.wait = 0
                    log.info("subject %d epoch %d: learning rate reduced to %.3g",
                             subject, epoch + 1, self.base_lr)

    class SaveAndLog(keras.callbacks.Callback):
        """Weights at logged epochs, history.csv every epoch, a progress bar."""

        def __init__(self):
            super().__init__()
            self.rows = []
            self.bar = tqdm(total=cfg.n_epochs, desc=f"train subj{subject:02d}", unit="epoch",
                            leave=False, disable=not progress or not sys.stderr.isatty())

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1  # Keras counts from 0; our epoch e means "after e epochs"
            row = {"epoch": done, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:-1] if k in logs},
                   "seconds": time.perf_counter() - self.t0}
            self.rows.append(row)
            if done in cfg.logged_epochs:
                save_weights(self.model, layout.weights_path(subject, done))
            table = pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)
            atomic.write_text(layout.history_path(subject), table.to_csv(index=False))
            self.bar.set_postfix(loss=f"{row['loss']:.3f}", val_acc=f"{row.get('val_accuracy', 0):.3f}")
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return [LearningRateControl(), SaveAndLog()]


def save_weights(model, path: Path) -> None:
    """``model.save_weights`` through a temporary file, renamed when whole."""
    with atomic.atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)


def subject_outputs(cfg, layout: ResultsLayout, subject: int) -> list:
    """The files a finished subject has: weights at each logged epoch and history.csv."""
    return [layout.weights_path(subject, e) for e in cfg.logged_epochs] + [layout.history_path(subject)]


def train_subject(cfg, root: str | Path, subject: int, data_dir: str | None = None,
                  overwrite: bool = False, progress: bool = True) -> dict:
    """Train subject ``subject`` of experiment ``cfg`` (a config.ExperimentConfig).

    Skipped if complete with the same settings (:mod:`nnsrm.state`); runs
    under the subject's lock, so a second writer waits instead of racing.

    Returns
    -------
    dict
        ``{"subject", "skipped", "final_val_accuracy", "seconds"}``.

    Raises
    ------
    nnsrm.errors.StaleOutputError
        If the subject is complete but was trained with other settings (and not ``overwrite``).
    """
    layout = ResultsLayout(root, cfg.data, cfg.model)
    return state.run_job(layout.subject_dir(subject), state.stage1_record(cfg), f"train subj{subject:02d}",
                         overwrite, lambda: _train_subject(cfg, root, subject, data_dir, progress),
                         skipped={"subject": subject, "skipped": True})


def _train_subject(cfg, root, subject, data_dir, progress) -> dict:
    """The body of :func:`train_subject`, run while holding the subject's lock."""
    import keras

    from nnsrm.models import build_model
    from nnsrm.optimizers import make_optimizer
    from nnsrm.jax_cache import enable_compilation_cache

    layout = ResultsLayout(root, cfg.data, cfg.model)
    subj_dir = layout.subject_dir(subject)
    atomic.clear_marker(subj_dir)
    atomic.remove_stale_temporaries(subj_dir)
    enable_compilation_cache(root)
    t0 = time.perf_counter()
    data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir), cfg.subtract_mean)
    seed = cfg.subject_seed(subject)
    model = build_model(cfg.model, data.input_shape, data.n_classes, seed,
                        augment=cfg.augment, resnet_variant=cfg.resnet_variant)
    model.compile(optimizer=make_optimizer(cfg), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    write_config_json(subj_dir / "config.json", cfg.to_dict(), subject=subject, seed=seed)
    save_weights(model, layout.weights_path(subject, 0))  # epoch 0: the untrained network
    steps = int(np.ceil(len(data.x_train) / cfg.batch_size))
    keras.utils.set_random_seed(seed)  # shuffling and dropout
    history = model.fit(data.x_train, data.y_train, batch_size=cfg.batch_size, epochs=cfg.n_epochs,
                        validation_data=(data.x_test, data.y_test), shuffle=True, verbose=0,
                        callbacks=_callbacks(cfg, layout, subject, steps, progress))
    atomic.write_marker(subj_dir, subject_outputs(cfg, layout, subject), seed=seed,
                        **state.marker_fields(state.stage1_record(cfg)))
    val_acc = float(history.history["val_accuracy"][-1])
    seconds = time.perf_counter() - t0
    log.info("subject %d trained in %.1f s, test accuracy %.3f", subject, seconds, val_acc)
    return {"subject": subject, "skipped": False, "final_val_accuracy": val_acc, "seconds": seconds}
