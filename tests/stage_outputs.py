"""Helpers for the stage tests: synthetic stage-2 roots, compare stage outputs, copy roots, kill runs.

"Identical" means: stage 1 weights equal as arrays (HDF5 files carry timestamps)
and history.csv equal except its wall-clock ``seconds`` column; stage 2 and 3
array files equal byte for byte (``.npy``) or array for array (``.npz``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from conftest import PYTHON, ROOT
from scipy.stats import ortho_group

from nnsrm import config
from nnsrm import atomic
from nnsrm.paths import ResultsLayout
from nnsrm.provenance import write_config_json
from nnsrm.status import condition_status

DATA, MODEL = "digits", "conv"


def write_synthetic_stage2(root, data: str, model: str, layers: dict, n_subjects: int, n_epochs: int,
                           n_images: int, n_classes: int, seed: int = 0, depth_gain: float = 0.0,
                           pattern_noise: float = 1.0, epoch_noise: float = 1.0) -> ResultsLayout:
    """Write what stages 1–2 leave behind for one condition, without training; return its layout.

    config.json, layers.json, test_labels.npy and, per subject × logged epoch,
    float32 activations (images × units) with a completion marker. Epoch 0's
    networks are unrelated random features; at epoch e > 0 a network is a random
    rotation of one pattern per layer, ``(1 + depth_gain * depth) * classes +
    pattern_noise * noise``, plus ``epoch_noise / e`` noise, so alignment improves
    with training (and class structure with depth if ``depth_gain > 0``).
    """
    layout = ResultsLayout(root, data, model)
    cfg = config.get_config(data, model, n_subjects=n_subjects, n_epochs=n_epochs)
    write_config_json(layout.config_path, cfg.to_dict())
    atomic.write_json(layout.layers_path, {"layers": list(layers), "units": dict(layers)})
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % n_classes
    atomic.save_npy(layout.test_labels_path, labels.astype(np.int64))
    pattern = {}
    for depth, (name, u) in enumerate(layers.items()):
        classes = rng.standard_normal((u, n_classes))[:, labels]  # (u, n_images)
        pattern[name] = (1 + depth_gain * depth) * classes + pattern_noise * rng.standard_normal((u, n_images))
    for s in range(n_subjects):
        rot = {name: ortho_group.rvs(u, random_state=int(rng.integers(2**31))) for name, u in layers.items()}
        for e in cfg.logged_epochs:
            files = []
            for name, u in layers.items():
                if e == 0:  # untrained: unrelated random features
                    X = rng.standard_normal((u, n_images))
                else:
                    X = rot[name] @ pattern[name] + (epoch_noise / e) * rng.standard_normal((u, n_images))
                path = layout.activation_path(s, e, name)
                atomic.save_npy(path, X.T.astype(np.float32))  # on disk: images × units
                files.append(path)
            atomic.write_marker(layout.activations_dir(s, e), files, subject=s, epoch=e)
    return layout


def layout(root) -> ResultsLayout:
    return ResultsLayout(root, DATA, MODEL)


def h5_arrays(path):
    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return sorted(out, key=lambda t: t[0])


def assert_same_stage1(ref_root, root, subjects, epochs):
    """Weights (as arrays) and history (without timings) of ``subjects`` equal the reference's."""
    a, b = layout(ref_root), layout(root)
    for s in subjects:
        for e in epochs:
            xa, xb = h5_arrays(a.weights_path(s, e)), h5_arrays(b.weights_path(s, e))
            assert [n for n, _ in xa] == [n for n, _ in xb], (s, e)
            for (name, x), (_, y) in zip(xa, xb):
                assert np.array_equal(x, y), f"subj{s:02d} epoch {e} {name} differs"
        ha = pd.read_csv(a.history_path(s)).drop(columns="seconds")
        hb = pd.read_csv(b.history_path(s)).drop(columns="seconds")
        pd.testing.assert_frame_equal(ha, hb, check_exact=True)


def _final_npy(directory):
    """Names of the final ``.npy`` files (not a killed run's hidden temporaries)."""
    return sorted(p.name for p in directory.glob("*.npy") if not p.name.startswith("."))


def assert_same_stage2(ref_root, root, subjects, epochs):
    """Every activation and unit-index file of ``subjects`` × ``epochs`` is byte-identical to the reference's."""
    a, b = layout(ref_root), layout(root)
    n = 0
    for s in subjects:
        for e in epochs:
            files = _final_npy(a.activations_dir(s, e))
            assert files == _final_npy(b.activations_dir(s, e)), (s, e)
            for name in files:
                assert (a.activations_dir(s, e) / name).read_bytes() == (b.activations_dir(s, e) / name).read_bytes(), \
                    f"subj{s:02d} epoch {e} {name} differs"
                n += 1
    assert n > 0
    assert a.test_labels_path.read_bytes() == b.test_labels_path.read_bytes()


