"""The original study's MNIST conditions: settings, networks, preprocessing, one training run on fake data."""

import json

import numpy as np
import pytest
from conftest import run_script

from nnsrm import config
from nnsrm import data_loader
from nnsrm import models
from nnsrm.paths import ResultsLayout


def test_configs_are_the_originals():
    # The original's config.py: log_epochs = round(logspace(0, 1.3, 10)), then log_epochs[0] = 0.
    logged = np.round(np.logspace(0, 1.3, 10))
    logged[0] = 0
    for model in ("mlp", "conv"):
        cfg = config.get_config("mnist", model)
        assert cfg.logged_epochs == tuple(int(e) for e in logged) == (0, 1, 2, 3, 4, 5, 7, 10, 14, 20)
        assert (cfg.n_subjects, cfg.n_epochs, cfg.optimizer) == (10, 20, "rmsprop")
        assert (cfg.learning_rate, cfg.lr_decay, cfg.rmsprop_form) == (1e-4, 1e-6, "keras2")
        assert cfg.subtract_mean is False
    assert config.get_config("mnist", "mlp").analysed_layers == ("name:relu1", "name:relu2", "name:softmax")
    assert config.get_config("mnist", "conv").analysed_layers == ("name:pool1", "name:dense1", "name:logits")
    for data, model in config.EXPERIMENTS:  # the config and the loader agree on every condition
        assert config.get_config(data, model).subtract_mean == data_loader.SUBTRACT_MEAN[data]
    with pytest.raises(ValueError, match="subtract_mean must be True or False, got 0"):
        config.get_config("mnist", "mlp", subtract_mean=0)


def _summary(model):
    return {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}


def test_mlp_is_512_256_10_without_dropout():
    net = models.build_model("mlp", (28, 28, 1), 10, seed=0)
    shapes = _summary(net)
    assert shapes["dense1"] == (512,) and shapes["dense2"] == (256,) and shapes["logits"] == (10,)
    assert not any(type(layer).__name__ == "Dropout" for layer in net.layers)
    assert net.count_params() == (784 * 512 + 512) + (512 * 256 + 256) + (256 * 10 + 10)
    names = models.select_layers(net, config.get_config("mnist", "mlp").analysed_layers)
    assert names == ["relu1", "relu2", "softmax"]
    digits = models.build_model("mlp", (8, 8, 1), 10, seed=0)  # the digits MLP keeps Keras' example
    assert _summary(digits)["dense2"] == (512,)


def test_conv_is_the_originals_without_dropout():
    net = models.build_model("conv", (28, 28, 1), 10, seed=0)
    shapes = _summary(net)
    assert shapes["conv1"] == (28, 28, 32) and shapes["conv2"] == (26, 26, 32)
    assert shapes["pool1"] == (13, 13, 32) and shapes["dense1"] == (256,)
    assert not any(type(layer).__name__ == "Dropout" for layer in net.layers)
    assert net.count_params() == (9 * 32 + 32) + (9 * 32 * 32 + 32) + (13 * 13 * 32 * 256 + 256) + (256 * 10 + 10)
    assert models.select_layers(net, config.get_config("mnist", "conv").analysed_layers) == \
        ["pool1", "dense1", "logits"]


def _fake_mnist(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    np.savez(folder / "mnist.npz", x_train=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
             y_train=np.arange(60) % 10, x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_test=np.arange(20) % 10)
    return folder


def test_training_command_line_resolves_the_original_mnist_condition(tmp_path):
    """Fast sibling of the training run below: everything train_cifar.py does before it trains."""
    from nnsrm.commands import train as train_cifar
    from nnsrm.training import cached_dataset

    data_dir = _fake_mnist(tmp_path / "data")
    args = train_cifar.build_parser().parse_args(["--data", "mnist", "--model", "mlp", "--data-dir",
                                                  str(data_dir), "--subjects", "2", "--epochs", "1"])
    cfg = train_cifar.resolve_config(args)
    assert (cfg.n_subjects, cfg.logged_epochs, cfg.subtract_mean, cfg.rmsprop_form) == (2, (0, 1), False, "keras2")
    data = cached_dataset("mnist", str(data_dir), cfg.subtract_mean)  # what the training job loads
    raw = np.load(data_dir / "mnist.npz")
    np.testing.assert_allclose(data.x_test[..., 0], raw["x_test"] / 255.0, atol=1e-7)  # not centred
    net = models.build_model(cfg.model, data.input_shape, data.n_classes, cfg.subject_seed(0))
    assert models.select_layers(net, cfg.analysed_layers) == ["relu1", "relu2", "softmax"]


@pytest.mark.slow  # 20-60 s: a fresh process imports Keras and compiles the training step
def test_one_epoch_of_training_on_a_fake_mnist(tmp_path):
    data_dir, root = _fake_mnist(tmp_path / "data"), tmp_path / "results"
    proc = run_script("train_cifar.py", "--data", "mnist", "--model", "mlp", "--data-dir", data_dir,
                      "--subjects", "2", "--epochs", "1", "--root", root, "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    layout = ResultsLayout(root, "mnist", "mlp")
    for s in range(2):
        assert layout.weights_path(s, 0).exists() and layout.weights_path(s, 1).exists()
    saved = json.loads(layout.config_path.read_text())["config"]
    assert saved["subtract_mean"] is False and saved["rmsprop_form"] == "keras2"
    assert saved["logged_epochs"] == [0, 1]
