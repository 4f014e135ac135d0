"""Pipeline state you can trust: stale outputs refused, one writer per job, Ctrl-C, failures named for what they are.

Each stale case checksums every file and folder of the results root before
and after the refused run: it must be byte-identical, with no log file either.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import stage_outputs as so
from conftest import PYTHON, ROOT, STAGE3_ARGS, run_script
from nnsrm import atomic, cli, interrupts, state
from nnsrm.errors import INPUT_ERRORS, StaleOutputError, UsageError
from nnsrm.jobs import JobsFailed
from nnsrm.status import condition_status

INTERRUPTED = "interrupted; complete outputs are kept, rerun to resume"


def run_in_process(command, *argv):
    """``nnsrm <command> ARGV`` in this process: (exit status, stderr)."""
    module = importlib.import_module(f"nnsrm.commands.{command}")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.run_main(module.main, [str(a) for a in argv], prog=f"{command}.py")
        except SystemExit as exc:  # argparse
            code = exc.code
    return code, err.getvalue()


def assert_refused(root, command, *argv, match):
    """The run stops with exit status 2 and one line matching ``match``, and changes nothing under ``root``."""
    before = so.tree_digest(root)
    code, err = run_in_process(command, "--root", root, "--no-progress", *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}.py: error: "), err
    assert re.search(match, lines[0]), lines[0]
    assert so.tree_digest(root) == before
    return lines[0]


def job_states(root, stage):
    return {j.name: (j.state, j.detail) for j in condition_status(so.layout(root)).jobs if j.stage == stage}


def subjects_root(digits_demo, dst, n_subjects, without=()):
    """The first ``n_subjects`` subjects of the digits demo, stages 1 and 2, without the stage-2 jobs ``without``.

    ``config.json`` says ``n_subjects``; ``without`` lists ``(subject, epoch)`` pairs left to do.
    """
    so.stage1_subjects(digits_demo, dst, n_subjects)
    src, lay = so.layout(digits_demo), so.layout(dst)
    for s in range(n_subjects):
        for e in (0, 1, 2, 3):
            if (s, e) not in without:
                shutil.copytree(src.activations_dir(s, e), lay.activations_dir(s, e))
    shutil.copy2(src.layers_path, lay.layers_path)
    shutil.copy2(src.test_labels_path, lay.test_labels_path)
    return dst


# --------------------------------------------------------------------------- records and differences

def test_difference_names_the_first_setting_with_its_flag():
    old = {"data": "digits", "seed": 5, "n_epochs": 1, "batch_size": 32}
    assert state.difference(old, dict(old)) is None
    assert state.difference(old, {**old, "n_epochs": 3, "batch_size": 16}) == \
        "was made with --epochs 1, this run asks for --epochs 3"
    assert state.difference({"lr_decay": 0.0}, {"lr_decay": 1e-6}) == \
        "was made with lr_decay=0, this run asks for lr_decay=1e-06"
    params = {"k": None, "seed": 0}
    assert state.difference({"params": params}, {"params": {**params, "k": 5}}) == \
        "was made with --k (default), this run asks for --k 5"
    inputs = {"activations subj00 epoch 001": "a", "activations subj01 epoch 001": "b"}
    assert state.difference({"inputs": inputs}, {"inputs": {**inputs, "activations subj01 epoch 001": "c"}}) == \
        "was made from other stage-2 outputs: activations subj01 epoch 001 changed since"
    assert state.difference({"stage1": "x"}, {"stage1": "y"}) == \
        "was made from other stage-1 outputs: the subject's weights were made again since"
    assert state.difference(None, old).startswith("was made by an earlier nnsrm that did not record")


def test_stale_jobs_are_refused_before_anything_is_written(tmp_path):
    atomic.save_npy(tmp_path / "a.npy", np.zeros(3))
    atomic.write_marker(tmp_path, [tmp_path / "a.npy"], **state.marker_fields({"seed": 0}))
    jobs = [("job a", tmp_path, {"seed": 0})]
    state.refuse_stale(jobs)  # same record: nothing to refuse
    assert state.job_state(tmp_path, {"seed": 1}) == ("stale", "was made with --seed 0, this run asks for --seed 1")
    with pytest.raises(StaleOutputError, match=r"^job a \(.*\) was made with --seed 0, this run asks for --seed 1; "
                                               r"pass --overwrite to redo it, or use another --root"):
        state.refuse_stale([("job a", tmp_path, {"seed": 1})])
    state.refuse_stale([("job a", tmp_path, {"seed": 1})], overwrite=True)
    assert issubclass(StaleOutputError, UsageError) and INPUT_ERRORS == (UsageError,)


# --------------------------------------------------------------------------- stale stage 1

def pretend_trained_with(lay, subject, **settings):
    """Rewrite a subject's marker as if it had been trained with other ``settings`` (cheaper than training)."""
    info = atomic.read_marker(lay.subject_dir(subject))
    info[state.RECORD_KEY].update(settings)
    atomic.write_marker(lay.subject_dir(subject), [lay.subject_dir(subject) / f for f in info.pop("files")], **info)