def assert_same_stage3(ref_root, root):
    """Every complete stage-3 job's results.npz equal array for array; summary.csv equal."""
    a, b = layout(ref_root), layout(root)
    ref_jobs = sorted(p.parent for p in a.analyses_dir.rglob(atomic.MARKER_NAME))
    assert ref_jobs
    for ref_dir in ref_jobs:
        other = b.analyses_dir / ref_dir.relative_to(a.analyses_dir)
        assert atomic.is_complete(other, verify=True), other
        with np.load(ref_dir / "results.npz") as za, np.load(other / "results.npz") as zb:
            assert sorted(za.files) == sorted(zb.files)
            for key in za.files:
                assert np.array_equal(za[key], zb[key]), f"{other} {key} differs"
    pd.testing.assert_frame_equal(pd.read_csv(a.summary_path), pd.read_csv(b.summary_path), check_exact=True)


def copy_stage1(src, dst):
    """A results root with only stage 1's outputs of ``src`` (no activations, layers.json, labels)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("epoch_*", "layers.json", "test_labels.npy",
                                                            "analyses", ".cache"))
    return dst


def assert_nothing_corrupt(root, stages=(1, 2)):
    """Every expected job of ``stages`` is complete by checksum, and every final-named array file loads.

    Returns the leftover temporary files (hidden ``.*.tmp*`` names; a killed
    run can leave them, and no job reads them).
    """
    st = condition_status(layout(root), verify=True)
    bad = [j for j in st.jobs if j.stage in stages and j.state != "complete"]
    assert not bad, bad
    temps = []
    for p in Path(root).rglob("*"):
        if not p.is_file() or ".cache" in p.parts:
            continue
        if p.name.startswith(".") and ".tmp" in p.name:
            temps.append(p)
        elif p.suffix == ".npy":
            np.load(p)
        elif p.name.endswith(".weights.h5"):
            assert h5_arrays(p)
    return temps


def count_outputs(directory) -> int:
    """Final-named files under ``directory`` (not temporaries)."""
    directory = Path(directory)
    if not directory.exists():
        return 0
    return sum(1 for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))


def kill_at_random_point(args, watch, n_expected, seed, latest=None, env=None, timeout=300):
    """Start ``python *args``; SIGKILL it at a random point of its run; return where it was killed.

    The point: once ``k`` new outputs exist under ``watch`` (``k`` uniform in
    1 .. ``latest``), plus a random 0–0.3 s, which lands inside a job, between
    two files, or during a write — but never later than the moment ``latest``
    outputs exist (default ``n_expected - 1``): pick ``latest`` so that a job
    is still to finish then, and the kill always lands mid-run. Reproducible
    given ``seed`` (up to timing).

    Returns
    -------
    dict
        ``{"seed", "k", "delay", "outputs_at_kill", "killed"}``; ``killed`` is
        False if the run had ended before the kill.
    """
    latest = n_expected - 1 if latest is None else latest
    rng = random.Random(seed)
    k = rng.randint(1, latest)
    delay = rng.uniform(0.0, 0.3)
    before = count_outputs(watch)
    proc = subprocess.Popen([PYTHON, *map(str, args)], cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and count_outputs(watch) - before < k:
            if time.monotonic() > deadline:
                raise AssertionError(f"{args} wrote {count_outputs(watch) - before} of {k} outputs in {timeout} s")
            time.sleep(0.005)
        kill_at = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < kill_at and count_outputs(watch) - before < latest:
            time.sleep(0.005)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        outputs = count_outputs(watch) - before
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    assert killed or proc.returncode == 0, f"{args} failed before the kill point:\n{err}"
    return {"seed": seed, "k": k, "delay": round(delay, 3), "outputs_at_kill": outputs, "killed": killed}


def unfinished_jobs(root, stage):
    """Names of the expected jobs of ``stage`` that are not complete (as ``status.py`` sees them)."""
    return [j.name for j in condition_status(layout(root)).jobs if j.stage == stage and j.state != "complete"]


def assert_nothing_half_written(root):
    """No job is corrupt, and every final-named array or weight file loads (a job may be missing).

    Returns the leftover temporary files.
    """
    st = condition_status(layout(root), verify=True)
    bad = [j for j in st.jobs if j.state == "corrupt"]
    assert not bad, bad
    temps = []
    for p in Path(root).rglob("*"):
        if not p.is_file() or ".cache" in p.parts:
            continue
        if p.name.startswith(".") and ".tmp" in p.name:
            temps.append(p)
        elif p.suffix == ".npy":
            np.load(p)
        elif p.suffix == ".npz":
            with np.load(p) as z:
                [z[k] for k in z.files]
        elif p.name.endswith(".weights.h5"):
            assert h5_arrays(p)
    return temps


def tree_digest(path) -> dict:
    """Every file (SHA-256) and folder under ``path``, by relative path: compare before and after a run."""
    path = Path(path)
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        out[rel] = "folder" if p.is_dir() and not p.is_symlink() else atomic.file_digest(p)
    return out


def stage1_subjects(src, dst, n_subjects):
    """A results root with stage 1 of the first ``n_subjects`` subjects of ``src`` (config.json says so)."""
    import json

    lay_src = layout(src)
    lay = layout(dst)
    lay.condition_dir.mkdir(parents=True)
    for s in range(n_subjects):
        shutil.copytree(lay_src.subject_dir(s), lay.subject_dir(s), ignore=shutil.ignore_patterns("epoch_*"))
    cfg = json.loads(lay_src.config_path.read_text())
    cfg["config"]["n_subjects"] = n_subjects
    atomic.write_json(lay.config_path, cfg)
    return dst
