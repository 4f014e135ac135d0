"""The figures of one condition, each a function that loads stage 3's results, plots them and saves the files.

``make_figures.py`` calls every function here without a Jupyter kernel
(imports paid once; the figures side by side on the machine's cores,
:func:`draw`); the notebooks ``show_rsa.ipynb`` and
``show_srm.ipynb`` call the same functions cell by cell, for reading and
changing interactively. Each function takes a :class:`FigureContext` (what
was analysed, which epoch and layer, where figures go) and returns the
figure(s) it drew after saving them (PNG and PDF; the animations as GIF) into
``ctx.out`` (nothing is saved when it is None). :data:`RSA_FIGURES` and
:data:`SRM_FIGURES` list them in the notebooks' order; :func:`expected_files`
names every file they write.

The paper's Fig. 4 shows the hidden layers only: the output layer (which
``layers.json`` records; see :func:`nnsrm.figures.output_layer`) is left out
of Fig. 4 and of the development figures unless ``include_output``.
``summary.csv`` keeps every layer.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

from nnsrm import figures as nf

log = logging.getLogger(__name__)

#: The original study's trajectory animations: the first and the last logged epochs × the first, the
#: second-to-last and the last analysed layers.
TRAJECTORY_LAYERS = (0, -2, -1)


@dataclasses.dataclass
class FigureContext:
    """What one condition's figures need: its tables, the chosen epoch and layer, where figures go."""

    root: Path
    data: str
    model: str
    epoch: int
    layer: str
    out: Path | None
    summary: object  # pandas.DataFrame of this condition
    everything: object  # pandas.DataFrame of every analysed condition under root (Fig. 4's columns)
    layers: list  # analysed layers, depth order
    output_layer: str | None
    include_output: bool = False
    gif_seconds: float = 3.0
    gif_fps: int = 6

    @property
    def tag(self) -> str:
        return nf.condition_tag(self.data, self.model)

    @property
    def label(self) -> str:
        from qmvpa import vis

        return vis.condition_label(self.data, self.model)

    @property
    def hidden_layers(self) -> list:
        """The layers Fig. 4 draws: every analysed layer but the output layer (all with ``include_output``)."""
        if self.include_output or self.output_layer is None:
            return list(self.layers)
        return [name for name in self.layers if name != self.output_layer] or list(self.layers)

    def save(self, fig, name: str) -> list[Path]:
        return nf.save_figure(fig, self.out, name)


def context(root, data: str, model: str, epoch=None, layer=None, figures=None, include_output: bool = False,
            gif_seconds: float = 3.0, gif_fps: int = 6) -> FigureContext:
    """Load what the figures need and resolve the epoch and layer (default: final epoch, deepest hidden layer).

    Raises ``FileNotFoundError`` naming the stage to run when the analyses are
    missing, and ``ValueError`` for an epoch or layer that was not analysed.
    """
    from qmvpa import vis

    root = Path(root)
    summary = nf.load_summary(root, data, model)
    everything = nf.load_summaries(root, first=(data, model))
    output = nf.output_layer(root, data, model)
    epoch, layer = nf.choose_epoch_layer(summary, epoch, layer, output_layer=output)
    return FigureContext(root=root, data=data, model=model, epoch=epoch, layer=layer,
                         out=nf.figures_dir(root, figures), summary=summary, everything=everything,
                         layers=vis.layer_order(summary), output_layer=output, include_output=include_output,
                         gif_seconds=float(gif_seconds), gif_fps=int(gif_fps))


def _hidden_by_condition(ctx: FigureContext) -> dict:
    from qmvpa import vis

    out = {}
    for data, model in vis.conditions(ctx.everything):
        sub = ctx.everything[(ctx.everything["data"] == data) & (ctx.everything["model"] == model)]
        layers = vis.layer_order(sub)
        output = None if ctx.include_output else nf.output_layer(ctx.root, data, model)
        out[(data, model)] = [name for name in layers if name != output] or layers
    return out