@pytest.mark.parametrize("flags, match", [
    (["--seed", "5"], r"was made with --seed 0, this run asks for --seed 5"),
    (["--batch-size", "16"], r"was made with --batch-size 32, this run asks for --batch-size 16"),
    (["--epochs", "2"], r"was made with --epochs 3, this run asks for --epochs 2"),
])
def test_stage1_with_other_flags_is_refused_and_changes_nothing(digits_demo, tmp_path, flags, match):
    root = so.copy_stage1(digits_demo, tmp_path / "root")  # the demo: --subjects 3 --epochs 3, seed 0
    assert_refused(root, "train", "--subjects", "3", "--epochs", "3", *flags,
                   match=r"train subj00 \(.*subj00\) " + match + r"; pass --overwrite to redo it "
                         r"\(and 2 more complete jobs of this stage\), or use another --root")


def test_stage1_records_rmsprop_form_and_mean_subtraction_and_reads_old_records_as_their_defaults():
    from nnsrm import config

    cfg = config.get_config("digits", "conv")  # rmsprop_form "keras3", mean image subtracted
    record = state.stage1_record(cfg)
    assert record["rmsprop_form"] == "keras3" and record["subtract_mean"] is True
    old = {k: v for k, v in record.items() if k not in ("rmsprop_form", "subtract_mean")}  # before they were recorded
    assert state.difference(old, record) is None
    cifar = state.stage1_record(config.get_config("cifar10", "conv"))  # the paper's conv net: Keras 2's RMSprop
    assert state.difference({**cifar, "rmsprop_form": "keras3"}, cifar) == \
        "was made with rmsprop_form=keras3, this run asks for rmsprop_form=keras2"
    assert state.difference({k: v for k, v in cifar.items() if k != "rmsprop_form"}, cifar) == \
        "was made with rmsprop_form=keras3, this run asks for rmsprop_form=keras2"
    mnist = state.stage1_record(config.get_config("mnist", "mlp"))  # the original's MNIST: no mean subtraction
    assert state.difference({**mnist, "subtract_mean": True}, mnist) == \
        "was made with subtract_mean=True, this run asks for subtract_mean=False"


