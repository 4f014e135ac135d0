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


def make_summary(conds=(("digits", "conv"), ("digits", "mlp")), seed=0, null_epochs=(0, 3), layers=None):
    """A tidy summary table as stage 3 writes it (random values, plausible ranges, intervals and nulls)."""
    layers = {**LAYERS, **(layers or {})}
    rng = np.random.default_rng(seed)
    rows = []
    for data, model in conds:
        for epoch in EPOCHS:
            for depth, layer in enumerate(layers[model]):
                base = dict(data=data, model=model, epoch=epoch, layer=layer, layer_depth=depth)

                def across(metric, value):
                    rows.extend(dict(base, subject="all", metric=metric, stat=stat, value=v) for stat, v in
                                (("value", value), ("ci_low", value - 0.05), ("ci_high", value + 0.05)))
                    if epoch in null_epochs:
                        rows.extend(dict(base, subject="all", metric=metric, stat=stat, value=v) for stat, v in
                                    (("null_mean", 0.01), ("null_q95", 0.1), ("p", 0.01)))

                for metric in ("var_exp_fit", "var_exp_test", "var_exp_test_loo", "decoding_shared",
                               "decoding_native", "decoding_within"):
                    values = rng.uniform(0.3, 0.9, N_NETS)
                    rows += [dict(base, subject=str(s), metric=metric, stat="value", value=v)
                             for s, v in enumerate(values)]
                    across(metric, values.mean())
                for metric in ("r_shared_irsm_wrsm", "r_native_irsm_wrsm", "r_shared_irsm_final_wrsm",
                               "r_native_irsm_final_wrsm"):
                    across(metric, rng.uniform(-0.1, 0.9))
                for metric in ("consistency", "cka", "procrustes"):
                    values = rng.uniform(0.2, 0.9, N_NETS * (N_NETS - 1) // 2)
                    pairs = [f"{i}-{j}" for i in range(N_NETS) for j in range(i + 1, N_NETS)]
                    rows += [dict(base, subject=p, metric=metric, stat="value", value=v) for p, v in zip(pairs, values)]
                    across(metric, values.mean())
                rows.append(dict(base, subject="all", metric="decoding_chance", stat="value", value=0.1))
    return pd.DataFrame(rows, columns=list(vis.SUMMARY_COLUMNS))


def ci(df, model, epoch, layer, metric):
    """The summary's (ci_low, ci_high) of one metric."""
    sel = df[(df.model == model) & (df.epoch == epoch) & (df.layer == layer) & (df.metric == metric) &
             (df.subject == "all")].set_index("stat").value
    return sel["ci_low"], sel["ci_high"]


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
    # A table written before the stat column: every row is a value.
    df.drop(columns="stat").to_csv(path, index=False)
    assert vis.load_summary(path)["stat"].eq("value").all()


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
    sel = df[(df.model == "conv") & (df.epoch == 3) & (df.layer == "pool2") & (df.metric == "consistency") &
             (df.subject != "all")]
    assert t.loc["pool2", "consistency"] == pytest.approx(sel.value.mean())
    assert t.loc["pool2", "r_shared_irsm_wrsm"] == pytest.approx(df[
        (df.model == "conv") & (df.epoch == 3) & (df.layer == "pool2") & (df.metric == "r_shared_irsm_wrsm") &
        (df.stat == "value")].value.item())
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
    lines = [ln for ln in top_conv.get_lines() if ln.get_marker() == "o"]
    assert [ln.get_label() for ln in lines] == LAYERS["conv"]
    assert np.all(np.diff([luminance(ln.get_color()) for ln in lines]) < 0)
    ref = df[(df.model == "conv") & (df.layer == "dense1") & (df.metric == "r_shared_irsm_final_wrsm") &
             (df.stat == "value")]
    np.testing.assert_allclose(lines[2].get_ydata(), ref.sort_values("epoch").value)
    assert top_conv.get_xlabel() == "training epochs" and "final wRSM" in top_conv.get_ylabel()
    # The interval over networks as a band, one per layer, and the null's 95th percentile as ticks.
    assert len(top_conv.collections) == len(LAYERS["conv"])
    ticks = [ln for ln in top_conv.get_lines() if ln.get_marker() == "_"]
    assert len(ticks) == len(LAYERS["conv"]) and list(ticks[0].get_xdata()) == [0, 3]
    np.testing.assert_allclose(ticks[0].get_ydata(), [0.1, 0.1])
    # Middle and bottom: bars = mean over networks / pairs at the final epoch.
    var_conv, cons_conv = main[2], main[4]
    heights = [p.get_height() for p in var_conv.patches]
    sel = df[(df.model == "conv") & (df.epoch == 3) & (df.metric == "var_exp_test") & (df.subject != "all")]
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
    vals = df[(df.epoch == 1) & (df.layer == "logits") & (df.metric == "consistency") & (df.subject != "all")].value
    # The error bar is the summary's interval over networks, not a t interval over the dependent pairs.
    assert table.iloc[1][["mean", "low", "high"]].tolist() == pytest.approx(
        [vals.mean(), *ci(df, "mlp", 1, "logits", "consistency")])
    # Without intervals in the table (older summaries): the t interval of the values.
    bare = df[df.stat == "value"]
    table = vis.plot_layer_bars(bare, ax, "consistency", epoch=1)
    assert table.iloc[1][["mean", "low", "high"]].tolist() == pytest.approx(list(vis.mean_ci(vals)))
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
    assert len(ax_dev.get_lines()) == 2 * 4  # the paper's S̄ and the leave-one-out, per layer
    assert [ln.get_linestyle() for ln in ax_dev.get_lines()] == ["-"] * 4 + ["--"] * 4
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


def test_reduce_trajectories_is_pca_of_the_stacked_networks():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    Xs = [rng.normal(size=(6, 30)) for _ in range(3)]
    out = tr.reduce_trajectories(Xs, window=5)
    smooth = np.concatenate([tr.moving_average(X, 5).T for X in Xs])
    ref = PCA(3).fit_transform(smooth)
    np.testing.assert_allclose(np.abs(np.concatenate(out)), np.abs(ref), atol=1e-10)  # equal up to sign


def test_trajectory_grid_and_animation(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    T = [rng.normal(size=(12, 3)).cumsum(0) for _ in range(2)]
    fig = tr.plot_trajectory_grid({(0, "a"): (T, T), (3, "a"): (T, T), (3, "b"): (T, T)})
    assert len(fig.axes) == 2 * 2 * 2  # 2 epochs × 2 layers × native, shared
    assert fig.axes[0].get_title() == "epoch 0, a\nnative"
    path = tr.animate_trajectories([T, T], tmp_path / "t.gif", panels=["native", "shared"], duration=1,
                                   frame_rate=3)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 3
    with pytest.raises(ValueError, match="must end in .gif"):
        tr.animate_trajectories(T, tmp_path / "t.png")


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


def test_save_figure(tmp_path):
    fig = vis.plot_experiments(make_summary())
    paths = nf.save_figure(fig, tmp_path / "figs", "fig4_experiments")
    assert [p.name for p in paths] == ["fig4_experiments.png", "fig4_experiments.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    assert nf.save_figure(fig, None, "x") == []


# --------------------------------------------------------------------------- the cross-checks' figures

def test_plot_measures_one_panel_per_measure_with_band_and_null():
    df = make_summary(conds=(("digits", "conv"),))
    fig = vis.plot_measures(df, layers=["pool1", "pool2", "dense1"])
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]
    present = [m for m in vis.MEASURE_PANELS if m in set(df.metric)]
    assert len(panels) == len(present) == 7
    for ax in panels:
        curves = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
        assert [ln.get_label() for ln in curves] == ["pool1", "pool2", "dense1"]  # no output layer
        assert len(ax.collections) == 3  # a band per layer
        assert sum(ln.get_marker() == "_" for ln in ax.get_lines()) == 3  # the null's ticks
    with pytest.raises(ValueError, match="layers \\['fc'\\] are not in the summary"):
        vis.plot_measures(df, layers=["fc"])


def test_plot_decoding_three_curves_and_chance_per_layer():
    df = make_summary(conds=(("digits", "conv"),))
    fig = vis.plot_decoding(df, layers=["pool1", "dense1"])
    axes = fig.axes[:2]
    assert [ax.get_title() for ax in axes] == ["pool1", "dense1"]
    styles = [ln.get_linestyle() for ln in axes[1].get_lines()]
    assert styles[:3] == ["-", "--", ":"] and axes[1].get_lines()[3].get_ydata()[0] == pytest.approx(0.1)
    shared = df[(df.layer == "dense1") & (df.metric == "decoding_shared") & (df.subject != "all")]
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), shared.groupby("epoch").value.mean())
    with pytest.raises(ValueError, match="no decoding rows"):
        vis.plot_decoding(df[~df.metric.str.startswith("decoding")])


