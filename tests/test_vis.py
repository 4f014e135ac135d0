"""The plot functions (qmvpa.vis, qmvpa.trajectories) and the figure glue (nnsrm.figures).

Plots are checked for what they draw (lines, bars, images, labels) on
summary tables written here in the tidy format of stage 3; the notebooks and
make_figures.py are tested end to end in test_notebooks.py.
"""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from scipy import stats

from nnsrm import atomic
from nnsrm import figures as nf
from nnsrm.paths import ResultsLayout
from qmvpa import trajectories as tr
from qmvpa import vis

LAYERS = {"conv": ["pool1", "pool2", "dense1", "logits"], "mlp": ["dense1", "logits"]}
EPOCHS = (0, 1, 3)
N_NETS = 4


def make_summary(conds=(("digits", "conv"), ("digits", "mlp")), seed=0):
    """A tidy summary table as stage 3 writes it (random values, plausible ranges)."""
    rng = np.random.default_rng(seed)
    rows = []
    for data, model in conds:
        for epoch in EPOCHS:
            for depth, layer in enumerate(LAYERS[model]):
                base = dict(data=data, model=model, epoch=epoch, layer=layer, layer_depth=depth)
                for metric in ("var_exp_fit", "var_exp_test"):
                    rows += [dict(base, subject=str(s), metric=metric, value=rng.uniform(0.3, 0.9))
                             for s in range(N_NETS)]
                for metric in ("r_shared_irsm_wrsm", "r_native_irsm_wrsm", "r_shared_irsm_final_wrsm",
                               "r_native_irsm_final_wrsm"):
                    rows.append(dict(base, subject="all", metric=metric, value=rng.uniform(-0.1, 1)))
                rows += [dict(base, subject=f"{i}-{j}", metric="consistency", value=rng.uniform(0.2, 0.9))
                         for i in range(N_NETS) for j in range(i + 1, N_NETS)]
    return pd.DataFrame(rows, columns=list(vis.SUMMARY_COLUMNS))


def luminance(c):
    r, g, b = to_rgb(c)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# --------------------------------------------------------------------------- helpers

def test_layer_colors_get_darker_with_depth():
    colors = vis.layer_colors(5)
    assert len(colors) == 5
    assert np.all(np.diff([luminance(c) for c in colors]) < 0)
    with pytest.raises(ValueError, match="n_layers must be >= 1, got 0"):
        vis.layer_colors(0)


@pytest.mark.parametrize("seed", [0, 1])
def test_mean_ci_agrees_with_scipy(seed):
    v = np.random.default_rng(seed).normal(size=7)
    m, lo, hi = vis.mean_ci(v, 0.95)
    ref = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    np.testing.assert_allclose([m, lo, hi], [v.mean(), *ref], rtol=1e-12)
    assert vis.mean_ci([0.5]) == (0.5, 0.5, 0.5)
    assert np.isnan(vis.mean_ci([np.nan])[0])


def test_downsample_rsm_block_means():
    M = np.arange(36.0).reshape(6, 6)
    assert vis.downsample_rsm(M, 6) is M
    D = vis.downsample_rsm(M, 3)
    assert D.shape == (3, 3)
    assert D[0, 0] == M[:2, :2].mean() and D[2, 1] == M[4:6, 2:4].mean()
    with pytest.raises(ValueError, match=r"square matrix, got shape \(2, 3\)"):
        vis.downsample_rsm(np.zeros((2, 3)))


def test_load_summary_checks_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="summary table .* not found"):
        vis.load_summary(tmp_path / "summary.csv")
    path = tmp_path / "bad.csv"
    path.write_text("data,model,value\ndigits,conv,1\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['epoch', 'layer'"):
        vis.load_summary(path)
    path.write_text(",".join(vis.SUMMARY_COLUMNS) + "\n")
    with pytest.raises(ValueError, match="has no rows"):
        vis.load_summary(path)
    df = make_summary()
    df.to_csv(path, index=False)
    back = vis.load_summary(path)
    assert back["subject"].map(type).eq(str).all()  # "0-1" and "3" stay text
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_load_results_reads_only_what_is_asked(tmp_path):
    path = tmp_path / "results.npz"
    np.savez(path, wrsm_native=np.eye(3), labels_test=np.arange(3))
    assert list(vis.load_results(path, ["labels_test"])) == ["labels_test"]
    with pytest.raises(KeyError, match=r"has no \['irsm_shared'\]; it holds \['labels_test', 'wrsm_native'\]"):
        vis.load_results(path, ["irsm_shared"])
    with pytest.raises(FileNotFoundError, match="not found"):
        vis.load_results(tmp_path / "nope.npz")


