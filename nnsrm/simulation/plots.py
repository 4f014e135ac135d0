"""Figures of the simulation: paper Fig. 5 and Fig. 6, the noise sweep and the k sweep.

Every function takes the saved results (the tidy table of
:mod:`simulation.experiment`, or its example RSMs) and returns a matplotlib
``Figure``; :func:`save_figure` writes PNG and PDF atomically and
:func:`draw_all` does all four. Error bars and bands are 95% t-intervals of the
mean over repetitions (:func:`simulation.experiment.ci95_interval`), the same
numbers :func:`simulation.experiment.summarise` reports. No Keras here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnsrm.simulation.experiment import ci95_interval, select
from nnsrm.errors import UsageError

COLOURS = {"shared": "#4C72B0", "native": "#DD8452"}  # the poster's blue and brown
SPACE_LABELS = {"shared": "Shared", "native": "Native"}
TRANSFORM_TITLES = {"orthogonal": "Orthogonal", "permutation": "Permutation"}
MEASURE_LABELS = {"linear": "Linear\n(Pearson r)", "rank": "Rank\n(Kendall τ)"}
FIG6_TITLES = {"shared_irsm": "iRSM, shared", "native_wrsm": "wRSM, native", "native_irsm": "iRSM, native"}
Y_LABEL = "Correlation with mean wRSM"


def _style():
    import seaborn as sns

    sns.set_theme(style="ticks", context="notebook")


def _relabel_legend(ax, title=None, **kwargs):
    """Replace seaborn's raw category names (shared, rank, ...) by readable ones."""
    handles, labels = ax.get_legend_handles_labels()
    names = {**SPACE_LABELS, "linear": "Linear (r)", "rank": "Rank (τ)", "space": "Space", "measure": "Measure"}
    ax.legend(handles, [names.get(label, label) for label in labels], title=title, frameon=False, **kwargs)


