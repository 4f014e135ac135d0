"""Trajectories of networks' held-out activity in 3-D, before and after SRM (static and animated).

The held-out images are sorted by class, so a moving average over consecutive
images (10 by default, as in the original notebooks) traces a path through
activity space that visits the classes in turn. In the native space each
network's path looks unrelated to the others' (their units do not
correspond); in SRM's shared space the paths of different networks lie on
top of each other.

The reduction to 3-D is one PCA fitted on every network's smoothed activity
together (what the original's ``hypertools.reduce`` did; here in NumPy, so
the slow-to-import hypertools is needed only for its other reduction models).
Animations are drawn with matplotlib and written as GIFs by Pillow (no
ffmpeg): the paths grow while the camera turns.

Arrays follow the library's orientation, units × images, on the way in;
the reduced trajectories are images × 3 (transposed there, once).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["moving_average", "reduce_trajectories", "plot_trajectories", "plot_trajectory_grid",
           "animate_trajectories", "palette"]

#: Images averaged per point of a trajectory (the original notebooks' choice).
WINDOW = 10


def moving_average(X, window: int = WINDOW):
    """Moving average over consecutive images.

    Parameters
    ----------
    X : array-like, shape (n_units, n_images)
        Activity of one network, images in display order (sorted by class).
    window : int
        Images per average, 1 <= window <= n_images.

    Returns
    -------
    ndarray, shape (n_units, n_images - window + 1)
        Column ``j`` is the mean of columns ``j .. j + window - 1`` of ``X``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be units × images (2-D), got shape {X.shape}")
    if not isinstance(window, (int, np.integer)) or not 1 <= window <= X.shape[1]:
        raise ValueError(f"window must be an integer in [1, n_images={X.shape[1]}], got {window!r}")
    c = np.cumsum(np.pad(X, ((0, 0), (1, 0))), axis=1)  # (n_units, n_images + 1)
    return (c[:, window:] - c[:, :-window]) / window


def reduce_trajectories(Xs: Sequence, ndims: int = 3, window: int = WINDOW, reduce: str = "PCA"):
    """Smooth each network's activity and reduce all of them, jointly, to ``ndims`` dimensions.

    One reduction is fitted on every network's smoothed activity together
    (``hypertools.reduce`` on the list), so the networks' paths are drawn in
    one common coordinate system.

    Parameters
    ----------
    Xs : sequence of array-like, each shape (n_units, n_images)
        One matrix per network, the same number of units and images in each
        (native activity, or shared responses ``S_i``).
    ndims : int
        Dimensions kept (3 for the figures).
    window : int
        Images per moving average (:func:`moving_average`).
    reduce : str
        ``"PCA"`` (default; NumPy, as ``hypertools.reduce``'s PCA), or another
        hypertools reduction model name (imports hypertools).

    Returns
    -------
    list of ndarray, each shape (n_images - window + 1, ndims)
        Images × dimensions, one per network.
    """
    if len(Xs) < 1:
        raise ValueError("Xs must hold at least one network's activity")
    smooth = [moving_average(X, window).T for X in Xs]  # each (n_points, n_units): hypertools' orientation
    widths = {s.shape[1] for s in smooth}
    lengths = {s.shape[0] for s in smooth}
    if len(widths) > 1 or len(lengths) > 1:
        raise ValueError(f"every network needs the same units and images, got shapes "
                         f"{[np.shape(X) for X in Xs]}")
    if ndims > min(widths.pop(), sum(lengths)):
        raise ValueError(f"ndims={ndims} exceeds the units or points available ({[np.shape(X) for X in Xs]})")
    if reduce != "PCA":
        import hypertools as hyp

        return [np.asarray(r, dtype=np.float64) for r in hyp.reduce(smooth, reduce=reduce, ndims=ndims)]
    stacked = np.concatenate(smooth)  # (n_networks * n_points, n_units)
    centre = stacked.mean(axis=0)
    _, _, vt = np.linalg.svd(stacked - centre, full_matrices=False)  # principal axes, (r, n_units)
    axes = vt[:ndims]
    signs = np.sign(axes[np.arange(ndims), np.argmax(np.abs(axes), axis=1)])  # a deterministic orientation
    axes = axes * signs[:, None]
    return [(S - centre) @ axes.T for S in smooth]  # each (n_points, ndims)