def test_headline_table_one_row_per_layer_in_depth_order():
    df = make_summary()
    t = vis.headline_table(df, data="digits", model="conv")
    assert list(t.index) == LAYERS["conv"]
    sel = df[(df.model == "conv") & (df.epoch == 3) & (df.layer == "pool2") & (df.metric == "consistency")]
    assert t.loc["pool2", "consistency"] == pytest.approx(sel.value.mean())
    with pytest.raises(ValueError, match="holds 2 conditions"):
        vis.headline_table(df)
    with pytest.raises(ValueError, match="epoch 7 was not analysed; analysed epochs: \\[0, 1, 3\\]"):
        vis.headline_table(df, epoch=7, data="digits", model="conv")


# --------------------------------------------------------------------------- Fig. 4 and companions

def test_plot_experiments_one_column_per_condition():
    df = make_summary()
    fig = vis.plot_experiments(df)
    main = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(main) == 3 * 2
    top_conv, top_mlp = main[0], main[1]
    assert top_conv.get_title() == "conv, digits" and top_mlp.get_title() == "mlp, digits"
    # Top: one line per layer, darker = deeper, values = the metric.
    lines = top_conv.get_lines()
    assert [ln.get_label() for ln in lines] == LAYERS["conv"]
    assert np.all(np.diff([luminance(ln.get_color()) for ln in lines]) < 0)
    ref = df[(df.model == "conv") & (df.layer == "dense1") & (df.metric == "r_shared_irsm_final_wrsm")]
    np.testing.assert_allclose(lines[2].get_ydata(), ref.sort_values("epoch").value)
    assert top_conv.get_xlabel() == "training epochs" and "final wRSM" in top_conv.get_ylabel()
    # Middle and bottom: bars = mean over networks / pairs at the final epoch.
    var_conv, cons_conv = main[2], main[4]
    heights = [p.get_height() for p in var_conv.patches]
    sel = df[(df.model == "conv") & (df.epoch == 3) & (df.metric == "var_exp_test")]
    np.testing.assert_allclose(heights, sel.groupby("layer_depth").value.mean())
    assert "variance explained" in var_conv.get_ylabel() and "consistency" in cons_conv.get_ylabel()
    assert [t.get_text() for t in cons_conv.get_xticklabels()] == LAYERS["conv"]
    # Each top panel has its layer-depth colour bar.
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 2 and bars[0].get_ylabel() == "layer depth"


def test_plot_layer_bars_returns_what_it_draws():
    df = make_summary(conds=(("digits", "mlp"),))
    fig = vis._new_figure((3, 3))
    ax = fig.subplots()
    table = vis.plot_layer_bars(df, ax, "consistency", epoch=1)
    assert list(table.layer) == LAYERS["mlp"] and list(table.n) == [6, 6]
    vals = df[(df.epoch == 1) & (df.layer == "logits") & (df.metric == "consistency")].value
    m, lo, hi = vis.mean_ci(vals)
    assert table.iloc[1][["mean", "low", "high"]].tolist() == pytest.approx([m, lo, hi])
    with pytest.raises(ValueError, match="no 'consistency' rows at epoch 2"):
        vis.plot_layer_bars(df, ax, "consistency", epoch=2)
    with pytest.raises(ValueError, match="no rows for metric 'nope'"):
        vis.plot_layer_bars(df, ax, "nope")