# --------------------------------------------------------------------------- show_rsa.ipynb

def fig4(ctx: FigureContext):
    """Fig. 4, one column per analysed condition, hidden layers: development (CI band, null), VE, consistency."""
    from qmvpa import vis

    fig = vis.plot_experiments(ctx.everything, layers=_hidden_by_condition(ctx))
    ctx.save(fig, "fig4_experiments")
    return fig


def development_same_epoch(ctx: FigureContext):
    """r(iRSM at epoch e, wRSM at e), shared vs native, every condition's hidden layers."""
    from qmvpa import vis

    fig = vis.plot_development_same_epoch(ctx.everything, layers=_hidden_by_condition(ctx))
    ctx.save(fig, "development_same_epoch")
    return fig


def fig3(ctx: FigureContext):
    """Fig. 3 at the chosen epoch and layer: shared iRSM | native wRSM | native iRSM."""
    from qmvpa import vis

    r = vis.load_results(nf.results_path(ctx.root, ctx.data, ctx.model, ctx.epoch, ctx.layer),
                         ["irsm_shared", "wrsm_native", "irsm_native", "labels_test", "r_shared_irsm_wrsm",
                          "r_native_irsm_wrsm"])
    fig = vis.plot_rsm_triplet(r["irsm_shared"], r["wrsm_native"], r["irsm_native"], labels=r["labels_test"],
                               r_shared=float(r["r_shared_irsm_wrsm"]), r_native=float(r["r_native_irsm_wrsm"]),
                               title=f"{ctx.label}: epoch {ctx.epoch}, layer {ctx.layer}")
    ctx.save(fig, f"{ctx.tag}_fig3_rsms")
    return fig


def rsm_grids(ctx: FigureContext):
    """The held-out images' RSMs over depth × training: native wRSM and shared iRSM (every layer)."""
    from qmvpa import vis

    epochs = vis.analysed_epochs(ctx.summary)
    figs = []
    for kind, what in (("wrsm_native", "mean native wRSM"), ("irsm_shared", "shared-space iRSM")):
        grid = nf.load_rsm_grid(ctx.root, ctx.summary, kind)
        fig = vis.plot_rsm_grid(grid, epochs, ctx.layers, kind=kind,
                                title=f"{ctx.label}: {what} over depth and training")
        ctx.save(fig, f"{ctx.tag}_rsm_grid_{kind}")
        figs.append(fig)
    return figs


def rsm_grid_original(ctx: FigureContext):
    """The original study's RSM grid: class-mean patterns of all test images, 5 networks, 500 units, 0 to 1."""
    from qmvpa import vis

    grid, info = nf.load_class_rsm_grid(ctx.root, ctx.summary)
    fig = vis.plot_rsm_grid(grid, vis.analysed_epochs(ctx.summary), ctx.layers, kind="class_rsm", vmin=0.0,
                            vmax=1.0, title=f"{ctx.label}: RSM of class-mean patterns (all test images, "
                                            f"{info['networks']} networks, at most {info['units']} units; the "
                                            f"output layer last), as the original drew it")
    ctx.save(fig, f"{ctx.tag}_rsm_grid_original")
    return fig


def measures(ctx: FigureContext):
    """Every measure over training and depth, with the CI band and the null's 95% critical value."""
    from qmvpa import vis

    fig = vis.plot_measures(ctx.summary, layers=ctx.hidden_layers)
    ctx.save(fig, f"{ctx.tag}_measures")
    return fig


def decoding(ctx: FigureContext):
    """Cross-network decoding over training: shared-space transfer, native transfer, within network."""
    from qmvpa import vis

    fig = vis.plot_decoding(ctx.summary, layers=ctx.hidden_layers)
    ctx.save(fig, f"{ctx.tag}_decoding")
    return fig


