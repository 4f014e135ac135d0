"""Plots of the analyses: the paper's Fig. 3 and 4 and their companions.

Every plot function takes data already loaded (the tidy summary table as a
pandas DataFrame, or RSM arrays) and returns a new
:class:`matplotlib.figure.Figure`, made without ``pyplot`` (no global state;
the caller saves or displays it). The two loaders, :func:`load_summary` and
:func:`load_results`, read a file the caller names; this module knows nothing
about where the pipeline keeps its files.

The summary table is long format, one value per row, with columns
``data, model, epoch, layer, layer_depth, subject, metric, stat, value``
(``subject`` is a network id such as ``"3"``, a pair ``"0-3"`` or ``"all"``;
``stat`` is ``value``, ``ci_low``, ``ci_high``, ``null_mean``, ``null_q95`` or
``p``: the across-network rows, ``subject == "all"``, carry the interval over
networks and the nulls). Metrics used here:

- ``r_shared_irsm_final_wrsm``, ``r_native_irsm_final_wrsm`` — r between the
  shared / native iRSM at an epoch and the final epoch's mean native wRSM
  (Fig. 4, top);
- ``r_shared_irsm_wrsm``, ``r_native_irsm_wrsm`` — the same against the same
  epoch's mean wRSM (the development curve);
- ``var_exp_fit``, ``var_exp_test`` — variance explained per network (Fig. 4,
  middle, uses ``var_exp_test``);
- ``consistency`` — r between two networks' native wRSMs, per pair (Fig. 4,
  bottom);
- the cross-checks of :mod:`qmvpa.layer_inference` (``cka``, ``procrustes``,
  ``rho_*``, ``decoding_*``, ...), drawn over training by :func:`plot_measures`
  and :func:`plot_decoding`.

Where a figure shows a mean over networks with an interval, the interval is
the summary's (``ci_low``, ``ci_high``: a jackknife or bootstrap over
networks, which accounts for the dependence of pairs sharing a network);
:func:`mean_ci`'s t-interval is only the fallback for tables without them.

Colour convention (the paper's): one colour per layer from the ``Blues`` map,
darker = deeper, with a "layer depth" colour bar.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "SUMMARY_COLUMNS", "RSM_KEYS", "load_summary", "load_results", "conditions", "condition_label",
    "final_epoch", "analysed_epochs", "layer_order", "layer_colors", "mean_ci", "downsample_rsm", "headline_table",
    "plot_development", "plot_layer_bars", "plot_experiments", "plot_development_same_epoch",
    "plot_variance_explained", "plot_rsm_triplet", "plot_rsm_quad", "plot_rsm_grid", "stat_table",
    "plot_measures", "plot_decoding", "plot_layer_identification", "plot_variance_by_k", "MEASURE_PANELS",
]

#: Columns of the tidy summary table.
SUMMARY_COLUMNS = ("data", "model", "epoch", "layer", "layer_depth", "subject", "metric", "stat", "value")
#: The four RSMs of one analysis job and how figures name them.
RSM_KEYS = {
    "irsm_shared": "iRSM, shared",
    "wrsm_native": "wRSM, native",
    "irsm_native": "iRSM, native",
    "wrsm_shared": "wRSM, shared",
}
#: Axis labels of the metrics.
METRIC_LABELS = {
    "r_shared_irsm_final_wrsm": "r(shared iRSM, final wRSM)",
    "r_native_irsm_final_wrsm": "r(native iRSM, final wRSM)",
    "r_shared_irsm_wrsm": "r(iRSM, same-epoch wRSM)",
    "r_native_irsm_wrsm": "r(iRSM, same-epoch wRSM)",
    "var_exp_test": "held-out variance explained",
    "var_exp_fit": "variance explained (fit)",
    "consistency": "consistency\n(r between networks' wRSMs)",
    "var_exp_test_loo": "held-out variance explained\n(leave-one-out S̄)",
    "rho_shared_irsm_final_wrsm": "ρ(shared iRSM, final wRSM)",
    "cka": "linear CKA (biased)",
    "cka_debiased": "linear CKA (debiased)",
    "procrustes": "Procrustes distance (rad)",
    "isc": "ISC, shared space",
    "procrustes_disparity": "Procrustes disparity (original)",
    "consistency_rho": "consistency (Spearman)",
    "decoding_shared": "decoding accuracy",
}
#: Panels of :func:`plot_measures`: every measure over training and depth.
MEASURE_PANELS = ("r_shared_irsm_final_wrsm", "rho_shared_irsm_final_wrsm", "r_shared_irsm_wrsm",
                  "var_exp_test", "var_exp_test_loo", "consistency", "cka", "cka_debiased", "procrustes",
                  "isc", "procrustes_disparity")
LAYER_CMAP = "Blues"
RSM_CMAP = "viridis"
CONFIDENCE = 0.95


# --------------------------------------------------------------------------- loading

def load_summary(path) -> "pandas.DataFrame":  # noqa: F821 - pandas imported lazily
    """Read a tidy summary table (``summary.csv``) and check its columns.

    Parameters
    ----------
    path : str or path-like
        The CSV file.

    Returns
    -------
    pandas.DataFrame, shape (n_rows, 9)
        Columns :data:`SUMMARY_COLUMNS`; ``subject`` as str, ``epoch`` and
        ``layer_depth`` as int. A table without the ``stat`` column (written
        before it existed) gets ``stat = "value"``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a CSV with the expected columns, or has no rows.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"summary table {path} not found")
    try:
        df = pd.read_csv(path, dtype={"subject": str, "layer": str, "metric": str, "data": str, "model": str,
                                  "stat": str})
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"{path} is not a readable CSV table ({str(err).splitlines()[0]})") from None
    if "stat" not in df.columns and "value" in df.columns:  # a table from before the stat column
        df.insert(list(df.columns).index("value"), "stat", "value")
    missing = [c for c in SUMMARY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; expected {list(SUMMARY_COLUMNS)}, "
                         f"got {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{path} has no rows (no analysis job has completed)")
    df = df[list(SUMMARY_COLUMNS)].copy()
    df["epoch"] = df["epoch"].astype(int)
    df["layer_depth"] = df["layer_depth"].astype(int)
    df["value"] = df["value"].astype(float)
    return df


