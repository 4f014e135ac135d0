"""Stage 3 (nnsrm.analysis, run_analyses.py) on a synthetic results root: no Keras, no training.

The fixture writes what stages 1–2 leave behind: config.json, layers.json,
test_labels.npy and, per subject × epoch, float32 activations (images × units)
with a completion marker. Epoch 0's networks are unrelated random features;
later epochs are rotations of one shared activity pattern plus noise that
shrinks with training, so alignment must improve with the epoch.
"""

import json
import re

import numpy as np
import pandas as pd
import pytest

from nnsrm.commands import analyse as run_analyses
from conftest import run_script
from stage_outputs import write_synthetic_stage2
from nnsrm import analysis, atomic, cli, summary
from nnsrm.errors import StaleOutputError
from nnsrm.paths import ResultsLayout
from nnsrm.runner import run_jobs

DATA, MODEL = "digits", "conv"
LAYERS = {"conv": 24, "dense": 10}
EPOCHS = (0, 1, 2)
N_IMAGES, N_CLASSES = 120, 4


def make_root(root, n_subjects=3, epochs=EPOCHS, layers=LAYERS, n_images=N_IMAGES, seed=0):
    """Write a synthetic stage-2 results root; return its layout."""
    layout = write_synthetic_stage2(root, DATA, MODEL, layers, n_subjects, max(epochs), n_images, N_CLASSES,
                                    seed=seed, pattern_noise=0.8, epoch_noise=1.0)
    assert json.loads(layout.config_path.read_text())["config"]["logged_epochs"] == list(epochs)
    return layout


