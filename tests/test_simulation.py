"""The XOR simulation (docs/simulation.md): data, network, copies, experiment, CLI, notebook."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SRM_ENGINE, needs_brainiak
from qmvpa.rsa import mean_within_rsm, within_rsm
from nnsrm.simulation import experiment, plots, xor

ROOT = Path(__file__).resolve().parents[1]
EXACT = 1e-12  # float64 round-off of a reordered sum
FLOAT32 = 1e-5  # Keras computes in float32
SEEDS = [0, 1, 2]


def positive_activity(seed, n_units=50, n_images=40):
    """Sigmoid-like activity (all entries in (0, 1)), units × images."""
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-rng.standard_normal((n_units, n_images))))


# --------------------------------------------------------------------------- data


@pytest.mark.parametrize("seed", SEEDS)
def test_xor_data_shapes_labels_and_clouds(seed):
    x, y, cloud = xor.make_xor_data(50, 0.3, seed)
    assert x.shape == (200, 2) and x.dtype == np.float32
    assert y.shape == (200,) and cloud.shape == (200,)
    centres = xor.CLOUD_CENTRES[cloud]
    # Label = quadrant parity of the cloud: 1 where both coordinates have the same sign.
    np.testing.assert_array_equal(y, (centres[:, 0] * centres[:, 1] > 0).astype(np.float32))
    assert np.bincount(cloud).tolist() == [50, 50, 50, 50]
    assert np.all(np.diff(cloud) >= 0), "points must be grouped by cloud"
    np.testing.assert_array_equal(y[:100], 0)  # the two label-0 clouds come first
    for c, centre in enumerate(xor.CLOUD_CENTRES):
        points = x[cloud == c]
        assert np.allclose(points.mean(axis=0), centre, atol=4 * 0.3 / np.sqrt(50))
        assert np.allclose(points.std(axis=0), 0.3, atol=0.1)


def test_xor_data_is_seeded():
    a, b = xor.make_xor_data(rng=3), xor.make_xor_data(rng=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], xor.make_xor_data(rng=4)[0])


@pytest.mark.parametrize("kwargs, match", [
    ({"n_per_cloud": 0}, "n_per_cloud must be a positive integer"),
    ({"n_per_cloud": 2.5}, "n_per_cloud must be a positive integer"),
    ({"sigma": -0.1}, "sigma must be a finite number >= 0"),
    ({"sigma": float("nan")}, "sigma must be a finite number >= 0"),
])
def test_xor_data_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        xor.make_xor_data(**kwargs)


# ------------------------------------------------------------------------- copies


@pytest.mark.parametrize("seed", SEEDS)
def test_transforms_are_orthogonal_and_permutations(seed):
    for kind in xor.TRANSFORMS:
        for q in xor.make_transforms(kind, 12, 3, seed):
            np.testing.assert_allclose(q.T @ q, np.eye(12), atol=EXACT)
    for p in xor.make_transforms("permutation", 12, 3, seed):
        assert set(np.unique(p)) == {0.0, 1.0}
        np.testing.assert_array_equal(p.sum(axis=0), 1)
        np.testing.assert_array_equal(p.sum(axis=1), 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_permutation_copies_preserve_wrsm_exactly(seed):
    h = positive_activity(seed)
    perms = xor.make_transforms("permutation", h.shape[0], 10, seed)
    copies = xor.copy_activity(h, perms)
    for p, copy in zip(perms, copies):
        np.testing.assert_array_equal(copy, h[np.argmax(p, axis=1)])  # P @ H is H[perm], bit for bit
        np.testing.assert_allclose(within_rsm(copy), within_rsm(h), atol=EXACT)
    np.testing.assert_allclose(mean_within_rsm(copies), within_rsm(h), atol=EXACT)


@pytest.mark.parametrize("seed", SEEDS)
def test_rotation_copies_preserve_geometry_exactly(seed):
    """A rotation keeps every inner product and distance between the images' activity vectors."""
    h = positive_activity(seed)
    gram = h.T @ h  # (n_images, n_images)
    sq_norms = np.diag(gram)
    distances = sq_norms[:, None] + sq_norms[None, :] - 2 * gram
    for copy in xor.copy_activity(h, xor.make_transforms("orthogonal", h.shape[0], 10, seed)):
        np.testing.assert_allclose(copy.T @ copy, gram, atol=1e-10)
        c_norms = np.sum(copy**2, axis=0)
        np.testing.assert_allclose(c_norms[:, None] + c_norms[None, :] - 2 * copy.T @ copy, distances, atol=1e-10)