def test_plot_layer_identification_bars_and_matrices():
    table = pd.DataFrame(dict(measure=["cka", "procrustes"], accuracy=[0.75, 1.0], ci_low=[0.5, 1.0],
                              ci_high=[1.0, 1.0], chance=[0.25, 0.25], n_pairs=[2, 2], n_layers=[4, 4],
                              higher_is_similar=[True, False]))
    S = np.stack([np.eye(4) + 0.1, np.eye(4) + 0.2])  # (pairs, layers, layers)
    fig = vis.plot_layer_identification(table, {"cka": S, "procrustes": -S}, layers=["a", "b", "c", "d"])
    bars = fig.axes[0].patches
    assert [round(p.get_height(), 2) for p in bars] == [0.75, 1.0]
    assert len(fig.axes) == 3 and fig.axes[2].get_title() == "procrustes (distance)"
    assert len(fig.axes[1].patches) == 4  # the best match of every row outlined


def test_plot_variance_by_k_srm_and_pca_curves():
    rows = [dict(k=k, method=m, reconstruction=r, images=i, subject=str(s), value=v)
            for k in (1, 2, 4) for m, r in (("srm", "mean"), ("srm", "leave_one_out"), ("pca", "own"))
            for i in ("fit", "held_out") for s, v in enumerate((0.1 * k, 0.1 * k + 0.02))]
    fig = vis.plot_variance_by_k(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.get_lines()] == ["SRM, S̄ of all networks", "SRM, S̄ of the other networks",
                                                         "PCA of each network"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.11, 0.21, 0.41])
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="empty"):
        vis.plot_variance_by_k(pd.DataFrame())