def test_stage1_trained_with_another_rmsprop_form_is_refused_and_shown_stale(digits_demo, tmp_path):
    root = so.copy_stage1(digits_demo, tmp_path / "root")
    lay = so.layout(root)
    pretend_trained_with(lay, 1, rmsprop_form="keras2")
    assert job_states(root, 1)["train subj01"] == \
        ("stale", "was made with rmsprop_form=keras2, the condition now has rmsprop_form=keras3")
    assert_refused(root, "train", "--subjects", "3", "--epochs", "3",
                   match=r"train subj01 \(.*subj01\) was made with rmsprop_form=keras2, this run asks for "
                         r"rmsprop_form=keras3; pass --overwrite")
    # A marker from before the field was recorded is current: nothing to redo, nothing changed.
    info = atomic.read_marker(lay.subject_dir(1))
    for key in ("rmsprop_form", "subtract_mean"):
        info[state.RECORD_KEY].pop(key)
    atomic.write_marker(lay.subject_dir(1), [lay.subject_dir(1) / f for f in info.pop("files")], **info)
    before = so.tree_digest(root / "digits")
    code, err = run_in_process("train", "--root", root, "--no-progress", "--subjects", "3", "--epochs", "3")
    assert code == 0, err
    assert so.tree_digest(root / "digits") == before  # (only a log file is added, under logs/)
    assert job_states(root, 1)["train subj01"][0] == "complete"


def test_stage1_overwrite_interrupted_then_rerun_equals_a_clean_run(digits_demo, tmp_path):
    """Refused without --overwrite; with it, Ctrl-C mid-training (a real SIGINT: status 130, one line,
    nothing half-written); the rerun equals a clean run, and status shows the subject left alone as stale."""
    root = so.stage1_subjects(digits_demo, tmp_path / "root", 2)
    lay = so.layout(root)
    for s in (0, 1):
        pretend_trained_with(lay, s, seed=5)
    assert_refused(root, "train", "--subjects", "2", "--epochs", "3",
                   match=r"train subj00 \(.*\) was made with --seed 5, this run asks for --seed 0")
    # Retrain only subject 0 with the demo's settings; interrupt it once its old marker is gone (it started).
    args = ["train_cifar.py", "--root", root, "--subjects", "2", "--epochs", "3", "--only-subjects", "0",
            "--overwrite", "--no-progress"]
    code, err = sigint_mid_run(args, lambda: not (lay.subject_dir(0) / atomic.MARKER_NAME).exists())
    assert_clean_interrupt(code, err, "train_cifar.py")
    assert job_states(root, 1)["train subj00"] == ("missing", "started but not finished (killed?)")
    assert so.assert_nothing_half_written(root) == []
    run_script(*args, check=True)
    so.assert_same_stage1(digits_demo, root, subjects=(0,), epochs=(0, 1, 2, 3))
    assert state.recorded(lay.subject_dir(0)) == state.recorded(so.layout(digits_demo).subject_dir(0))
    states = job_states(root, 1)
    assert states["train subj00"] == ("complete", "")
    assert states["train subj01"] == ("stale", "was made with --seed 5, the condition now has --seed 0")
    # Stage 2 will not read a stale subject.
    assert_refused(root, "extract", match=r"subject 1 \(.*subj01\) was made with --seed 5, config.json says "
                                          r"--seed 0; run train_cifar.py")


# --------------------------------------------------------------------------- stale stage 2

