"""The paper's four conditions (cifar10/cifar100 × conv/resnet18) on tiny fake archives.

The default run checks, for every condition, the analysed layers and their unit
counts on the real CIFAR code path, and runs stages 1 and 2 end to end for
cifar10 × conv. Training each condition for one epoch (ResNet-18 compiles for
minutes on a 2-core CPU) is marked slow: ``make test-slow``.
"""

import json

import numpy as np
import pytest
from cifar_fixture import declared_fixtures, make_cifar_archive
from conftest import run_script

from nnsrm import config
from nnsrm.extract import write_condition_metadata
from nnsrm.paths import ResultsLayout

CONDITIONS = [("cifar10", "conv"), ("cifar100", "conv"), ("cifar10", "resnet18"), ("cifar100", "resnet18")]
EXPECTED_UNITS = {
    "conv": {"pool1": 15 * 15 * 32, "pool2": 6 * 6 * 64, "dense1": 512},
    # Pre-activation ResNet-18, ImageNet stem, 32×32 input: the 9 odd-numbered BN layers.
    "resnet18": {"stem_bn": 16 * 16 * 64, "block1b_bn1": 8 * 8 * 64, "block2a_bn1": 8 * 8 * 64,
                 "block2b_bn1": 4 * 4 * 128, "block3a_bn1": 4 * 4 * 128, "block3b_bn1": 2 * 2 * 256,
                 "block4a_bn1": 2 * 2 * 256, "block4b_bn1": 512, "final_bn": 512},
}


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar")
    make_cifar_archive(folder, "cifar10")
    make_cifar_archive(folder, "cifar100")
    with declared_fixtures():  # for this module's tests and the stages they run
        yield folder


def _expected(data, model):
    units = dict(EXPECTED_UNITS[model])
    units["logits"] = 10 if data == "cifar10" else 100  # the output layer is analysed too (Fig. 4 leaves it out)
    return units


@pytest.mark.parametrize("data, model", CONDITIONS)
def test_condition_finds_the_papers_layers(tmp_path, fake_cifar, data, model):
    cfg = config.get_config(data, model)
    names = write_condition_metadata(cfg, tmp_path, str(fake_cifar))
    layers = json.loads(ResultsLayout(tmp_path, data, model).layers_path.read_text())
    expected = _expected(data, model)
    assert names == list(expected)  # exactly these, in depth order
    assert layers["units_before_cap"] == expected
    assert layers["units"] == {n: min(u, 1000) for n, u in expected.items()}


def _train_and_extract(root, fake_cifar, data, model):
    common = ["--data", data, "--model", model, "--root", root, "--data-dir", fake_cifar, "--no-progress"]
    run_script("train_cifar.py", *common, "--subjects", "1", "--epochs", "1", "--batch-size", "25",
               check=True, timeout=1200)
    run_script("save_acts_cifar.py", *common, check=True, timeout=1200)
    layout = ResultsLayout(root, data, model)
    assert sorted(p.name for p in layout.subject_dir(0).glob("weights.*")) == [
        "weights.000.weights.h5", "weights.001.weights.h5"]
    labels = np.load(layout.test_labels_path)
    for name, units in _expected(data, model).items():
        for epoch in (0, 1):
            acts = np.load(layout.activation_path(0, epoch, name))
            assert acts.shape == (len(labels), min(units, 1000)) and np.isfinite(acts).all()
    saved = json.loads(layout.config_path.read_text())["config"]
    assert saved["logged_epochs"] == [0, 1] and saved["augment"] == (model == "resnet18")


@pytest.mark.slow  # ~150 s on 2 cores; the CIFAR loaders, layer choice and conv net are checked fast elsewhere
def test_cifar10_conv_end_to_end(tmp_path, fake_cifar):
    _train_and_extract(tmp_path, fake_cifar, "cifar10", "conv")


@pytest.mark.slow
@pytest.mark.parametrize("data, model", CONDITIONS[1:])
def test_every_condition_end_to_end(tmp_path, fake_cifar, data, model):
    _train_and_extract(tmp_path, fake_cifar, data, model)
