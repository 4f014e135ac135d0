"""Tests of resnet.py: the paper's pre-activation ResNet-18 (docs/paper.md)."""

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import keras

from nnsrm import resnet

ROOT = Path(__file__).resolve().parents[1]

N_BN_LAYERS = 17
EXPECTED_ANALYSED = [
    "stem_bn",
    "block1b_bn1",
    "block2a_bn1",
    "block2b_bn1",
    "block3a_bn1",
    "block3b_bn1",
    "block4a_bn1",
    "block4b_bn1",
    "final_bn",
]
# Flattened output size of each analysed layer for one 32x32x3 image.
# imagenet: 7x7/2 stem -> 16x16, max-pool -> 8x8, then /2 per stage: 4, 2, 1.
# cifar: no downsampling in the stem: 32x32, then 16, 8, 4.
EXPECTED_UNITS = {
    "imagenet": [16 * 16 * 64, 8 * 8 * 64, 8 * 8 * 64, 4 * 4 * 128, 4 * 4 * 128,
                 2 * 2 * 256, 2 * 2 * 256, 1 * 1 * 512, 1 * 1 * 512],
    "cifar": [32 * 32 * 64, 32 * 32 * 64, 32 * 32 * 64, 16 * 16 * 128, 16 * 16 * 128,
              8 * 8 * 256, 8 * 8 * 256, 4 * 4 * 512, 4 * 4 * 512],
}
N_CONV_LAYERS = 1 + 8 * 2 + 3  # stem + two per block + projection shortcuts of stages 2-4
PROBABILITY_ATOL = 1e-5


@functools.lru_cache(maxsize=None)
def cached_model(variant="imagenet", seed=0):
    return resnet.build_resnet18(variant=variant, seed=seed)


def images(n=2, shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def expected_param_count(variant, in_channels=3, n_classes=10):
    """Parameters of the ResNet-18 counted by hand (conv kernels carry biases)."""

    def conv(k, c_in, c_out):
        return k * k * c_in * c_out + c_out

    def bn(c):
        return 4 * c  # gamma, beta, moving mean, moving variance

    total = conv(7 if variant == "imagenet" else 3, in_channels, 64) + bn(64)
    c_in = 64
    for stage, c in enumerate((64, 128, 256, 512)):
        for block in range(2):
            if not (stage == 0 and block == 0):
                total += bn(c_in)  # bn1; block 1a reuses the stem's BN -> ReLU
            total += conv(3, c_in, c) + bn(c) + conv(3, c, c)
            if c_in != c:
                total += conv(1, c_in, c)  # projection shortcut
            c_in = c
    total += bn(512) + 512 * n_classes + n_classes  # final BN, logits
    return total


@pytest.mark.parametrize("variant", resnet.VARIANTS)
def test_parameter_count_about_11_million(variant):
    n_params = cached_model(variant).count_params()
    print(f"ResNet-18 ({variant}): {n_params:,} parameters")
    assert n_params == expected_param_count(variant)
    assert 11.1e6 < n_params < 11.25e6


def test_parameter_counts_known_values():
    # keras-resnet's ResNet-18 on CIFAR-10 reports 11,192,458 parameters; the
    # CIFAR stem saves 7*7*3*64 - 3*3*3*64 = 7,680 of them.
    assert cached_model("imagenet").count_params() == 11_192_458
    assert cached_model("cifar").count_params() == 11_184_778


@pytest.mark.parametrize("variant", resnet.VARIANTS)
def test_has_17_batchnorm_layers(variant):
    model = cached_model(variant)
    bn = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bn) == N_BN_LAYERS
    # block 1a has no bn1: the stem's BN -> ReLU already pre-activates it.
    assert "block1a_bn1" not in [l.name for l in bn]
    assert bn[0].name == "stem_bn" and bn[-1].name == "final_bn"