def test_stage2_other_max_units_refused_then_overwrite_interrupted_then_equals_a_clean_run(digits_demo, tmp_path):
    """Refused without --overwrite; with it, Ctrl-C after the first folder (a real SIGINT: status 130, one line,
    nothing half-written, the rest unfinished or stale); the rerun equals a clean run."""
    root = subjects_root(digits_demo, tmp_path / "root", 1)
    lay = so.layout(root)
    assert_refused(root, "extract", "--max-units", "10",
                   match=r"activations subj00 epoch 000 \(.*\) was made with --max-units 256, this run asks for "
                         r"--max-units 10; pass --overwrite to redo it \(and 3 more complete jobs of this stage\)")
    args = ["save_acts_cifar.py", "--root", root, "--max-units", "10", "--overwrite", "--no-progress"]
    code, err = sigint_mid_run(args, lambda: (state.recorded(lay.activations_dir(0, 0)) or {}).get("max_units") == 10)
    assert_clean_interrupt(code, err, "save_acts_cifar.py")
    assert so.unfinished_jobs(root, 2)  # missing (started) or stale (not yet redone)
    assert so.assert_nothing_half_written(root) == []
    code, err = run_in_process("extract", "--root", root, "--max-units", "10", "--overwrite", "--no-progress")
    assert code == 0, err
    # A clean run keeps, of the demo's full layers, the seeded subset of 10 units it records.
    from nnsrm.extract import unit_seed
    from nnsrm.run_config import load_trained_config
    from qmvpa.preproc import subsample_units

    cfg = load_trained_config(so.layout(root))
    new, full = so.layout(root), so.layout(digits_demo)
    layers = json.loads(new.layers_path.read_text())
    assert layers["units"] == {name: 10 for name in layers["layers"]}
    assert layers["made_with"]["max_units"] == 10
    for s in (0,):
        for e in (0, 1, 2, 3):
            for name in layers["layers"]:
                kept = np.load(new.units_kept_path(s, e, name))
                n_units = layers["units_before_cap"][name]
                np.testing.assert_array_equal(kept, subsample_units(n_units, 10, unit_seed(cfg, s, name)))
                a = np.load(full.activation_path(s, e, name))
                if a.shape[1] == n_units:  # the demo kept every unit of this layer (pool1's 512 are capped at 256)
                    np.testing.assert_array_equal(np.load(new.activation_path(s, e, name)), a[:, kept])
    assert {st for st, _ in job_states(root, 2).values()} == {"complete"}


def test_stage2_after_stage1_changed_is_refused_and_shown_stale(digits_demo, tmp_path):
    root = subjects_root(digits_demo, tmp_path / "root", 2)
    lay = so.layout(root)
    # Subject 1's stage 1 made again with the same settings: its marker (and so its checksum) changes.
    info = atomic.read_marker(lay.subject_dir(1))
    atomic.write_marker(lay.subject_dir(1), [lay.subject_dir(1) / f for f in info["files"]],
                        **{k: v for k, v in info.items() if k != "files"}, note="trained again")
    states = job_states(root, 2)
    assert states["activations subj00 epoch 000"] == ("complete", "")
    assert states["activations subj01 epoch 002"] == (
        "stale", "was made from other stage-1 outputs: the subject's weights were made again since")
    assert_refused(root, "extract", match=r"activations subj01 epoch 000 \(.*\) was made from other stage-1 "
                                          r"outputs: the subject's weights were made again since; pass --overwrite")


# --------------------------------------------------------------------------- stale stage 3

STAGE3_SMALL = ("--only-layers", "dense", "--only-epochs", "1", "--layer-id", "none", "--var-by-k-layer", "none")


def synthetic_root(root):
    return so.write_synthetic_stage2(root, so.DATA, so.MODEL, {"conv": 24, "dense": 10}, n_subjects=3,
                                     n_epochs=2, n_images=120, n_classes=4, pattern_noise=0.8)


def change_stage2(lay, subject=1, epoch=1, layer="dense"):
    """Stage 2 of one subject made again, with other activations (and a marker that says so)."""
    path = lay.activation_path(subject, epoch, layer)
    a = np.load(path)
    atomic.save_npy(path, a + np.float32(0.5) * np.random.default_rng(3).standard_normal(a.shape, np.float32))
    adir = lay.activations_dir(subject, epoch)
    atomic.write_marker(adir, sorted(adir.glob("*.npy")), subject=subject, epoch=epoch)


