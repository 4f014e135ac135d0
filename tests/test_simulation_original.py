"""The simulation's original mode: the original code's XOR data, orthogonal copies and whole-RSM comparison."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, pearsonr

from conftest import SRM_ENGINE
from nnsrm.simulation import experiment, xor

EXACT = 1e-12
SEEDS = [0, 1]


@pytest.mark.parametrize("seed", SEEDS)
def test_original_data_has_noise_with_mean_one(seed):
    x, y, cloud = xor.make_xor_data(50, 0.3, seed, offset=xor.ORIGINAL_OFFSET)
    centred, y0, _ = xor.make_xor_data(50, 0.3, seed)
    np.testing.assert_allclose(x, centred + 1.0, atol=1e-6)  # same draws, moved by (+1, +1)
    np.testing.assert_array_equal(y, y0)
    expected = {(2.0, 0.0), (0.0, 2.0), (2.0, 2.0), (0.0, 0.0)}
    assert {tuple(c) for c in xor.CLOUD_CENTRES + xor.ORIGINAL_OFFSET} == expected
    for c, centre in enumerate(xor.CLOUD_CENTRES + 1.0):
        assert np.allclose(x[cloud == c].mean(axis=0), centre, atol=4 * 0.3 / np.sqrt(50))
    # Labels as in the original: (2, 0) and (0, 2) are 0, (2, 2) and (0, 0) are 1.
    assert y[cloud == 0].max() == 0 and y[cloud == 3].min() == 1
    with pytest.raises(ValueError, match="offset must be a finite number, got nan"):
        xor.make_xor_data(offset=float("nan"))


@pytest.mark.parametrize("seed", SEEDS)
def test_qr_uniform_copies_are_the_originals(seed):
    qs = xor.make_transforms("orthogonal", 30, 40, seed, orthogonal="qr_uniform")
    rng = np.random.default_rng(seed)
    for q in qs[:3]:  # numpy's QR of a U[0, 1) matrix, as the original's get_rand_ortho_matrix
        np.testing.assert_allclose(q, np.linalg.qr(rng.random((30, 30)))[0], atol=EXACT)
        np.testing.assert_allclose(q.T @ q, np.eye(30), atol=1e-10)
    # Not uniform over O(n): the first columns of all draws point the same way (cosine ~0.75),
    # while Haar draws' are unrelated.
    firsts = np.array([q[:, 0] for q in qs])
    haar = np.array([q[:, 0] for q in xor.make_transforms("orthogonal", 30, 40, seed)])
    cos = lambda F: np.mean((F @ F.T)[np.triu_indices(len(F), 1)])  # noqa: E731
    assert cos(firsts) > 0.6 and abs(cos(haar)) < 0.05
    with pytest.raises(ValueError, match="orthogonal must be one of"):
        xor.make_transforms("orthogonal", 3, 2, orthogonal="householder")


@pytest.mark.parametrize("seed", SEEDS)
def test_torch_initialisation_is_pytorchs_default(seed):
    net = xor.build_xor_net(50, seed=seed, init="torch")
    w1, b1 = net.get_layer("hidden").get_weights()
    w2, b2 = net.get_layer("output").get_weights()
    for array, fan_in in ((w1, 2), (b1, 2), (w2, 50), (b2, 50)):
        bound = 1 / np.sqrt(fan_in)  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases too
        assert np.abs(array).max() <= bound
        if array.size >= 50:  # enough draws to come near the bound
            assert np.abs(array).max() > 0.8 * bound
    assert np.abs(b1).min() > 0  # biases are not zero, unlike Keras' default
    again = xor.build_xor_net(50, seed=seed, init="torch").get_layer("hidden").get_weights()[0]
    np.testing.assert_array_equal(w1, again)
    with pytest.raises(ValueError, match="init must be one of"):
        xor.build_xor_net(4, init="he")


def test_whole_matrix_comparison_and_kendall_rank():
    rng = np.random.default_rng(0)
    truth = np.corrcoef(rng.standard_normal((12, 8)).T)  # (8, 8), diagonal 1
    rsm = truth + 0.3 * rng.standard_normal((8, 8))  # not symmetric, like an iRSM
    whole = experiment.score_against_truth(rsm, truth, whole_matrix=True)
    assert whole["linear"] == pytest.approx(pearsonr(rsm.ravel(), truth.ravel()).statistic, abs=EXACT)
    # The rank value is Kendall's tau in both modes (the original computed the native one with Pearson).
    assert whole["rank"] == pytest.approx(kendalltau(rsm.ravel(), truth.ravel()).statistic, abs=EXACT)
    assert whole["rank"] != pytest.approx(whole["linear"], abs=1e-3)
    lower = experiment.score_against_truth(rsm, truth)
    tri = np.tril_indices(8, -1)
    assert lower["linear"] == pytest.approx(pearsonr(rsm[tri], truth[tri]).statistic, abs=EXACT)
    assert lower["rank"] == pytest.approx(kendalltau(rsm[tri], truth[tri]).statistic, abs=EXACT)
    assert lower["linear"] != pytest.approx(whole["linear"], abs=1e-3)


def test_one_original_repetition_end_to_end():
    """One repetition: the original mode's rows, and their values recomputed by hand."""
    config = experiment.SimConfig(n_sims=1, original=True, srm_engine=SRM_ENGINE)  # BrainIAK where installed
    rows, info, rsms = experiment.run_repetition(config, 0, keep_rsms=True)
    table = pd.DataFrame(rows)
    assert len(table) == 2 * 2 * 2 and table["value"].notna().all()
    assert info["test_accuracy"] >= 0.9
    for transform in xor.TRANSFORMS:
        m = rsms[transform]
        for space, matrix in (("shared", m["shared_irsm"]), ("native", m["native_irsm"])):
            got = experiment.select(table, transform=transform, space=space).set_index("measure")["value"]
            assert got["linear"] == pytest.approx(pearsonr(matrix.ravel(), m["native_wrsm"].ravel()).statistic)
            assert got["rank"] == pytest.approx(kendalltau(matrix.ravel(), m["native_wrsm"].ravel()).statistic)
        shared = experiment.select(table, transform=transform, space="shared", measure="linear")["value"].item()
        assert shared > 0.5


