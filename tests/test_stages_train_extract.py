"""Stages 1 and 2 end to end on digits: outputs, determinism, resumability, bad input."""

import json
import re
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from conftest import PYTHON, ROOT, run_script

from nnsrm import atomic
from nnsrm.paths import ResultsLayout


def _h5_arrays(path):
    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return sorted(out, key=lambda t: t[0])


def _same_h5(a, b):
    xa, xb = _h5_arrays(a), _h5_arrays(b)
    return [n for n, _ in xa] == [n for n, _ in xb] and all(np.array_equal(x, y) for (_, x), (_, y) in zip(xa, xb))


def test_stage_outputs_are_complete(digits_demo):
    layout = ResultsLayout(digits_demo, "digits", "conv")
    layers = json.loads(layout.layers_path.read_text())
    assert layers["layers"] == ["pool1", "pool2", "dense1", "logits"]
    labels = np.load(layout.test_labels_path)
    epochs = (0, 1, 2, 3)
    for s in range(3):
        assert atomic.marker_status(layout.subject_dir(s), verify=True) == "complete"
        history = layout.history_path(s).read_text().splitlines()
        assert history[0].startswith("epoch,loss,accuracy,val_loss,val_accuracy,learning_rate")
        assert len(history) == 4
        for e in epochs:
            assert layout.weights_path(s, e).exists()
            assert atomic.marker_status(layout.activations_dir(s, e), verify=True) == "complete"
            for name in layers["layers"]:
                acts = np.load(layout.activation_path(s, e, name))
                assert acts.dtype == np.float32
                assert acts.shape == (len(labels), layers["units"][name])
                assert np.isfinite(acts).all()
    config_json = json.loads((layout.subject_dir(1) / "config.json").read_text())
    assert config_json["seed"] == 1 and config_json["provenance"]["packages"]["keras"]


def test_training_changes_the_network(digits_demo):
    layout = ResultsLayout(digits_demo, "digits", "conv")
    a0 = np.load(layout.activation_path(0, 0, "logits"))
    a3 = np.load(layout.activation_path(0, 3, "logits"))
    labels = np.load(layout.test_labels_path)
    assert (a3.argmax(1) == labels).mean() > 0.5  # 3 epochs already classify digits well
    assert (a0.argmax(1) == labels).mean() < 0.4


@pytest.mark.slow  # ~40 s; grouped runs are checked bit-identical in test_grouped_training's default tests
def test_same_seed_identical_weights_and_activations(digits_demo, tmp_path):
    run_script("train_cifar.py", "--root", tmp_path, "--subjects", "1", "--epochs", "3",
               "--no-progress", check=True)
    run_script("save_acts_cifar.py", "--root", tmp_path, "--no-progress", check=True)
    a, b = ResultsLayout(digits_demo, "digits", "conv"), ResultsLayout(tmp_path, "digits", "conv")
    for e in (0, 3):
        assert _same_h5(a.weights_path(0, e), b.weights_path(0, e))
        for name in ("pool1", "logits"):
            np.testing.assert_array_equal(np.load(a.activation_path(0, e, name)),
                                          np.load(b.activation_path(0, e, name)))
    # Different seeds (subjects 0 and 1) differ.
    assert not _same_h5(a.weights_path(0, 0), a.weights_path(1, 0))
    assert not _same_h5(a.weights_path(0, 3), a.weights_path(1, 3))


def test_sigkill_mid_subject_then_rerun_skips_complete_and_resumes_the_others(tmp_path):
    layout = ResultsLayout(tmp_path, "digits", "conv")
    args = [PYTHON, "train_cifar.py", "--root", str(tmp_path), "--subjects", "3", "--epochs", "8",
            "--group-size", "1", "--no-progress"]
    proc = subprocess.Popen(args, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    # Kill once subject 0 is complete and subject 1 has started writing weights (one job per subject).
    while time.monotonic() < deadline and proc.poll() is None:
        if atomic.is_complete(layout.subject_dir(0)) and layout.weights_path(1, 2).exists():
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not atomic.is_complete(layout.subject_dir(1))
    done_mtime = layout.weights_path(0, 8).stat().st_mtime_ns
    rerun = run_script("train_cifar.py", "--root", tmp_path, "--subjects", "3", "--epochs", "8",
                       "--group-size", "1", "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert layout.weights_path(0, 8).stat().st_mtime_ns == done_mtime  # not retrained
    assert "(2 trained, 1 already complete; 3 job(s) of up to 1)" in rerun.stdout
    assert re.search(r"resumed from checkpoints: subj01 at epoch [1-8]", rerun.stdout), rerun.stdout
    for s in range(3):
        assert atomic.marker_status(layout.subject_dir(s), verify=True) == "complete"
        for e in (0, 1, 2, 3, 5, 8):
            assert _h5_arrays(layout.weights_path(s, e))  # loadable
    leftovers = [p for p in tmp_path.rglob("*.tmp*")] + [p for p in tmp_path.rglob("checkpoint.npz")]
    assert leftovers == []


@pytest.mark.parametrize("args, message", [
    (["--data", "imagenet"], r"invalid choice: 'imagenet' \(choose from '?cifar10'?, '?cifar100'?, '?digits'?, '?mnist'?\)"),
    (["--model", "vgg"], r"invalid choice: 'vgg' \(choose from '?conv'?, '?mlp'?, '?resnet18'?\)"),
    (["--subjects", "0"], r"expected a positive integer \(>= 1\), got 0"),
    (["--data", "cifar10", "--data-dir", "{empty}"], r"cifar-10-python\.tar\.gz not found in .*download it from"),
    (["--root", "{file}"], r"is a file, not a folder"),
    (["--data", "digits", "--model", "resnet18"], r"no experiment is configured for digits×resnet18"),
])
def test_bad_input_is_one_line_exit_2_and_destroys_nothing(tmp_path, args, message):
    results = tmp_path / "results"
    keep = results / "digits" / "conv" / "subj00" / "history.csv"
    keep.parent.mkdir(parents=True)
    keep.write_text("precious")
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    args = [a.format(empty=empty, file=a_file) for a in args]
    if "--root" not in args:
        args += ["--root", str(results)]
    proc = run_script("train_cifar.py", *args, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("train_cifar.py: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert keep.read_text() == "precious"
    assert a_file.read_text() == "not a folder"
    assert sorted(p.name for p in results.rglob("*")) == ["conv", "digits", "history.csv", "subj00"]


def test_stage2_before_stage1_says_what_to_run(tmp_path):
    proc = run_script("save_acts_cifar.py", "--root", tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "run train_cifar.py --data digits --model conv" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # ~35 s; ResNet's forward pass under TensorFlow stays in the default run
def test_tensorflow_backend_smoke(tmp_path):
    """The same code trains one short epoch and extracts activations on TensorFlow."""
    env = {"KERAS_BACKEND": "tensorflow"}
    run_script("train_cifar.py", "--root", tmp_path, "--subjects", "1", "--epochs", "1",
               "--no-progress", env=env, check=True)
    run_script("save_acts_cifar.py", "--root", tmp_path, "--no-progress", env=env, check=True)
    layout = ResultsLayout(tmp_path, "digits", "conv")
    cfg = json.loads((layout.subject_dir(0) / "config.json").read_text())
    assert cfg["provenance"]["keras_backend"] == "tensorflow"
    acts = np.load(layout.activation_path(0, 1, "dense1"))
    assert acts.shape[1] == 128 and np.isfinite(acts).all()
