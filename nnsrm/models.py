"""The networks of the study, Keras 3, backend-neutral, deterministic for a seed.

Every model is a functional ``keras.Model`` (so ``model.stateless_call`` works
and many seeds can later be trained at once under ``jax.vmap``). Layers that
the analyses read have stable names: ``pool1``, ``pool2``, ``dense1``,
``dense2`` and ``logits``; activations are separate layers, so ``dense1`` and
``logits`` are pre-activation, as in the paper.

- ``conv`` on 32×32 images (CIFAR): Keras' classic cifar10 CNN.
- ``conv`` on 28×28 images (MNIST): the original study's ``get_mnist_convnet``
  (conv 32 'same', conv 32, max-pool, dense 256, logits; no dropout).
- ``conv`` on 8×8 images (digits): a small conv net of the same shape of
  computation (two conv blocks with a max-pool each, dense 128, logits).
- ``mlp`` on 28×28 images (MNIST): the original study's ``get_mnist_stdnet``
  (dense 512 → relu → dense 256 → relu → logits; no dropout).
- ``mlp`` on other images (digits): Keras' mnist_mlp example (dense 512 →
  relu → dropout .2, twice).
- ``resnet18``: see ``resnet.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # our default; KERAS_BACKEND=tensorflow also works

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from nnsrm.errors import UsageError  # noqa: E402

MODEL_NAMES = ("conv", "mlp", "resnet18")


class LayerSeeds:
    """Distinct, reproducible seeds for every random layer of one network.

    Every initializer and dropout layer gets its own seed drawn from the
    network's seed, so the weights never depend on global random state (which
    other code, e.g. Dask's message sizing, may advance behind our back).
    """

    def __init__(self, seed: int):
        self._rng = np.random.default_rng(seed)

    def __call__(self) -> int:
        return int(self._rng.integers(0, 2**31 - 1))


def _conv(filters, seeds, name, padding="same"):
    return layers.Conv2D(filters, 3, padding=padding, name=name,
                         kernel_initializer=keras.initializers.GlorotUniform(seed=seeds()))


def _dense(units, seeds, name):
    return layers.Dense(units, name=name, kernel_initializer=keras.initializers.GlorotUniform(seed=seeds()))


def _dropout(rate, seeds, name):
    return layers.Dropout(rate, seed=seeds(), name=name)


def cifar_conv(x, n_classes, seeds):
    """The paper's CIFAR conv net (input 32×32×c)."""
    x = _conv(32, seeds, "conv1", padding="same")(x)
    x = layers.Activation("relu", name="relu1")(x)
    x = _conv(32, seeds, "conv2", padding="valid")(x)
    x = layers.Activation("relu", name="relu2")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = _dropout(0.25, seeds, "drop1")(x)
    x = _conv(64, seeds, "conv3", padding="same")(x)
    x = layers.Activation("relu", name="relu3")(x)
    x = _conv(64, seeds, "conv4", padding="valid")(x)
    x = layers.Activation("relu", name="relu4")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = _dropout(0.25, seeds, "drop2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = _dense(512, seeds, "dense1")(x)
    x = layers.Activation("relu", name="relu5")(x)
    x = _dropout(0.5, seeds, "drop3")(x)
    return _dense(n_classes, seeds, "logits")(x)


def digits_conv(x, n_classes, seeds):
    """A small conv net for 8×8 digits: 'same' convolutions so two 2×2 pools fit."""
    x = _conv(16, seeds, "conv1", padding="same")(x)
    x = layers.Activation("relu", name="relu1")(x)
    x = _conv(32, seeds, "conv2", padding="same")(x)
    x = layers.Activation("relu", name="relu2")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)  # (4, 4, 32): 512 units
    x = _dropout(0.25, seeds, "drop1")(x)
    x = _conv(64, seeds, "conv3", padding="same")(x)
    x = layers.Activation("relu", name="relu3")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)  # (2, 2, 64): 256 units
    x = _dropout(0.25, seeds, "drop2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = _dense(128, seeds, "dense1")(x)
    x = layers.Activation("relu", name="relu4")(x)
    x = _dropout(0.5, seeds, "drop3")(x)
    return _dense(n_classes, seeds, "logits")(x)


def mnist_conv(x, n_classes, seeds):
    """The original study's MNIST conv net (``get_mnist_convnet``; input 28×28×1)."""
    x = _conv(32, seeds, "conv1", padding="same")(x)
    x = layers.Activation("relu", name="relu1")(x)
    x = _conv(32, seeds, "conv2", padding="valid")(x)
    x = layers.Activation("relu", name="relu2")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)  # (13, 13, 32): 5,408 units
    x = layers.Flatten(name="flatten")(x)
    x = _dense(256, seeds, "dense1")(x)
    x = layers.Activation("relu", name="relu3")(x)
    return _dense(n_classes, seeds, "logits")(x)


def mnist_mlp(x, n_classes, seeds):
    """The original study's MNIST MLP (``get_mnist_stdnet``: 512-256-10, ReLU, no dropout)."""
    x = layers.Flatten(name="flatten")(x)
    x = _dense(512, seeds, "dense1")(x)
    x = layers.Activation("relu", name="relu1")(x)
    x = _dense(256, seeds, "dense2")(x)
    x = layers.Activation("relu", name="relu2")(x)
    return _dense(n_classes, seeds, "logits")(x)