def plot_fig5(table, noise: float = 0.0, n_components: int = 50):
    """Paper Fig. 5: shared vs native correlation with the truth, per transform and measure.

    Parameters
    ----------
    table : pandas.DataFrame
        The tidy results (columns rep, transform, noise, n_components, space, measure, value).
    noise, n_components : float, int
        Which condition to draw (the paper's: 0 and 50).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    _style()
    data = select(table, noise=noise, n_components=n_components)
    if data.empty:
        raise UsageError(f"no rows with noise={noise} and n_components={n_components} in the table")
    n_reps = data["rep"].nunique()
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.6), sharey=True, layout="constrained")
    for ax, transform in zip(axes, TRANSFORM_TITLES):
        sns.barplot(data=data[data["transform"] == transform], x="measure", y="value", hue="space",
                    order=list(MEASURE_LABELS), hue_order=list(SPACE_LABELS), palette=COLOURS,
                    errorbar=ci95_interval, capsize=0.15, err_kws={"linewidth": 1.5}, ax=ax)
        ax.axhline(0, color="black", linestyle="--", linewidth=1)
        ax.set_title(TRANSFORM_TITLES[transform])
        ax.set_xlabel("")
        ax.set_xticks(range(len(MEASURE_LABELS)), list(MEASURE_LABELS.values()))
        ax.get_legend().remove()
    axes[0].set_ylabel(Y_LABEL)
    lowest_ci = min(ci95_interval(g["value"])[0] for _, g in data.groupby(["transform", "space", "measure"]))
    axes[0].set_ylim(min(-0.2, lowest_ci - 0.05), 1.05)
    _relabel_legend(axes[1], loc="upper left", bbox_to_anchor=(1.0, 1.0))
    sns.despine(fig=fig)
    fig.suptitle(f"{n_reps} repetitions, noise SD {noise:g}, k = {n_components}; mean and 95% CI",
                 fontsize="small")
    return fig


def plot_fig6(example_rsms, transforms=tuple(TRANSFORM_TITLES)):
    """Paper Fig. 6: shared iRSM | native wRSM | native iRSM of one repetition, a row per transform.

    Parameters
    ----------
    example_rsms : dict
        ``{transform: {"shared_irsm", "native_wrsm", "native_irsm": (n_test, n_test)}, "cloud": (n_test,)}``
        as saved by :func:`simulation.experiment.save_results`. Test images are
        grouped by XOR cloud; the two label-0 clouds come first.
    transforms : sequence of str
        Which rows to draw.
    """
    import matplotlib.pyplot as plt

    _style()
    cloud = np.asarray(example_rsms["cloud"])
    edges = np.flatnonzero(np.diff(cloud)) + 0.5  # block boundaries between clouds
    fig, axes = plt.subplots(len(transforms), 3, figsize=(10.5, 3.3 * len(transforms)),
                             squeeze=False, layout="constrained")
    for row, transform in zip(axes, transforms):
        for ax, name in zip(row, FIG6_TITLES):
            matrix = np.asarray(example_rsms[transform][name])
            image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
            for edge in edges:
                ax.axhline(edge, color="white", linewidth=0.6)
                ax.axvline(edge, color="white", linewidth=0.6)
            fig.colorbar(image, ax=ax, shrink=0.85, label="Pearson r")
            ax.set_title(FIG6_TITLES[name])
            ticks = np.concatenate([[0], edges + 0.5, [len(cloud)]]) - 0.5
            ax.set_xticks(ticks, [str(int(t + 0.5)) for t in ticks], fontsize="small")
            ax.set_yticks(ticks, [str(int(t + 0.5)) for t in ticks], fontsize="small")
            ax.set_xlabel("Stimulus id")
        row[0].set_ylabel(f"{TRANSFORM_TITLES[transform]}\nStimulus id")
    return fig


def _sweep_axes(data, x, title_suffix, xlabel):
    import matplotlib.pyplot as plt
    import seaborn as sns

    _style()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), sharey=True, layout="constrained")
    for ax, transform in zip(axes, TRANSFORM_TITLES):
        sns.lineplot(data=data[data["transform"] == transform], x=x, y="value", hue="space",
                     style="measure", hue_order=list(SPACE_LABELS), style_order=list(MEASURE_LABELS),
                     palette=COLOURS, markers=True, errorbar=ci95_interval, ax=ax)
        ax.axhline(0, color="black", linestyle=":", linewidth=1)
        ax.set_title(f"{TRANSFORM_TITLES[transform]}{title_suffix}")
        ax.set_xlabel(xlabel)
        ax.get_legend().remove()
    axes[0].set_ylabel(Y_LABEL)
    _relabel_legend(axes[1], loc="upper left", bbox_to_anchor=(1.0, 1.0))
    sns.despine(fig=fig)
    return fig, axes


def plot_noise_sweep(table, n_components: int = 50, max_rep: int | None = None):
    """Shared vs native correlation with the truth as the copies' noise SD grows.

    ``max_rep``: use repetitions ``rep < max_rep`` only (those that ran the sweep).
    """
    data = select(table, n_components=n_components)
    if max_rep is not None:
        data = data[data["rep"] < max_rep]
    levels = np.sort(data["noise"].unique())
    if len(levels) < 2:
        raise UsageError(f"the table has {len(levels)} noise level(s) at k={n_components}; "
                         f"run with --noise-sweep")
    # Evenly spaced positions: the levels span orders of magnitude and include 0.
    data = data.assign(level=np.searchsorted(levels, data["noise"]))
    fig, axes = _sweep_axes(data, "level", f" (k = {n_components})", "Noise SD added to each copy")
    for ax in axes:
        ax.set_xticks(range(len(levels)), [f"{v:g}" for v in levels])
        ax.minorticks_off()
    fig.suptitle("Sigmoid hidden activity lies in (0, 1) (networks.csv: hidden_sd). "
                 "Mean and 95% CI over repetitions", fontsize="small")
    return fig


def plot_k_sweep(table, noise: float = 0.0, max_rep: int | None = None):
    """Shared vs native correlation with the truth against the number of SRM components k.

    The native space does not depend on k (a flat reference line).
    ``max_rep``: use repetitions ``rep < max_rep`` only.
    """
    data = select(table, noise=noise)
    if max_rep is not None:
        data = data[data["rep"] < max_rep]
    ks = np.sort(data["n_components"].unique())
    if len(ks) < 2:
        raise UsageError(f"the table has {len(ks)} value(s) of k at noise={noise}; run with --k-sweep")
    data = data.assign(level=np.searchsorted(ks, data["n_components"]))  # evenly spaced, like the noise sweep
    fig, axes = _sweep_axes(data, "level", f" (noise SD {noise:g})", "SRM components k")
    for ax in axes:
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.minorticks_off()
    fig.suptitle("The native space does not depend on k. Mean and 95% CI over repetitions", fontsize="small")
    return fig


def save_figure(fig, folder, name: str, formats=("png", "pdf"), dpi: int = 200, close: bool = True) -> list:
    """Write ``fig`` as ``folder/name.<format>`` for each format, atomically.

    ``close=False`` keeps the figure open, so that a notebook still shows it.
    """
    import matplotlib.pyplot as plt
    from nnsrm.atomic import atomic_path

    folder = Path(folder)
    paths = []
    for fmt in formats:
        path = folder / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    if close:
        plt.close(fig)
    return paths


def draw_all(results, folder) -> list:
    """Fig. 5, Fig. 6 and, where the table has them, the noise and k sweeps; returns the files.

    ``results`` is a :class:`simulation.experiment.SimResults`.
    """
    config, table = results.config, results.table
    paths = save_figure(plot_fig5(table, config.noise, config.k), folder, "fig5_bars")
    paths += save_figure(plot_fig6(results.example_rsms), folder, "fig6_rsms")
    sweep = table[table["rep"] < config.n_sweep_sims]
    if select(sweep, n_components=config.k)["noise"].nunique() > 1:
        paths += save_figure(plot_noise_sweep(sweep, config.k), folder, "noise_sweep")
    if select(sweep, noise=config.noise)["n_components"].nunique() > 1:
        paths += save_figure(plot_k_sweep(sweep, config.noise), folder, "k_sweep")
    return paths
