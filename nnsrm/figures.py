"""From a results root to the paper's figures: what exists, loading it, where figures go.

The notebooks (``show_rsa.ipynb``, ``show_srm.ipynb``) and ``make_figures.py``
use this module to find stage 3's outputs under a results root (see
:mod:`nnsrm.paths`) and to save figures into ``ROOT/figures/``; the drawing
itself is :mod:`qmvpa.vis` and :mod:`qmvpa.trajectories`, which know nothing
about the layout.

A figure asked for before its inputs exist fails with a one-line
``FileNotFoundError`` that names the stage to run, e.g. ``no analyses for
digits×conv under results: run run_analyses.py --data digits --model conv
--root results first``.

Figure files (each figure as ``.png`` and ``.pdf``, the animations as ``.gif``),
with ``<c>`` = ``<data>_<model>``:

=================================  ==============  ================================================
file                               notebook        what
=================================  ==============  ================================================
``fig4_experiments``               show_rsa        Fig. 4, one column per analysed condition
``development_same_epoch``         show_rsa        r(iRSM, same-epoch wRSM), shared vs native
``<c>_fig3_rsms``                  show_rsa        Fig. 3: shared iRSM | native wRSM | native iRSM
``<c>_rsm_grid_wrsm_native``       show_rsa        native wRSM over depth × training
``<c>_rsm_grid_irsm_shared``       show_rsa        shared iRSM over depth × training
``<c>_variance_explained``         show_srm        SRM variance explained over training, per layer
``<c>_trajectories``               show_srm        3-D trajectories before | after SRM (static)
``<c>_trajectories_native.gif``    show_srm        the same, animated, native space
``<c>_trajectories_shared.gif``    show_srm        the same, animated, shared space
=================================  ==============  ================================================
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from nnsrm.atomic import atomic_path, is_complete
from nnsrm.errors import MissingInputError, UsageError
from nnsrm.paths import ResultsLayout

log = logging.getLogger(__name__)

RESULTS_NAME = "results.npz"  # stage 3's per-job file (nnsrm.summary.RESULTS_NAME)
FORMATS = ("png", "pdf")
OUTPUT_LAYER = "logits"  # the models' output layer (models.py, resnet.py)

#: Figures each notebook writes: name patterns (``{c}`` = ``<data>_<model>``) -> file extensions.
NOTEBOOK_FIGURES = {
    "show_rsa.ipynb": {
        "fig4_experiments": FORMATS,
        "development_same_epoch": FORMATS,
        "{c}_fig3_rsms": FORMATS,
        "{c}_rsm_grid_wrsm_native": FORMATS,
        "{c}_rsm_grid_irsm_shared": FORMATS,
    },
    "show_srm.ipynb": {
        "{c}_variance_explained": FORMATS,
        "{c}_trajectories": FORMATS,
        "{c}_trajectories_native": ("gif",),
        "{c}_trajectories_shared": ("gif",),
    },
}

#: Environment variables through which make_figures.py (and the tests) set the notebooks' parameters.
ENV_PARAMS = ("NNSRM_ROOT", "NNSRM_DATA", "NNSRM_MODEL", "NNSRM_EPOCH", "NNSRM_LAYER", "NNSRM_FIGURES",
              "NNSRM_GIF_SECONDS", "NNSRM_GIF_FPS")


def condition_tag(data: str, model: str) -> str:
    """The prefix of a condition's figure files: ``<data>_<model>``."""
    return f"{data}_{model}"


def expected_files(figures_dir, data: str, model: str, notebooks: Sequence[str] | None = None) -> list[Path]:
    """Every file the notebooks write for one condition (see the module docstring)."""
    out = []
    for nb in notebooks or NOTEBOOK_FIGURES:
        for pattern, exts in NOTEBOOK_FIGURES[nb].items():
            name = pattern.format(c=condition_tag(data, model))
            out += [Path(figures_dir) / f"{name}.{ext}" for ext in exts]
    return out


# --------------------------------------------------------------------------- what exists

def _run(script: str, layout: ResultsLayout) -> str:
    return f"{script} --data {layout.data} --model {layout.model} --root {layout.root}"