@pytest.mark.parametrize("variant", resnet.VARIANTS)
def test_analysed_layers_are_odd_batchnorms_in_depth_order(variant):
    model = cached_model(variant)
    names = resnet.analysed_layer_names(model)
    assert names == EXPECTED_ANALYSED
    bn = [l.name for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert names == [bn[i - 1] for i in range(1, N_BN_LAYERS + 1, 2)]
    # Depth order: each analysed layer lies upstream of the next one.
    order = [l.name for l in model.layers]
    assert [order.index(n) for n in names] == sorted(order.index(n) for n in names)


@pytest.mark.parametrize("variant", resnet.VARIANTS)
def test_analysed_layer_unit_counts(variant):
    model = cached_model(variant)
    names = resnet.analysed_layer_names(model)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    acts = probe.predict(images(2), verbose=0)
    assert [a.shape[0] for a in acts] == [2] * len(names)
    units = [int(np.prod(a.shape[1:])) for a in acts]
    print(f"{variant}: " + ", ".join(f"{n} {u}" for n, u in zip(names, units)))
    assert units == EXPECTED_UNITS[variant]


@pytest.mark.parametrize("variant", resnet.VARIANTS)
def test_output_is_softmax_over_logits(variant):
    model = cached_model(variant)
    x = images(2)
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (2, 10)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=PROBABILITY_ATOL)

    logits_layer = model.get_layer("logits")
    assert isinstance(logits_layer, keras.layers.Dense)
    assert logits_layer.activation is keras.activations.linear
    assert model.layers[-1].name == "softmax"
    assert model.layers[-1].input is logits_layer.output
    logits = keras.Model(model.inputs, logits_layer.output).predict(x, verbose=0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.softmax(logits)), probs, atol=PROBABILITY_ATOL
    )


def test_n_classes_and_small_input():
    # e.g. 8x8 grey digits with the imagenet stem: spatial size shrinks to 1x1.
    model = resnet.build_resnet18(input_shape=(8, 8, 1), n_classes=100, seed=3)
    probs = keras.ops.convert_to_numpy(model(images(1, (8, 8, 1))))
    assert probs.shape == (1, 100)
    assert len(resnet.analysed_layer_names(model)) == 9
    assert model.name == "resnet18_imagenet"
    assert resnet.build_resnet18(variant="cifar", name="net", seed=0).name == "net"


def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def test_same_seed_gives_identical_weights():
    a = _weights(cached_model("imagenet", 0))
    b = _weights(resnet.build_resnet18(seed=0))
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


def test_different_seeds_give_different_weights():
    model_0, model_1 = cached_model("imagenet", 0), cached_model("imagenet", 1)
    for layer_0 in model_0.layers:
        if isinstance(layer_0, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel_0 = np.asarray(layer_0.kernel)
            kernel_1 = np.asarray(model_1.get_layer(layer_0.name).kernel)
            assert not np.array_equal(kernel_0, kernel_1), layer_0.name


def test_layers_get_distinct_random_streams():
    # Same-shaped kernels must not be copies of each other within one model.
    model = cached_model("imagenet", 0)
    a = np.asarray(model.get_layer("block1a_conv2").kernel)
    b = np.asarray(model.get_layer("block1b_conv1").kernel)
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_unseeded_builds_differ():
    a = np.asarray(resnet.build_resnet18(seed=None).get_layer("stem_conv").kernel)
    b = np.asarray(resnet.build_resnet18(seed=None).get_layer("stem_conv").kernel)
    assert not np.array_equal(a, b)


def test_he_normal_scale():
    # he_normal: a normal truncated at two sigma, rescaled to std sqrt(2 / fan_in).
    kernel = np.asarray(cached_model("imagenet", 0).get_layer("block3a_conv1").kernel)
    fan_in = 3 * 3 * 128
    std = np.sqrt(2 / fan_in)
    assert np.std(kernel) == pytest.approx(std, rel=0.02)
    assert np.mean(kernel) == pytest.approx(0.0, abs=0.01 * std)
    assert np.max(np.abs(kernel)) <= 2 * std / resnet._TRUNCATED_STD + 1e-7
    logits_bias = np.asarray(cached_model("imagenet", 0).get_layer("logits").bias)
    np.testing.assert_array_equal(logits_bias, 0)


def test_model_config_round_trip():
    # The numpy initializer is registered, so the architecture can be rebuilt from its config.
    model = resnet.build_resnet18(input_shape=(8, 8, 1), seed=0)
    clone = keras.Model.from_config(model.get_config())
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert isinstance(clone.get_layer("stem_conv").kernel_initializer, resnet.HeNormalNumpy)


def test_l2_penalty_on_conv_kernels_only():
    model = cached_model("imagenet", 0)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == N_CONV_LAYERS
    assert all(l.kernel_regularizer is not None for l in convs)
    assert model.get_layer("logits").kernel_regularizer is None
    losses = [float(keras.ops.convert_to_numpy(v)) for v in model.losses]
    assert len(losses) == N_CONV_LAYERS
    expected = sum(1e-4 * np.sum(np.asarray(l.kernel, dtype=np.float64) ** 2) for l in convs)
    assert sum(losses) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("weight_decay", [0, None])
def test_no_penalty_without_weight_decay(weight_decay):
    model = resnet.build_resnet18(input_shape=(8, 8, 1), weight_decay=weight_decay, seed=0)
    assert model.losses == []


def test_stateless_call_updates_batchnorm_statistics():
    if keras.backend.backend() != "jax":
        pytest.skip("stateless_call is exercised under the JAX backend")
    model = resnet.build_resnet18(input_shape=(16, 16, 3), variant="cifar", seed=0)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    probs, new_non_trainable = model.stateless_call(
        trainable, non_trainable, images(2, (16, 16, 3)), training=True
    )
    assert probs.shape == (2, 10)
    # 17 BN layers x (moving mean, moving variance); training moves them.
    assert len(new_non_trainable) == 2 * N_BN_LAYERS
    assert any(
        not np.allclose(np.asarray(old), np.asarray(new))
        for old, new in zip(non_trainable, new_non_trainable)
    )


@pytest.mark.parametrize(
    "kwargs, exception, message",
    [
        (dict(variant="resnet"), ValueError,
         r"variant must be one of \('imagenet', 'cifar'\), got 'resnet'"),
        (dict(input_shape=(32, 32)), ValueError,
         r"input_shape must be \(height, width, channels\).*got \(32, 32\)"),
        (dict(input_shape=(32, 0, 3)), ValueError, r"input_shape .* positive integers"),
        (dict(input_shape=32), TypeError,
         r"input_shape must be a \(height, width, channels\) tuple, got 32"),
        (dict(n_classes=0), ValueError, r"n_classes must be a positive integer, got 0"),
        (dict(n_classes=2.5), ValueError, r"n_classes must be a positive integer, got 2.5"),
        (dict(weight_decay=-1e-4), ValueError,
         r"weight_decay must be a non-negative number or None, got -0.0001"),
        (dict(weight_decay="l2"), ValueError, r"weight_decay must be .* got 'l2'"),
        (dict(seed=-1), ValueError, r"seed must be a non-negative integer or None, got -1"),
        (dict(seed=1.5), ValueError, r"seed must be .* got 1.5"),
    ],
)
def test_bad_arguments_are_named(kwargs, exception, message):
    with pytest.raises(exception, match=message):
        resnet.build_resnet18(**kwargs)


def test_analysed_layer_names_needs_batchnorm():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="mlp")
    with pytest.raises(ValueError, match="model 'mlp' has no BatchNormalization layer"):
        resnet.analysed_layer_names(model)