def test_stage3_after_stage2_changed_is_refused_then_overwrite_equals_a_clean_run(tmp_path):
    lay = synthetic_root(tmp_path / "root")
    clean = tmp_path / "clean"
    shutil.copytree(lay.root, clean)
    code, err = run_in_process("analyse", "--root", lay.root, "--no-progress", *STAGE3_SMALL)
    assert code == 0, err
    change_stage2(lay)
    assert job_states(lay.root, 3)["epoch 001 layer dense"] == (
        "stale", "was made from other stage-2 outputs: activations subj01 epoch 001 changed since")
    assert_refused(lay.root, "analyse", *STAGE3_SMALL,
                   match=r"epoch 001 layer dense \(.*epoch_001/dense\) was made from other stage-2 outputs: "
                         r"activations subj01 epoch 001 changed since; pass --overwrite to redo it")
    code, err = run_in_process("analyse", "--root", lay.root, "--no-progress", "--overwrite", *STAGE3_SMALL)
    assert code == 0, err
    change_stage2(so.layout(clean))
    code, err = run_in_process("analyse", "--root", clean, "--no-progress", *STAGE3_SMALL)
    assert code == 0, err
    so.assert_same_stage3(clean, lay.root)


# --------------------------------------------------------------------------- failures named for what they are

def test_numerical_failure_in_srm_is_a_job_failure_not_bad_input(tmp_path, monkeypatch):
    from qmvpa import _srm_backends

    lay = synthetic_root(tmp_path / "root")

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(_srm_backends, "fit_probabilistic_numpy", broken)
    code, err = run_in_process("analyse", "--root", lay.root, "--no-progress", *STAGE3_SMALL)
    lines = err.strip().splitlines()
    assert code == 1, err
    assert lines[:2] == ["analyse.py: error: 1 of 1 jobs failed (the others' outputs are kept):",
                         "  epoch 001 layer dense: LinAlgError: SVD did not converge"]
    assert re.fullmatch(r"  \(tracebacks in .*/logs/analyse-.*\.log\)", lines[2])
    assert not atomic.is_complete(lay.analysis_dir(1, "dense"))
    # The same through the library: a job failure, not bad input.
    from nnsrm import analysis
    from nnsrm.runner import run_jobs

    jobs = analysis.plan_jobs(lay, [1], ["dense"], [0, 1, 2], analysis.AnalysisParams())
    with pytest.raises(JobsFailed) as exc:
        run_jobs(jobs, progress=False)
    assert [(f.name, f.is_input_error) for f in exc.value.report.failures] == [("epoch 001 layer dense", False)]
    monkeypatch.undo()  # the numbers work again: a rerun completes the job
    code, err = run_in_process("analyse", "--root", lay.root, "--no-progress", *STAGE3_SMALL)
    assert code == 0 and atomic.is_complete(lay.analysis_dir(1, "dense")), err