@pytest.mark.parametrize("kwargs, match", [
    ({"original": True, "k_values": (5, 50)}, r"cannot be combined with k_values \(--k-sweep\)"),
    ({"original": True, "noise_levels": (0.0, 0.1)}, r"cannot be combined with noise_levels \(--noise-sweep\)"),
    ({"original": True, "center_units": True}, r"cannot be combined with center_units \(--center-units\)"),
    ({"original": "yes"}, "original must be True or False, got 'yes'"),
])
def test_config_rejects_what_original_mode_cannot_honour(kwargs, match):
    with pytest.raises(ValueError, match=match):
        experiment.SimConfig(**kwargs)
    assert experiment.SimConfig(original=True, noise=0.1, n_components=20).original  # these it honours


@pytest.mark.parametrize("args, match", [
    (["--original", "--k-sweep"], r"cannot be combined with k_values \(--k-sweep\)"),
    (["--original", "--noise-sweep", "0,0.1", "--center-units"],
     r"cannot be combined with noise_levels \(--noise-sweep\), center_units \(--center-units\)"),
])
def test_cli_rejects_them_in_one_line_with_exit_2(args, match, capsys):
    from nnsrm.cli import run_main
    from nnsrm.commands.simulate import main

    status = run_main(main, args, prog="run_sim.py")
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith("run_sim.py: error:"), err
    assert re.search(match, err), err


def test_config_round_trip_keeps_the_mode():
    config = experiment.SimConfig(original=True, n_sims=2)
    assert experiment.SimConfig.from_dict(config.to_dict()) == config
    old = {k: v for k, v in experiment.SimConfig().to_dict().items() if k != "original"}
    assert experiment.SimConfig.from_dict(old).original is False  # runs saved before the mode existed
