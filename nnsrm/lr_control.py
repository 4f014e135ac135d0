"""The learning rate of stage 1: inverse-time decay at every step, and ReduceLROnPlateau per epoch.

The rate of update ``t`` (counted from 0 over the whole run) is
``base / (1 + lr_decay * t)`` — Keras 2's ``decay`` argument, which the paper
used. ``base`` starts at ``cfg.learning_rate``; after each epoch the plateau
rule (:class:`PlateauRule`, as ``keras.callbacks.ReduceLROnPlateau`` with
``min_delta=1e-4`` and no cooldown) multiplies it by ``plateau_factor`` when
the validation loss has not improved for ``plateau_patience`` epochs, down to
``plateau_min_lr``.

Both parts live in the optimiser, so every training path computes them the
same way: ``base`` is a variable of the optimiser (saved with its state in a
checkpoint, stacked per seed when seeds train together), and the decay is a
``LearningRateSchedule`` of the optimiser's own step counter. The plateau rule
runs on the host between epochs and writes the new ``base`` into the
optimiser's state.
"""

from __future__ import annotations

import dataclasses
import math

#: ReduceLROnPlateau's threshold: an improvement smaller than this is no improvement.
PLATEAU_MIN_DELTA = 1e-4
#: Name of the optimiser variable that holds the base rate.
BASE_RATE_NAME = "base_learning_rate"


def _schedule_class():
    import keras

    class InverseTimeDecay(keras.optimizers.schedules.LearningRateSchedule):
        """``base / (1 + decay * step)``; ``base`` is a variable of the optimiser."""

        def __init__(self, base, decay: float):
            self.base = base
            self.decay = float(decay)

        def __call__(self, step):
            step = keras.ops.cast(step, self.base.dtype)
            return self.base.value / (1.0 + self.decay * step)

        def get_config(self):
            return {"decay": self.decay}

    return InverseTimeDecay


def attach_learning_rate_control(optimizer, cfg):
    """Make ``optimizer``'s rate ``base / (1 + cfg.lr_decay * step)`` with ``base`` one of its variables.

    Call it before the optimiser is built. Works for any Keras optimiser
    created with a constant learning rate.

    Parameters
    ----------
    optimizer : keras.optimizers.Optimizer
    cfg : nnsrm.config.ExperimentConfig

    Returns
    -------
    keras.Variable
        The base rate (float32 scalar), tracked in ``optimizer.variables``.
    """
    import keras

    if optimizer.built:
        raise ValueError("attach_learning_rate_control needs an optimizer that is not built yet")
    base = keras.Variable(float(cfg.learning_rate), dtype="float32", trainable=False, name=BASE_RATE_NAME)
    # Attribute assignment is how a Keras optimiser tracks a variable: it joins optimizer.variables.
    optimizer.base_learning_rate = base
    optimizer.learning_rate = _schedule_class()(base, cfg.lr_decay)
    if not any(v is base for v in optimizer.variables):
        raise RuntimeError(f"{type(optimizer).__name__} did not track the base learning rate variable")
    return base


def base_rate_index(optimizer) -> int:
    """Position of the base rate in ``optimizer.variables`` (see :func:`attach_learning_rate_control`)."""
    for i, v in enumerate(optimizer.variables):
        if v is getattr(optimizer, "base_learning_rate", None):
            return i
    raise ValueError("the optimizer has no base learning rate; use configured_optimizer(cfg)")


def configured_optimizer(cfg):
    """The configured optimiser (``make_optimizer``) with the decay and plateau control attached."""
    from nnsrm.optimizers import make_optimizer

    optimizer = make_optimizer(cfg)
    attach_learning_rate_control(optimizer, cfg)
    return optimizer


def decayed_rate(base: float, decay: float, step: int) -> float:
    """``base / (1 + decay * step)``: the rate of update ``step`` (for history.csv)."""
    return float(base) / (1.0 + float(decay) * int(step))


@dataclasses.dataclass
class PlateauRule:
    """ReduceLROnPlateau on the validation loss, acting on the base rate (host side, one per subject).

    Attributes
    ----------
    base_lr : float
        The current base rate.
    best : float
        Lowest validation loss so far.
    wait : int
        Epochs since the last improvement (or reduction).
    """

    base_lr: float
    factor: float
    patience: int
    min_lr: float
    best: float = math.inf
    wait: int = 0

    @classmethod
    def from_config(cls, cfg) -> PlateauRule:
        return cls(base_lr=float(cfg.learning_rate), factor=float(cfg.plateau_factor),
                   patience=int(cfg.plateau_patience), min_lr=float(cfg.plateau_min_lr))

    def update(self, val_loss: float) -> bool:
        """Account for one epoch's validation loss; True if the base rate was reduced."""
        val_loss = float(val_loss)
        if val_loss < self.best - PLATEAU_MIN_DELTA:
            self.best, self.wait = val_loss, 0
            return False
        self.wait += 1
        if self.wait >= self.patience and self.base_lr > self.min_lr:
            self.base_lr = max(self.base_lr * self.factor, self.min_lr)
            self.wait = 0
            return True
        return False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> PlateauRule:
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})
