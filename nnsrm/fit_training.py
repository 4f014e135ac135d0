"""Stage 1's sequential engine: ``model.fit``, one epoch at a time, on every Keras backend.

Each subject has its own compiled Keras model. Before epoch ``e`` its dropout
and augmentation seed states are reset from ``(seed, e)`` and the training
images are put in the order of :func:`nnsrm.seeding.epoch_permutation`; then
``model.fit(..., epochs=1, shuffle=False)`` runs the epoch, with the test set
as validation data. The learning rate is the optimiser's own schedule
(:mod:`nnsrm.lr_control`). This is what :mod:`nnsrm.compiled_training` computes
for many seeds at once; both give the same networks up to float rounding.
"""

from __future__ import annotations

import numpy as np

from nnsrm import seeding
from nnsrm.checkpoint import TrainState
from nnsrm.lr_control import base_rate_index, configured_optimizer
from nnsrm.model_state import assign_state, read_state, save_weights


class FitEngine:
    """Trains the subjects ``seeds`` (a list of seeds) with ``model.fit``, one after another.

    The interface (shared with :class:`nnsrm.compiled_training.CompiledEngine`):
    ``run_epoch``, ``get_state``/``set_state``, ``set_base_rate``, ``save_weights``.
    """

    name = "fit"

    def __init__(self, cfg, data, seeds):
        import keras

        from nnsrm.models import build_model

        self.cfg, self.data, self.seeds = cfg, data, [int(s) for s in seeds]
        self.models, self.optimizers, self.initial_seed_states = [], [], []
        for seed in self.seeds:
            model = build_model(cfg.model, data.input_shape, data.n_classes, seed,
                                augment=cfg.augment, resnet_variant=cfg.resnet_variant)
            optimizer = configured_optimizer(cfg)
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            optimizer.build(model.trainable_variables)
            self.models.append(model)
            self.optimizers.append(optimizer)
            self.initial_seed_states.append(self._seed_states(model))
        # Weight files hold the network only: written from a model without an optimiser.
        self.writer = build_model(cfg.model, data.input_shape, data.n_classes, self.seeds[0],
                                  augment=cfg.augment, resnet_variant=cfg.resnet_variant)
        self._keras = keras

    @staticmethod
    def _seed_states(model) -> np.ndarray:
        ntv = model.non_trainable_variables
        return np.array([np.asarray(ntv[i].value) for i in seeding.seed_state_indices(model)],
                        dtype=np.int64).reshape(-1, 2)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.data.x_train) // self.cfg.batch_size)

    def get_state(self, i: int) -> TrainState:
        return read_state(self.models[i], self.optimizers[i])

    def set_state(self, i: int, state: TrainState) -> None:
        assign_state(self.models[i], state, self.optimizers[i])

    def set_base_rate(self, i: int, value: float) -> None:
        self.optimizers[i].variables[base_rate_index(self.optimizers[i])].assign(float(value))

    def save_weights(self, i: int, path) -> None:
        state = self.get_state(i)
        assign_state(self.writer, TrainState(state.trainable, state.non_trainable, []))
        save_weights(self.writer, path)

    def run_epoch(self, epochs, active) -> list:
        """Train each active subject ``i`` for its epoch ``epochs[i]`` (counted from 0).

        Returns
        -------
        list
            Per subject, ``{"loss", "accuracy", "val_loss", "val_accuracy"}``
            (floats) if it was active, else None.
        """
        x, y = self.data.x_train, self.data.y_train
        out = []
        for i, (epoch, on) in enumerate(zip(epochs, active)):
            if not on:
                out.append(None)
                continue
            model = self.models[i]
            ntv = model.non_trainable_variables
            states = seeding.epoch_seed_states(self.initial_seed_states[i], epoch)
            for j, idx in enumerate(seeding.seed_state_indices(model)):
                ntv[idx].assign(states[j].astype(ntv[idx].dtype))
            order = seeding.epoch_permutation(self.seeds[i], epoch, len(x))
            with seeding.rng_context():
                history = model.fit(x[order], y[order], batch_size=self.cfg.batch_size, epochs=1, shuffle=False,
                                    validation_data=(self.data.x_test, self.data.y_test), verbose=0)
            out.append({k: float(history.history[k][-1]) for k in ("loss", "accuracy", "val_loss", "val_accuracy")})
        return out