def test_forward_pass_under_tensorflow_backend():
    """The builder is backend-neutral: a forward pass under KERAS_BACKEND=tensorflow."""
    script = textwrap.dedent(
        """
        import numpy as np
        import keras
        from nnsrm import resnet
        assert keras.backend.backend() == "tensorflow", keras.backend.backend()
        model = resnet.build_resnet18(variant="cifar", seed=0)
        x = np.zeros((1, 32, 32, 3), dtype="float32")
        probs = keras.ops.convert_to_numpy(model(x, training=False))
        assert probs.shape == (1, 10), probs.shape
        assert abs(float(probs.sum()) - 1.0) < 1e-5, probs.sum()
        assert len(resnet.analysed_layer_names(model)) == 9
        checksum = sum(float(np.abs(np.asarray(w, dtype=np.float64)).sum())
                       for w in model.get_weights())
        print("ok", model.count_params(), repr(checksum))
        """
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ok, n_params, checksum = result.stdout.split()[-3:]
    assert (ok, n_params) == ("ok", "11184778")
    # Initial weights are drawn with numpy: the same seed gives the same network.
    jax_checksum = sum(float(np.abs(np.asarray(w, dtype=np.float64)).sum())
                       for w in cached_model("cifar", 0).get_weights())
    assert float(checksum) == pytest.approx(jax_checksum, rel=1e-12)


@pytest.mark.slow
def test_vmap_over_seeds_matches_single_models():
    """Two seeds' weights stacked and run under jax.vmap give each model's own output."""
    if keras.backend.backend() != "jax":
        pytest.skip("jax.vmap needs the JAX backend")
    import jax
    import jax.numpy as jnp

    models = [resnet.build_resnet18(input_shape=(16, 16, 3), variant="cifar", seed=s)
              for s in (0, 1)]
    stack = lambda vs: [jnp.stack(w) for w in zip(*vs)]  # noqa: E731
    trainable = stack([[v.value for v in m.trainable_variables] for m in models])
    non_trainable = stack([[v.value for v in m.non_trainable_variables] for m in models])
    x = jnp.asarray(images(3, (16, 16, 3)))

    def forward(tv, ntv):
        probs, _ = models[0].stateless_call(tv, ntv, x, training=False)
        return probs

    batched = jax.vmap(forward)(trainable, non_trainable)  # (2 seeds, 3 images, 10)
    for i, model in enumerate(models):
        np.testing.assert_allclose(
            np.asarray(batched[i]), keras.ops.convert_to_numpy(model(x)), atol=1e-5
        )
