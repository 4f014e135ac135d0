"""The status command: complete / stale / missing / corrupt per stage, and the stages' skip logic agrees."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

import stage_outputs as so
from conftest import run_script
from nnsrm import atomic, cli
from nnsrm import status as st


def _status(capsys, *argv):
    try:
        code = cli.run_main(st.main, [str(a) for a in argv], prog="status.py")
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _row(out, stage):
    """(jobs, complete, stale, missing, corrupt, temp files) of a stage's table row."""
    line = next(line for line in out.splitlines() if re.match(rf"\s+{stage} \w+\s+\d", line))
    return tuple(int(x) for x in line.split()[2:])


@pytest.fixture
def demo(digits_demo, tmp_path):
    """A private copy of the digits demo (stages 1 and 2 complete, 3 subjects, epochs 0-3)."""
    return shutil.copytree(digits_demo, tmp_path / "root", ignore=shutil.ignore_patterns(".cache"))


def test_complete_demo(demo, capsys):
    code, out, err = _status(capsys, "--root", demo, "--verify", "--check")
    assert err == ""
    assert "digits/conv  (3 subjects, epochs 0 1 2 3, layers pool1 pool2 dense1 logits)" in out
    assert _row(out, 1) == (3, 3, 0, 0, 0, 0)
    assert _row(out, 2) == (12, 12, 0, 0, 0, 0)
    # Stage 3 has not run: its 4 epochs × 4 layers are missing, so --check fails.
    assert _row(out, 3) == (16, 0, 0, 16, 0, 0)
    assert "summary.csv missing" in out and "checked sizes and SHA-256 checksums" in out
    assert code == 1
    cond = st.condition_status(so.layout(demo))
    assert [j.name for j in cond.jobs if j.stage == 2][:2] == ["activations subj00 epoch 000",
                                                               "activations subj00 epoch 001"]


def test_truncated_npy_is_corrupt_and_a_rerun_redoes_only_that_job(demo, digits_demo, capsys):
    lay = so.layout(demo)
    bad = lay.activation_path(1, 2, "pool2")
    size = bad.stat().st_size
    bad.write_bytes(bad.read_bytes()[:1000])
    code, out, _ = _status(capsys, "--root", demo)
    assert code == 0
    assert _row(out, 2) == (12, 11, 0, 0, 1, 0)
    assert f"corrupt  activations subj01 epoch 002: pool2.npy has 1000 bytes, the marker recorded {size}" in out
    # The stage's skip logic (marker_status with the size check) sees the same: only that job reruns.
    assert atomic.marker_status(lay.activations_dir(1, 2)) == "corrupt"
    others = {d: (d / atomic.MARKER_NAME).stat().st_mtime_ns
              for d in lay.condition_dir.glob("subj*/epoch_*/activations") if d != lay.activations_dir(1, 2)}
    proc = run_script("save_acts_cifar.py", "--root", demo, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert {d: (d / atomic.MARKER_NAME).stat().st_mtime_ns for d in others} == others
    so.assert_same_stage2(digits_demo, demo, subjects=(0, 1, 2), epochs=(0, 1, 2, 3))
    code, out, _ = _status(capsys, "--root", demo, "--verify")
    assert _row(out, 2) == (12, 12, 0, 0, 0, 0)


def test_same_size_change_is_found_only_with_verify(demo, capsys):
    lay = so.layout(demo)
    p = lay.activation_path(0, 3, "logits")
    a = np.load(p)
    a[0, 0] += 1.0  # same size, other bytes
    np.save(p, a)
    _, out, _ = _status(capsys, "--root", demo)
    assert _row(out, 2)[1:5] == (12, 0, 0, 0)  # sizes match: looks complete, and the stages would skip it
    _, out, _ = _status(capsys, "--root", demo, "--verify")
    assert _row(out, 2)[1:5] == (11, 0, 0, 1)
    assert "activations subj00 epoch 003: logits.npy changed: its SHA-256 differs from the marker's" in out


def test_missing_started_unreadable_and_temp_files(demo, capsys):
    lay = so.layout(demo)
    atomic.clear_marker(lay.subject_dir(2))  # a subject killed before its marker
    shutil.rmtree(lay.activations_dir(0, 1))  # never run
    (lay.activations_dir(1, 1) / atomic.MARKER_NAME).write_text("{not json")
    lay.weights_path(0, 3).unlink()
    (lay.subject_dir(1) / ".weights.002.k3j4.tmp.weights.h5").write_bytes(b"half")
    (lay.activations_dir(2, 2) / ".dense1.x7y8.tmp.npy").write_bytes(b"half")
    code, out, _ = _status(capsys, "--root", demo, "--data", "digits", "--model", "conv")
    assert code == 0
    assert _row(out, 1) == (3, 1, 0, 1, 1, 1)
    # Subject 2's stage 1 is unfinished now, so its 4 complete stage-2 folders were made from other weights.
    assert _row(out, 2) == (12, 6, 4, 1, 1, 1)
    assert ("stale    activations subj02 epoch 000: was made from other stage-1 outputs: the subject's weights "
            "are incomplete now") in out
    assert "missing  train subj02: started but not finished (killed?)" in out
    assert "corrupt  train subj00: weights.003.weights.h5 is missing" in out
    assert "missing  activations subj00 epoch 001: not started" in out
    assert "corrupt  activations subj01 epoch 001: _complete.json is unreadable" in out
    assert "temp files (.*.tmp*) are what a killed run was writing" in out
    # Every state agrees with the one the stages' skip logic uses (which refuses, rather than skips, stale jobs).
    for job in st.condition_status(lay).jobs:
        marker = atomic.marker_status(job.directory)
        assert job.state == marker or (job.state, marker) == ("stale", "complete")


def test_condition_without_config_and_stage3_jobs(demo, capsys):
    lay = so.layout(demo)
    layers = json.loads(lay.layers_path.read_text())["layers"]
    d = lay.analysis_dir(3, layers[0])
    d.mkdir(parents=True)
    (d / "results.npz").write_bytes(b"x" * 10)
    atomic.write_marker(d, [d / "results.npz"])
    lay.summary_path.write_text("data,model\n")
    _, out, _ = _status(capsys, "--root", demo)
    assert _row(out, 3) == (16, 0, 1, 15, 0, 0)
    # A marker that does not record what made it (hand-written here, or by an earlier nnsrm) is stale.
    assert "stale    epoch 003 layer pool1: was made by an earlier nnsrm that did not record" in out
    lay.config_path.unlink()
    _, out, _ = _status(capsys, "--root", demo)
    assert "config.json missing: the expected jobs are unknown (run train_cifar.py)" in out


@pytest.mark.parametrize("argv, message", [
    (["--root", "{tmp}/nothing"], r"--root .*nothing is not a directory with results"),
    (["--root", "{tmp}", "--data", "cifar10"], r"no results for --data cifar10 --model any under .* \(found: none\)"),
    (["--root", "{tmp}", "--model", "vgg"], r"no results for --data any --model vgg under .* \(found: none\)"),
])
def test_bad_arguments_are_one_line_exit_2(tmp_path, capsys, argv, message):
    code, out, err = _status(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("status.py: error: ")
    assert re.search(message, err), err


def test_empty_root_and_script(tmp_path):
    proc = run_script("status.py", "--root", tmp_path)
    assert proc.returncode == 0 and "no results under" in proc.stdout
    proc = run_script("status.py", "--root", tmp_path, "--check")
    assert proc.returncode == 1

