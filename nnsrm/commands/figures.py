"""The paper's figures for one condition, drawn without a notebook kernel (or by executing the notebooks).

    python make_figures.py                                 # offline default: digits × conv, ROOT=results
    python make_figures.py --root results --data cifar10 --model conv --epoch 50 --layer dense1
    python make_figures.py --notebooks                     # execute show_rsa.ipynb and show_srm.ipynb instead

Runs after run_analyses.py. Draws every figure with the functions of
nnsrm/figure_set.py (the ones the notebooks show_rsa.ipynb and show_srm.ipynb
call, cell by cell) without starting a kernel, side by side on the
machine's cores (--processes), and writes each as PNG and PDF, the
animated trajectories as GIF, into ROOT/figures/ (or --out). With
--notebooks the two notebooks are executed instead (nbclient, a Jupyter
kernel each, the parameters passed as NNSRM_* environment variables), which
writes the same files and keeps the executed notebooks, with their outputs,
in ROOT/figures/notebooks/. Multi-condition figures (Fig. 4) have one column
per condition analysed under ROOT. Figure files are listed in nnsrm/figures.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from nnsrm import cli, config, console

PROG = "make_figures.py"
log = logging.getLogger(__name__)

#: The notebooks live at the top of the repository (a source checkout, or an editable install).
REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("show_rsa.ipynb", "show_srm.ipynb")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def build_parser():
    parser = cli.OneLineArgumentParser(prog=cli.program_name(PROG), description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="digits", type=cli.condition_name,
                        help=f"dataset: {', '.join(sorted(config.DATASETS))}, or a condition registered with "
                             f"nnsrm register (default: %(default)s)")
    parser.add_argument("--model", default="conv", type=cli.condition_name,
                        help=f"architecture: {', '.join(sorted(config.MODELS))}, or a condition registered with "
                             f"nnsrm register (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("results"),
                        help="results root the stage scripts wrote (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the figures (default: ROOT/figures)")
    parser.add_argument("--epoch", type=int, default=None,
                        help="epoch of Fig. 3 and the trajectories (default: the final analysed epoch)")
    parser.add_argument("--layer", default=None,
                        help="layer of Fig. 3 and the trajectories "
                             "(default: the deepest analysed layer below the output layer)")
    parser.add_argument("--include-output", action="store_true",
                        help="draw the output layer in Fig. 4 and the development figures too (default: the "
                             "hidden layers, as the paper)")
    parser.add_argument("--only", choices=NOTEBOOKS, nargs="+", default=list(NOTEBOOKS), metavar="NOTEBOOK",
                        help=f"only the figures of these notebooks (default: both: {' '.join(NOTEBOOKS)})")
    parser.add_argument("--notebooks", action="store_true",
                        help="execute the notebooks in Jupyter kernels (slower: a kernel start and the imports "
                             "each) and keep them, with outputs, in ROOT/figures/notebooks/")
    parser.add_argument("--gif-seconds", type=positive_float, default=3.0,
                        help="length of each trajectory animation in seconds (default: %(default)s)")
    parser.add_argument("--gif-fps", type=cli.positive_int, default=6,
                        help="frames per second of the animations (default: %(default)s)")
    parser.add_argument("--processes", type=cli.positive_int, default=None, metavar="N",
                        help="without --notebooks: draw the figures on N processes of this machine side by side "
                             "(default: every core; 1: one after another in this process)")
    parser.add_argument("--timeout", type=cli.positive_int, default=1800,
                        help="with --notebooks, seconds one notebook cell may run (default: %(default)s)")
    cli.add_verbosity_args(parser)
    return parser


def execute_notebook(src: Path, dst: Path, env: dict, timeout: int) -> None:
    """Execute ``src`` in a fresh kernel whose environment includes ``env``; save it, with outputs, as ``dst``.

    Raises ``RuntimeError`` with one line (the failing cell's error) if a cell fails; the
    executed notebook is saved either way.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from nnsrm.atomic import atomic_path

    nb = nbformat.read(src, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        # The kernel's own log (e.g. ipykernel's warning about local TCP) is noise here; cell errors
        # still come back as CellExecutionError.
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO)}},
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
        try:
            client.execute()
        except CellExecutionError as err:
            ename, evalue = getattr(err, "ename", "Error"), getattr(err, "evalue", "")
            raise RuntimeError(f"{src.name} failed: {ename}: {str(evalue).splitlines()[0] if evalue else ''} "
                               f"(executed notebook: {dst})") from None
        finally:
            with atomic_path(dst, suffix=".ipynb") as tmp:
                nbformat.write(nb, tmp)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv=None):
    cli.prepare_environment()
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose, prog=cli.program_name(PROG))
    from nnsrm import figure_set
    from nnsrm import figures as nf

    if args.notebooks:
        try:  # runs the notebooks: a Jupyter kernel and its client
            import ipykernel  # noqa: F401
            import nbclient  # noqa: F401
        except ImportError as err:
            raise cli.UsageError(f"executing the notebooks needs nbclient and ipykernel ({err}); install them "
                                 f"(pip install nbclient ipykernel), or draw without --notebooks") from None
    out = args.out if args.out is not None else args.root / "figures"
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"--out {out} is a file, not a directory")
    # Inputs first: a missing stage, epoch or layer is one line naming it, before anything is drawn.
    ctx = figure_set.context(args.root, args.data, args.model, args.epoch, args.layer, figures=out,
                             include_output=args.include_output, gif_seconds=args.gif_seconds,
                             gif_fps=args.gif_fps)
    nf.results_path(args.root, args.data, args.model, ctx.epoch, ctx.layer)
    groups = [nf.NOTEBOOK_GROUPS[name] for name in args.only]
    if args.notebooks:
        missing_nb = [name for name in args.only if not (REPO / name).is_file()]
        if missing_nb:
            raise cli.UsageError(f"the notebooks {missing_nb} are not in {REPO}: run the figures from a source "
                                 f"checkout of nnsrm (git clone, then pip install -e .), or without --notebooks")
    out.mkdir(parents=True, exist_ok=True)
    console.start_log_file(args.root, "figures")
    t0 = time.perf_counter()
    if args.notebooks:
        env = {"NNSRM_ROOT": str(args.root.resolve()), "NNSRM_DATA": args.data, "NNSRM_MODEL": args.model,
               "NNSRM_EPOCH": str(ctx.epoch), "NNSRM_LAYER": ctx.layer, "NNSRM_FIGURES": str(out.resolve()),
               "NNSRM_GIF_SECONDS": str(args.gif_seconds), "NNSRM_GIF_FPS": str(args.gif_fps),
               "NNSRM_INCLUDE_OUTPUT": "1" if args.include_output else ""}
        for name in args.only:
            dst = out / "notebooks" / f"{ctx.tag}_{name}"
            try:
                execute_notebook(REPO / name, dst, env, args.timeout)
            except RuntimeError as err:
                print(f"{cli.program_name(PROG)}: error: {err}", file=sys.stderr)
                return 1
            log.info("executed %s -> %s", name, dst)
    else:
        from nnsrm.process_pool import default_processes

        figure_set.draw(ctx, groups, processes=args.processes or default_processes())
    log.info("figures drawn in %.1f s", time.perf_counter() - t0)
    expected = figure_set.expected_files(ctx, groups)
    missing = [str(p) for p in expected if not p.is_file() or p.stat().st_size == 0]
    if missing:
        print(f"{cli.program_name(PROG)}: error: the figures were drawn but {', '.join(missing)} were not written",
              file=sys.stderr)
        return 1
    print(f"figures for {args.data}×{args.model} (epoch {ctx.epoch}, layer {ctx.layer}): {len(expected)} files in "
          f"{out}")
    return 0