def load_results(path, keys: Sequence[str] | None = None) -> dict:
    """Read arrays from one analysis job's ``results.npz``.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.
    keys : sequence of str, optional
        Arrays to read (default: all). Reading only what a figure needs keeps
        memory small: the file also holds every network's held-out activity.

    Returns
    -------
    dict of str to ndarray
        E.g. ``wrsm_native`` (t, t), ``native_test`` (n, u, t),
        ``labels_test`` (t,).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    KeyError
        If a requested key is not in the file (the message lists the keys it has).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"analysis results {path} not found")
    with np.load(path, allow_pickle=False) as z:
        names = list(z.files) if keys is None else list(keys)
        missing = [k for k in names if k not in z.files]
        if missing:
            raise KeyError(f"{path} has no {missing}; it holds {sorted(z.files)}")
        return {k: z[k] for k in names}


# --------------------------------------------------------------------------- table helpers

def conditions(summary) -> list[tuple[str, str]]:
    """The ``(data, model)`` conditions in ``summary``, in order of first appearance."""
    pairs = summary[["data", "model"]].drop_duplicates()
    return [(str(d), str(m)) for d, m in pairs.itertuples(index=False)]


def condition_label(data: str, model: str) -> str:
    """Panel title of a condition, as the paper writes it: ``"conv, cifar10"``."""
    return f"{model}, {data}"


def _one_condition(summary, data=None, model=None):
    """Rows of one condition; ``data``/``model`` may be omitted if the table holds only one."""
    conds = conditions(summary)
    if data is None and model is None:
        if len(conds) != 1:
            raise ValueError(f"the summary holds {len(conds)} conditions {conds}; pass data= and model=")
        return summary
    sel = summary[(summary["data"] == data) & (summary["model"] == model)]
    if sel.empty:
        raise ValueError(f"no rows for data={data!r}, model={model!r} in the summary; it holds {conds}")
    return sel


def final_epoch(summary) -> int:
    """The last analysed epoch of a (one-condition) summary."""
    return int(summary["epoch"].max())


def analysed_epochs(summary) -> list[int]:
    """The epochs in ``summary``, ascending, as plain ints."""
    return sorted(int(e) for e in summary["epoch"].unique())


def layer_order(summary) -> list[str]:
    """Layer names of a (one-condition) summary, shallow to deep (by ``layer_depth``)."""
    pairs = summary[["layer_depth", "layer"]].drop_duplicates().sort_values(["layer_depth", "layer"])
    return [str(name) for name in pairs["layer"]]


def layer_colors(n_layers: int, cmap: str = LAYER_CMAP, lo: float = 0.3, hi: float = 1.0) -> list:
    """One colour per layer, light (shallow) to dark (deep).

    Parameters
    ----------
    n_layers : int
        Number of layers, at least 1.
    cmap : str
        A matplotlib colour map name.
    lo, hi : float in [0, 1]
        The part of the colour map used (``Blues`` below 0.3 is nearly white).

    Returns
    -------
    list of RGBA tuples, length n_layers
    """
    import matplotlib

    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    cm = matplotlib.colormaps[cmap]
    positions = np.linspace(lo, hi, n_layers) if n_layers > 1 else np.array([hi])
    return [tuple(cm(p)) for p in positions]


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided t-distribution confidence interval of ``values``.

    Parameters
    ----------
    values : array-like, shape (n,)
        E.g. one number per network. NaNs are dropped.
    confidence : float in (0, 1)
        Coverage of the interval (default 0.95).

    Returns
    -------
    mean, low, high : float
        ``low == high == mean`` when fewer than two values are given.
    """
    from scipy import stats

    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * stats.sem(v))
    return m, m - half, m + half


def downsample_rsm(M, max_size: int = 200):
    """Block-average a square matrix so that its side is at most ``max_size`` (for thumbnails).

    Parameters
    ----------
    M : ndarray, shape (t, t)
    max_size : int
        Largest side wanted.

    Returns
    -------
    ndarray, shape (s, s) with s <= max_size
        ``M`` itself when it is small enough; otherwise the means of
        ``b × b`` blocks, ``b = ceil(t / max_size)`` (trailing rows that do not
        fill a block are dropped).
    """
    M = np.asarray(M)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be a square matrix, got shape {M.shape}")
    t = M.shape[0]
    if t <= max_size:
        return M
    b = int(np.ceil(t / max_size))
    s = t // b
    return M[:s * b, :s * b].reshape(s, b, s, b).mean(axis=(1, 3))


def headline_table(summary, epoch: int | None = None, data=None, model=None):
    """The headline numbers of one epoch, one row per layer (shallow to deep).

    Parameters
    ----------
    summary : pandas.DataFrame
        The tidy summary table; rows of one condition, or name it with
        ``data`` and ``model``.
    epoch : int, optional
        Default: the final epoch.

    Returns
    -------
    pandas.DataFrame
        Index: layer; columns: every metric present, averaged over networks or
        pairs (``var_exp_*``, ``consistency``) where it has several values.
    """
    import pandas as pd

    sub = _one_condition(summary, data, model)
    epoch = final_epoch(sub) if epoch is None else int(epoch)
    rows = sub[(sub["epoch"] == epoch) & (sub["stat"] == "value")]
    if rows.empty:
        raise ValueError(f"epoch {epoch} was not analysed; analysed epochs: {analysed_epochs(sub)}")
    # per-network and per-pair rows are averaged; the "all" row holds the same mean
    per = rows[rows["subject"] != "all"]
    rows = pd.concat([per, rows[~rows["metric"].isin(per["metric"].unique())]])
    table = rows.pivot_table(index="layer", columns="metric", values="value", aggfunc="mean")
    order = [m for m in METRIC_LABELS if m in table.columns] + [m for m in table.columns if m not in METRIC_LABELS]
    table = table.reindex(index=[name for name in layer_order(sub) if name in table.index], columns=order)
    table.columns.name = f"epoch {epoch}"
    return table


