"""The paper's figures for one condition: execute show_rsa.ipynb and show_srm.ipynb, save every figure.

    python make_figures.py                                 # offline default: digits × conv, ROOT=results
    python make_figures.py --root results --data cifar10 --model conv --epoch 50 --layer dense1

Runs after run_analyses.py. Executes both notebooks top to bottom (nbclient,
the parameters passed as NNSRM_* environment variables) and writes every
figure as PNG and PDF, and the animated trajectories as GIF, into
ROOT/figures/ (or --out); the executed notebooks, with their outputs, go into
ROOT/figures/notebooks/. Multi-condition figures (Fig. 4) have one column per
condition analysed under ROOT. Figure files are listed in nnsrm/figures.py.
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
                             "(default: the deepest analysed layer below the logits)")
    parser.add_argument("--only", choices=NOTEBOOKS, nargs="+", default=list(NOTEBOOKS), metavar="NOTEBOOK",
                        help=f"execute only these notebooks (default: both: {' '.join(NOTEBOOKS)})")
    parser.add_argument("--gif-seconds", type=positive_float, default=8.0,
                        help="length of each trajectory animation in seconds (default: %(default)s)")
    parser.add_argument("--gif-fps", type=cli.positive_int, default=10,
                        help="frames per second of the animations (default: %(default)s)")
    parser.add_argument("--timeout", type=cli.positive_int, default=1800,
                        help="seconds one notebook cell may run (default: %(default)s)")
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
    from nnsrm import figures as nf

    try:  # runs the notebooks: a Jupyter kernel and its client
        import ipykernel  # noqa: F401
        import nbclient  # noqa: F401
    except ImportError as err:
        raise cli.UsageError(f"executing the notebooks needs nbclient and ipykernel ({err}); install them: "
                             f"pip install nbclient ipykernel") from None
    # Inputs first: a missing stage is one line naming it, before any kernel starts.
    summary = nf.load_summary(args.root, args.data, args.model)
    epoch, layer = nf.choose_epoch_layer(summary, args.epoch, args.layer)
    nf.results_path(args.root, args.data, args.model, epoch, layer)
    out = args.out if args.out is not None else args.root / "figures"
    if out.exists() and not out.is_dir():
        raise cli.UsageError(f"--out {out} is a file, not a directory")
    missing_nb = [name for name in args.only if not (REPO / name).is_file()]
    if missing_nb:
        raise cli.UsageError(f"the notebooks {missing_nb} are not in {REPO}: run the figures from a source "
                             f"checkout of nnsrm (git clone, then pip install -e .)")
    out.mkdir(parents=True, exist_ok=True)
    console.start_log_file(args.root, "figures")
    env = {"NNSRM_ROOT": str(args.root.resolve()), "NNSRM_DATA": args.data, "NNSRM_MODEL": args.model,
           "NNSRM_EPOCH": str(epoch), "NNSRM_LAYER": layer, "NNSRM_FIGURES": str(out.resolve()),
           "NNSRM_GIF_SECONDS": str(args.gif_seconds), "NNSRM_GIF_FPS": str(args.gif_fps)}
    tag = nf.condition_tag(args.data, args.model)
    for name in args.only:
        t0 = time.perf_counter()
        dst = out / "notebooks" / f"{tag}_{name}"
        try:
            execute_notebook(REPO / name, dst, env, args.timeout)
        except RuntimeError as err:
            print(f"{cli.program_name(PROG)}: error: {err}", file=sys.stderr)
            return 1
        log.info("executed %s in %.0f s -> %s", name, time.perf_counter() - t0, dst)
    expected = nf.expected_files(out, args.data, args.model, args.only)
    missing = [str(p) for p in expected if not p.is_file() or p.stat().st_size == 0]
    if missing:
        print(f"{cli.program_name(PROG)}: error: the notebooks ran but did not write {', '.join(missing)}",
              file=sys.stderr)
        return 1
    print(f"figures for {args.data}×{args.model} (epoch {epoch}, layer {layer}): {len(expected)} files in {out}")
    return 0