def plot_trajectories(native: Sequence, shared: Sequence, names: Sequence[str] | None = None,
                      title: str | None = None, window: int = WINDOW):
    """Two 3-D panels: the networks' paths in the native space and in the shared space.

    Parameters
    ----------
    native, shared : sequence of ndarray, each shape (n_points, 3)
        Reduced trajectories (:func:`reduce_trajectories`), one per network,
        before and after SRM.
    names : sequence of str, optional
        Legend entries, one per network (default ``network 0``, ...).
    title : str, optional
        Figure title.
    window : int
        The moving-average window used (for the caption).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if len(native) != len(shared):
        raise ValueError(f"native and shared need one trajectory per network each, got {len(native)} and "
                         f"{len(shared)}")
    names = list(names) if names is not None else [f"network {i}" for i in range(len(native))]
    colors = palette(len(names))
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    panels = (("native space (before SRM)", native), ("shared space (after SRM)", shared))
    for p, (label, trajs) in enumerate(panels):
        ax = fig.add_subplot(1, 2, p + 1, projection="3d")
        for i, (T, name) in enumerate(zip(trajs, names)):
            T = np.asarray(T)
            if T.ndim != 2 or T.shape[1] != 3:
                raise ValueError(f"trajectories must be n_points × 3, got {T.shape} for {name}")
            ax.plot(T[:, 0], T[:, 1], T[:, 2], color=colors[i % len(colors)], linewidth=1.0, alpha=0.85,
                    label=name)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("PC 1", fontsize=8, labelpad=-8)
        ax.set_ylabel("PC 2", fontsize=8, labelpad=-8)
        ax.set_zlabel("PC 3", fontsize=8, labelpad=-8)
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])
        ax.view_init(elev=20, azim=-60)
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(names),
               fontsize=8, frameon=False)
    caption = f"held-out images sorted by class, {window}-image moving average, PCA to 3-D"
    fig.suptitle(f"{title}\n{caption}" if title else caption, fontsize=10)
    return fig


def plot_trajectory_grid(cells, names: Sequence[str] | None = None, title: str | None = None):
    """Trajectories of several (epoch, layer) cells: one row per epoch, native | shared space per layer.

    Parameters
    ----------
    cells : mapping of (epoch, layer) to (native, shared)
        Each a sequence of reduced trajectories, shape (n_points, 3), one per
        network (:func:`reduce_trajectories`).
    names : sequence of str, optional
        Legend entries, one per network.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if not cells:
        raise ValueError("cells must hold at least one (epoch, layer)")
    epochs = sorted({e for e, _ in cells})
    layers = []
    for _, layer in cells:
        if layer not in layers:
            layers.append(layer)
    n_nets = len(next(iter(cells.values()))[0])
    names = list(names) if names is not None else [f"network {i}" for i in range(n_nets)]
    colors = palette(len(names))
    fig = Figure(figsize=(2.3 * 2 * len(layers), 2.4 * len(epochs) + 0.6), layout="constrained")
    for r, epoch in enumerate(epochs):
        for c, layer in enumerate(layers):
            pair = cells.get((epoch, layer))
            for p, space in enumerate(("native", "shared")):
                ax = fig.add_subplot(len(epochs), 2 * len(layers), r * 2 * len(layers) + 2 * c + p + 1,
                                     projection="3d")
                ax.set_axis_off()
                if pair is None:
                    continue
                for i, T in enumerate(pair[p]):
                    T = np.asarray(T)
                    ax.plot(T[:, 0], T[:, 1], T[:, 2], color=colors[i % len(colors)], linewidth=0.8,
                            label=names[i])
                ax.view_init(elev=20, azim=-60)
                ax.set_title(f"epoch {epoch}, {layer}\n{space}", fontsize=7)
    handles = fig.axes[0].get_legend_handles_labels()
    fig.legend(*handles, loc="outside lower center", ncol=len(names), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def palette(n: int) -> list:
    """``n`` colours evenly spaced in hue (seaborn's and hypertools' ``"hls"`` palette: lightness 0.6, saturation 0.65)."""
    import colorsys

    return [colorsys.hls_to_rgb((i / n + 0.01) % 1.0, 0.6, 0.65) for i in range(n)]


def animate_trajectories(trajectories: Sequence, path, title: str = "", names: Sequence[str] | None = None,
                         duration: float = 4.0, frame_rate: int = 6, size=(6.0, 5.0),
                         panels: Sequence[str] | None = None):
    """Write an animated GIF of trajectories growing while the camera turns.

    Parameters
    ----------
    trajectories : sequence of ndarray, each shape (n_points, 3); or a sequence of such sequences
        Reduced trajectories, one per network; a list of lists draws several
        3-D panels side by side (e.g. native and shared space).
    path : str or path-like
        The ``.gif`` to write (its folder must exist). Pillow writes it: no
        ffmpeg needed.
    title : str
        Shown above the animation.
    names : sequence of str, optional
        Legend entries (default ``network 0``, ...).
    duration : float
        Seconds of animation; frames = ``duration * frame_rate`` (at least 2).
    frame_rate : int
        Frames per second.
    size : (float, float)
        Size of one panel in inches.
    panels : sequence of str, optional
        Titles of the panels.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {path}")
    if duration <= 0 or frame_rate < 1:
        raise ValueError(f"duration must be > 0 and frame_rate >= 1, got {duration} and {frame_rate}")
    nested = len(trajectories) > 0 and not (isinstance(trajectories[0], np.ndarray) and trajectories[0].ndim == 2)
    groups = [[np.asarray(T, dtype=np.float64) for T in g] for g in (trajectories if nested else [trajectories])]
    for g in groups:
        for T in g:
            if T.ndim != 2 or T.shape[1] != 3:
                raise ValueError(f"trajectories must be n_points × 3, got shape {T.shape}")
    names = list(names) if names is not None else [f"network {i}" for i in range(len(groups[0]))]
    panels = list(panels) if panels is not None else [""] * len(groups)
    colors = palette(len(names))
    n_frames = max(2, int(round(duration * frame_rate)))
    fig = Figure(figsize=(size[0] * len(groups), size[1]), dpi=72)
    canvas = FigureCanvasAgg(fig)
    lines = []
    axes = []
    for p, (group, label) in enumerate(zip(groups, panels)):
        ax = fig.add_subplot(1, len(groups), p + 1, projection="3d")
        stacked = np.concatenate(group)
        lo, hi = stacked.min(axis=0), stacked.max(axis=0)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_axis_off()  # the PCA axes carry no meaning, and drawing them costs ten times the paths
        ax.set_title(label, fontsize=10)
        lines.append([ax.plot([], [], [], color=colors[i % len(colors)], linewidth=1.2, label=names[i])[0]
                      for i in range(len(group))])
        axes.append(ax)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(names), 5), fontsize=7,
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    frames = []
    for f in range(n_frames):
        share = (f + 1) / n_frames
        for group, group_lines, ax in zip(groups, lines, axes):
            for T, line in zip(group, group_lines):
                end = max(2, int(round(share * len(T))))
                line.set_data_3d(T[:end, 0], T[:end, 1], T[:end, 2])
            ax.view_init(elev=20, azim=-60 + 90 * share)
        canvas.draw()
        frames.append(Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert(
            "P", palette=Image.ADAPTIVE, colors=128))
    with open(path, "wb") as fh:
        frames[0].save(fh, format="GIF", save_all=True, append_images=frames[1:],
                       duration=int(round(1000 / frame_rate)), loop=0)
    log.info("wrote %s (%d frames)", path, n_frames)
    return path