def test_plot_development_same_epoch_draws_shared_and_native():
    df = make_summary()
    fig = vis.plot_development_same_epoch(df, conds=[("digits", "mlp")])
    ax = fig.axes[0]
    styles = [ln.get_linestyle() for ln in ax.get_lines()]
    assert styles == ["-", "-", "--", "--"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["shared space (after SRM)",
                                                                  "native space (no alignment)"]


def test_plot_variance_explained():
    fig = vis.plot_variance_explained(make_summary(), data="digits", model="conv")
    ax_dev, ax_bar = fig.axes[:2]
    assert len(ax_dev.get_lines()) == 4
    assert len(ax_bar.patches) == 2 * 4  # fit and held out, per layer
    assert ax_bar.get_xlabel() == "layer (shallow → deep), epoch 3"


def test_plot_rsm_triplet_and_grid():
    rng = np.random.default_rng(0)
    A = np.corrcoef(rng.normal(size=(12, 5)))
    labels = np.repeat([0, 1, 2], 4)
    fig = vis.plot_rsm_triplet(A, A, A, labels=labels, title="t", r_shared=0.9, r_native=0.1)
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ["iRSM, shared\nr with wRSM = 0.90", "wRSM, native", "iRSM, native\nr with wRSM = 0.10"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2"]
    with pytest.raises(ValueError, match="must be square and of one shape"):
        vis.plot_rsm_triplet(A, A[:5, :5], A)
    with pytest.raises(ValueError, match=r"one entry per image \(12\), got 3"):
        vis.plot_rsm_triplet(A, A, A, labels=[0, 1, 2])
    fig = vis.plot_rsm_grid({(0, "a"): A, (1, "b"): A}, [0, 1], ["a", "b"])
    cells = fig.axes[:4]
    assert [len(ax.get_images()) for ax in cells] == [1, 0, 0, 1]
    assert cells[1].texts[0].get_text() == "not\nanalysed"
    assert cells[0].get_title() == "epoch 0" and cells[0].get_ylabel() == "a"


# --------------------------------------------------------------------------- trajectories

def test_moving_average_agrees_with_convolution():
    X = np.random.default_rng(0).normal(size=(3, 25))
    M = tr.moving_average(X, 10)
    assert M.shape == (3, 16)
    np.testing.assert_allclose(M[1], np.convolve(X[1], np.ones(10) / 10, mode="valid"))
    with pytest.raises(ValueError, match=r"window must be an integer in \[1, n_images=25\], got 30"):
        tr.moving_average(X, 30)


def test_reduce_trajectories_identical_networks_coincide():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 40))
    out = tr.reduce_trajectories([X, X.copy(), rng.normal(size=(8, 40))])
    assert [o.shape for o in out] == [(31, 3)] * 3
    np.testing.assert_allclose(out[0], out[1])
    assert not np.allclose(out[0], out[2])
    with pytest.raises(ValueError, match="same units and images"):
        tr.reduce_trajectories([X, X[:5]])
    fig = tr.plot_trajectories(out, out, title="x")
    assert [ax.get_title() for ax in fig.axes] == ["native space (before SRM)", "shared space (after SRM)"]


# --------------------------------------------------------------------------- nnsrm.figures

def test_check_analyses_names_the_missing_stage(tmp_path):
    root = tmp_path / "results"
    with pytest.raises(FileNotFoundError, match="results root .* does not exist: run train_cifar.py"):
        nf.check_analyses(root, "digits", "conv")
    layout = ResultsLayout(root, "digits", "conv")
    layout.condition_dir.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no results for digits×mlp under .* run train_cifar.py "
                                                 r"--data digits --model mlp"):
        nf.check_analyses(root, "digits", "mlp")
    with pytest.raises(FileNotFoundError, match="no activations for digits×conv .* run save_acts_cifar.py"):
        nf.check_analyses(root, "digits", "conv")
    atomic.write_json(layout.layers_path, {"layers": ["dense1"], "units": {"dense1": 4}})
    with pytest.raises(FileNotFoundError, match=r"^no analyses for digits×conv under .*: run run_analyses.py "
                                                r"--data digits --model conv --root .* first$"):
        nf.check_analyses(root, "digits", "conv")
    atomic.write_text(layout.summary_path, ",".join(vis.SUMMARY_COLUMNS) + "\n")
    with pytest.raises(ValueError, match="has no rows .*run run_analyses.py"):
        nf.load_summary(root, "digits", "conv")
    with pytest.raises(FileNotFoundError, match="no complete analysis of epoch 3, layer dense1 .*--only-epochs 3"):
        nf.results_path(root, "digits", "conv", 3, "dense1")


def test_choose_epoch_layer():
    df = make_summary(conds=(("digits", "conv"),))
    assert nf.choose_epoch_layer(df) == (3, "dense1")  # the deepest layer below the logits
    assert nf.choose_epoch_layer(df, "1", "logits") == (1, "logits")
    with pytest.raises(ValueError, match=r"epoch 2 was not analysed; analysed epochs: \[0, 1, 3\]"):
        nf.choose_epoch_layer(df, 2)
    with pytest.raises(ValueError, match="epoch must be an integer, got 'last'"):
        nf.choose_epoch_layer(df, "last")
    with pytest.raises(ValueError, match="layer 'fc' was not analysed; analysed layers: \\['pool1'"):
        nf.choose_epoch_layer(df, None, "fc")


def test_save_figure_and_expected_files(tmp_path):
    fig = vis.plot_experiments(make_summary())
    paths = nf.save_figure(fig, tmp_path / "figs", "fig4_experiments")
    assert [p.name for p in paths] == ["fig4_experiments.png", "fig4_experiments.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    assert nf.save_figure(fig, None, "x") == []
    names = [p.name for p in nf.expected_files(tmp_path, "digits", "conv")]
    assert "fig4_experiments.pdf" in names and "digits_conv_trajectories_shared.gif" in names
    assert len(names) == 16