def _metric_rows(summary, metric, all_rows=None):
    """The ``stat == "value"`` rows of ``metric``; ``all_rows`` True/False keeps only / drops ``subject == "all"``."""
    rows = summary[(summary["metric"] == metric) & (summary["stat"] == "value")]
    if rows.empty:
        have = sorted(summary["metric"].unique())
        raise ValueError(f"the summary has no rows for metric {metric!r}; it has {have}")
    if all_rows is True:
        rows = rows[rows["subject"] == "all"]
    elif all_rows is False and (rows["subject"] != "all").any():
        rows = rows[rows["subject"] != "all"]
    return rows


def stat_table(summary, metric):
    """The across-network statistics of ``metric``: one row per (epoch, layer), one column per stat.

    Parameters
    ----------
    summary : pandas.DataFrame
        The tidy summary table of one condition.
    metric : str

    Returns
    -------
    pandas.DataFrame
        Index ``(epoch, layer)``; columns among ``value, ci_low, ci_high,
        null_mean, null_q95, p`` (those present). Empty if ``metric`` has no
        ``subject == "all"`` rows.
    """
    rows = summary[(summary["metric"] == metric) & (summary["subject"] == "all")]
    return rows.pivot_table(index=["epoch", "layer"], columns="stat", values="value", aggfunc="first")


def _layers(summary, layers):
    """``layers`` (kept in depth order) or every layer of ``summary``."""
    order = layer_order(summary)
    if layers is None:
        return order
    unknown = [name for name in layers if name not in order]
    if unknown:
        raise ValueError(f"layers {unknown} are not in the summary; it has {order}")
    return [name for name in order if name in layers]


# --------------------------------------------------------------------------- drawing helpers

