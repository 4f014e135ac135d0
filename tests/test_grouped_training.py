"""Grouped training (JAX, CPU): equal to sequential ``model.fit``, bit-identical reruns and resumes, bad input.

The default run trains digits × MLP on 96 images in this process (programs
that compile in seconds); the slow suite compares whole digits × conv runs
against ``digits_demo`` (conftest: 3 subjects × 3 epochs trained as one group)
and kills grouped runs with SIGKILL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import stage_outputs as so
from conftest import PYTHON, ROOT, run_script

from nnsrm import atomic, checkpoint, config, training
from nnsrm.compiled_training import CompiledEngine
from nnsrm.data_loader import Dataset
from nnsrm.paths import ResultsLayout
from nnsrm.training import cached_dataset, train_group

# One epoch of the same arithmetic in another program: differences are float32 rounding.
F32_RTOL, F32_ATOL = 1e-5, 1e-6
ACCURACY_POINTS = 0.01  # "within 1 point"
KILL_SEED = 20241201  # fixed: where the grouped run is killed (see stage_outputs.kill_at_random_point)


def _largest_difference(root_a, root_b, subject, epoch):
    a, b = so.layout(root_a), so.layout(root_b)
    xa, xb = so.h5_arrays(a.weights_path(subject, epoch)), so.h5_arrays(b.weights_path(subject, epoch))
    assert [n for n, _ in xa] == [n for n, _ in xb]
    for (name, x), (_, y) in zip(xa, xb):
        np.testing.assert_allclose(y, x, rtol=F32_RTOL, atol=F32_ATOL, err_msg=f"subj{subject} {name}")
    return max(float(np.abs(x - y).max()) for (_, x), (_, y) in zip(xa, xb))


def _demo_config(**overrides):
    """``digits_demo``'s configuration (3 subjects, 3 epochs), with ``overrides``."""
    return config.get_config("digits", "conv", **{"n_subjects": 3, "n_epochs": 3, **overrides})


# --------------------------------------------------------------------------- default run: one epoch, in process

@pytest.fixture(scope="module")
def few_images():
    """96 training and 40 test digits: three batches of 32, so the MLP's programs compile in seconds."""
    digits = cached_dataset("digits", None)
    return Dataset("digits", digits.x_train[:96], digits.y_train[:96], digits.x_test[:40], digits.y_test[:40],
                   digits.n_classes)


def _mlp_config(n_epochs=2):
    # Evaluation in batches of 16: the 40 test images make two full batches and one padded.
    return config.get_config("digits", "mlp", n_subjects=2, n_epochs=n_epochs, extract_batch_size=16)


def _states(engine, i):
    state = engine.get_state(i)
    return {f"{part} {j}": a for part in ("trainable", "non_trainable", "optimizer")
            for j, a in enumerate(getattr(state, part))}


def test_sequential_fit_and_the_grouped_step_loop_agree_after_one_epoch(few_images, capsys):
    """Seed 1 through ``model.fit`` alone and in a compiled group of 2: the same network and metrics."""
    from nnsrm.fit_training import FitEngine

    cfg = _mlp_config()
    fit, grouped = FitEngine(cfg, few_images, [1]), CompiledEngine(cfg, few_images, [0, 1], strategy="loop")
    # The same initial network.
    assert all(np.array_equal(a, b) for a, b in zip(_states(fit, 0).values(), _states(grouped, 1).values()))
    metrics_fit = fit.run_epoch([0], [True])[0]
    metrics_grouped = grouped.run_epoch([0, 0], [True, True])[1]
    a, b = _states(fit, 0), _states(grouped, 1)
    assert list(a) == list(b)
    largest = 0.0
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=F32_RTOL, atol=F32_ATOL, err_msg=name)
        largest = max(largest, float(np.abs(np.asarray(a[name], float) - np.asarray(b[name], float)).max()))
    assert abs(metrics_fit["val_accuracy"] - metrics_grouped["val_accuracy"]) <= ACCURACY_POINTS
    np.testing.assert_allclose(metrics_grouped["loss"], metrics_fit["loss"], rtol=F32_RTOL)
    with capsys.disabled():
        print(f"\n[grouped vs sequential, MLP, 96 images] largest |difference| after 1 epoch: {largest:.3g}")


def _mlp_layout(root):
    return ResultsLayout(root, "digits", "mlp")


def _same_mlp_run(root_a, root_b, subjects, epochs):
    """Weights (bitwise) and history (without timings) of the MLP runs under two roots."""
    a, b = _mlp_layout(root_a), _mlp_layout(root_b)
    for s in subjects:
        for e in epochs:
            xa, xb = so.h5_arrays(a.weights_path(s, e)), so.h5_arrays(b.weights_path(s, e))
            assert [n for n, _ in xa] == [n for n, _ in xb]
            for (name, x), (_, y) in zip(xa, xb):
                assert np.array_equal(x, y), f"subj{s:02d} epoch {e} {name} differs"
        pd.testing.assert_frame_equal(pd.read_csv(a.history_path(s)).drop(columns="seconds"),
                                      pd.read_csv(b.history_path(s)).drop(columns="seconds"), check_exact=True)


