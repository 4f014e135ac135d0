"""Optimisers of the study: Keras 3's, plus RMSprop with Keras 2's update, which the paper used.

Keras 2's RMSprop (the original study's ``keras.optimizers.rmsprop(lr=1e-4,
decay=1e-6)``) updated a weight ``w`` with gradient ``g`` as::

    v = rho * v + (1 - rho) * g**2
    w = w - lr * g / (sqrt(v) + epsilon)

Keras 3's ``keras.optimizers.RMSprop`` puts ``epsilon`` under the root,
``w = w - lr * g / sqrt(v + epsilon)``. The two agree once ``v >> epsilon``,
but where gradients are small (``v`` of order ``epsilon = 1e-7`` or below:
early steps, rarely active units) Keras 3 takes much smaller steps (for
``v = 1e-9``, about 10x smaller). :class:`Keras2RMSprop` restores Keras 2's
form; ``ExperimentConfig.rmsprop_form`` selects it and :func:`make_optimizer`
builds what a configuration asks for.

Adam needs no such variant: Keras 2 and Keras 3 both divide by
``sqrt(v_hat) + epsilon`` with the same bias correction and defaults.
Keras 2's ``decay`` argument (``lr / (1 + decay * step)``) is not an optimiser
argument in Keras 3; the training stage applies it (``ExperimentConfig.lr_decay``).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = ["RMSPROP_FORMS", "Keras2RMSprop", "make_optimizer"]

#: Values of ``ExperimentConfig.rmsprop_form``: where RMSprop's epsilon goes.
RMSPROP_FORMS = ("keras2", "keras3")


@keras.saving.register_keras_serializable(package="nnsrm")
class Keras2RMSprop(keras.optimizers.RMSprop):
    """``keras.optimizers.RMSprop`` with Keras 2's update, ``w -= lr * g / (sqrt(v) + epsilon)``.

    Same constructor, defaults (``rho=0.9``, ``epsilon=1e-7``, Keras 2's
    ``K.epsilon()``), state and serialisation as Keras 3's RMSprop; only the
    placement of ``epsilon`` differs (see the module docstring). The options
    Keras 2's RMSprop lacked keep Keras 3's meaning with the same placement:
    ``centered=True`` divides by ``sqrt(v - m**2) + epsilon`` with ``m`` the
    moving average of the gradients (as ``tf.keras``' RMSprop did), and
    ``momentum > 0`` accumulates the increment, ``a = momentum * a + increment;
    w -= a``. Backend-neutral (``keras.ops``), so it also works inside
    ``stateless_apply`` under JAX.
    """

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        velocity = self._velocities[index]
        rho = self.rho

        self.assign(velocity, ops.add(ops.multiply(rho, velocity),
                                      ops.multiply(1 - rho, ops.square(gradient))))
        if self.centered:
            average_grad = self._average_gradients[index]
            self.assign(average_grad, ops.add(ops.multiply(rho, average_grad),
                                              ops.multiply(1 - rho, gradient)))
            # v - m**2 >= 0 in exact arithmetic; round-off must not make the root NaN.
            second_moment = ops.maximum(ops.subtract(velocity, ops.square(average_grad)), 0.0)
        else:
            second_moment = velocity
        increment = ops.divide(ops.multiply(lr, gradient),
                               ops.add(ops.sqrt(second_moment), self.epsilon))
        if self.momentum > 0:
            momentum = self._momentums[index]
            self.assign(momentum, ops.add(ops.multiply(self.momentum, momentum), increment))
            self.assign_sub(variable, momentum)
        else:
            self.assign_sub(variable, increment)


def make_optimizer(cfg):
    """The optimiser of an experiment configuration, at its initial learning rate.

    Parameters
    ----------
    cfg : config.ExperimentConfig
        Uses ``optimizer`` ("rmsprop" or "adam"), ``learning_rate`` and, for
        RMSprop, ``rmsprop_form`` ("keras2": :class:`Keras2RMSprop`, the
        paper's; "keras3": ``keras.optimizers.RMSprop``).

    Returns
    -------
    keras.optimizers.Optimizer
        With a plain learning rate: the training stage replaces it by the
        inverse-time decay of a base rate that the plateau rule lowers
        (:func:`nnsrm.lr_control.configured_optimizer`).

    Raises
    ------
    ValueError
        An unknown optimiser or RMSprop form.
    """
    form = getattr(cfg, "rmsprop_form", "keras3")  # configurations saved before the field existed
    if cfg.optimizer == "rmsprop":
        if form not in RMSPROP_FORMS:
            raise ValueError(f"rmsprop_form must be one of {', '.join(RMSPROP_FORMS)}, got {form!r}")
        cls = Keras2RMSprop if form == "keras2" else keras.optimizers.RMSprop
        return cls(learning_rate=cfg.learning_rate)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=cfg.learning_rate)
    raise ValueError(f"optimizer must be 'rmsprop' or 'adam', got {cfg.optimizer!r}")