def test_plot_rsm_grid_colour_scale():
    fig = vis.plot_rsm_grid({(0, "a"): np.eye(3)}, [0], ["a"], vmin=0.0, vmax=1.0)
    assert fig.axes[0].get_images()[0].get_clim() == (0.0, 1.0)


# --------------------------------------------------------------------------- Fig. 4's layers

RESNET_BN = ["stem_bn", "block1a_bn2", "block1b_bn2", "block2a_bn2", "block2b_bn2", "block3a_bn2", "block3b_bn2",
             "block4a_bn2", "block4b_bn2"]


def write_condition(root, data, model, layers, output_layer):
    """layers.json and a summary table of one condition (what the figures read)."""
    layout = ResultsLayout(root, data, model)
    info = {"layers": layers, "units": {name: 8 for name in layers}, "output_layer": output_layer}
    atomic.write_json(layout.layers_path, info)
    df = make_summary(conds=((data, model),), layers={model: layers})
    atomic.write_text(layout.summary_path, df.to_csv(index=False))


def test_fig4_draws_the_hidden_layers(tmp_path):
    """The conv net's Fig. 4 uses exactly its three hidden layers, ResNet-18's its nine BN layers."""
    from nnsrm import figure_set

    conv_layers = ["pool1", "pool2", "dense1", "logits"]
    write_condition(tmp_path, "digits", "conv", conv_layers, "logits")
    write_condition(tmp_path, "cifar10", "resnet18", RESNET_BN + ["logits"], "logits")
    ctx = figure_set.context(tmp_path, "digits", "conv", figures=None)
    assert ctx.output_layer == "logits" and ctx.layer == "dense1"
    fig = figure_set.fig4(ctx)
    tops = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][:2]
    labels = {ax.get_title(): [ln.get_label() for ln in ax.get_lines() if ln.get_marker() == "o"] for ax in tops}
    assert labels == {"conv, digits": ["pool1", "pool2", "dense1"], "resnet18, cifar10": RESNET_BN}
    # On request, the output layer too.
    ctx.include_output = True
    assert figure_set._hidden_by_condition(ctx) == {("digits", "conv"): conv_layers,
                                                     ("cifar10", "resnet18"): RESNET_BN + ["logits"]}


def test_output_layer_from_layers_json_or_by_name(tmp_path):
    layout = ResultsLayout(tmp_path, "mnist", "mlp")
    atomic.write_json(layout.layers_path, {"layers": ["relu1", "relu2", "softmax"], "units": {}})
    assert nf.output_layer(tmp_path, "mnist", "mlp") == "softmax"  # older layers.json: by name
    atomic.write_json(layout.layers_path, {"layers": ["relu1", "relu2", "out"], "units": {}, "output_layer": "out"})
    assert nf.output_layer(tmp_path, "mnist", "mlp") == "out"
    atomic.write_json(layout.layers_path, {"layers": ["relu1", "relu2"], "units": {}, "output_layer": None})
    assert nf.output_layer(tmp_path, "mnist", "mlp") is None
    assert nf.output_layer(tmp_path, "mnist", "conv") is None  # nothing there


def test_draw_on_processes_raises_a_failed_figure_here(monkeypatch, tmp_path):
    """Figures drawn side by side: the others are written, a failing one raises its own error in this process."""
    from nnsrm import figure_set

    def fine(ctx):
        (tmp_path / "fine.txt").write_text("drawn")
        return []

    def broken(ctx):
        raise ValueError("layer 'fc' was not analysed")

    monkeypatch.setitem(figure_set.GROUPS, "rsa", (broken, fine))  # forked workers see the patched table
    monkeypatch.setattr(figure_set, "expected_files", lambda ctx, groups: [])
    with pytest.raises(ValueError, match="layer 'fc' was not analysed"):
        figure_set.draw(None, ["rsa"], processes=2)
    assert (tmp_path / "fine.txt").read_text() == "drawn"