def analysed_conditions(root) -> list[tuple[str, str]]:
    """``(data, model)`` of every condition under ``root`` that has a summary table, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((p.parts[-4], p.parts[-3]) for p in root.glob("*/*/analyses/summary.csv") if p.is_file())


def check_analyses(root, data: str, model: str) -> ResultsLayout:
    """Check that stage 3 has run for a condition; return its layout.

    Raises
    ------
    FileNotFoundError
        With a one-line message naming the first stage still to run: the
        root is missing, the condition was never trained (stage 1), has no
        activations (stage 2) or no analyses (stage 3).
    """
    layout = ResultsLayout(Path(root), data, model)
    cond = f"{data}×{model}"
    if not layout.root.is_dir():
        raise MissingInputError(f"results root {layout.root} does not exist: run train_cifar.py, "
                                f"save_acts_cifar.py and run_analyses.py first (or pass the --root they used)")
    if not layout.condition_dir.is_dir():
        found = ", ".join(f"{d}×{m}" for d, m in analysed_conditions(layout.root)) or "none"
        raise MissingInputError(f"no results for {cond} under {layout.root} (analysed there: {found}): run "
                                f"{_run('train_cifar.py', layout)} first")
    if not layout.summary_path.is_file():
        if not layout.layers_path.is_file() and not layout.manifest_path.is_file():
            raise MissingInputError(f"no activations for {cond} under {layout.root}: run "
                                    f"{_run('save_acts_cifar.py', layout)} first")
        raise MissingInputError(f"no analyses for {cond} under {layout.root}: run "
                                f"{_run('run_analyses.py', layout)} first")
    return layout


def load_summary(root, data: str, model: str):
    """The summary table of one condition (checked with :func:`check_analyses`) as a DataFrame."""
    from qmvpa import vis

    layout = check_analyses(root, data, model)
    try:
        return vis.load_summary(layout.summary_path)
    except ValueError as err:
        raise UsageError(f"{err}: run {_run('run_analyses.py', layout)} (again)") from None


def load_summaries(root, first: tuple[str, str] | None = None):
    """The summary tables of every analysed condition under ``root``, concatenated.

    ``first`` (a ``(data, model)``) is checked with :func:`check_analyses` and
    put first (the leftmost column of multi-condition figures); the others
    follow in sorted order. Conditions whose table cannot be read are left
    out with a warning.
    """
    import pandas as pd

    conds = analysed_conditions(root)
    if first is not None:
        check_analyses(root, *first)
        conds = [tuple(first)] + [c for c in conds if c != tuple(first)]
    frames = []
    for data, model in conds:
        try:
            frames.append(load_summary(root, data, model))
        except (ValueError, FileNotFoundError) as err:
            if (data, model) == first:
                raise
            log.warning("leaving %s×%s out of the multi-condition figures: %s", data, model, err)
    if not frames:
        raise MissingInputError(f"no analyses under {root}: run run_analyses.py first")
    return pd.concat(frames, ignore_index=True)


def choose_epoch_layer(summary, epoch=None, layer=None) -> tuple[int, str]:
    """Resolve the epoch and layer of the single-job figures (default: final epoch, deepest hidden layer).

    ``epoch`` may be given as text (it comes from an environment variable).
    Raises ``ValueError`` naming what was analysed if the choice was not.
    """
    from qmvpa import vis

    epochs = vis.analysed_epochs(summary)
    layers = vis.layer_order(summary)
    if epoch in (None, ""):
        epoch = epochs[-1]
    else:
        try:
            epoch = int(epoch)
        except (TypeError, ValueError):
            raise UsageError(f"epoch must be an integer, got {epoch!r}") from None
        if epoch not in epochs:
            raise UsageError(f"epoch {epoch} was not analysed; analysed epochs: {epochs}")
    if layer in (None, ""):
        # The output layer's units correspond across networks by construction (unit i = class i), so
        # it aligns without SRM: the deepest *hidden* layer shows the contrast the figures are about.
        hidden = [name for name in layers if name != OUTPUT_LAYER]
        layer = (hidden or layers)[-1]
    elif layer not in layers:
        raise UsageError(f"layer {layer!r} was not analysed; analysed layers: {layers}")
    return epoch, str(layer)


def results_path(root, data: str, model: str, epoch: int, layer: str) -> Path:
    """``results.npz`` of one complete stage-3 job; a one-line ``FileNotFoundError`` if it is not complete."""
    layout = ResultsLayout(Path(root), data, model)
    folder = layout.analysis_dir(int(epoch), layer)
    if not is_complete(folder) or not (folder / RESULTS_NAME).is_file():
        raise MissingInputError(f"no complete analysis of epoch {epoch}, layer {layer} for {data}×{model} "
                                f"({folder}): run {_run('run_analyses.py', layout)} --only-epochs {epoch} "
                                f"--only-layers {layer} first")
    return folder / RESULTS_NAME


def load_rsm_grid(root, summary, kind: str = "wrsm_native", max_size: int = 200) -> dict:
    """One RSM per analysed (epoch, layer) of a condition, block-averaged to at most ``max_size``.

    Parameters
    ----------
    root : path
        Results root.
    summary : pandas.DataFrame
        The condition's summary table (which epochs and layers exist).
    kind : str
        ``wrsm_native``, ``wrsm_shared``, ``irsm_native`` or ``irsm_shared``.
    max_size : int
        Largest side kept per matrix (memory stays small for CIFAR's
        2,000 held-out images).

    Returns
    -------
    dict of (epoch, layer) to ndarray, shape (s, s)
    """
    from qmvpa import vis

    (data, model), = vis.conditions(summary)
    out = {}
    for epoch, layer in summary[["epoch", "layer"]].drop_duplicates().itertuples(index=False):
        path = results_path(root, data, model, int(epoch), str(layer))
        M = vis.load_results(path, [kind])[kind]
        out[(int(epoch), str(layer))] = vis.downsample_rsm(M, max_size)
    return out


# --------------------------------------------------------------------------- saving

def figures_dir(root, figures=None) -> Path | None:
    """Where figures go: ``figures`` if given, else ``ROOT/figures``; ``""`` or ``"none"`` means don't save."""
    if figures is not None and str(figures).strip().lower() in ("", "none"):
        return None
    return Path(figures) if figures is not None else Path(root) / "figures"