def _depth_colorbar(fig, ax, layers: Sequence[str], label: str = "layer depth"):
    """A discrete colour bar beside ``ax``, one band per layer (shallow at the bottom)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = len(layers)
    cmap = ListedColormap(layer_colors(n))
    norm = BoundaryNorm(np.arange(n + 1) - 0.5, n)
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, ticks=np.arange(n), fraction=0.08,
                      pad=0.02, aspect=15)
    # Label on the bar's left, layer names on its right: the label cannot be mistaken for the
    # y label of a panel to the right.
    cb.set_label(label, labelpad=1, fontsize=9)
    cb.ax.yaxis.set_label_position("left")
    if n <= 12:
        cb.ax.set_yticklabels(layers, fontsize=7)
    else:  # too many names to read: depth indices
        cb.ax.set_yticklabels([str(i) for i in range(n)], fontsize=7)
    cb.ax.tick_params(length=0)
    return cb


def _layer_ticks(ax, layers: Sequence[str]):
    """Layer names under bars; slanted and smaller when there are many (ResNet-18: 9)."""
    many = len(layers) > 4
    ax.set_xticks(np.arange(len(layers)), layers, rotation=45 if many else 0, ha="right" if many else "center",
                  rotation_mode="anchor" if many else "default", fontsize=7 if len(layers) > 6 else 8)


def _class_ticks(ax, labels, axis="both"):
    """Tick marks at class boundaries and class names at their centres (up to 20 classes)."""
    labels = np.asarray(labels)
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, labels.size]
    if len(starts) > 20:
        ax.set_xticks([])
        ax.set_yticks([])
        return
    centres = (starts + ends - 1) / 2
    names = [str(labels[s]) for s in starts]
    for which in ("x", "y") if axis == "both" else (axis,):
        getattr(ax, f"set_{which}ticks")(centres, names, fontsize=6)
        getattr(ax, f"set_{which}ticks")(np.r_[starts, labels.size] - 0.5, minor=True)
    ax.tick_params(which="major", length=0)
    ax.tick_params(which="minor", length=3)


def _new_figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


# --------------------------------------------------------------------------- Fig. 4

def plot_development(summary, ax, metric: str = "r_shared_irsm_final_wrsm", data=None, model=None,
                     linestyle: str = "-", marker: str = "o", colorbar: bool = True, ylabel: str | None = None,
                     layers: Sequence[str] | None = None, band: bool = True, null: bool = True):
    """Draw a similarity metric against training epochs, one line per layer, darker = deeper.

    Fig. 4 (top) with the default ``metric``: r(shared iRSM at epoch e,
    final-epoch mean native wRSM).

    Parameters
    ----------
    summary : pandas.DataFrame
        The tidy summary table (see the module docstring); rows of one
        condition, or name it with ``data`` and ``model``.
    ax : matplotlib.axes.Axes
        Where to draw.
    metric : str
        A metric with one value per epoch × layer (``subject == "all"``).
    data, model : str, optional
        The condition to draw, if ``summary`` holds several.
    linestyle, marker : str
        Line style of the curves (to overlay a second metric).
    colorbar : bool
        Add the layer-depth colour bar beside ``ax``.
    ylabel : str, optional
        Default: the metric's label.
    layers : sequence of str, optional
        Layers to draw (default: all; e.g. the hidden layers only).
    band : bool
        Shade the interval over networks (the summary's ``ci_low``..``ci_high``).
    null : bool
        Mark the correspondence-broken null's one-sided 95% critical value
        (``null_q95``) where the summary has it: a short horizontal tick in
        the layer's colour at that epoch.

    Returns
    -------
    list of matplotlib.lines.Line2D
        One per layer, shallow to deep.
    """
    from matplotlib.ticker import MaxNLocator

    sub = _one_condition(summary, data, model)
    rows = _metric_rows(sub, metric)
    layers = _layers(sub, layers)
    colors = layer_colors(len(layers))
    stats = stat_table(sub, metric)
    lines = []
    lows = [float(np.nanmin(rows["value"]))] if len(rows) else [0.0]
    highs = [float(np.nanmax(rows["value"]))] if len(rows) else [1.0]
    for layer, color in zip(layers, colors):
        mine = rows[rows["layer"] == layer]
        per = mine[mine["subject"] != "all"]
        r = (per if len(per) else mine).groupby("epoch")["value"].mean().sort_index()
        if r.empty:
            continue
        (line,) = ax.plot(r.index.to_numpy(), r.to_numpy(), linestyle=linestyle, marker=marker, markersize=3.5,
                          color=color, label=layer,
                          markerfacecolor=color if marker and linestyle == "-" else "white")
        lines.append(line)
        st = stats.xs(layer, level="layer") if len(stats) and layer in stats.index.get_level_values("layer") \
            else None
        if band and st is not None and {"ci_low", "ci_high"} <= set(st.columns):
            ci = st[["ci_low", "ci_high"]].dropna().sort_index()
            if len(ci):
                ax.fill_between(ci.index.to_numpy(), ci["ci_low"].to_numpy(), ci["ci_high"].to_numpy(),
                                color=color, alpha=0.18, linewidth=0)
                lows.append(float(ci["ci_low"].min()))
                highs.append(float(ci["ci_high"].max()))
        if null and st is not None and "null_q95" in st.columns:
            q = st["null_q95"].dropna().sort_index()
            if len(q):
                ax.plot(q.index.to_numpy(), q.to_numpy(), linestyle="none", marker="_", markersize=12,
                        markeredgewidth=2.0, color=color)
                lows.append(float(q.min()))
                highs.append(float(q.max()))
    ax.set_xlabel("training epochs")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel or METRIC_LABELS.get(metric, metric))
    lo, hi = float(np.nanmin(lows)), float(np.nanmax(highs))
    if hi <= 1.0 and lo >= -1.0:
        ax.set_ylim(min(0.0, lo - 0.05), 1.05)
    ax.grid(alpha=0.3)
    if colorbar:
        _depth_colorbar(ax.figure, ax, layers)
    return lines


def plot_layer_bars(summary, ax, metric: str = "var_exp_test", epoch: int | None = None, data=None,
                    model=None, confidence: float = CONFIDENCE, ylabel: str | None = None,
                    layers: Sequence[str] | None = None):
    """Draw one bar per layer at one epoch: the mean over networks (or pairs) and its confidence interval.

    Fig. 4 (middle) with ``metric="var_exp_test"`` (mean over networks), and
    (bottom) with ``metric="consistency"`` (mean over network pairs).

    Parameters
    ----------
    summary : pandas.DataFrame
        The tidy summary table; rows of one condition, or name it with
        ``data`` and ``model``.
    ax : matplotlib.axes.Axes
        Where to draw.
    metric : str
        A per-network or per-pair metric.
    epoch : int, optional
        Default: the condition's final epoch.
    data, model : str, optional
        The condition, if ``summary`` holds several.
    confidence : float
        Coverage of the error bars where the summary has no interval of its
        own (a t interval over the values, see :func:`mean_ci`).
    ylabel : str, optional
        Default: the metric's label.
    layers : sequence of str, optional
        Bars to draw (default: every layer).

    Returns
    -------
    pandas.DataFrame
        One row per layer: ``layer, mean, low, high, n`` (what was drawn);
        ``low``, ``high`` are the summary's interval over networks
        (``ci_low``, ``ci_high``) when it has one.
    """
    import pandas as pd

    sub = _one_condition(summary, data, model)
    rows = _metric_rows(sub, metric, all_rows=False)
    epoch = final_epoch(sub) if epoch is None else int(epoch)
    rows = rows[rows["epoch"] == epoch]
    if rows.empty:
        raise ValueError(f"no {metric!r} rows at epoch {epoch}; analysed epochs: {analysed_epochs(sub)}")
    layers = _layers(sub, layers)
    colors = layer_colors(len(layers))
    st = stat_table(sub, metric)
    stats = []
    for i, layer in enumerate(layers):
        vals = rows.loc[rows["layer"] == layer, "value"].to_numpy()
        m, lo, hi = mean_ci(vals, confidence)
        if (epoch, layer) in st.index and {"ci_low", "ci_high"} <= set(st.columns):
            lo, hi = float(st.loc[(epoch, layer), "ci_low"]), float(st.loc[(epoch, layer), "ci_high"])
        stats.append(dict(layer=layer, mean=m, low=lo, high=hi, n=int(np.isfinite(vals).sum())))
    table = pd.DataFrame(stats)
    x = np.arange(len(layers))
    means = table["mean"].to_numpy()
    err = np.vstack([means - table["low"].to_numpy(), table["high"].to_numpy() - means])
    ax.bar(x, means, color=colors, edgecolor="none", width=0.8)
    ax.errorbar(x, means, yerr=err, fmt="none", ecolor="0.2", elinewidth=1.2, capsize=3)
    _layer_ticks(ax, layers)
    ax.set_xlabel(f"layer (shallow → deep), epoch {epoch}")
    ax.set_ylabel(ylabel or METRIC_LABELS.get(metric, metric))
    lo = float(np.nanmin(table["low"])) if len(table) else 0.0
    ax.set_ylim(min(0.0, lo - 0.05), 1.05)
    ax.grid(axis="y", alpha=0.3)
    return table


def plot_experiments(summary, conds: Sequence[tuple[str, str]] | None = None, column_width: float = 3.4,
                     layers: Mapping[tuple[str, str], Sequence[str]] | None = None):
    """The paper's Fig. 4: one column per condition; development, variance explained, consistency.

    Rows: (top) r(shared iRSM at epoch e, final-epoch wRSM) against training
    epochs, one line per layer, with the 95% interval over networks (band)
    and the correspondence-broken null's 95th percentile (a tick, where
    computed); (middle) held-out variance explained at the final epoch per
    layer, mean and 95% interval over networks; (bottom) consistency, r
    between networks' native wRSMs at the final epoch, per layer, mean and
    95% interval over networks (the jackknife of networks, not a t interval
    over the dependent pairs).

    Parameters
    ----------
    summary : pandas.DataFrame
        The tidy summary table of one or several conditions.
    conds : sequence of (data, model), optional
        Columns, left to right (default: every condition in ``summary``).
    column_width : float
        Width of one column in inches.
    layers : mapping of (data, model) to sequence of str, optional
        The layers drawn for each condition (default: every layer). The
        paper's Fig. 4 shows the hidden layers, not the output layer.

    Returns
    -------
    matplotlib.figure.Figure
    """
    conds = list(conds) if conds is not None else conditions(summary)
    if not conds:
        raise ValueError("no conditions to plot: the summary is empty")
    fig = _new_figure((column_width * len(conds) + 0.4, 8.2))
    axes = fig.subplots(3, len(conds), squeeze=False)
    for c, (data, model) in enumerate(conds):
        sub = _one_condition(summary, data, model)
        chosen = None if layers is None else layers.get((data, model))
        ax = axes[0, c]
        plot_development(sub, ax, "r_shared_irsm_final_wrsm", layers=chosen)
        ax.set_title(condition_label(data, model), fontsize=11)
        plot_layer_bars(sub, axes[1, c], "var_exp_test", layers=chosen)
        plot_layer_bars(sub, axes[2, c], "consistency", layers=chosen)
        if c > 0:
            for ax in axes[:, c]:
                ax.set_ylabel("")
    return fig


def plot_development_same_epoch(summary, conds: Sequence[tuple[str, str]] | None = None,
                                column_width: float = 3.6, layers: Mapping[tuple[str, str], Sequence[str]] | None = None):
    """Development of r(iRSM at epoch e, wRSM at the same epoch), shared (solid) vs native (dashed).

    One panel per condition, one colour per layer (darker = deeper). The
    shared-space curve says whether networks share their geometry at each
    stage of training; the native curve is the baseline without alignment.

    Parameters
    ----------
    summary : pandas.DataFrame
        The tidy summary table of one or several conditions.
    conds : sequence of (data, model), optional
        Panels, left to right (default: every condition in ``summary``).
    column_width : float
        Width of one panel in inches.
    layers : mapping of (data, model) to sequence of str, optional
        The layers drawn for each condition (default: every layer).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D

    conds = list(conds) if conds is not None else conditions(summary)
    if not conds:
        raise ValueError("no conditions to plot: the summary is empty")
    fig = _new_figure((column_width * len(conds) + 0.4, 3.7))
    axes = fig.subplots(1, len(conds), squeeze=False)[0]
    for c, (data, model) in enumerate(conds):
        sub = _one_condition(summary, data, model)
        ax = axes[c]
        chosen = None if layers is None else layers.get((data, model))
        plot_development(sub, ax, "r_shared_irsm_wrsm", colorbar=False, layers=chosen, band=False, null=False)
        plot_development(sub, ax, "r_native_irsm_wrsm", linestyle="--", marker="o", colorbar=True, layers=chosen,
                         band=False, null=False)
        ax.set_title(condition_label(data, model), fontsize=11)
        if c > 0:
            ax.set_ylabel("")
    # One legend for the figure, below the panels: inside a panel it would hide curves.
    handles = [Line2D([], [], color="0.3", linestyle="-", marker="o", markersize=3.5, label="shared space (after SRM)"),
               Line2D([], [], color="0.3", linestyle="--", marker="o", markersize=3.5, markerfacecolor="white",
                      label="native space (no alignment)")]
    fig.legend(handles=handles, fontsize=9, loc="outside lower center", ncol=2, frameon=False)
    return fig


