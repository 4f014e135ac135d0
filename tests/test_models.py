"""Networks: the paper's conv net exactly, deterministic seeds, layers chosen by name or type."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from nnsrm import config
from nnsrm import models


def _weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_cifar_conv_is_the_paper_architecture():
    m = models.build_model("conv", (32, 32, 3), 10, seed=0)
    assert m.count_params() == 1_250_858  # Keras' classic cifar10_cnn
    names = models.select_layers(m, config.CONV_LAYERS)
    assert names == ["pool1", "pool2", "dense1", "logits"]
    sub = models.layer_outputs_model(m, names)
    sizes = [int(np.prod(o.shape[1:])) for o in sub.outputs]
    assert sizes == [15 * 15 * 32, 6 * 6 * 64, 512, 10]
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds.count("Conv2D") == 4 and kinds.count("Dropout") == 3
    # dense1 and logits are pre-activation: the ReLU/softmax are separate layers after them.
    assert m.get_layer("dense1").activation.__name__ == "linear"
    assert m.get_layer("logits").activation.__name__ == "linear"


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1)])
def test_small_conv_nets_output_probabilities(shape):
    m = models.build_model("conv", shape, 10, seed=1)
    p = m.predict(np.random.default_rng(0).normal(size=(3, *shape)).astype("float32"), verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("name", ["conv", "mlp"])
def test_same_seed_same_weights_different_seed_different(name):
    a = models.build_model(name, (8, 8, 1), 10, seed=3)
    b = models.build_model(name, (8, 8, 1), 10, seed=3)
    c = models.build_model(name, (8, 8, 1), 10, seed=4)
    assert _weights_equal(a, b)
    assert not _weights_equal(a, c)


def test_layer_selectors():
    m = models.build_model("conv", (8, 8, 1), 10, seed=0)
    assert models.select_layers(m, ["type:Conv2D:odd"]) == ["conv1", "conv3"]
    assert models.select_layers(m, ["name:logits", "type:MaxPooling2D"]) == ["pool1", "pool2", "logits"]
    with pytest.raises(ValueError, match="matches no layer"):
        models.select_layers(m, ["name:pool9"])
    with pytest.raises(ValueError, match="must start with 'name:' or 'type:'"):
        models.select_layers(m, ["pool1"])


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="choose from conv, mlp, resnet18"):
        models.build_model("vgg", (8, 8, 1), 10, seed=0)


def test_seeds_stack_under_jax_vmap_stateless_call():
    """Several seeds' networks run as one vmapped function: the basis for training all seeds at once."""
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("jax.vmap needs the JAX backend")
    import jax
    import jax.numpy as jnp

    nets = [models.build_model("conv", (8, 8, 1), 10, seed=s) for s in (0, 1, 2)]
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    trainable = [jnp.stack([n.trainable_variables[i].value for n in nets])
                 for i in range(len(nets[0].trainable_variables))]
    non_trainable = [v.value for v in nets[0].non_trainable_variables]

    def forward(tv):
        out, _ = nets[0].stateless_call(tv, non_trainable, x, training=False)
        return out

    stacked = jax.vmap(forward)(trainable)  # (3 seeds, 4 images, 10 classes)
    for s, net in enumerate(nets):
        np.testing.assert_allclose(stacked[s], net.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_weights_do_not_depend_on_global_random_state(monkeypatch):
    """Every initializer is seeded from the network's seed (Dask advances global RNGs behind our back)."""
    import random

    import keras

    real_set_seed = keras.utils.set_random_seed
    monkeypatch.setattr(models, "_seed_global_state", lambda seed: None)
    real_set_seed(1)
    a = models.build_model("conv", (8, 8, 1), 10, seed=3)
    real_set_seed(2)
    random.random()
    b = models.build_model("conv", (8, 8, 1), 10, seed=3)
    assert _weights_equal(a, b)
    assert {layer.seed for layer in a.layers if hasattr(layer, "rate")} != {None}


@pytest.mark.slow  # a fresh interpreter importing Keras: 14-20 s; a start-up cost guard, not a result check
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
def test_building_a_network_under_jax_does_not_import_tensorflow_and_seeds_as_keras_does(tmp_path, monkeypatch):
    """Keras' set_random_seed imports TensorFlow wherever it is installed (seconds per process); ours does not."""
    import keras

    script = """if True:
        import os, sys
        import numpy as np
        from nnsrm import models
        a = models.build_model("conv", (8, 8, 1), 10, seed=3)
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
        np.savez(sys.argv[1], *a.get_weights())
        print("ok")
    """
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "w.npz")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    # The same global seeds and weights as with Keras' own set_random_seed.
    models.build_model("mlp", (8, 8, 1), 10, seed=3)
    ours = (np.random.get_state()[1].copy(), keras.src.utils.rng_utils.get_random_seed())
    monkeypatch.setattr(models, "_seed_global_state", keras.utils.set_random_seed)
    b = models.build_model("conv", (8, 8, 1), 10, seed=3)
    with np.load(tmp_path / "w.npz") as saved:
        assert all(np.array_equal(saved[f"arr_{i}"], w) for i, w in enumerate(b.get_weights()))
    models.build_model("mlp", (8, 8, 1), 10, seed=3)
    assert np.array_equal(np.random.get_state()[1], ours[0]) and keras.src.utils.rng_utils.get_random_seed() == 3
    assert ours[1] == 3