@pytest.fixture()
def mlp_on_few_images(few_images, monkeypatch):
    """Stage 1 of digits × MLP reads the few images (the programs of the tests above serve it)."""
    monkeypatch.setattr(training, "cached_dataset", lambda *args, **kwargs: few_images)
    return _mlp_config(n_epochs=3)  # logged epochs 0, 1, 2, 3


class _Interrupt(Exception):
    """Stands for the process dying: raised by the engine in place of an epoch."""


def test_grouped_runs_are_bit_identical_and_an_interrupted_group_resumes_from_its_checkpoints(
        mlp_on_few_images, tmp_path, monkeypatch):
    """A group of 2, the same seed alone, and a group stopped during epoch 3 then rerun: the same bits."""
    cfg = mlp_on_few_images
    reference, alone, root = tmp_path / "reference", tmp_path / "alone", tmp_path / "root"
    train_group(cfg, reference, [0, 1], engine="compiled", progress=False)
    train_group(cfg, alone, [1], engine="compiled", progress=False)
    _same_mlp_run(reference, alone, subjects=(1,), epochs=(0, 1, 2, 3))

    lay, calls, original = _mlp_layout(root), [], CompiledEngine.run_epoch

    def dies_at_epoch_3(self, epochs, active):
        calls.append(list(epochs))
        if min(epochs) == 2:
            raise _Interrupt
        return original(self, epochs, active)

    monkeypatch.setattr(CompiledEngine, "run_epoch", dies_at_epoch_3)
    with pytest.raises(_Interrupt):
        train_group(cfg, root, [0, 1], engine="compiled", progress=False)
    assert calls == [[0, 0], [1, 1], [2, 2]]  # stopped mid-run: epochs 1 and 2 done, epoch 3 started
    assert [checkpoint.load_checkpoint(lay.subject_dir(s)).epoch for s in (0, 1)] == [2, 2]
    assert not any(atomic.is_complete(lay.subject_dir(s)) for s in (0, 1))
    monkeypatch.setattr(CompiledEngine, "run_epoch", original)
    results = train_group(cfg, root, [0, 1], engine="compiled", progress=False)
    assert [r["resumed_from"] for r in results] == [2, 2]
    _same_mlp_run(reference, root, subjects=(0, 1), epochs=(0, 1, 2, 3))
    assert all(atomic.marker_status(lay.subject_dir(s), verify=True) == "complete" for s in (0, 1))
    assert not list(root.rglob(checkpoint.CHECKPOINT_NAME)) and not list(root.rglob(".*.tmp*"))


# --------------------------------------------------------------------------- slow: vmap on a CPU, whole runs, SIGKILL

@pytest.mark.slow
def test_vmapped_group_equals_the_step_loop_on_a_few_images(few_images):
    """The accelerator strategy (one vmapped program per epoch) against the CPU's step loop, 2 seeds × 2 calls."""
    cfg = _mlp_config()
    engines = {s: CompiledEngine(cfg, few_images, [0, 1], strategy=s) for s in ("vmap", "loop")}
    metrics = {s: [e.run_epoch([0, 0], [True, True]), e.run_epoch([1, 0], [True, False])]
               for s, e in engines.items()}
    assert metrics["vmap"][1][1] is None and metrics["loop"][1][1] is None  # seed 1 sat out the second call
    for first, second in zip(*metrics.values()):
        for a, b in zip(first, second):
            if a is not None:
                np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=F32_RTOL)
    for i in (0, 1):
        vmap, loop = _states(engines["vmap"], i), _states(engines["loop"], i)
        for name in vmap:
            np.testing.assert_allclose(vmap[name], loop[name], rtol=F32_RTOL, atol=F32_ATOL, err_msg=f"seed {i} {name}")
    assert engines["vmap"].program.traces["epoch"] == 1  # one program for both calls


@pytest.mark.slow
def test_grouped_equals_sequential_fit_and_grouped_reruns_are_identical(digits_demo, tmp_path, capsys):
    cfg = _demo_config()
    sequential, grouped = tmp_path / "fit", tmp_path / "grouped"
    # Sequential: model.fit, one subject after another (what every other backend runs).
    train_group(cfg, sequential, [0, 1], engine="fit", progress=False)
    largest = max(_largest_difference(digits_demo, sequential, s, 1) for s in (0, 1))
    for s in (0, 1):
        acc_grouped = pd.read_csv(so.layout(digits_demo).history_path(s))["val_accuracy"].iloc[-1]
        acc_sequential = pd.read_csv(so.layout(sequential).history_path(s))["val_accuracy"].iloc[-1]
        assert abs(acc_grouped - acc_sequential) <= ACCURACY_POINTS
    # Grouped again, as a group of 2 instead of 3: bit for bit the same networks.
    results = train_group(cfg, grouped, [0, 1], engine="compiled", progress=False)
    assert [r["subject"] for r in results] == [0, 1]
    so.assert_same_stage1(digits_demo, grouped, subjects=(0, 1), epochs=(0, 1, 2, 3))
    with capsys.disabled():
        print(f"\n[grouped vs sequential] largest |difference| of a weight after 1 epoch: {largest:.3g}")


