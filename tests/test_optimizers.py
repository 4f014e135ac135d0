"""nnsrm.optimizers: Keras 2's RMSprop update against hand-computed steps, and which configs select it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nnsrm import config
from nnsrm import optimizers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOAT32 = 1e-6  # relative: Keras computes in float32
W0 = np.array([1.0, -2.0, 0.5, 0.0], np.float32)
# Small gradients (v of order epsilon) are where the two forms differ.
GRADS = [np.array([0.1, 1e-4, -3.0, 1e-5], np.float32), np.array([-0.2, 2e-4, 1.0, 0.0], np.float32)]
LR, RHO, EPS = 0.01, 0.9, 1e-7


def hand_rmsprop(form, momentum=0.0, centered=False):
    """Weights after each step of ``GRADS``, in float64."""
    w, v, m, a = W0.astype(np.float64), 0.0, 0.0, 0.0
    out = []
    for g in GRADS:
        g = g.astype(np.float64)
        v = RHO * v + (1 - RHO) * g ** 2
        if centered:
            m = RHO * m + (1 - RHO) * g
        second = v - m ** 2
        denom = np.sqrt(second) + EPS if form == "keras2" else np.sqrt(second + EPS)
        increment = LR * g / denom
        if momentum:
            a = momentum * a + increment
            w = w - a
        else:
            w = w - increment
        out.append(w.copy())
    return out


def run_steps(opt):
    import keras

    w = keras.Variable(W0.copy())
    out = []
    for g in GRADS:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), w)])
        out.append(keras.ops.convert_to_numpy(w).astype(np.float64))
    return out


@pytest.mark.parametrize("momentum, centered", [(0.0, False), (0.5, False), (0.0, True), (0.5, True)])
@pytest.mark.parametrize("form", optimizers.RMSPROP_FORMS)
def test_steps_equal_the_hand_computed_update(form, momentum, centered):
    import keras

    cls = optimizers.Keras2RMSprop if form == "keras2" else keras.optimizers.RMSprop
    ours = run_steps(cls(learning_rate=LR, rho=RHO, epsilon=EPS, momentum=momentum, centered=centered))
    for got, expected in zip(ours, hand_rmsprop(form, momentum, centered)):
        np.testing.assert_allclose(got, expected, rtol=FLOAT32, atol=1e-9)


def test_the_two_forms_differ_where_gradients_are_small():
    k2, k3 = hand_rmsprop("keras2")[0], hand_rmsprop("keras3")[0]
    steps2, steps3 = np.abs(k2 - W0), np.abs(k3 - W0)
    assert steps2[1] > 5 * steps3[1]  # g = 1e-4: v = 1e-9 << epsilon
    assert steps2[2] == pytest.approx(steps3[2], rel=1e-6)  # g = 3: v >> epsilon


def test_stateless_apply_under_jax_matches_the_stateful_step():
    import jax.numpy as jnp
    import keras

    opt = optimizers.Keras2RMSprop(learning_rate=LR)
    w = keras.Variable(W0.copy())
    opt.build([w])
    state = [v.value for v in opt.variables]
    new_weights, _ = opt.stateless_apply(state, [jnp.asarray(GRADS[0])], [w.value])
    np.testing.assert_allclose(np.asarray(new_weights[0]), hand_rmsprop("keras2")[0], rtol=FLOAT32, atol=1e-9)


def test_config_round_trip_and_registration():
    import keras

    opt = optimizers.Keras2RMSprop(learning_rate=0.003, rho=0.8, momentum=0.1, centered=True)
    assert keras.saving.get_registered_object("nnsrm>Keras2RMSprop") is optimizers.Keras2RMSprop
    again = optimizers.Keras2RMSprop.from_config(opt.get_config())
    assert (again.rho, again.momentum, again.centered) == (0.8, 0.1, True)
    assert float(again.learning_rate) == pytest.approx(0.003)


@pytest.mark.slow  # about 30 s: importing TensorFlow; the JAX tests above are its fast siblings
def test_tensorflow_backend_step_in_a_subprocess():
    pytest.importorskip("tensorflow")
    code = (
        "import json, numpy as np, keras\n"
        "from nnsrm.optimizers import Keras2RMSprop\n"
        f"w = keras.Variable(np.array({W0.tolist()}, 'float32'))\n"
        f"opt = Keras2RMSprop(learning_rate={LR})\n"
        f"opt.apply_gradients([(keras.ops.convert_to_tensor(np.array({GRADS[0].tolist()}, 'float32')), w)])\n"
        "print(json.dumps([keras.backend.backend(), keras.ops.convert_to_numpy(w).tolist()]))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    backend, weights = json.loads(proc.stdout.strip().splitlines()[-1])
    assert backend == "tensorflow"
    np.testing.assert_allclose(weights, hand_rmsprop("keras2")[0], rtol=FLOAT32, atol=1e-9)


def test_paper_conv_configs_select_the_keras2_form():
    import keras

    for data in ("cifar10", "cifar100"):
        cfg = config.get_config(data, "conv")
        assert cfg.rmsprop_form == "keras2"
        assert type(optimizers.make_optimizer(cfg)) is optimizers.Keras2RMSprop
    for model in ("mlp", "conv"):  # the original's MNIST conditions: Keras 2 as well
        assert type(optimizers.make_optimizer(config.get_config("mnist", model))) is optimizers.Keras2RMSprop
    digits = optimizers.make_optimizer(config.get_config("digits", "conv"))  # ours, not the original's
    assert type(digits) is keras.optimizers.RMSprop
    resnet = optimizers.make_optimizer(config.get_config("cifar10", "resnet18"))
    assert type(resnet) is keras.optimizers.Adam
    keras3 = optimizers.make_optimizer(config.get_config("cifar10", "conv", rmsprop_form="keras3"))
    assert type(keras3) is keras.optimizers.RMSprop
    assert float(keras3.learning_rate) == pytest.approx(1e-4)


def test_forms_agree_with_config_and_bad_forms_are_rejected():
    assert optimizers.RMSPROP_FORMS == config.RMSPROP_FORMS
    with pytest.raises(ValueError, match="rmsprop_form must be one of keras2, keras3, got 'keras1'"):
        config.get_config("cifar10", "conv", rmsprop_form="keras1")

    class Stale:  # e.g. a configuration object built by hand
        optimizer, learning_rate, rmsprop_form = "rmsprop", 1e-3, "tf1"

    with pytest.raises(ValueError, match="rmsprop_form must be one of keras2, keras3, got 'tf1'"):
        optimizers.make_optimizer(Stale())
    Stale.optimizer = "sgd"
    with pytest.raises(ValueError, match="optimizer must be 'rmsprop' or 'adam', got 'sgd'"):
        optimizers.make_optimizer(Stale())