def test_pearson_wrsm_of_a_rotation_is_not_exactly_preserved():
    """Why the truth is the *mean* wRSM: Pearson RSMs centre each image across units, and a
    generic rotation does not commute with that centring (a permutation does). Documented, not a bug."""
    h = positive_activity(0)
    rotated = xor.copy_activity(h, xor.make_transforms("orthogonal", h.shape[0], 1, 0))[0]
    assert np.max(np.abs(within_rsm(rotated) - within_rsm(h))) > 1e-3


def test_copy_noise_is_seeded_and_shared_across_levels():
    h = positive_activity(1)
    qs = xor.make_transforms("orthogonal", h.shape[0], 3, 1)
    exact = xor.copy_activity(h, qs, 0.0, rng=5)
    small = xor.copy_activity(h, qs, 0.1, rng=5)
    large = xor.copy_activity(h, qs, 0.4, rng=5)
    for e, s, big in zip(exact, small, large):
        np.testing.assert_allclose(big - e, 4 * (s - e), atol=EXACT)  # the same Z at every level
        assert abs(np.std(s - e) - 0.1) < 0.01
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        xor.copy_activity(h, qs, -1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        xor.make_transforms("reflection", 3, 2)


# ------------------------------------------------------------------------ network


@pytest.fixture(scope="module")
def trained():
    """One network with the paper's settings, and its data."""
    x, y, _ = xor.make_xor_data(50, 0.3, 0)
    x_test, y_test, _ = xor.make_xor_data(50, 0.3, 1)
    model, losses = xor.train_xor_net(x, y, seed=7)
    return model, losses, x, y, x_test, y_test


def test_network_learns_xor(trained):
    model, losses, x, y, x_test, y_test = trained
    assert [layer.name for layer in model.layers[1:]] == ["hidden", "output"]
    assert model.get_layer("hidden").units == 50
    assert losses.shape == (1000,) and losses[-1] < 0.05 < losses[0]
    assert xor.accuracy(model, x, y) >= 0.97
    assert xor.accuracy(model, x_test, y_test) >= 0.95
    h = xor.hidden_activity(model, x_test)
    assert h.shape == (50, 200) and np.all((h > 0) & (h < 1))


def test_training_is_deterministic(trained):
    model, losses, x, y, x_test, _ = trained
    again, losses_again = xor.train_xor_net(x, y, seed=7)
    np.testing.assert_array_equal(losses, losses_again)
    np.testing.assert_array_equal(xor.hidden_activity(model, x_test), xor.hidden_activity(again, x_test))


def test_jitted_loop_matches_model_fit():
    """The fast path runs the same Adam updates as Keras' own ``model.fit`` (full batch)."""
    x, y, _ = xor.make_xor_data(10, 0.3, 2)
    fast, fast_losses = xor.train_xor_net(x, y, n_hidden=8, n_epochs=30, seed=3, method="jax")
    fit, fit_losses = xor.train_xor_net(x, y, n_hidden=8, n_epochs=30, seed=3, method="fit")
    np.testing.assert_allclose(fast_losses, fit_losses, rtol=FLOAT32)
    np.testing.assert_allclose(xor.hidden_activity(fast, x), xor.hidden_activity(fit, x), atol=FLOAT32)


def test_permuted_network_has_permuted_hidden_activity(trained):
    """The original code permuted the network's weights; that equals permuting H's rows."""
    model, _, _, _, x_test, _ = trained
    perm = np.random.default_rng(0).permutation(50)
    clone = xor.permute_hidden_units(model, perm)
    np.testing.assert_allclose(xor.hidden_activity(clone, x_test), xor.hidden_activity(model, x_test)[perm],
                               atol=FLOAT32)
    np.testing.assert_allclose(xor.predict(clone, x_test), xor.predict(model, x_test), atol=FLOAT32)
    with pytest.raises(ValueError, match="perm must be a permutation"):
        xor.permute_hidden_units(model, np.zeros(50, dtype=int))


@pytest.mark.parametrize("kwargs, match", [
    ({"n_hidden": 0}, "n_hidden must be a positive integer"),
    ({"n_epochs": -1}, "n_epochs must be a positive integer"),
    ({"learning_rate": 0}, "learning_rate must be a number > 0"),
    ({"method": "sgd"}, "method must be one of"),
])
def test_training_rejects_bad_input(kwargs, match):
    x, y, _ = xor.make_xor_data(5, 0.3, 0)
    with pytest.raises(ValueError, match=match):
        xor.train_xor_net(x, y, **kwargs)


# --------------------------------------------------------------------- experiment


@pytest.fixture(scope="module")
def paper_run():
    """Three repetitions with the paper's settings, plus small sweeps on the first two."""
    config = experiment.SimConfig(n_sims=3, noise_levels=(0.0, 0.5), k_values=(5, 50), sweep_sims=2,
                                  srm_engine=SRM_ENGINE)
    return experiment.run_simulation(config)


def test_shared_space_far_above_native_with_paper_settings(paper_run):
    paper = paper_run.paper()
    assert len(paper) == 3 * 2 * 2 * 2  # reps × transforms × spaces × measures
    shared = paper[paper["space"] == "shared"]
    assert shared[shared["measure"] == "linear"]["value"].min() > 0.85  # every repetition aligns well
    assert shared[shared["measure"] == "rank"]["value"].min() > 0.65
    # A single repetition's native value has a random sign and can be large (the copies' mean
    # activity dominates), so the comparison is of means over repetitions, as in the paper.
    means = paper.groupby(["transform", "measure", "space"])["value"].mean().unstack("space")
    assert (means["shared"] - means["native"]).min() > 0.4
    assert means["native"].abs().max() < 0.4
    assert paper_run.networks["test_accuracy"].min() >= 0.95


def test_centring_the_units_makes_permuted_copies_align_almost_perfectly():
    """With each copy's training unit means removed before the mapping, SRM recovers permuted
    copies almost exactly; the paper's pipeline (no centring) stays near 0.92 (see SimConfig)."""
    centred = experiment.SimConfig(n_sims=1, center_units=True, srm_engine=SRM_ENGINE)
    rows = pd.DataFrame(experiment.run_repetition(centred, 0)[0])
    score = experiment.select(rows, transform="permutation", space="shared", measure="linear")["value"].item()
    assert score > 0.97
    with pytest.raises(ValueError, match="center_units must be True or False"):
        experiment.SimConfig(center_units="yes")


def test_results_table_is_tidy_and_covers_the_sweeps(paper_run):
    table = paper_run.table
    assert list(table.columns) == list(experiment.TABLE_COLUMNS)
    assert set(table["transform"]) == set(xor.TRANSFORMS)
    assert set(table["space"]) == {"shared", "native"} and set(table["measure"]) == {"linear", "rank"}
    assert table["value"].notna().all()
    # Sweeps only on reps 0 and 1; conditions (0, 50), (0.5, 50), (0, 5).
    per_rep = table.groupby("rep").size()
    assert per_rep.tolist() == [3 * 8, 3 * 8, 8]
    native = table[table["space"] == "native"]
    # The native space does not depend on k.
    k5 = experiment.select(native, noise=0.0, n_components=5).set_index(["rep", "transform", "measure"])["value"]
    k50 = experiment.select(native, noise=0.0, n_components=50).set_index(["rep", "transform", "measure"])["value"]
    pd.testing.assert_series_equal(k5, k50.loc[k5.index])


def test_repetitions_are_deterministic_and_independent_of_the_run_size(paper_run):
    config = paper_run.config
    rows, _, _ = experiment.run_repetition(config, 1)
    again, _, _ = experiment.run_repetition(config, 1)
    assert rows == again
    # Repetition 1 alone gives the same numbers as inside the 3-repetition run.
    from_run = paper_run.table[paper_run.table["rep"] == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(pd.DataFrame(rows, columns=list(experiment.TABLE_COLUMNS)), from_run)
    other_seed = experiment.SimConfig(n_sims=3, seed=1, noise_levels=config.noise_levels,
                                      k_values=config.k_values, sweep_sims=2, srm_engine=config.srm_engine)
    assert experiment.run_repetition(other_seed, 1)[0] != rows


@pytest.mark.parametrize("kwargs, match", [
    ({"n_sims": 0}, "n_sims must be an integer >= 1"),
    ({"n_nets": 1}, "n_nets must be an integer >= 2"),
    ({"noise": -0.5}, "noise must be a finite number >= 0"),
    ({"n_components": 60}, r"n_components \(k\) must be <= n_hidden = 50"),
    ({"n_components": 1}, "n_components must be an integer >= 2"),
    ({"k_values": (0, 5)}, "k_values must be an integer >= 2"),
    ({"noise_levels": (0.1, float("inf"))}, "noise_levels must be a finite number >= 0"),
    ({"sweep_sims": 5, "n_sims": 3}, "sweep_sims must be <= n_sims = 3"),
    ({"srm_engine": "numpy"}, "srm_engine must be one of brainiak, fast, jax"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        experiment.SimConfig(**kwargs)


def test_mean_ci95_matches_scipy():
    from scipy import stats

    values = np.random.default_rng(0).normal(size=17)
    mean, low, high = experiment.mean_ci95(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(expected)
    assert experiment.mean_ci95([0.5]) == (0.5, 0.5, 0.5)


def test_save_load_round_trip_and_run_or_load(paper_run, tmp_path, monkeypatch):
    out = tmp_path / "sim"
    experiment.save_results(paper_run, out)
    loaded = experiment.load_results(out)
    assert loaded.config == paper_run.config
    pd.testing.assert_frame_equal(loaded.table, paper_run.table, check_exact=True)
    for transform in xor.TRANSFORMS:
        for name in experiment.FIG6_MATRICES:
            np.testing.assert_array_equal(loaded.example_rsms[transform][name], paper_run.example_rsms[transform][name])
    assert json.loads((out / "config.json").read_text())["config"]["n_sims"] == 3

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete run with the same config must be loaded, not rerun")

    monkeypatch.setattr(experiment, "run_simulation", must_not_run)
    assert experiment.run_or_load(paper_run.config, out).config == paper_run.config
    with pytest.raises(FileNotFoundError, match="holds no complete simulation run"):
        experiment.load_results(tmp_path / "empty")


# -------------------------------------------------------------------------- plots


def test_figures_have_labelled_axes_and_are_written(paper_run, tmp_path):
    import matplotlib.pyplot as plt

    config, table = paper_run.config, paper_run.table
    sweep = table[table["rep"] < config.n_sweep_sims]
    figures = {"fig5_bars": plots.plot_fig5(table, config.noise, config.k),
               "fig6_rsms": plots.plot_fig6(paper_run.example_rsms),
               "noise_sweep": plots.plot_noise_sweep(sweep, config.k),
               "k_sweep": plots.plot_k_sweep(sweep, config.noise)}
    for name, fig in figures.items():
        axes = [ax for ax in fig.axes if ax.get_title()]  # colour bars have no title
        assert axes, name
        for ax in axes:
            assert ax.get_xlabel() or name == "fig5_bars", (name, ax.get_title())
        assert axes[0].get_ylabel(), name
        if name != "fig6_rsms":
            assert axes[-1].get_legend() is not None, name
        plt.close(fig)
    written = plots.draw_all(paper_run, tmp_path / "figures")
    assert sorted(p.name for p in written) == sorted(f"{name}.{ext}" for name in figures for ext in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in written)
    with pytest.raises(ValueError, match="run with --k-sweep"):
        plots.plot_k_sweep(paper_run.paper(), config.noise)
    with pytest.raises(ValueError, match="no rows with noise=0.3"):
        plots.plot_fig5(table, 0.3, config.k)


# ---------------------------------------------------------------------------- CLI


def run_cli_in_process(args, capsys):
    """``run_sim.py ARGS`` in this process: (exit status, stdout, stderr)."""
    from nnsrm.cli import run_main
    from nnsrm.commands.simulate import main

    try:
        status = run_main(main, list(args), prog="run_sim.py")
    except SystemExit as stop:  # argparse exits from inside parse_args (errors, --help)
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip()


@pytest.mark.parametrize("args, match", [
    (["--n-sims", "0"], "--n-sims: expected a positive integer"),
    (["--n-nets", "ten"], "--n-nets: expected a positive integer"),
    (["--noise", "-0.1"], "--noise: expected a finite number >= 0"),
    (["--noise", "inf"], "--noise: expected a finite number >= 0"),
    (["--k-sweep", "5,x"], "--k-sweep: expected a positive integer"),
    (["--srm-engine", "numpy"], "--srm-engine: invalid choice"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--n-components", "60"], r"n_components \(k\) must be <= n_hidden = 50"),
    (["--n-nets", "1"], "n_nets must be an integer >= 2"),
    (["--sweep-sims", "9", "--n-sims", "3"], "sweep_sims must be <= n_sims = 3"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, match, capsys):
    status, _, err = run_cli_in_process(args, capsys)
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith("run_sim.py: error:"), err
    assert re.search(match, err), err


def test_cli_out_that_is_a_file_and_help(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    status, _, err = run_cli_in_process(["--n-sims", "1", "--out", str(target)], capsys)
    assert status == 2
    assert err == f"run_sim.py: error: --out {target} is a file, not a folder; pass a folder for the results"
    status, out, _ = run_cli_in_process(["--help"], capsys)
    assert status == 0
    for flag in ("--n-sims", "--n-nets", "--n-hidden", "--noise", "--seed", "--out", "--noise-sweep", "--k-sweep"):
        assert flag in out


def test_cli_end_to_end_matches_the_library_bit_for_bit(paper_run, tmp_path):
    """The script, in a fresh process, writes the same numbers as the in-process run of the same config.

    (``--figures`` calls :func:`plots.draw_all`, tested above.)"""
    out = tmp_path / "sim"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "simulation" / "run_sim.py"), "--n-sims", "3", "--noise-sweep", "0,0.5",
         "--k-sweep", "5,50", "--sweep-sims", "2", "--srm-engine", SRM_ENGINE, "--no-progress", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert experiment.saved_config(out) == paper_run.config
    table = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(table, paper_run.table, check_exact=True)
    assert (out / "networks.csv").exists() and (out / "example_rsms.npz").exists()


# ----------------------------------------------------------------------- notebook


def test_notebook_runs_and_writes_figures(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    out = tmp_path / "nb"
    for name, value in {"N_SIMS": "2", "N_EPOCHS": "300", "NOISE_LEVELS": "0,0.3", "K_VALUES": "5,50",
                        "SRM_ENGINE": SRM_ENGINE, "OUT": str(out)}.items():
        monkeypatch.setenv(f"NNSRM_SIM_{name}", value)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    nb = nbformat.read(ROOT / "simulation" / "run_sim.ipynb", as_version=4)
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "simulation")}}).execute()
    figures = sorted((out / "figures").iterdir())
    assert [p.name for p in figures] == sorted(
        f"{n}.{ext}" for n in ("fig5_bars", "fig6_rsms", "k_sweep", "noise_sweep") for ext in ("pdf", "png"))
    assert all(p.stat().st_size > 1000 for p in figures)


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
@needs_brainiak
def test_fifty_repetitions_reproduce_the_paper():
    """The paper's run: shared about 0.93 / 0.78 (linear / rank), native about 0."""
    results = experiment.run_simulation(experiment.SimConfig())
    summary = experiment.summarise(results.paper(), by=("transform", "space", "measure")).set_index(
        ["transform", "space", "measure"])
    for transform in xor.TRANSFORMS:
        assert summary.loc[(transform, "shared", "linear"), "ci_low"] > 0.88
        assert summary.loc[(transform, "shared", "rank"), "ci_low"] > 0.7
        for measure in ("linear", "rank"):
            native = summary.loc[(transform, "native", measure)]
            assert native["ci_low"] < 0.15 and native["ci_high"] > -0.15
