"""The registry of experiments: one frozen :class:`ExperimentConfig` per (data, model).

The paper's settings (Lu et al. 2018; docs/paper.md) and the offline
default ``digits × conv``, which is sized to run the whole pipeline on a laptop
CPU in a few minutes. Command-line flags override fields with
:func:`get_config` (``get_config("cifar10", "conv", n_epochs=2)``); the
resolved configuration is saved as ``config.json`` next to the outputs.

This module imports neither Keras nor numpy: it is plain data.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from nnsrm.errors import UsageError

DATASETS = ("digits", "mnist", "cifar10", "cifar100")
MODELS = ("conv", "mlp", "resnet18")

# Layer selectors (see models.select_layers): "name:<layer name>" picks a layer by
# name; "type:<Keras class>" every layer of that class; "type:<Keras class>:odd"
# the 1st, 3rd, 5th, ... of them in depth order. Never a hard-coded index.
CONV_LAYERS = ("name:pool1", "name:pool2", "name:dense1", "name:logits")
RESNET_LAYERS = ("type:BatchNormalization:odd",)
# RMSprop's epsilon outside the root (Keras 2, the paper's) or under it (Keras 3); nnsrm/optimizers.py.
RMSPROP_FORMS = ("keras2", "keras3")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one condition of the study.

    Optimiser semantics: ``learning_rate`` is the initial rate; with
    ``lr_decay > 0`` it decays as ``lr / (1 + lr_decay * step)`` (Keras 2's
    ``decay`` argument, used by the paper). ``ReduceLROnPlateau`` on the
    validation loss multiplies the base rate by ``plateau_factor`` after
    ``plateau_patience`` epochs without improvement, down to ``plateau_min_lr``.
    ``rmsprop_form`` places RMSprop's epsilon: ``"keras2"``, outside the root
    (``g / (sqrt(v) + eps)``, the Keras 2 the paper ran on), or ``"keras3"``,
    under it (``g / sqrt(v + eps)``, ``keras.optimizers.RMSprop``); see
    ``nnsrm/optimizers.py``. It is ignored for Adam. The default, "keras3", is
    what every run made before the field existed used.

    ``subtract_mean``: subtract the training set's mean image (the paper's
    CIFAR preprocessing); the original study's MNIST loader did not.
    """

    data: str
    model: str
    n_subjects: int
    n_epochs: int
    batch_size: int
    optimizer: str  # "rmsprop" | "adam"
    learning_rate: float
    logged_epochs: tuple  # epochs whose weights are saved; 0 = before training
    analysed_layers: tuple  # layer selectors, see above
    lr_decay: float = 0.0
    plateau_factor: float = math.sqrt(0.1)
    plateau_patience: int = 5
    plateau_min_lr: float = 1e-5
    augment: bool = False  # random ±10 % shifts and horizontal flips (ResNet on CIFAR)
    resnet_variant: str = "imagenet"  # "imagenet" stem (the paper's) or "cifar"
    max_units: int = 1000  # unit cap per layer for the analyses (seeded random subset)
    seed: int = 0  # subject s uses seed + s
    extract_batch_size: int = 500  # images per forward pass in stage 2 (bounded memory)
    rmsprop_form: str = "keras3"  # "keras2" | "keras3", see the docstring
    subtract_mean: bool = True  # minus the training set's mean image, see the docstring

    def __post_init__(self):
        if self.data not in DATASETS:
            raise UsageError(f"unknown data {self.data!r}; choose from {', '.join(DATASETS)}")
        if self.model not in MODELS:
            raise UsageError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        for field in ("n_subjects", "n_epochs", "batch_size", "max_units", "extract_batch_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{field} must be a positive integer, got {value!r}")
        if self.resnet_variant not in ("imagenet", "cifar"):
            raise UsageError(f"resnet_variant must be 'imagenet' or 'cifar', got {self.resnet_variant!r}")
        if self.optimizer not in ("rmsprop", "adam"):
            raise UsageError(f"optimizer must be 'rmsprop' or 'adam', got {self.optimizer!r}")
        if self.rmsprop_form not in RMSPROP_FORMS:
            raise UsageError(f"rmsprop_form must be one of {', '.join(RMSPROP_FORMS)}, got {self.rmsprop_form!r}")
        if not isinstance(self.subtract_mean, bool):
            raise UsageError(f"subtract_mean must be True or False, got {self.subtract_mean!r}")
        epochs = tuple(int(e) for e in self.logged_epochs)
        if not epochs or epochs[0] != 0 or list(epochs) != sorted(set(epochs)):
            raise UsageError(f"logged_epochs must be increasing and start at 0, got {self.logged_epochs}")
        # Logged epochs past the end of a shortened run are dropped; the last epoch is always logged.
        epochs = tuple(e for e in epochs if e <= self.n_epochs)
        if epochs[-1] != self.n_epochs:
            epochs = epochs + (self.n_epochs,)
        object.__setattr__(self, "logged_epochs", epochs)
        object.__setattr__(self, "analysed_layers", tuple(self.analysed_layers))

    @property
    def subjects(self) -> range:
        """Subject indices 0 .. n_subjects-1."""
        return range(self.n_subjects)

    @property
    def final_epoch(self) -> int:
        return self.logged_epochs[-1]

    def subject_seed(self, subject: int) -> int:
        """The random seed of one subject (network): everything else is shared."""
        return self.seed + subject

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_CONV_CIFAR = dict(
    model="conv", n_subjects=10, n_epochs=50, batch_size=32, optimizer="rmsprop",
    learning_rate=1e-4, lr_decay=1e-6, plateau_factor=math.sqrt(0.1), plateau_patience=5,
    plateau_min_lr=1e-5, logged_epochs=(0, 1, 2, 4, 6, 9, 14, 21, 32, 50),
    analysed_layers=CONV_LAYERS, rmsprop_form="keras2",
)
_RESNET_CIFAR = dict(
    model="resnet18", n_subjects=8, n_epochs=100, batch_size=32, optimizer="adam",
    learning_rate=1e-3, lr_decay=0.0, plateau_factor=math.sqrt(0.1), plateau_patience=5,
    plateau_min_lr=5e-7, augment=True, logged_epochs=(0, 1, 2, 3, 5, 8, 13, 22, 36, 60, 100),
    analysed_layers=RESNET_LAYERS,
)
_ORIGINAL_MNIST = dict(
    n_subjects=10, n_epochs=20, batch_size=128, optimizer="rmsprop", learning_rate=1e-4, lr_decay=1e-6,
    logged_epochs=(0, 1, 2, 3, 4, 5, 7, 10, 14, 20), rmsprop_form="keras2", subtract_mean=False,
)

