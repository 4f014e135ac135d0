"""The experiment registry: the paper's settings, overrides, clear errors."""

import math

import pytest

from nnsrm import config


def test_paper_conv_settings():
    for data in ("cifar10", "cifar100"):
        cfg = config.get_config(data, "conv")
        assert (cfg.n_subjects, cfg.n_epochs, cfg.batch_size) == (10, 50, 32)
        assert (cfg.optimizer, cfg.learning_rate, cfg.lr_decay) == ("rmsprop", 1e-4, 1e-6)
        assert math.isclose(cfg.plateau_factor, math.sqrt(0.1)) and cfg.plateau_patience == 5
        assert cfg.plateau_min_lr == 1e-5 and not cfg.augment
        assert cfg.logged_epochs == (0, 1, 2, 4, 6, 9, 14, 21, 32, 50)


def test_paper_resnet_settings():
    cfg = config.get_config("cifar10", "resnet18")
    assert (cfg.n_subjects, cfg.n_epochs, cfg.optimizer, cfg.augment) == (8, 100, "adam", True)
    assert cfg.logged_epochs == (0, 1, 2, 3, 5, 8, 13, 22, 36, 60, 100)
    assert cfg.plateau_min_lr == 5e-7


def test_offline_default_is_small_and_logs_epoch_zero():
    cfg = config.get_config("digits", "conv")
    assert cfg.n_subjects == 10 and cfg.n_epochs <= 30 and cfg.logged_epochs[0] == 0
    assert cfg.logged_epochs[-1] == cfg.n_epochs


def test_shorter_run_drops_later_logged_epochs_and_logs_the_last():
    cfg = config.get_config("cifar10", "conv", n_epochs=7)
    assert cfg.logged_epochs == (0, 1, 2, 4, 6, 7)
    assert config.get_config("digits", "conv", n_epochs=None).n_epochs == 30  # None = as configured


@pytest.mark.parametrize("kwargs, message", [
    (dict(data="imagenet", model="conv"), "unknown data 'imagenet'; choose from digits"),
    (dict(data="digits", model="vgg"), "unknown model 'vgg'; choose from conv, mlp, resnet18"),
    (dict(data="digits", model="resnet18"), "no experiment is configured for digits×resnet18"),
    (dict(data="digits", model="conv", n_subjects=0), "n_subjects must be a positive integer"),
    (dict(data="digits", model="conv", colour="red"), r"unknown config field\(s\) \['colour'\]"),
])
def test_bad_config_requests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        config.get_config(**kwargs)