@pytest.fixture
def no_brainiak(monkeypatch):
    for name in ("brainiak", "brainiak.funcalign", "brainiak.funcalign.srm"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed


def test_brainiak_engine_without_brainiak_says_how_to_install_it(tmp_path, no_brainiak):
    lay = synthetic_root(tmp_path / "root")
    hint = r"--srm-engine brainiak needs BrainIAK and MPI, which cannot be imported here; install them with " \
           r"pip install 'nnsrm\[brainiak\]' \(make test installs them"
    assert_refused(lay.root, "analyse", "--srm-engine", "brainiak", match=hint)
    out = tmp_path / "sim"
    code, err = run_in_process("simulate", "--srm-engine", "brainiak", "--n-sims", "1", "--out", out)
    assert code == 2 and re.search(hint, err) and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


# --------------------------------------------------------------------------- one writer per job

def test_two_drivers_on_one_root_equal_one_run(tmp_path):
    """Two stage-3 drivers at once: each job runs once (the other waits for its lock, then skips it)."""
    lay = so.write_synthetic_stage2(tmp_path / "root", so.DATA, so.MODEL, {"a": 64, "b": 64}, n_subjects=3,
                                    n_epochs=2, n_images=240, n_classes=4, pattern_noise=0.8)
    single = tmp_path / "single"
    shutil.copytree(lay.root, single)
    only = ("--only-epochs", "1", "2")  # 4 jobs
    code, err = run_in_process("analyse", "--root", single, "--no-progress", *only)
    assert code == 0, err
    args = [PYTHON, "run_analyses.py", "--root", str(lay.root), "--no-progress", *only]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    ran = [int(re.search(r"stage 3: (\d+) epoch×layer jobs run", out).group(1)) for out, _ in outs]
    assert sum(ran) == 4, (ran, outs)  # none done twice
    assert not [p for p in lay.analyses_dir.rglob("*") if ".tmp" in p.name]
    so.assert_same_stage3(single, lay.root)


# --------------------------------------------------------------------------- Ctrl-C

def test_ctrl_c_in_process_is_status_130_even_if_a_library_swallows_or_converts_it(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    def swallowed(argv):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises here
        except KeyboardInterrupt:
            pass  # as a careless library might
        return 0

    def converted(argv):
        def job():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except KeyboardInterrupt as err:  # as JAX does while it hashes a static argument
                raise ValueError(f"an error occurred while hashing: {err!r}") from None

        from nnsrm.jobs import Job
        from nnsrm.runner import run_jobs

        run_jobs([Job("converts", job, {}), Job("must not run", lambda: ran.append("the next job"), {})],
                 progress=False)

    ran = []
    before = signal.getsignal(signal.SIGINT)
    for main in (interrupted, swallowed, converted):
        assert cli.run_main(main, [], prog="x.py") == 130
        assert capsys.readouterr().err == f"x.py: {INTERRUPTED}\n"
    assert ran == []  # the runner stopped at the converted interrupt
    assert signal.getsignal(signal.SIGINT) is before
    # Once the command is over, the library works again in the same session (a notebook after Ctrl-C).
    assert not interrupts.received()
    interrupts.check()


def sigint_mid_run(args, ready, timeout=600):
    """Run ``python *args``; send SIGINT once ``ready()`` is true; return (exit status, stderr)."""
    proc = subprocess.Popen([PYTHON, *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"{args} ended before the interrupt: {proc.communicate()[1]}"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def assert_clean_interrupt(code, err, prog):
    assert code == 130, err
    assert err.strip().splitlines() == [f"{prog}: {INTERRUPTED}"], err  # no traceback, no crash report


def test_sigint_stage3_then_rerun_resumes(digits_demo, digits_stage3, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(digits_demo, root)
    lay = so.layout(root)
    for layer in ("dense1", "logits"):  # epoch 0 done: the run has epoch 3's 2 jobs to do
        shutil.copytree(so.layout(digits_stage3).analysis_dir(0, layer), lay.analysis_dir(0, layer))
    args = ["run_analyses.py", "--root", root, "--no-progress", *STAGE3_ARGS]
    code, err = sigint_mid_run(args, (lay.analysis_dir(3, "dense1") / atomic.LOCK_NAME).exists)
    assert_clean_interrupt(code, err, "run_analyses.py")
    assert not atomic.is_complete(lay.analysis_dir(3, "logits"))
    assert so.assert_nothing_half_written(root) == []
    run_script(*args, check=True)
    so.assert_same_stage3(digits_stage3, root)


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(10))
def test_sigint_stage1_never_crashes_at_exit(tmp_path, attempt):
    """Ten interrupts at different points of training: always status 130 and the one line (no SIGSEGV)."""
    lay = so.layout(tmp_path)
    delay = 0.25 * attempt  # from during the first epoch's compilation to mid-training
    start = []

    def ready():
        if not start and lay.weights_path(0, 0).exists():
            start.append(time.monotonic())
        return bool(start) and time.monotonic() - start[0] >= delay

    code, err = sigint_mid_run(["train_cifar.py", "--root", tmp_path, "--subjects", "2", "--epochs", "3",
                                "--no-progress"], ready)
    assert_clean_interrupt(code, err, "train_cifar.py")
    assert so.assert_nothing_half_written(tmp_path) == []