def layer_identification(ctx: FigureContext):
    """The layer-identification benchmark at the final epoch: accuracy per measure, mean similarity matrices."""
    from qmvpa import vis

    table, sims = nf.load_layer_identification(ctx.root, ctx.data, ctx.model)
    fig = vis.plot_layer_identification(table, sims, layers=sims.get("layers"),
                                        title=f"{ctx.label}: layer identification at epoch "
                                              f"{int(table['epoch'].iloc[0])} (Kornblith et al. 2019, Table 2)")
    ctx.save(fig, f"{ctx.tag}_layer_identification")
    return fig


RSA_FIGURES = (fig4, development_same_epoch, fig3, rsm_grids, rsm_grid_original, measures, decoding,
               layer_identification)


# --------------------------------------------------------------------------- show_srm.ipynb

def variance_explained(ctx: FigureContext):
    """SRM's variance explained over training (paper's and leave-one-out) and fit vs held-out."""
    from qmvpa import vis

    fig = vis.plot_variance_explained(ctx.summary, layers=ctx.hidden_layers)
    ctx.save(fig, f"{ctx.tag}_variance_explained")
    return fig


def variance_by_k(ctx: FigureContext):
    """Variance explained as a function of k beside per-network PCA (stage 3's variance-by-k job)."""
    from qmvpa import vis

    table = nf.load_variance_by_k(ctx.root, ctx.data, ctx.model)
    epoch, layer = int(table["epoch"].iloc[0]), str(table["layer"].iloc[0])
    fig = vis.plot_variance_by_k(table, title=f"{ctx.label}: variance explained by k, epoch {epoch}, layer "
                                              f"{layer} (mean and 95% CI over networks)")
    ctx.save(fig, f"{ctx.tag}_variance_by_k")
    return fig


def trajectory_cells(ctx: FigureContext) -> list[tuple[int, str]]:
    """(epoch, layer) of the trajectory figures: the first and last epochs × first, second-to-last, last layers."""
    from qmvpa import vis

    epochs = vis.analysed_epochs(ctx.summary)
    picked = []
    for i in TRAJECTORY_LAYERS:
        if -len(ctx.layers) <= i < len(ctx.layers) and ctx.layers[i] not in picked:
            picked.append(ctx.layers[i])
    return [(e, name) for e in sorted({epochs[0], epochs[-1]}) for name in picked]


def trajectories(ctx: FigureContext, n_networks: int = 5):
    """Trajectories before and after SRM: the chosen epoch and layer (still), and the grid of cells (stills, GIFs)."""
    from qmvpa import trajectories as tr

    figs = []
    reduced = {}
    for epoch, layer in [(ctx.epoch, ctx.layer)] + [c for c in trajectory_cells(ctx) if c != (ctx.epoch, ctx.layer)]:
        act = nf.held_out_activity(ctx.root, ctx.data, ctx.model, epoch, layer, n_networks=n_networks)
        names = [f"network {s}" for s in act["subjects"]]
        reduced[(epoch, layer)] = (tr.reduce_trajectories(act["native"]), tr.reduce_trajectories(act["shared"]),
                                   names)
    native, shared, names = reduced[(ctx.epoch, ctx.layer)]
    fig = tr.plot_trajectories(native, shared, names=names, title=f"{ctx.label}: epoch {ctx.epoch}, layer {ctx.layer}")
    ctx.save(fig, f"{ctx.tag}_trajectories")
    figs.append(fig)
    cells = trajectory_cells(ctx)
    fig = tr.plot_trajectory_grid({c: reduced[c][:2] for c in cells}, names=reduced[cells[0]][2],
                                  title=f"{ctx.label}: trajectories before | after SRM")
    ctx.save(fig, f"{ctx.tag}_trajectories_grid")
    figs.append(fig)
    if ctx.out is not None:
        for epoch, layer in cells:
            native, shared, names = reduced[(epoch, layer)]
            nf.save_trajectory_gif([native, shared], ctx.out, gif_name(ctx, epoch, layer), names=names,
                                   panels=["native space (before SRM)", "shared space (after SRM)"],
                                   title=f"{ctx.label}: epoch {epoch}, layer {layer}", duration=ctx.gif_seconds,
                                   frame_rate=ctx.gif_fps, size=(3.6, 3.4))
    return figs


