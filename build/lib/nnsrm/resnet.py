"""ResNet-18 with pre-activation basic blocks, as Lu et al. (2018) trained it.

The paper's code used Raghavendra Kotikalapudi's `keras-resnet` (Keras 2); this
is the same network in Keras 3, backend-neutral (keras.layers only) and built
with the functional API so that ``model.stateless_call`` works (several seeds
can later be trained at once under ``jax.vmap``).

Architecture (``variant="imagenet"``, the paper's)::

    input (H, W, C)
    stem_conv   7x7/2, 64                       # (H/2, W/2, 64)
    stem_bn -> stem_relu                        # BN 1
    stem_pool   3x3 max-pool /2, same padding   # (H/4, W/4, 64)
    4 stages x 2 basic blocks, filters 64, 128, 256, 512; the first block of
    stages 2-4 has stride 2. A pre-activation basic block is

        x --bn1-relu1-conv1(3x3)--bn2-relu2-conv2(3x3)--(+)--> out
        |                                               |
        +---------- identity, or shortcut (1x1 conv) ---+

    final_bn -> final_relu                      # BN 17
    avg_pool    global average pooling          # (512,)
    logits      Dense(n_classes), no activation
    softmax     Activation("softmax")

``variant="cifar"`` replaces the stem by a 3x3 stride-1 conv and drops the
max-pool (the common CIFAR ResNet); everything else is identical.

Counting the 17 BatchNormalization layers: the stem's BN already normalises
and rectifies the input of the first block, so block 1a (``block1a``) skips its
``bn1``/``relu1`` and starts with ``conv1`` (as keras-resnet does: "don't repeat
bn->relu since we just did bn->relu->maxpool"). Hence

    1 (stem_bn) + 1 (block1a_bn2) + 7 blocks x 2 + 1 (final_bn) = 17.

The odd-numbered ones (1st, 3rd, ..., 17th) are ``stem_bn``, the ``bn1`` of
blocks 1b, 2a, 2b, 3a, 3b, 4a, 4b, and ``final_bn``: the normalised input of
every block after the first, plus both ends. These are the 9 analysed layers;
they are the paper's layer indices 2, 10, 17, 25, 32, 40, 47, 55, 62 in its
Keras 2 model.

Details kept from keras-resnet: convolutions have biases; the projection
shortcut is a 1x1 conv (stride 2 where the block downsamples) applied to the
block's raw input (not the pre-activated one); he-normal initialisation of all
conv and dense kernels (zero biases); L2 penalty ``weight_decay`` on conv
kernels only (the dense layer is not regularised); Keras' default
BatchNormalization (momentum 0.99, epsilon 1e-3). Channels-last input.

Initial weights are drawn with numpy (:class:`HeNormalNumpy`, one derived seed
per layer), so ``seed`` gives the same initial network on every backend.

Print both variants' parameter counts with::

    .venv/bin/python resnet.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

import keras  # noqa: E402

VARIANTS = ("imagenet", "cifar")
STAGE_FILTERS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


# Standard deviation of N(0, 1) truncated to [-2, 2]; dividing by it makes the
# truncated draws' standard deviation sqrt(2 / fan_in), as Keras 3's HeNormal does.
_TRUNCATED_STD = 0.87962566103423978


@keras.saving.register_keras_serializable(package="nnsrm")
class HeNormalNumpy(keras.initializers.Initializer):
    """He-normal initializer drawn with numpy.

    The same distribution as ``keras.initializers.HeNormal`` (a normal truncated
    at two standard deviations, scaled to standard deviation
    ``sqrt(2 / fan_in)``), but drawn on the host with numpy so that a seed gives
    the same weights on every Keras backend, and a build needs no JAX/XLA
    compilation of random kernels (several seconds per process on a CPU).

    Parameters
    ----------
    seed : int or None
        Seed of ``numpy.random.default_rng``; None draws fresh entropy per call.
    """

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        # Dense kernels are (fan_in, units); Conv2D kernels (kh, kw, c_in, c_out).
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else int(shape[0])
        rng = np.random.default_rng(self.seed)
        values = rng.standard_normal(shape)
        outside = np.abs(values) > 2.0
        while outside.any():  # redraw until every value lies within two sigma
            values[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(values) > 2.0
        values *= np.sqrt(2.0 / max(fan_in, 1)) / _TRUNCATED_STD
        tensor = keras.ops.convert_to_tensor(values.astype(np.float32))
        return keras.ops.cast(tensor, dtype or keras.backend.floatx())

    def get_config(self):
        return {"seed": self.seed}


class _SeededInitializers:
    """Hands out he-normal initializers, one distinct derived seed per layer.

    With ``seed=None`` every initializer is unseeded, so builds differ; with an
    integer seed the i-th requested initializer is seeded with
    ``SeedSequence([seed, i])``, so two builds with the same seed are identical,
    different seeds give different weights, and no two layers share a stream.
    """

    def __init__(self, seed):
        self.seed = seed
        self._count = 0

    def he_normal(self):
        if self.seed is None:
            return HeNormalNumpy()
        layer_seed = int(np.random.SeedSequence([self.seed, self._count]).generate_state(1)[0])
        self._count += 1
        return HeNormalNumpy(seed=layer_seed)


def _validate(input_shape, n_classes, variant, weight_decay, seed):
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    try:
        input_shape = tuple(input_shape)
    except TypeError:
        raise TypeError(
            f"input_shape must be a (height, width, channels) tuple, got {input_shape!r}"
        ) from None
    if len(input_shape) != 3 or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
        for d in input_shape
    ):
        raise ValueError(
            "input_shape must be (height, width, channels) with positive integers, "
            f"got {input_shape!r}"
        )
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if weight_decay is not None and (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, (int, float, np.floating, np.integer))
        or not np.isfinite(weight_decay)
        or weight_decay < 0
    ):
        raise ValueError(
            f"weight_decay must be a non-negative number or None, got {weight_decay!r}"
        )
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return tuple(int(d) for d in input_shape)


def build_resnet18(
    input_shape=(32, 32, 3),
    n_classes=10,
    variant="imagenet",
    weight_decay=1e-4,
    seed=None,
    name=None,
):
    """Build a pre-activation ResNet-18 (functional Keras model).

    Parameters
    ----------
    input_shape : tuple of int, default (32, 32, 3)
        One image's shape, (height, width, channels), channels last.
    n_classes : int, default 10
        Number of output classes.
    variant : {"imagenet", "cifar"}, default "imagenet"
        "imagenet": 7x7 stride-2 stem conv and a 3x3 stride-2 max-pool (the
        paper's network); "cifar": 3x3 stride-1 stem conv, no max-pool.
    weight_decay : float or None, default 1e-4
        L2 penalty factor on every conv kernel (Keras' ``L2``: factor times the
        sum of squares, added to ``model.losses``). 0 or None: no penalty.
    seed : int or None, default None
        Seed of the weight initialisation. Equal seeds give identical initial
        weights; None gives different weights at every build.
    name : str or None
        Model name; default ``"resnet18_<variant>"``.

    Returns
    -------
    keras.Model
        Input ``(batch, *input_shape)``, output ``(batch, n_classes)`` softmax
        probabilities; the pre-softmax scores are the output of layer
        ``"logits"``. 17 BatchNormalization layers, see the module docstring.

    Raises
    ------
    ValueError
        If an argument is out of range (the message names it).
    """
    input_shape = _validate(input_shape, n_classes, variant, weight_decay, seed)
    inits = _SeededInitializers(None if seed is None else int(seed))
    regularizer = keras.regularizers.L2(float(weight_decay)) if weight_decay else None

    def conv(x, filters, kernel_size, strides, layer_name, padding="same"):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            kernel_initializer=inits.he_normal(),
            kernel_regularizer=regularizer,
            name=layer_name,
        )(x)

    def bn_relu(x, prefix, suffix=""):
        x = keras.layers.BatchNormalization(name=f"{prefix}_bn{suffix}")(x)
        return keras.layers.Activation("relu", name=f"{prefix}_relu{suffix}")(x)

    def basic_block(x, filters, strides, prefix, preactivated):
        # preactivated: x is already BN -> ReLU'd (block 1a, right after the stem).
        h = x if preactivated else bn_relu(x, prefix, "1")
        h = conv(h, filters, 3, strides, f"{prefix}_conv1")
        h = bn_relu(h, prefix, "2")
        h = conv(h, filters, 3, 1, f"{prefix}_conv2")
        if strides != 1 or x.shape[-1] != filters:
            # Projection of the raw block input, as keras-resnet does.
            shortcut = conv(x, filters, 1, strides, f"{prefix}_shortcut", padding="valid")
        else:
            shortcut = x
        return keras.layers.Add(name=f"{prefix}_add")([shortcut, h])

    inputs = keras.Input(shape=input_shape, name="input")  # (B, H, W, C)
    if variant == "imagenet":
        x = conv(inputs, 64, 7, 2, "stem_conv")  # (B, H/2, W/2, 64)
        x = bn_relu(x, "stem")
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    else:
        x = conv(inputs, 64, 3, 1, "stem_conv")  # (B, H, W, 64)
        x = bn_relu(x, "stem")

    for stage, filters in enumerate(STAGE_FILTERS, start=1):
        for block in range(BLOCKS_PER_STAGE):
            strides = 2 if (stage > 1 and block == 0) else 1
            x = basic_block(
                x,
                filters,
                strides,
                prefix=f"block{stage}{'ab'[block]}",
                preactivated=(stage == 1 and block == 0),
            )

    x = bn_relu(x, "final")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)  # (B, 512)
    logits = keras.layers.Dense(
        n_classes, kernel_initializer=inits.he_normal(), name="logits"
    )(x)  # (B, n_classes)
    outputs = keras.layers.Activation("softmax", name="softmax")(logits)
    return keras.Model(inputs, outputs, name=name or f"resnet18_{variant}")


def analysed_layer_names(model):
    """Names of the odd-numbered BatchNormalization layers, in depth order.

    The 1st, 3rd, 5th, ... BatchNormalization layer of ``model.layers``
    (a functional model lists its layers in topological order), chosen by
    layer type. For :func:`build_resnet18` these are the paper's 9 analysed
    layers: ``stem_bn``, ``block1b_bn1``, ``block2a_bn1``, ``block2b_bn1``,
    ``block3a_bn1``, ``block3b_bn1``, ``block4a_bn1``, ``block4b_bn1``,
    ``final_bn``.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        If the model has no BatchNormalization layer.
    """
    bn_names = [
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not bn_names:
        raise ValueError(
            f"model {model.name!r} has no BatchNormalization layer to analyse"
        )
    return bn_names[::2]


def main():
    for variant in VARIANTS:
        model = build_resnet18(variant=variant, seed=0)
        print(
            f"ResNet-18 ({variant} stem), input 32x32x3, 10 classes: "
            f"{model.count_params():,} parameters"
        )


if __name__ == "__main__":
    main()
