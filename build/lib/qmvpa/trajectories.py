"""Trajectories of networks' held-out activity in 3-D, before and after SRM (static and animated).

The held-out images are sorted by class, so a moving average over consecutive
images (10 by default, as in the original notebooks) traces a path through
activity space that visits the classes in turn. In the native space each
network's path looks unrelated to the others' (their units do not
correspond); in SRM's shared space the paths of different networks lie on
top of each other.

Reduction to 3-D and the animation use hypertools (``hypertools.reduce``,
``hypertools.plot(..., animate=True)``, which writes GIFs through pillow; no
ffmpeg). hypertools is imported only inside the functions that need it: it is
slow to import.

Arrays follow the library's orientation, units × images, on the way in;
hypertools wants samples × features, so :func:`reduce_trajectories` returns
images × 3 (transposed there, once).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["moving_average", "reduce_trajectories", "plot_trajectories", "animate_trajectories"]

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
        A hypertools reduction model name (default ``"PCA"``).

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
    import hypertools as hyp

    reduced = hyp.reduce(smooth, reduce=reduce, ndims=ndims)
    return [np.asarray(r, dtype=np.float64) for r in reduced]


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
    import seaborn as sns

    colors = sns.color_palette("hls", len(names))  # hypertools' default palette: the GIFs use the same colours
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


def animate_trajectories(trajectories: Sequence, path, title: str = "", names: Sequence[str] | None = None,
                         duration: float = 8.0, frame_rate: int = 10, size=(6.0, 5.0)):
    """Write an animated GIF of trajectories growing while the camera turns (``hypertools.plot``).

    Parameters
    ----------
    trajectories : sequence of ndarray, each shape (n_points, 3)
        Reduced trajectories, one per network.
    path : str or path-like
        The ``.gif`` to write (its folder must exist). Pillow writes it: no
        ffmpeg needed.
    title : str
        Shown above the animation.
    names : sequence of str, optional
        Legend entries (default ``network 0``, ...).
    duration : float
        Seconds of animation; frames = ``duration * frame_rate``.
    frame_rate : int
        Frames per second.
    size : (float, float)
        Figure size in inches.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {path}")
    if duration <= 0 or frame_rate < 1:
        raise ValueError(f"duration must be > 0 and frame_rate >= 1, got {duration} and {frame_rate}")
    names = list(names) if names is not None else [f"network {i}" for i in range(len(trajectories))]
    data = [np.asarray(T, dtype=np.float64) for T in trajectories]
    import hypertools as hyp
    import matplotlib.pyplot as plt  # hypertools draws through pyplot

    geo = hyp.plot(data, animate=True, reduce=None, save_path=os.fspath(path), duration=duration,
                   frame_rate=frame_rate, tail_duration=duration / 4, title=title, legend=names, size=list(size),
                   show=False)
    fig = getattr(geo, "fig", None)
    if fig is not None:
        plt.close(fig)
    log.info("wrote %s (%d frames)", path, int(round(duration * frame_rate)))
    return path
