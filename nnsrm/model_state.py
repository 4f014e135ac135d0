"""Moving a network's variables between Keras objects, host arrays and weight files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnsrm import atomic
from nnsrm.checkpoint import TrainState


def _numpy(variable) -> np.ndarray:
    import keras

    return np.array(keras.ops.convert_to_numpy(variable.value))


def read_state(model, optimizer=None) -> TrainState:
    """The current values of ``model``'s variables (and ``optimizer``'s, if given) as host arrays."""
    return TrainState(trainable=[_numpy(v) for v in model.trainable_variables],
                      non_trainable=[_numpy(v) for v in model.non_trainable_variables],
                      optimizer=[_numpy(v) for v in optimizer.variables] if optimizer is not None else [])


def _assign(variables, values, what: str) -> None:
    variables = list(variables)
    if len(variables) != len(values):
        raise ValueError(f"{what}: {len(values)} arrays for {len(variables)} variables")
    for v, a in zip(variables, values):
        if tuple(v.shape) != tuple(np.shape(a)):
            raise ValueError(f"{what}: variable {v.path} has shape {tuple(v.shape)}, array {np.shape(a)}")
        v.assign(np.asarray(a, dtype=v.dtype))


def assign_state(model, state: TrainState, optimizer=None) -> None:
    """Set ``model``'s (and ``optimizer``'s, if given and built) variables to ``state``.

    Raises
    ------
    ValueError
        If the numbers or shapes of the arrays do not match the variables.
    """
    _assign(model.trainable_variables, state.trainable, "trainable variables")
    _assign(model.non_trainable_variables, state.non_trainable, "non-trainable variables")
    if optimizer is not None:
        _assign(optimizer.variables, state.optimizer, "optimizer variables")


def save_weights(model, path: str | Path) -> None:
    """``model.save_weights`` through a temporary file, renamed when whole."""
    with atomic.atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