def _over_epochs(sub, metric, layer, confidence):
    """Mean over networks (or pairs) per epoch with its interval: array (n_epochs, 3) and the epochs.

    The interval is the summary's (``ci_low``, ``ci_high``) where it has one,
    else :func:`mean_ci`'s t interval.
    """
    rows = _metric_rows(sub, metric, all_rows=False)
    rows = rows[rows["layer"] == layer]
    st = stat_table(sub, metric)
    epochs, out = [], []
    for epoch, g in rows.groupby("epoch"):
        m, lo, hi = mean_ci(g["value"].to_numpy(), confidence)
        if (epoch, layer) in st.index and {"ci_low", "ci_high"} <= set(st.columns):
            lo, hi = float(st.loc[(epoch, layer), "ci_low"]), float(st.loc[(epoch, layer), "ci_high"])
        epochs.append(int(epoch))
        out.append((m, lo, hi))
    return np.array(epochs), np.array(out).reshape(-1, 3)


def plot_variance_explained(summary, data=None, model=None, confidence: float = CONFIDENCE,
                            layers: Sequence[str] | None = None):
    """SRM's variance explained: held-out over training (left), fit vs held-out at the final epoch (right).

    Left: the paper's measure (``S̄`` of all networks, solid) and the
    leave-one-out one (``S̄_{-i}`` of the other networks, dashed), per layer,
    with the 95% interval over networks.

    Parameters
    ----------
    summary : pandas.DataFrame
        The tidy summary table; rows of one condition, or name it with
        ``data`` and ``model``.
    data, model : str, optional
        The condition, if ``summary`` holds several.
    confidence : float
        Coverage of the t interval used where the summary has no interval.
    layers : sequence of str, optional
        Layers to draw (default: all).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    sub = _one_condition(summary, data, model)
    (data, model), = conditions(sub)
    layers = _layers(sub, layers)
    colors = layer_colors(len(layers))
    fig = _new_figure((10.0, 3.9))
    ax_dev, ax_bar = fig.subplots(1, 2, width_ratios=[1.1, 1])
    metrics = [("var_exp_test", "-")] + [("var_exp_test_loo", "--")] * bool(
        (sub["metric"] == "var_exp_test_loo").any())
    lows = [0.0]
    for metric, style in metrics:
        for layer, color in zip(layers, colors):
            epochs, st = _over_epochs(sub, metric, layer, confidence)
            if not len(epochs):
                continue
            ax_dev.plot(epochs, st[:, 0], marker="o", markersize=3.5, color=color, linestyle=style,
                        label=layer if style == "-" else None, markerfacecolor=color if style == "-" else "white")
            ax_dev.fill_between(epochs, st[:, 1], st[:, 2], color=color, alpha=0.15, linewidth=0)
            lows.append(float(np.nanmin(st[:, 1])))
    ax_dev.set_xlabel("training epochs")
    ax_dev.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_dev.set_ylabel("held-out variance explained")
    ax_dev.set_ylim(min(0.0, float(np.nanmin(lows)) - 0.05), 1.05)
    ax_dev.grid(alpha=0.3)
    ax_dev.set_title("held out, over training (band: 95% CI over networks)", fontsize=9)
    if len(metrics) > 1:
        ax_dev.legend(handles=[Line2D([], [], color="0.3", label="S̄ of all networks (paper)"),
                               Line2D([], [], color="0.3", linestyle="--", label="S̄ of the other networks")],
                      fontsize=7, loc="lower right", framealpha=0.9)

    epoch = final_epoch(sub)
    x = np.arange(len(layers))
    width = 0.38
    lows = []
    for offset, metric, hatch in ((-width / 2, "var_exp_fit", "///"), (width / 2, "var_exp_test", None)):
        st = []
        for layer in layers:
            epochs, vals = _over_epochs(sub, metric, layer, confidence)
            st.append(vals[list(epochs).index(epoch)] if epoch in epochs else [np.nan] * 3)
        st = np.array(st)
        lows.append(np.nanmin(st[:, 1]))
        ax_bar.bar(x + offset, st[:, 0], width=width, color=colors, hatch=hatch, edgecolor="white", linewidth=0)
        ax_bar.errorbar(x + offset, st[:, 0], yerr=[st[:, 0] - st[:, 1], st[:, 2] - st[:, 0]], fmt="none",
                        ecolor="0.2", elinewidth=1.1, capsize=2.5)
    _layer_ticks(ax_bar, layers)
    ax_bar.set_xlabel(f"layer (shallow → deep), epoch {epoch}")
    ax_bar.set_ylabel("variance explained")
    # Headroom above 1 for the legend, which would otherwise cover the bars.
    ax_bar.set_ylim(min(0.0, float(np.nanmin(lows)) - 0.05), 1.3)
    ax_bar.set_yticks(np.linspace(0, 1, 6))
    ax_bar.grid(axis="y", alpha=0.3)
    ax_bar.legend(handles=[Patch(facecolor="0.6", hatch="///", edgecolor="white", label="fit images (80%)"),
                           Patch(facecolor="0.6", label="held-out images (20%)")],
                  fontsize=8, loc="upper center", ncol=2, framealpha=0.9)
    ax_bar.set_title("final epoch (mean, 95% CI over networks)", fontsize=9)
    _depth_colorbar(fig, [ax_dev, ax_bar], layers)
    fig.suptitle(f"SRM variance explained: {condition_label(data, model)}", fontsize=11)
    return fig


# --------------------------------------------------------------------------- the cross-checks

def plot_measures(summary, metrics: Sequence[str] = MEASURE_PANELS, data=None, model=None,
                  layers: Sequence[str] | None = None, ncols: int = 4, panel: float = 3.0):
    """Every measure over training and depth, one panel each (like Fig. 4's top row).

    In each panel: one line per layer (darker = deeper) of the across-network
    value (the mean over networks or pairs), the 95% interval over networks
    as a band, and the correspondence-broken null's one-sided 95% critical
    value (a horizontal tick at the epochs where the null was run: its 95th
    percentile, the 5th for the Procrustes distance, where small is evidence).

    Parameters
    ----------
    summary : pandas.DataFrame
        The tidy summary table of one condition (or name it with ``data``, ``model``).
    metrics : sequence of str
        Panels, in order; metrics missing from the summary are left out.
    layers : sequence of str, optional
        Layers drawn (default: all).
    ncols : int
        Panels per row.
    panel : float
        Size of a panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sub = _one_condition(summary, data, model)
    (data, model), = conditions(sub)
    metrics = [m for m in metrics if (sub["metric"] == m).any()]
    if not metrics:
        raise ValueError(f"none of the metrics {list(MEASURE_PANELS)} is in the summary")
    ncols = min(ncols, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig = _new_figure((panel * ncols + 1.0, panel * 0.85 * nrows + 0.6))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, metric in zip(axes, metrics):
        plot_development(sub, ax, metric, colorbar=False, layers=layers)
        ax.set_title(METRIC_LABELS.get(metric, metric).replace("\n", " "), fontsize=9)
        ax.set_ylabel("")
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_size(8)
    for ax in axes[len(metrics):]:
        ax.set_axis_off()
    _depth_colorbar(fig, list(axes[:len(metrics)]), _layers(sub, layers))
    fig.suptitle(f"{condition_label(data, model)}: every measure over training (band: 95% CI over networks; "
                 f"ticks: the correspondence-broken null's 95% critical value)", fontsize=10)
    return fig


def plot_decoding(summary, data=None, model=None, layers: Sequence[str] | None = None, panel: float = 3.0,
                  confidence: float = CONFIDENCE):
    """Decoding accuracy over training, one panel per layer: shared-space transfer, native transfer, within.

    Solid: a classifier trained on the other networks' shared responses and
    tested on the held-out network; dashed: the same in the native space (near
    chance: units do not correspond); dotted: within each network (5-fold, the
    upper bound). Bands: 95% interval over networks. Grey line: chance.

    Parameters
    ----------
    summary : pandas.DataFrame
        The tidy summary table of one condition.
    layers : sequence of str, optional
        Panels (default: every layer).
    panel : float
        Panel size in inches.
    confidence : float
        Coverage of the t interval where the summary has no interval.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    sub = _one_condition(summary, data, model)
    (data, model), = conditions(sub)
    if not (sub["metric"] == "decoding_shared").any():
        raise ValueError("the summary has no decoding rows (run the analyses with the decoding measure)")
    layers = _layers(sub, layers)
    colors = layer_colors(len(layers))
    fig = _new_figure((panel * len(layers) + 0.4, panel * 0.9 + 0.7))
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    chance = stat_table(sub, "decoding_chance")
    styles = (("decoding_shared", "-"), ("decoding_native", "--"), ("decoding_within", ":"))
    for ax, layer, color in zip(axes, layers, colors):
        for metric, style in styles:
            epochs, st = _over_epochs(sub, metric, layer, confidence)
            if not len(epochs):
                continue
            ax.plot(epochs, st[:, 0], linestyle=style, marker="o", markersize=3, color=color)
            ax.fill_between(epochs, st[:, 1], st[:, 2], color=color, alpha=0.15, linewidth=0)
        if len(chance):
            ax.axhline(float(chance["value"].iloc[0]), color="0.5", linewidth=0.8)
        ax.set_title(layer, fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("training epochs", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("decoding accuracy")
    handles = [Line2D([], [], color="0.3", linestyle=st, label=lab) for st, lab in
               (("-", "shared space, trained on the other networks"), ("--", "native space, the same (transfer)"),
                (":", "within network (5-fold)"), ("-", "chance"))]
    handles[-1].set_color("0.6")
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=4, frameon=False)
    fig.suptitle(f"{condition_label(data, model)}: decoding the class across networks", fontsize=10)
    return fig


def plot_layer_identification(table, similarity: Mapping[str, np.ndarray] | None = None,
                              layers: Sequence[str] | None = None, title: str | None = None):
    """Layer identification (Kornblith et al. 2019, Table 2): accuracy per measure, and mean similarity matrices.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per measure with ``measure, accuracy, ci_low, ci_high,
        chance, n_pairs, higher_is_similar`` (``analyses/layer_identification.csv``).
    similarity : mapping of str to array, shape (n_pairs, n_layers, n_layers), optional
        Per measure, the layers × layers matrices of every pair of networks:
        their mean is drawn, one heatmap per measure (rows: network A's
        layers, columns: B's), best match per row outlined.
    layers : sequence of str, optional
        Layer names of the matrices' rows and columns.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    measures = list(table["measure"])
    if not measures:
        raise ValueError("the layer-identification table is empty")
    n_heat = len(measures) if similarity else 0
    fig = _new_figure((3.6 + 2.3 * n_heat, 3.4))
    axes = fig.subplots(1, 1 + n_heat, squeeze=False, width_ratios=[1.6] + [1] * n_heat)[0]
    ax = axes[0]
    x = np.arange(len(measures))
    acc = table["accuracy"].to_numpy(dtype=float)
    lo = table["ci_low"].to_numpy(dtype=float)
    hi = table["ci_high"].to_numpy(dtype=float)
    ax.bar(x, acc, color="#4c72b0", width=0.7)
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.errorbar(x[ok], acc[ok], yerr=[acc[ok] - lo[ok], hi[ok] - acc[ok]], fmt="none", ecolor="0.2", capsize=3)
    ax.axhline(float(table["chance"].iloc[0]), color="0.5", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, measures, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("layer-identification accuracy")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{int(table['n_pairs'].iloc[0])} pairs of networks, {int(table['n_layers'].iloc[0])} layers",
                 fontsize=9)
    for ax, measure in zip(axes[1:], measures):
        M = np.nanmean(np.asarray(similarity[measure], dtype=float), axis=0)  # (L, L)
        higher = bool(table.set_index("measure").loc[measure, "higher_is_similar"])
        ax.imshow(M, cmap="viridis" if higher else "viridis_r", interpolation="nearest")
        best = np.nanargmax(M, axis=1) if higher else np.nanargmin(M, axis=1)
        for r, c in enumerate(best):
            ax.add_patch(_outline(c, r))
        ticks = np.arange(M.shape[0])
        names = list(layers) if layers is not None else [str(i) for i in ticks]
        ax.set_xticks(ticks, names, rotation=90, fontsize=6)
        ax.set_yticks(ticks, names, fontsize=6)
        ax.set_title(measure + ("" if higher else " (distance)"), fontsize=8)
        ax.set_xlabel("network B", fontsize=7)
    if n_heat:
        axes[1].set_ylabel("network A", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _outline(col, row):
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=1.2)


def plot_variance_by_k(table, title: str | None = None, confidence: float = CONFIDENCE):
    """Variance explained as a function of k: SRM (fit, held out; paper's and leave-one-out) and per-network PCA.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``k, method, reconstruction, images, subject, value``
        (``variance_by_k.csv`` of stage 3): ``method`` ``srm`` or ``pca``,
        ``images`` ``fit`` or ``held_out``.
    title : str, optional
    confidence : float
        Coverage of the bands (t interval over networks).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if table is None or not len(table):
        raise ValueError("the variance-by-k table is empty")
    fig = _new_figure((9.0, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    curves = (("srm", "mean", "#1f77b4", "-", "SRM, S̄ of all networks"),
              ("srm", "leave_one_out", "#1f77b4", "--", "SRM, S̄ of the other networks"),
              ("pca", "own", "#d62728", "-", "PCA of each network"))
    for ax, images in zip(axes, ("fit", "held_out")):
        for method, recon, color, style, label in curves:
            rows = table[(table["method"] == method) & (table["reconstruction"] == recon) & (table["images"] == images)]
            if rows.empty:
                continue
            st = np.array([mean_ci(g["value"].to_numpy(), confidence) for _, g in rows.groupby("k")])
            ks = np.array(sorted(rows["k"].unique()))
            ax.plot(ks, st[:, 0], color=color, linestyle=style, marker="o", markersize=3, label=label)
            ax.fill_between(ks, st[:, 1], st[:, 2], color=color, alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.set_xlabel("k (shared features or principal components)")
        ax.set_title("fit images" if images == "fit" else "held-out images", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("variance explained")
    axes[0].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- RSMs

def _rsm_image(ax, M, vmin=-1.0, vmax=1.0):
    return ax.imshow(M, vmin=vmin, vmax=vmax, cmap=RSM_CMAP, interpolation="nearest")


def plot_rsm_triplet(irsm_shared, wrsm_native, irsm_native, labels=None, title: str | None = None,
                     r_shared: float | None = None, r_native: float | None = None):
    """The paper's Fig. 3: shared iRSM | native wRSM | native iRSM of the held-out images.

    Parameters
    ----------
    irsm_shared, wrsm_native, irsm_native : ndarray, shape (t, t)
        Leave-one-out inter-network RSM in the shared space, mean
        within-network RSM in the native space, inter-network RSM in the
        native space.
    labels : ndarray of int, shape (t,), optional
        Class of each held-out image (in the RSMs' order, sorted by class):
        class boundaries are marked on the axes.
    title : str, optional
        Figure title (e.g. condition, epoch and layer).
    r_shared, r_native : float, optional
        r(shared iRSM, wRSM) and r(native iRSM, wRSM), printed under the
        iRSM panels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    mats = [np.asarray(m) for m in (irsm_shared, wrsm_native, irsm_native)]
    shapes = {m.shape for m in mats}
    if len(shapes) != 1 or mats[0].ndim != 2 or mats[0].shape[0] != mats[0].shape[1]:
        raise ValueError(f"the three RSMs must be square and of one shape, got {[m.shape for m in mats]}")
    if labels is not None and len(labels) != mats[0].shape[0]:
        raise ValueError(f"labels must have one entry per image ({mats[0].shape[0]}), got {len(labels)}")
    fig = _new_figure((10.5, 3.9))
    axes = fig.subplots(1, 3)
    names = [RSM_KEYS["irsm_shared"], RSM_KEYS["wrsm_native"], RSM_KEYS["irsm_native"]]
    subtitles = [None if r_shared is None else f"r with wRSM = {r_shared:.2f}", None,
                 None if r_native is None else f"r with wRSM = {r_native:.2f}"]
    im = None
    for ax, M, name, sub in zip(axes, mats, names, subtitles):
        im = _rsm_image(ax, M)
        ax.set_title(name if sub is None else f"{name}\n{sub}", fontsize=10)
        ax.set_xlabel("held-out images (by class)", fontsize=9)
        if labels is not None:
            _class_ticks(ax, labels)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0].set_ylabel("held-out images (by class)", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="Pearson r")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_rsm_quad(wrsm_native, irsm_native, wrsm_shared, irsm_shared, title: str = ""):
    """The four RSMs of one analysis as a 2 × 2 grid: rows native / shared space, columns within / inter.

    Parameters
    ----------
    wrsm_native, irsm_native, wrsm_shared, irsm_shared : ndarray, shape (t, t)
        Mean within-network and leave-one-out inter-network RSMs of the
        held-out images (sorted by class) in the native and the shared space.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _new_figure((9, 8.5))
    axes = fig.subplots(2, 2)
    panels = [[wrsm_native, irsm_native], [wrsm_shared, irsm_shared]]
    im = None
    for r, space in enumerate(("native space", "shared space")):
        for c, kind in enumerate(("within network (wRSM)", "inter network, leave-one-out (iRSM)")):
            ax = axes[r, c]
            im = _rsm_image(ax, panels[r][c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(kind, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{space}\nheld-out images", fontsize=10)
            if r == 1:
                ax.set_xlabel("held-out images (sorted by class)", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.6, label="Pearson r")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_rsm_grid(rsms: Mapping[tuple[int, str], np.ndarray], epochs: Sequence[int], layers: Sequence[str],
                  kind: str = "wrsm_native", title: str | None = None, max_size: int = 200,
                  cell: float = 1.25, vmin: float = -1.0, vmax: float = 1.0):
    """RSMs over depth × training: one row per layer (shallow at the top), one column per epoch.

    Parameters
    ----------
    rsms : mapping of (epoch, layer) to ndarray, shape (t, t)
        The matrices to show; a missing pair leaves its cell blank (with a
        note). Large matrices are block-averaged to ``max_size`` for display.
    epochs : sequence of int
        Columns, left to right.
    layers : sequence of str
        Rows, top to bottom (shallow to deep).
    kind : str
        Which RSM this is (a key of :data:`RSM_KEYS`), for the title.
    title : str, optional
        Figure title (default names the kind).
    max_size : int
        Largest side of a drawn matrix.
    cell : float
        Size of one cell in inches.
    vmin, vmax : float
        Colour scale (the original study's class-mean grid used 0 to 1).

    Returns
    -------
    matplotlib.figure.Figure
    """
    epochs, layers = list(epochs), list(layers)
    if not epochs or not layers:
        raise ValueError(f"need at least one epoch and one layer, got epochs={epochs}, layers={layers}")
    fig = _new_figure((cell * len(epochs) + 1.6, cell * len(layers) + 0.9))
    axes = fig.subplots(len(layers), len(epochs), squeeze=False)
    im = None
    for r, layer in enumerate(layers):
        for c, epoch in enumerate(epochs):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            M = rsms.get((epoch, layer))
            if M is None:
                ax.text(0.5, 0.5, "not\nanalysed", ha="center", va="center", fontsize=7, color="0.4",
                        transform=ax.transAxes)
                for side in ax.spines.values():
                    side.set_color("0.8")
            else:
                im = _rsm_image(ax, downsample_rsm(M, max_size), vmin, vmax)
            if r == 0:
                ax.set_title(f"epoch {epoch}", fontsize=9)
            if c == 0:
                ax.set_ylabel(layer, fontsize=9)
    fig.supxlabel("training →", fontsize=10)
    fig.supylabel("layer depth (shallow → deep)", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="Pearson r")
    fig.suptitle(title or f"{RSM_KEYS.get(kind, kind)} over depth and training", fontsize=11)
    return fig