EXPERIMENTS = {
    # The offline default: scikit-learn's 8×8 digits, a small conv net, fast on a CPU.
    ("digits", "conv"): ExperimentConfig(
        data="digits", model="conv", n_subjects=10, n_epochs=30, batch_size=32,
        optimizer="rmsprop", learning_rate=1e-3, lr_decay=1e-6, plateau_min_lr=1e-5,
        logged_epochs=(0, 1, 2, 3, 5, 8, 13, 20, 30), analysed_layers=CONV_LAYERS,
    ),
    ("digits", "mlp"): ExperimentConfig(
        data="digits", model="mlp", n_subjects=10, n_epochs=30, batch_size=32,
        optimizer="rmsprop", learning_rate=1e-3, logged_epochs=(0, 1, 2, 3, 5, 8, 13, 20, 30),
        analysed_layers=("name:dense1", "name:dense2", "name:logits"),
    ),
    # The original study's MNIST networks (its models.py: get_mnist_stdnet, get_mnist_convnet), compiled
    # with Keras 2's RMSprop(lr=1e-4, decay=1e-6); its loader scaled pixels to [0, 1] without subtracting
    # the mean image; its config.py logged epochs round(logspace(0, 1.3, 10)) with 0 first. The MLP's
    # analysed layers are its three Dense layers' outputs, which fused the activation there (ReLU,
    # ReLU, softmax: config.py's layer_selected [0, 1, 2]); the conv net's are the pooling and Dense
    # layers (get_save_layer_ids). The original has no MNIST training script: batch size 128 is that of
    # Keras' mnist_mlp example, which get_mnist_stdnet adapts (its 20 epochs, its commented-out dropout).
    ("mnist", "mlp"): ExperimentConfig(data="mnist", model="mlp", **_ORIGINAL_MNIST,
                                       analysed_layers=("name:relu1", "name:relu2", "name:softmax")),
    ("mnist", "conv"): ExperimentConfig(data="mnist", model="conv", **_ORIGINAL_MNIST,
                                        analysed_layers=("name:pool1", "name:dense1", "name:logits")),
    # The paper's conditions (docs/paper.md).
    ("cifar10", "conv"): ExperimentConfig(data="cifar10", **_CONV_CIFAR),
    ("cifar100", "conv"): ExperimentConfig(data="cifar100", **_CONV_CIFAR),
    ("cifar10", "resnet18"): ExperimentConfig(data="cifar10", **_RESNET_CIFAR),
    ("cifar100", "resnet18"): ExperimentConfig(data="cifar100", **_RESNET_CIFAR),
}


def get_config(data: str, model: str, **overrides: Optional[object]) -> ExperimentConfig:
    """The registered configuration of ``(data, model)`` with some fields replaced.

    ``None`` values in ``overrides`` are ignored, so argparse defaults of
    ``None`` mean "as configured". Shortening ``n_epochs`` drops the logged
    epochs beyond it and always logs the last epoch.

    Raises
    ------
    nnsrm.errors.UsageError
        For an unknown data/model name or combination, or an invalid override
        (a ``ValueError``; exit status 2 on the command line).
    """
    if data not in DATASETS:
        raise UsageError(f"unknown data {data!r}; choose from {', '.join(DATASETS)}")
    if model not in MODELS:
        raise UsageError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    key = (data, model)
    if key not in EXPERIMENTS:
        known = ", ".join(f"{d}×{m}" for d, m in EXPERIMENTS)
        raise UsageError(f"no experiment is configured for {data}×{model}; configured: {known}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise UsageError(f"unknown config field(s) {sorted(unknown)}; fields are {sorted(fields)}")
    return dataclasses.replace(EXPERIMENTS[key], **overrides)