def snapshot(root):
    """Every result file under ``root`` with its size and modification time (each run adds a log file)."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] != "logs"}


def run_cli(capsys, *argv):
    """Run the command in this process; exit status, stdout, stderr (argparse's errors exit too)."""
    try:
        code = cli.run_main(run_analyses.main, list(map(str, argv)), prog="run_analyses.py")
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def root(tmp_path):
    make_root(tmp_path)
    return tmp_path


def _params(**kw):
    """The command's defaults for the fixture: final epoch 2, nulls at the first and last epochs, 200 perms."""
    return analysis.AnalysisParams(**{"max_units": 1000, "final_epoch": 2, "null_epochs": (0, 2), "n_perm": 200,
                                      **kw})


def test_jobs_outputs_and_summary(root):
    layout = ResultsLayout(root, DATA, MODEL)
    jobs = analysis.plan_jobs(layout, EPOCHS, None, [0, 1, 2], _params())
    assert [j.name for j in jobs] == [f"epoch {e:03d} layer {name}" for e in EPOCHS for name in LAYERS]
    run_jobs(jobs, progress=False)

    out = layout.analysis_dir(2, "conv")
    assert atomic.is_complete(out, verify=True)
    assert (out / analysis.PLOT_NAME).read_bytes()[:4] == b"\x89PNG"
    with np.load(out / summary.RESULTS_NAME) as z:
        assert not any(z[key].dtype == object for key in z.files)
        n_test = len(z["test_idx"])
        assert n_test == 24 and len(z["fit_idx"]) == 96
        assert z["native_test"].shape == (3, 24, n_test) and z["native_test"].dtype == np.float32
        assert z["shared_test"].shape == (3, 24, n_test)
        assert z["W"].shape == (3, 24, 24) and z["S"].shape == (24, 96)
        assert z["units_kept"].shape == (3, 24)
        for key in ("wrsm_native", "wrsm_shared", "irsm_native", "irsm_shared"):
            assert z[key].shape == (n_test, n_test)
        assert np.all(np.diff(z["labels_test"]) >= 0)
        assert z["consistency_pairs"].tolist() == [[0, 1], [0, 2], [1, 2]]
        meta = json.loads(str(z["meta"]))
        assert meta["layer_depth"] == 0 and meta["k"] == 24
        # shared S_i = W_iᵀ X_i
        np.testing.assert_allclose(z["shared_test"][1], z["W"][1].T @ z["native_test"][1], atol=1e-4)
        assert z["r_shared_irsm_wrsm"] > 0.95 and abs(z["r_native_irsm_wrsm"]) < 0.3
        # Fit and held-out variance explained use the same estimator (S̄), so they agree here.
        np.testing.assert_allclose(z["var_exp_fit"], z["var_exp_test"], atol=0.1)
        assert z["var_exp_fit_model"].shape == (3,)

    df = summary.write_summary(layout, final_epoch=2)
    assert tuple(pd.read_csv(layout.summary_path).columns) == summary.SUMMARY_COLUMNS
    assert set(df.metric) == set(summary.METRICS)
    assert set(df.stat) == set(summary.STATS)
    one = df[(df.epoch == 2) & (df.layer == "dense")]
    assert one.layer_depth.unique().tolist() == [1]
    values = one[one.stat == "value"]
    assert sorted(values[values.metric == "var_exp_test"].subject) == ["0", "1", "2", "all"]
    assert sorted(values[values.metric == "consistency"].subject) == ["0-1", "0-2", "1-2", "all"]
    assert values[values.metric == "r_shared_irsm_wrsm"].subject.tolist() == ["all"]
    # The "all" value is the mean over networks; its interval brackets it.
    ve = values[values.metric == "var_exp_test"].set_index("subject").value
    assert ve["all"] == pytest.approx(ve.drop("all").mean())
    stats = one[one.subject == "all"].pivot_table(index="metric", columns="stat", values="value")
    for metric in ("r_shared_irsm_wrsm", "var_exp_test", "consistency", "cka", "procrustes"):
        assert stats.loc[metric, "ci_low"] <= stats.loc[metric, "value"] <= stats.loc[metric, "ci_high"], metric
    # The synthetic networks align after "training", not at epoch 0.
    final = df[(df.metric == "r_shared_irsm_final_wrsm") & (df.stat == "value")].set_index(["layer", "epoch"]).value
    assert final["conv", 2] > 0.95 and final["conv", 0] < 0.3
    assert df[(df.metric == "var_exp_test") & (df.epoch == 2) & (df.stat == "value")].value.min() > 0.7


def test_resume_skips_complete_jobs_and_overwrite_redoes_them(root):
    layout = ResultsLayout(root, DATA, MODEL)
    run_jobs(analysis.plan_jobs(layout, [1], ["dense"], [0, 1, 2], _params()), progress=False)
    before = snapshot(root)
    assert analysis.plan_jobs(layout, [1], ["dense"], [0, 1, 2], _params()) == []
    # The job itself also skips when complete (e.g. resubmitted on Dask).
    assert analysis.analyse_job(root, DATA, MODEL, 1, "dense", [0, 1, 2], _params().as_dict(), 1) == {
        "status": "skipped"}
    assert snapshot(root) == before
    # Other parameters on a complete job: an error unless --overwrite.
    with pytest.raises(StaleOutputError, match=r"epoch 001 layer dense \(.*epoch_001/dense\) was made with --seed 0, "
                                               r"this run asks for --seed 1; pass --overwrite to redo it"):
        analysis.plan_jobs(layout, [1], ["dense"], [0, 1, 2], _params(seed=1))
    jobs = analysis.plan_jobs(layout, [1], ["dense"], [0, 1, 2], _params(seed=1), overwrite=True)
    assert len(jobs) == 1
    run_jobs(jobs, progress=False)
    marker = json.loads((layout.analysis_dir(1, "dense") / atomic.MARKER_NAME).read_text())
    assert marker["params"]["seed"] == 1
    # A job whose output lost a file is redone.
    (layout.analysis_dir(1, "dense") / analysis.PLOT_NAME).unlink()
    assert len(analysis.plan_jobs(layout, [1], ["dense"], [0, 1, 2], _params(seed=1))) == 1


def _rewrite(layout, subject, epoch, layer, a):
    """Replace one activation file and re-mark its folder complete (as a stage 2 that saved bad data)."""
    path = layout.activation_path(subject, epoch, layer)
    atomic.save_npy(path, a)
    adir = layout.activations_dir(subject, epoch)
    atomic.write_marker(adir, sorted(adir.glob("*.npy")))
    return [path]


def _break_counts(layout):
    return _rewrite(layout, 1, 2, "dense", np.load(layout.activation_path(1, 2, "dense"))[:-5])


def _break_nan(layout):
    a = np.load(layout.activation_path(2, 1, "conv"))
    a[3, 4] = np.nan
    return _rewrite(layout, 2, 1, "conv", a)


def _break_inf(layout):
    a = np.load(layout.activation_path(0, 2, "dense"))
    a[0, 0] = np.inf
    return _rewrite(layout, 0, 2, "dense", a)


def _break_missing_epoch(layout):
    atomic.clear_marker(layout.activations_dir(2, 1))
    return [layout.activations_dir(2, 1)]


def _break_missing_file(layout):
    path = layout.activation_path(1, 0, "conv")
    path.unlink()
    return [layout.activations_dir(1, 0)]


@pytest.mark.parametrize("breaker, extra, match", [
    (_break_counts, [], r"image counts disagree with the 120 labels .* \(115\)"),
    (_break_nan, [], r"contains NaN or Inf activations"),
    (_break_inf, [], r"contains NaN or Inf activations"),
    (_break_missing_epoch, [], r"epoch 1 of subject 2 is missing: .* has no valid _complete.json"),
    (_break_missing_file, [], r"epoch 0 of subject 1 is missing"),
    (None, ["--k", "25"], r"layer 'conv' \(.*subj00/epoch_000/activations/conv.npy and the other subjects' "
                          r"files.*k\) = 25 is larger than the units of the smallest network \(24\)"),
    (None, ["--k", "20", "--test-size", "0.9"],
     r"layer 'conv' \(.*conv.npy .*\): n_components \(k\) = 20 is larger than the 12 fit images"),
    (None, ["--only-subjects", "1"], r"SRM needs at least 2 subjects .*got \[1\] under .*digits/conv"),
    (None, ["--only-epochs", "3"], r"--only-epochs \[3\]: not logged epochs"),
    (None, ["--only-layers", "fc9"], r"unknown layer\(s\) \['fc9'\]: .*layers.json lists"),
    (None, ["--n-perm", "0"], r"argument --n-perm: expected a positive integer \(>= 1\), got 0"),
    (None, ["--null-refits", "100000"], r"--null-refits 100000: the correspondence-broken nulls of layer 'conv' "
                                        r"\(24 units, 3 networks, 96 fit images\) would take about .* s per job, more "
                                        r"than the 20 s that is affordable \(at most \d+ refits\); pass --force"),
    (None, ["--measures", "cka", "cca"], r"unknown measure\(s\) 'cca'; choose from spearman, kendall_tau_a, cka, "
                                         r"cka_debiased, procrustes, decoding, isc, procrustes_disparity"),
    (None, ["--var-by-k-ks", "1", "30"], r"--var-by-k-ks 1 30: k = 30 is not in 1 .. 10: layer 'dense' keeps 10 "
                                         r"units and the split leaves 96 fit images"),
    (None, ["--null-epochs", "7"], r"null epochs \[7\] are not logged epochs; choose from \[0, 1, 2\]"),
    (None, ["--var-by-k-layer", "fc9"], r"--var-by-k-layer 'fc9': not an analysed layer"),
])
def test_bad_input_is_one_line_naming_the_file_and_touches_nothing(root, capsys, breaker, extra, match):
    layout = ResultsLayout(root, DATA, MODEL)
    named = breaker(layout) if breaker else []
    before = snapshot(root)
    code, out, err = run_cli(capsys, "--root", root, "--no-progress", *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("run_analyses.py: error: ")
    assert re.search(match, err), err
    for path in named:
        assert str(path) in err
    assert snapshot(root) == before
    assert not layout.analyses_dir.exists()


def test_no_trained_condition_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--root", tmp_path / "nothing", "--no-progress")
    assert code == 2 and "config.json missing" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nothing").exists()


def test_bad_flag_is_one_line(root, capsys):
    with pytest.raises(SystemExit) as exc:
        run_analyses.main(["--root", str(root), "--test-size", "1.5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "expected a number in (0, 1)" in err


def test_layer_identification_and_variance_by_k_are_redone_when_their_activity_is_made_again(root, capsys):
    """The extra jobs record their inputs' checksums: activity made again since means redo, never stale."""
    from nnsrm import layer_identification, variance_by_k

    code, _, err = run_cli(capsys, "--root", root, "--no-progress", "--only-layers", "dense", "--processes", "1",
                           "--n-perm", "100", "--null-epochs", "none", "--measures", "cka")
    assert code == 0, err
    layout = ResultsLayout(root, DATA, MODEL)
    pair = json.loads((layout.layer_identification_pair_dir(0, 1) / atomic.MARKER_NAME).read_text())["params"]
    var = json.loads((layout.variance_by_k_dir(2, "dense") / atomic.MARKER_NAME).read_text())["params"]
    params = {k: pair[k] for k in ("n_iter", "test_size", "seed", "engine", "max_units", "class_order")}

    def plans():
        return (layer_identification.plan_pair_jobs(layout, 2, pair["layers"], [0, 1, 2], params),
                variance_by_k.plan_job(layout, 2, "dense", var["subjects"], var["ks"], params))

    assert plans() == ([], [])  # complete, same settings and inputs
    # Stage 2 of subject 2 made again: the variance job reads it, the pair (0, 1) does not.
    _rewrite(layout, 2, 2, "dense", np.load(layout.activation_path(2, 2, "dense")) * 2)
    pair_jobs, var_jobs = plans()
    assert pair_jobs == [] and [j.name for j in var_jobs] == ["variance by k epoch 002 layer dense"]
    _rewrite(layout, 1, 2, "conv", np.load(layout.activation_path(1, 2, "conv")) * 2)
    pair_jobs, var_jobs = plans()
    assert [j.name for j in pair_jobs] == ["layer identification networks 0-1"] and len(var_jobs) == 1
    run_jobs(pair_jobs + var_jobs, progress=False)
    assert plans() == ([], [])


def test_script_end_to_end_subprocess(root, capsys):
    """The script on a process pool; the same numbers in this process; a rerun redoes nothing."""
    cheap = ("--n-perm", "100", "--null-refits", "4")
    proc = run_script("run_analyses.py", "--root", root, "--no-progress", "--only-layers", "dense",
                      "--processes", "2", *cheap)
    assert proc.returncode == 0, proc.stderr
    assert "stage 3: 3 epoch×layer jobs run" in proc.stdout
    layout = ResultsLayout(root, DATA, MODEL)
    df = pd.read_csv(layout.summary_path, dtype={"subject": str})
    # The extra jobs: layer identification (networks 0-1, every layer) and variance by k (final epoch, the
    # deepest hidden layer: "dense", the fixture having no output layer).
    table = pd.read_csv(layout.layer_identification_path)
    assert sorted(table.measure) == sorted(["srm_rsa", "native_rsa", "cka", "cka_debiased", "procrustes"])
    assert table.n_pairs.unique().tolist() == [1] and table.n_layers.unique().tolist() == [2]
    assert (layout.variance_by_k_dir(2, "dense") / "variance_by_k.csv").is_file()
    assert "layer identification at epoch 2 (1 pairs)" in proc.stdout
    assert tuple(df.columns) == summary.SUMMARY_COLUMNS
    assert sorted(df.epoch.unique()) == list(EPOCHS) and df.layer.unique().tolist() == ["dense"]
    assert (layout.analysis_dir(2, "dense") / analysis.PLOT_NAME).exists()
    assert {"null_q95", "p", "ci_low"} <= set(df.stat)
    # The process pool gives the numbers of a run in this process.
    code, _, err = run_cli(capsys, "--root", root, "--no-progress", "--only-layers", "dense", "--processes", "1",
                           *cheap, "--overwrite", "--layer-id", "none", "--var-by-k-layer", "none")
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(layout.summary_path, dtype={"subject": str}), df)
    # Rerun: everything complete, nothing redone, the tables rebuilt identically.
    rebuilt = ("summary.csv", "layer_identification.csv")
    before = {p: v for p, v in snapshot(root).items() if not p.endswith(rebuilt)}
    code, out, err = run_cli(capsys, "--root", root, "--no-progress", "--only-layers", "dense", *cheap,
                             "--processes", "1")
    assert code == 0 and "stage 3: 0 epoch×layer jobs run" in out, err
    assert {p: v for p, v in snapshot(root).items() if not p.endswith(rebuilt)} == before
    pd.testing.assert_frame_equal(pd.read_csv(layout.summary_path, dtype={"subject": str}), df)


@pytest.mark.slow
def test_local_dask_cluster(root):
    proc = run_script("run_analyses.py", "--root", root, "--no-progress", "--workers", "2",
                      "--only-epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "stage 3: 2 epoch×layer jobs run" in proc.stdout


def _alignment_improves_with_training(root, layer):
    df = pd.read_csv(ResultsLayout(root, DATA, MODEL).summary_path, dtype={"subject": str})
    d = df[(df.layer == layer) & (df.stat == "value")].pivot_table(index="epoch", columns="metric", values="value")
    final = d.index.max()
    assert d.loc[final, "r_shared_irsm_wrsm"] > d.loc[final, "r_native_irsm_wrsm"] + 0.3
    assert d.loc[final, "r_shared_irsm_final_wrsm"] > d.loc[0, "r_shared_irsm_final_wrsm"]


def test_digits_demo_alignment_improves_with_training_fast(digits_stage3):
    """The slow test below on the shared stage-3 run (dense1 and logits at epochs 0 and 3): real networks."""
    _alignment_improves_with_training(digits_stage3, "dense1")  # the deepest hidden layer


@pytest.mark.slow
def test_digits_demo_alignment_improves_with_training(digits_demo, tmp_path):
    """On real (tiny) digits networks: deepest hidden layer, final epoch vs epoch 0."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(digits_demo, root)
    proc = run_script("run_analyses.py", "--root", root, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(ResultsLayout(root, DATA, MODEL).summary_path, dtype={"subject": str})
    layers = df.drop_duplicates("layer").sort_values("layer_depth").layer.tolist()
    _alignment_improves_with_training(root, layers[-2])  # the deepest hidden layer (the last is the logits)


def test_corrupt_labels_file_is_named(root, capsys):
    layout = ResultsLayout(root, DATA, MODEL)
    layout.test_labels_path.write_bytes(b"\x93NUMPY garbage")
    code, _, err = run_cli(capsys, "--root", root, "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{layout.test_labels_path} is not a readable .npy file" in err
    assert not layout.analyses_dir.exists()


def test_nulls_and_intervals_known_answers(root):
    """Aligned networks (epoch 2) beat every correspondence-broken null; the r's interval is the jackknife."""
    from qmvpa import intervals, rsa

    layout = ResultsLayout(root, DATA, MODEL)
    run_jobs(analysis.plan_jobs(layout, [0, 2], ["conv"], [0, 1, 2], _params()), progress=False)
    df = summary.build_summary(layout)
    stats = df[df.subject == "all"].pivot_table(index=["epoch", "metric"], columns="stat", values="value")
    aligned = stats.loc[2]
    for metric in ("r_shared_irsm_wrsm", "r_shared_irsm_final_wrsm", "cka", "cka_debiased", "var_exp_test_loo"):
        assert aligned.loc[metric, "value"] > aligned.loc[metric, "null_q95"], metric
    assert aligned.loc["procrustes", "value"] < aligned.loc["procrustes", "null_q95"]  # a distance: below q05
    assert aligned.loc["r_shared_irsm_wrsm", "p"] == pytest.approx(1 / 201)  # the smallest Mantel p, 200 perms
    assert aligned.loc["r_native_irsm_wrsm", "p"] > 0.01  # units do not correspond
    # The interval of r(shared iRSM, wRSM): the jackknife of the statistic without each network.
    with np.load(layout.analysis_dir(2, "conv") / summary.RESULTS_NAME) as z:
        shared, native = list(z["shared_test"]), list(z["native_test"])
    wrsms = [rsa.within_rsm(X) for X in native]

    def statistic(idx):
        idx = list(idx)
        return rsa.rsm_similarity(rsa.inter_subject_rsm([shared[i] for i in idx]),
                                  np.mean([wrsms[i] for i in idx], axis=0))

    ref = intervals.jackknife_interval(statistic, 3)
    assert aligned.loc["r_shared_irsm_wrsm", "ci_low"] == pytest.approx(ref.low, abs=1e-5)
    assert aligned.loc["r_shared_irsm_wrsm", "ci_high"] == pytest.approx(ref.high, abs=1e-5)
    # Untrained (epoch 0), unrelated random features: CKA and Procrustes within their nulls.
    untrained = stats.loc[0]
    assert untrained.loc["cka_debiased", "p"] > 0.05 and untrained.loc["procrustes", "p"] > 0.05