def mlp(x, n_classes, seeds):
    """Keras' mnist_mlp example on flattened images."""
    x = layers.Flatten(name="flatten")(x)
    x = _dense(512, seeds, "dense1")(x)
    x = layers.Activation("relu", name="relu1")(x)
    x = _dropout(0.2, seeds, "drop1")(x)
    x = _dense(512, seeds, "dense2")(x)
    x = layers.Activation("relu", name="relu2")(x)
    x = _dropout(0.2, seeds, "drop2")(x)
    return _dense(n_classes, seeds, "logits")(x)


def augmentation(x, seed):
    """Random ±10 % shifts and horizontal flips; active only in training."""
    x = layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed, name="aug_shift")(x)
    return layers.RandomFlip("horizontal", seed=seed + 1, name="aug_flip")(x)


def _seed_global_state(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow under another backend.

    Keras' version seeds TensorFlow whenever it is installed, which imports it
    (seconds of start-up in every process that builds a network) although only
    ``tf.data`` pipelines would read that seed. Here: Python's and NumPy's
    global generators and Keras' global seed generator, and the backend's own
    (TensorFlow, PyTorch) where that is the backend.
    """
    import random

    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    if keras.backend.backend() in ("tensorflow", "torch"):
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def build_model(name: str, input_shape: tuple, n_classes: int, seed: int, *,
                augment: bool = False, resnet_variant: str = "imagenet") -> keras.Model:
    """Build one network, its weights drawn from ``seed`` (same seed → same weights).

    Parameters
    ----------
    name : {"conv", "mlp", "resnet18"}
    input_shape : tuple
        One image, (height, width, channels).
    n_classes : int
    seed : int
        Seeds every initializer and dropout/augmentation layer.
    augment : bool
        Prepend random shifts and flips (training only).
    resnet_variant : {"imagenet", "cifar"}
        Stem of ResNet-18 (see ``resnet.py``).

    Returns
    -------
    keras.Model
        Outputs class probabilities (n_images, n_classes); the pre-softmax
        layer is named ``logits``.
    """
    if name not in MODEL_NAMES:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    _seed_global_state(seed)  # anything not seeded explicitly below
    if name == "resnet18":
        from nnsrm import resnet

        if augment:
            inputs = keras.Input(input_shape, name="image")
            body = resnet.build_resnet18(input_shape, n_classes, variant=resnet_variant, seed=seed)
            return keras.Model(inputs, body(augmentation(inputs, seed)), name="resnet18_aug")
        return resnet.build_resnet18(input_shape, n_classes, variant=resnet_variant, seed=seed)
    inputs = keras.Input(input_shape, name="image")
    x = augmentation(inputs, seed) if augment else inputs
    seeds = LayerSeeds(seed)
    if name == "mlp":
        logits = (mnist_mlp if input_shape[0] == 28 else mlp)(x, n_classes, seeds)
    elif input_shape[0] >= 32:
        logits = cifar_conv(x, n_classes, seeds)
    elif input_shape[0] >= 28:
        logits = mnist_conv(x, n_classes, seeds)
    else:
        logits = digits_conv(x, n_classes, seeds)
    outputs = layers.Activation("softmax", name="softmax")(logits)
    return keras.Model(inputs, outputs, name=f"{name}_{input_shape[0]}px")


def all_layers(model: keras.Model) -> list:
    """Every layer in depth order, nested models flattened (ResNet with augmentation)."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(all_layers(layer))
        else:
            out.append(layer)
    return out


def select_layers(model: keras.Model, selectors) -> list:
    """Names of the analysed layers, in depth order, chosen by name or by type.

    Parameters
    ----------
    selectors : iterable of str
        ``"name:<layer>"``, ``"type:<KerasClass>"`` or ``"type:<KerasClass>:odd"``
        (the 1st, 3rd, ... layers of that class).

    Raises
    ------
    ValueError
        A selector that matches nothing or is malformed.
    """
    layer_list = all_layers(model)
    chosen = []
    for sel in selectors:
        kind, _, rest = sel.partition(":")
        if kind == "name":
            matches = [layer.name for layer in layer_list if layer.name == rest]
        elif kind == "type":
            cls, _, which = rest.partition(":")
            matches = [layer.name for layer in layer_list if type(layer).__name__ == cls]
            if which == "odd":
                matches = matches[::2]
            elif which:
                raise UsageError(f"layer selector {sel!r}: only ':odd' may follow the type")
        else:
            raise UsageError(f"layer selector {sel!r} must start with 'name:' or 'type:'")
        if not matches:
            raise UsageError(f"layer selector {sel!r} matches no layer of model {model.name}")
        chosen.extend(m for m in matches if m not in chosen)
    order = {layer.name: i for i, layer in enumerate(layer_list)}
    return sorted(chosen, key=order.__getitem__)


def layer_outputs_model(model: keras.Model, layer_names) -> keras.Model:
    """A sub-model mapping images to the outputs of ``layer_names`` (a list, same order).

    When the network is nested (augmentation layers in front of ResNet-18), the
    sub-model is cut from the inner network: augmentation is off at inference anyway.
    """
    body = next((layer for layer in model.layers if isinstance(layer, keras.Model)), model)
    return keras.Model(body.inputs, [body.get_layer(n).output for n in layer_names])