@pytest.mark.slow
def test_sigkill_during_grouped_training_then_rerun_is_identical(tmp_path, digits_demo, capsys):
    root = tmp_path / "root"
    args = ["train_cifar.py", "--root", root, "--subjects", "3", "--epochs", "3", "--group-size", "3",
            "--no-progress"]
    # 22 outputs: config.json, then per subject config.json, 4 weights, history.csv, marker.
    info = so.kill_at_random_point(args, so.layout(root).condition_dir, 22, KILL_SEED)
    complete = [atomic.is_complete(so.layout(root).subject_dir(s)) for s in range(3)]
    with capsys.disabled():
        print(f"\n[grouped kill] seed {KILL_SEED}: {info}; complete at kill: {complete}")
    assert info["killed"] and not all(complete), "the kill did not land mid-run"
    rerun = run_script(*args)
    assert rerun.returncode == 0, rerun.stderr
    so.assert_nothing_corrupt(root, stages=(1,))
    so.assert_same_stage1(digits_demo, root, subjects=(0, 1, 2), epochs=(0, 1, 2, 3))
    assert not list(root.rglob(checkpoint.CHECKPOINT_NAME))


@pytest.mark.slow
def test_sigkill_after_epoch_2_resumes_from_the_checkpoint(tmp_path):
    cfg = config.get_config("digits", "conv", n_subjects=2, n_epochs=5)  # logged epochs 0, 1, 2, 3, 5
    reference = tmp_path / "reference"
    train_group(cfg, reference, [0, 1], progress=False)
    root = tmp_path / "root"
    lay = so.layout(root)
    args = [PYTHON, "train_cifar.py", "--root", str(root), "--subjects", "2", "--epochs", "5", "--no-progress"]
    proc = subprocess.Popen(args, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            ckpts = [checkpoint.load_checkpoint(lay.subject_dir(s)) for s in (0, 1)]
            if all(c is not None and c.epoch >= 2 for c in ckpts):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    at_kill = {s: checkpoint.load_checkpoint(lay.subject_dir(s)).epoch for s in (0, 1)}
    assert not any(atomic.is_complete(lay.subject_dir(s)) for s in (0, 1))
    rerun = run_script(*args[1:], "-v")
    assert rerun.returncode == 0, rerun.stderr
    resumed = {int(s): int(e) for s, e in re.findall(r"subject (\d+): resuming from its checkpoint at epoch (\d+)",
                                                     rerun.stderr)}
    assert resumed == at_kill and min(resumed.values()) >= 2, rerun.stderr
    assert "training from the start" not in rerun.stderr
    so.assert_same_stage1(reference, root, subjects=(0, 1), epochs=cfg.logged_epochs)
    so.assert_nothing_corrupt(root, stages=(1,))
    assert not list(root.rglob(checkpoint.CHECKPOINT_NAME))


@pytest.mark.parametrize("backend, args, message", [
    ("jax", ["--group-size", "0"], r"argument --group-size: expected a positive integer or 'auto', got 0"),
    ("jax", ["--subjects", "3", "--group-size", "4"],
     r"--group-size 4 is larger than the number of subjects to train \(3\)"),
    ("jax", ["--only-subjects", "1", "2", "--group-size", "3"],
     r"--group-size 3 is larger than the number of subjects to train \(2\)"),
    ("tensorflow", ["--subjects", "4", "--group-size", "4"],
     r"--group-size 4: training several subjects together needs the JAX backend \(KERAS_BACKEND=tensorflow\)"),
])
def test_bad_group_size_is_one_line_exit_2_and_writes_nothing(tmp_path, backend, args, message):
    root = tmp_path / "results"
    proc = run_script("train_cifar.py", "--root", root, *args, env={"KERAS_BACKEND": backend}, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("train_cifar.py: error: ") and re.search(message, lines[0]), lines[0]
    assert not root.exists()


def test_a_group_with_a_subject_trained_otherwise_stops_before_writing(mlp_on_few_images, tmp_path):
    """The job's own check (the command checks first): a stale subject stops the group, nothing is written."""
    from nnsrm import state
    from nnsrm.errors import StaleOutputError

    cfg, root = mlp_on_few_images, tmp_path / "root"
    train_group(cfg, root, [1], engine="compiled", progress=False)
    lay = _mlp_layout(root)
    info = atomic.read_marker(lay.subject_dir(1))
    assert info[state.RECORD_KEY] == state.stage1_record(cfg)  # the record the sequential path writes
    info[state.RECORD_KEY]["seed"] = 5
    atomic.write_marker(lay.subject_dir(1), [lay.subject_dir(1) / f for f in info.pop("files")], **info)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(StaleOutputError, match=r"train subj01 \(.*subj01\) was made with --seed 5, this run asks "
                                               r"for --seed 0; pass --overwrite to redo it"):
        train_group(cfg, root, [0, 1], engine="compiled", progress=False)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