def gif_name(ctx: FigureContext, epoch: int, layer: str) -> str:
    return f"{ctx.tag}_trajectories_e{int(epoch):03d}_{layer}"


SRM_FIGURES = (variance_explained, variance_by_k, trajectories)

#: Figure files (``{c}`` = ``<data>_<model>``) of each group, with their formats.
STATIC_FILES = {
    "rsa": ("fig4_experiments", "development_same_epoch", "{c}_fig3_rsms", "{c}_rsm_grid_wrsm_native",
            "{c}_rsm_grid_irsm_shared", "{c}_rsm_grid_original", "{c}_measures", "{c}_decoding",
            "{c}_layer_identification"),
    "srm": ("{c}_variance_explained", "{c}_variance_by_k", "{c}_trajectories", "{c}_trajectories_grid"),
}
GROUPS = {"rsa": RSA_FIGURES, "srm": SRM_FIGURES}


def expected_files(ctx: FigureContext, groups: Sequence[str] = ("rsa", "srm")) -> list[Path]:
    """Every file the figures of ``groups`` write into ``ctx.out``."""
    out = []
    for group in groups:
        for pattern in STATIC_FILES[group]:
            name = pattern.format(c=ctx.tag)
            out += [Path(ctx.out) / f"{name}.{ext}" for ext in nf.FORMATS]
        if group == "srm":
            out += [Path(ctx.out) / f"{gif_name(ctx, e, layer)}.gif" for e, layer in trajectory_cells(ctx)]
    return out


#: Figure functions drawn first on several processes: the slowest (most panels, 3-D axes, GIFs).
SLOWEST_FIRST = ("measures", "trajectories", "fig4", "rsm_grids", "decoding")


def _draw_one(ctx: FigureContext, group: str, name: str) -> str:
    """Draw and save one figure function of ``group`` by name (what a worker process runs)."""
    fn = {f.__name__: f for f in GROUPS[group]}[name]
    figs = fn(ctx)
    for fig in (figs if isinstance(figs, list) else [figs]):
        fig.clear()  # Figures made without pyplot: freed once unreferenced, sooner when cleared
    log.info("drew %s", name)
    return name


def draw(ctx: FigureContext, groups: Sequence[str] = ("rsa", "srm"), processes: int = 1) -> list[Path]:
    """Draw and save every figure of ``groups``; returns the files written.

    With ``processes`` > 1 the figures are drawn side by side on that many
    worker processes (:mod:`nnsrm.process_pool`; each figure is independent
    and rendering is CPU-bound), the slowest first. A figure that fails in a
    worker is drawn again in this process, so its error is raised here as it
    would be without workers.

    Parameters
    ----------
    ctx : FigureContext
        What the figures draw and where they go (:func:`context`).
    groups : sequence of str
        Keys of :data:`GROUPS`: ``"rsa"`` (show_rsa.ipynb's figures), ``"srm"``.
    processes : int, default 1
        Worker processes; 1 draws one figure after another in this process.

    Returns
    -------
    list of Path
        :func:`expected_files` of ``groups``.
    """
    names = [(group, fn.__name__) for group in groups for fn in GROUPS[group]]
    if processes > 1 and len(names) > 1:
        from nnsrm.jobs import Job
        from nnsrm.process_pool import run_in_processes

        order = {name: i for i, name in enumerate(SLOWEST_FIRST)}
        names.sort(key=lambda gn: order.get(gn[1], len(order)))
        jobs = [Job(f"figure {name}", _draw_one, {"ctx": ctx, "group": group, "name": name})
                for group, name in names]
        report = run_in_processes(jobs, processes, desc="figures", progress=False)
        failed = {f.name for f in report.failures}
        names = [(group, name) for group, name in names if f"figure {name}" in failed]
    for group, name in names:
        _draw_one(ctx, group, name)
    return expected_files(ctx, groups)