def save_figure(fig, out_dir, name: str, formats: Sequence[str] = FORMATS, dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.<fmt>`` for each format, atomically; nothing if ``out_dir`` is None."""
    if out_dir is None:
        return []
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{name}.{fmt}"
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi)
        paths.append(path)
    log.info("saved %s.{%s}", Path(out_dir) / name, ",".join(formats))
    return paths


def save_trajectory_gif(trajectories, out_dir, name: str, **kwargs) -> Path | None:
    """Animate trajectories (:func:`qmvpa.trajectories.animate_trajectories`) into ``out_dir/name.gif``, atomically."""
    from qmvpa.trajectories import animate_trajectories

    if out_dir is None:
        return None
    path = Path(out_dir) / f"{name}.gif"
    with atomic_path(path, suffix=".gif") as tmp:
        animate_trajectories(trajectories, tmp, **kwargs)
    return path


def env_param(name: str, default=None):
    """A notebook parameter from the environment (``NNSRM_<NAME>``), or ``default`` when unset or empty."""
    value = os.environ.get(f"NNSRM_{name.upper()}", "")
    return default if value == "" else value


def float_param(name: str, default: float) -> float:
    """A numeric notebook parameter from the environment; ``ValueError`` naming the variable if not a number."""
    value = env_param(name, None)
    if value is None:
        return float(default)
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"NNSRM_{name.upper()} must be a number, got {value!r}") from None


def held_out_activity(root, data: str, model: str, epoch: int, layer: str, n_networks: int = 5) -> dict:
    """Held-out native and shared activity of the first ``n_networks`` networks of one job.

    Returns
    -------
    dict
        ``native`` list of (u, t) arrays, ``shared`` list of (k, t) arrays,
        ``subjects`` (n,) ids, ``labels`` (t,).
    """
    from qmvpa import vis

    r = vis.load_results(results_path(root, data, model, epoch, layer),
                         ["native_test", "shared_test", "subjects", "labels_test"])
    n = min(int(n_networks), r["native_test"].shape[0])
    return {"native": list(r["native_test"][:n]), "shared": list(r["shared_test"][:n]),
            "subjects": np.asarray(r["subjects"][:n]), "labels": r["labels_test"]}
