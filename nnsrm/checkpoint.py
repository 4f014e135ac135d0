"""A subject's training checkpoint: everything needed to continue after a logged epoch.

At every logged epoch stage 1 writes ``subj<NN>/checkpoint.npz`` (replacing
the previous one atomically, so a subject has at most one) holding:

- the network's trainable and non-trainable variables (batch-norm statistics,
  the dropout/augmentation seed states),
- the optimiser's variables (step counter, base learning rate, moments),
- the plateau rule's state, the history rows so far, the epoch, the seed and
  the resolved configuration.

No other random state exists (:mod:`nnsrm.seeding`), so a run resumed from a
checkpoint continues exactly as the uninterrupted run would have. The file is
removed once the subject is complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from nnsrm import atomic

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT_VERSION = 1


@dataclasses.dataclass
class TrainState:
    """The variables of one network and its optimiser, as host arrays in Keras' variable order.

    Attributes
    ----------
    trainable, non_trainable : list of arrays
        ``model.trainable_variables`` and ``model.non_trainable_variables``.
    optimizer : list of arrays
        ``optimizer.variables``.
    """

    trainable: list
    non_trainable: list
    optimizer: list


@dataclasses.dataclass
class Checkpoint:
    """One subject after ``epoch`` epochs (see the module docstring)."""

    epoch: int
    state: TrainState
    plateau: dict
    history: list
    seed: int
    config: dict


def checkpoint_path(subject_dir: str | Path) -> Path:
    return Path(subject_dir) / CHECKPOINT_NAME


def save_checkpoint(subject_dir: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``subject_dir/checkpoint.npz`` atomically (replacing any previous one)."""
    arrays = {}
    for prefix, values in (("t", ckpt.state.trainable), ("n", ckpt.state.non_trainable),
                           ("o", ckpt.state.optimizer)):
        for i, v in enumerate(values):
            arrays[f"{prefix}{i:04d}"] = np.asarray(v)
    meta = {"format": FORMAT_VERSION, "epoch": int(ckpt.epoch), "plateau": ckpt.plateau,
            "history": ckpt.history, "seed": int(ckpt.seed), "config": ckpt.config,
            "counts": [len(ckpt.state.trainable), len(ckpt.state.non_trainable), len(ckpt.state.optimizer)]}
    arrays["meta"] = np.array(json.dumps(meta))  # a unicode scalar: loads without pickle
    path = checkpoint_path(subject_dir)
    atomic.save_npz(path, **arrays)
    return path


def load_checkpoint(subject_dir: str | Path) -> Checkpoint | None:
    """The checkpoint in ``subject_dir``, or None if there is none or it is unreadable."""
    path = checkpoint_path(subject_dir)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {meta.get('format')!r}")
            nt, nn, no = meta["counts"]
            state = TrainState([z[f"t{i:04d}"] for i in range(nt)], [z[f"n{i:04d}"] for i in range(nn)],
                               [z[f"o{i:04d}"] for i in range(no)])
        return Checkpoint(epoch=int(meta["epoch"]), state=state, plateau=meta["plateau"],
                          history=meta["history"], seed=int(meta["seed"]), config=meta["config"])
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as err:
        log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
        return None


def remove_checkpoint(subject_dir: str | Path) -> None:
    """Delete the subject's checkpoint, if any."""
    path = checkpoint_path(subject_dir)
    if path.exists():
        path.unlink()


def same_config(saved: dict, current: dict) -> bool:
    """Whether a checkpoint's configuration is the current one (compared as JSON)."""
    return json.loads(json.dumps(saved)) == json.loads(json.dumps(current))
