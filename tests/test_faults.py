"""Faults: a stage SIGKILLed mid-run and rerun ends identical; bad input gets a clear error and changes nothing.

Kill tests pick the kill point from a seed (see ``stage_outputs.kill_at_random_point``):
fixed seeds by default, printed with each result; ``NNSRM_KILL_SEED=<seed>``
replays one. Each asserts that its kill landed mid-run (the process was still
running and a job of the stage was unfinished). The slow variants repeat each
stage at more points.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import stage_outputs as so
from conftest import PYTHON, ROOT, STAGE3_ARGS, run_script
from nnsrm import atomic, cli

#: Kill points of the default run (fixed, so a failure replays); more for the slow variants.
KILL_SEEDS = (1009, 2017, 3041, 4057, 5081)


def _seeds(n):
    if os.environ.get("NNSRM_KILL_SEED"):
        return [int(os.environ["NNSRM_KILL_SEED"])]
    return list(KILL_SEEDS[:n])


def _report(capsys, stage, info, unfinished, temps):
    with capsys.disabled():
        print(f"\n[kill test stage {stage}] {info}; unfinished jobs at the kill: {unfinished}; temporary files "
              f"left: {len(temps)} (replay: NNSRM_KILL_SEED={info['seed']})")


def _assert_mid_run(info, unfinished):
    assert info["killed"], f"the run had ended before the kill: {info}"
    assert unfinished, f"the kill landed after every job was complete: {info}"


# --------------------------------------------------------------------------- SIGKILL, then rerun

def _kill_stage1(tmp_path, digits_demo, capsys, seed):
    root = tmp_path / "root"
    args = ["train_cifar.py", "--root", root, "--subjects", "2", "--epochs", "3", "--no-progress"]
    # 15 outputs: config.json, then per subject config.json, 4 weights, history.csv, marker. The kill
    # comes at the latest once subject 1 has saved epoch 2 (13 outputs), while it trains epoch 3.
    info = so.kill_at_random_point(args, so.layout(root).condition_dir, 15, seed, latest=13)
    unfinished = so.unfinished_jobs(root, 1)
    _assert_mid_run(info, unfinished)
    rerun = run_script(*args)
    assert rerun.returncode == 0, (info, rerun.stderr)
    temps = so.assert_nothing_corrupt(root, stages=(1,))
    so.assert_same_stage1(digits_demo, root, subjects=(0, 1), epochs=(0, 1, 2, 3))
    _report(capsys, 1, info, unfinished, temps)
    return info


def _kill_stage2(tmp_path, digits_demo, capsys, seed):
    # Stage 1 complete, stage 2 done for subjects 0 and 1: the run has subject 2's 4 jobs to do.
    root = tmp_path / "root"
    shutil.copytree(digits_demo, root, ignore=shutil.ignore_patterns(".cache", "layers.json", "test_labels.npy"))
    for adir in so.layout(root).subject_dir(2).glob("epoch_*"):
        shutil.rmtree(adir)
    args = ["save_acts_cifar.py", "--root", root, "--no-progress"]
    # 38 outputs: layers.json, test_labels.npy, 4 jobs × (8 .npy + marker). The kill comes at the latest
    # once the third job is complete (29 outputs), while the fourth computes.
    info = so.kill_at_random_point(args, so.layout(root).condition_dir, 38, seed, latest=29)
    unfinished = so.unfinished_jobs(root, 2)
    _assert_mid_run(info, unfinished)
    rerun = run_script(*args)
    assert rerun.returncode == 0, (info, rerun.stderr)
    temps = so.assert_nothing_corrupt(root, stages=(1, 2))
    so.assert_same_stage2(digits_demo, root, subjects=(0, 1, 2), epochs=(0, 1, 2, 3))
    _report(capsys, 2, info, unfinished, temps)
    return info


def _kill_stage3(tmp_path, digits_demo, reference, capsys, seed):
    root = tmp_path / "root"
    shutil.copytree(digits_demo, root)
    args = ["run_analyses.py", "--root", root, "--no-progress", *STAGE3_ARGS]
    # 13 outputs: 4 jobs × (results.npz, rsm.png, marker), then summary.csv. The kill comes at the
    # latest once the third job is complete (9 outputs), while the fourth computes.
    info = so.kill_at_random_point(args, so.layout(root).analyses_dir, 13, seed, latest=9)
    lay = so.layout(root)
    unfinished = [f"epoch {e} layer {n}" for e in (0, 3) for n in ("dense1", "logits")
                  if not atomic.is_complete(lay.analysis_dir(e, n))]
    _assert_mid_run(info, unfinished)
    rerun = run_script(*args)
    assert rerun.returncode == 0, (info, rerun.stderr)
    temps = so.assert_nothing_corrupt(root, stages=(1, 2))
    so.assert_same_stage3(reference, root)
    _report(capsys, 3, info, unfinished, temps)
    return info


def test_stage1_sigkill_mid_run_then_rerun_is_identical(tmp_path, digits_demo, capsys):
    _kill_stage1(tmp_path, digits_demo, capsys, _seeds(1)[0])


def test_stage2_sigkill_mid_run_then_rerun_is_identical(tmp_path, digits_demo, capsys):
    _kill_stage2(tmp_path, digits_demo, capsys, _seeds(1)[0])


def test_stage3_sigkill_mid_run_then_rerun_is_identical(tmp_path, digits_demo, digits_stage3, capsys):
    _kill_stage3(tmp_path, digits_demo, digits_stage3, capsys, _seeds(1)[0])


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_sigkill_at_many_points(stage, tmp_path, digits_demo, capsys, request):
    """Four more kill points per stage; each lands mid-run and must end identical to an uninterrupted run."""
    for i, seed in enumerate(_seeds(5)[1:]):
        where = tmp_path / f"try{i}"
        if stage == 1:
            _kill_stage1(where, digits_demo, capsys, seed)
        elif stage == 2:
            _kill_stage2(where, digits_demo, capsys, seed)
        else:
            _kill_stage3(where, digits_demo, request.getfixturevalue("digits_stage3"), capsys, seed)


@pytest.mark.slow
def test_sigkill_of_a_driver_with_a_local_cluster_leaves_no_workers(tmp_path, digits_demo):
    """The driver of --workers 2 dies with SIGKILL: its worker processes exit too; a rerun completes."""
    import psutil

    root = so.copy_stage1(digits_demo, tmp_path / "root")
    args = ["save_acts_cifar.py", "--root", root, "--no-progress", "--workers", "2"]
    proc = subprocess.Popen([PYTHON, *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    driver = psutil.Process(proc.pid)
    while proc.poll() is None and so.count_outputs(so.layout(root).condition_dir) < 40:
        time.sleep(0.05)
    children = driver.children(recursive=True)
    assert proc.poll() is None and children, "the run ended before the kill"
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"worker processes outlived their driver: {alive}"
    run_script(*args, check=True)
    so.assert_nothing_corrupt(root, stages=(1, 2))
    so.assert_same_stage2(digits_demo, root, subjects=(0, 1, 2), epochs=(0, 1, 2, 3))


# --------------------------------------------------------------------------- bad-input matrix

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_unwritable(path: Path) -> bool:
    """Make the folder ``path`` unwritable to this process (chmod, or chattr +i as root); False if impossible."""
    if os.geteuid() != 0:
        path.chmod(0o555)
    elif shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)],
                                                          capture_output=True).returncode != 0:
        return False
    return not os.access(path, os.W_OK)


def _restore(path: Path):
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    if path.exists():
        path.chmod(0o755)


def _demo_copy(digits_demo, dst):
    shutil.copytree(digits_demo, dst, ignore=shutil.ignore_patterns(".cache"))
    return so.layout(dst)


def _remark(adir):
    atomic.write_marker(adir, sorted(adir.glob("*.npy")))


def _break(kind, lay):
    """Damage a copy of the digits demo; return the path the error should name."""
    if kind == "truncated":
        p = lay.activation_path(1, 3, "dense1")
        p.write_bytes(p.read_bytes()[:200])
        return lay.activations_dir(1, 3)
    if kind == "garbage":
        p = lay.activation_path(2, 0, "logits")
        p.write_bytes(b"this is not an npy file" * 10)
        _remark(lay.activations_dir(2, 0))
        return p
    if kind == "labels":
        lay.test_labels_path.write_bytes(b"\x93NUMPY garbage")
        return lay.test_labels_path
    if kind == "images":
        p = lay.activation_path(0, 3, "dense1")
        np.save(p, np.load(p)[:-7])
        _remark(lay.activations_dir(0, 3))
        return p
    if kind == "units":
        p = lay.activation_path(2, 3, "pool2")
        np.save(p, np.load(p)[:, :-3])
        _remark(lay.activations_dir(2, 3))
        return p
    if kind == "nan":
        p = lay.activation_path(1, 0, "pool1")
        a = np.load(p)
        a[5, 7] = np.nan
        np.save(p, a)
        _remark(lay.activations_dir(1, 0))
        return p
    if kind == "missing_activation":
        p = lay.activation_path(0, 1, "logits")
        p.unlink()
        return lay.activations_dir(0, 1)
    if kind == "no_layers":
        lay.layers_path.unlink()
        return lay.layers_path
    if kind == "missing_weights":
        p = lay.weights_path(1, 2)
        p.unlink()
        atomic.clear_marker(lay.activations_dir(1, 2))
        return p
    raise ValueError(kind)


# (what, script, root setup, extra arguments, regex of the message, stage 3?)
CASES = [
    ("unknown dataset", "train_cifar", "empty", ["--data", "imagenet"], r"invalid choice: 'imagenet'", False),
    ("unknown model", "save_acts_cifar", "demo", ["--model", "vgg"], r"invalid choice: 'vgg'", False),
    ("unknown data × model", "train_cifar", "empty", ["--model", "resnet18"],
     r"no experiment is configured for digits×resnet18", False),
    ("unknown layer", "run_analyses", "demo", ["--only-layers", "fc9"], r"unknown layer\(s\) \['fc9'\]", True),
    ("unknown subject", "run_analyses", "demo", ["--only-subjects", "0", "7"], r"--only-subjects \[7\]", True),
    ("unknown dataset in status", "status", "demo", ["--data", "imagenet"],
     r"no results for --data imagenet --model any under .* \(found: digits×conv\)", False),
    ("stage 2 before stage 1", "save_acts_cifar", "empty", [], r"config.json missing\); run train_cifar.py", False),
    ("stage 3 before stage 2", "run_analyses", "no_layers", [], r"layers.json not found: run save_acts_cifar.py",
     True),
    ("missing dataset archive", "train_cifar", "empty", ["--data", "cifar10", "--data-dir", "{empty}"],
     r"cifar-10-python\.tar\.gz not found in", False),
    ("missing weights file", "save_acts_cifar", "missing_weights", [],
     r"weights\.002\.weights\.h5 missing: subject 1 is not fully trained; run train_cifar.py", False),
    ("missing activation file", "run_analyses", "missing_activation", [], r"epoch 1 of subject 0 is missing", True),
    ("truncated .npy", "run_analyses", "truncated", [], r"epoch 3 of subject 1 is missing: .* no valid _complete",
     True),
    ("corrupt .npy", "run_analyses", "garbage", [], r"logits\.npy is not a readable \.npy file", True),
    ("corrupt labels .npy", "run_analyses", "labels", [], r"test_labels\.npy", True),
    ("mismatched image counts", "run_analyses", "images", [], r"image counts disagree .*dense1\.npy \(892\)", True),
    ("mismatched unit counts", "run_analyses", "units", [], r"unit counts disagree across subjects", True),
    ("NaN activations", "run_analyses", "nan", [], r"pool1\.npy contains NaN or Inf activations", True),
    ("results root is a file", "train_cifar", "empty", ["--root", "{file}"], r"is a file, not a folder", False),
    ("unwritable results root", "train_cifar", "empty", ["--root", "{locked}/results"],
     r"cannot create it, .* is not writable", False),
    ("unwritable results root, stage 3", "run_analyses", "demo", ["--root", "{locked}"],
     r"is not writable", True),
    ("unreachable scheduler", "train_cifar", "empty", ["--scheduler", "tcp://127.0.0.1:{port}"],
     r"cannot reach Dask scheduler at tcp://127\.0\.0\.1:\d+: .*start one with `dask scheduler`.*--workers N",
     False),
    ("malformed scheduler address", "save_acts_cifar", "demo", ["--scheduler", "tcp://127.0.0.1:notaport"],
     r"cannot reach Dask scheduler at tcp://127\.0\.0\.1:notaport", False),
    ("not a scheduler file", "train_cifar", "empty", ["--scheduler", "{file}"],
     r"--scheduler .*a_file is a file but not a Dask scheduler file", False),
    ("zero workers", "train_cifar", "empty", ["--workers", "0"], r"expected a positive integer \(>= 1\), got 0",
     False),
    ("both --workers and --scheduler", "save_acts_cifar", "demo", ["--workers", "2", "--scheduler", "x:1"],
     r"not allowed with argument", False),
    ("status of a missing root", "status", "empty", ["--root", "{empty}/nothing"], r"is not a directory", False),
]


def _run_in_process(script, argv):
    """``cli.run_main`` of a script's ``main``: exit status, stderr lines (argparse exits become statuses)."""
    import contextlib
    import importlib
    import io

    from nnsrm.commands import COMMANDS

    name = next(n for n, (_, path, _) in COMMANDS.items() if path and Path(path).stem == script)
    module = importlib.import_module(f"nnsrm.commands.{COMMANDS[name][0]}")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.run_main(module.main, argv, prog=f"{script}.py")
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def test_bad_input_matrix(tmp_path, digits_demo, capsys):
    """Each bad input: exit status 2, a clear one-line message, and every file and folder left as it was."""
    covered, skipped, failed = [], [], []
    for i, (what, script, setup, extra, pattern, _) in enumerate(CASES):
        case = tmp_path / f"case{i:02d}"
        case.mkdir()
        root = case / "results"
        empty = case / "empty"
        empty.mkdir()
        a_file = case / "a_file"
        a_file.write_text("not a folder")
        named = None
        if setup != "empty":
            lay = _demo_copy(digits_demo, root)
            if setup != "demo":
                named = _break(setup, lay)
        locked = case / "locked"
        fill = dict(empty=empty, file=a_file, port=_closed_port(), locked=locked)
        if any("{locked}" in a for a in extra):
            if setup == "empty":
                locked.mkdir()
            else:
                root.rename(locked)
            if not _make_unwritable(locked):
                _restore(locked)
                skipped.append(f"{what} (cannot make a folder unwritable here)")
                continue
        argv = [a.format(**fill) for a in extra]
        if "--root" not in argv:
            argv += ["--root", str(root)]
        if script != "status":
            argv.append("--no-progress")
        before = so.tree_digest(case)
        try:
            code, err = _run_in_process(script, argv)
        finally:
            if locked.exists():
                _restore(locked)
        after = so.tree_digest(case)
        lines = err.strip().splitlines()
        problems = []
        if after != before:
            changed = sorted(set(before.items()) ^ set(after.items()))
            problems.append(f"the tree changed: {changed[:3]}")
        if code != 2:
            problems.append(f"exit status {code}")
        if not lines or not lines[0].startswith(f"{script}.py: error: "):
            problems.append("no '<prog>: error:' line")
        if not re.search(pattern, err):
            problems.append(f"message does not match {pattern!r}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines")
        if named is not None and str(named) not in err:
            problems.append(f"does not name {named}")
        if problems:
            failed.append(f"{what}: {'; '.join(problems)}\n    {err.strip()}")
        covered.append(what)
    with capsys.disabled():
        print(f"\n[bad-input matrix] {len(covered)} cases covered, {len(skipped)} skipped"
              + (f" ({'; '.join(skipped)})" if skipped else ""))
    assert not failed, "\n".join(failed)

