"""Run the XOR simulation (paper Fig. 5 and Fig. 6) and write its tidy results table.

The paper's settings, then the same plus both sweeps and the figures, then the
original code's data, initialisation, orthogonal copies and whole-matrix comparison::

    python simulation/run_sim.py
    python simulation/run_sim.py --noise-sweep --k-sweep --figures
    python simulation/run_sim.py --original --out results/simulation_original

Writes into ``--out`` (default ``results/simulation``): ``results.csv`` (rep,
transform, noise, n_components, space, measure, value), ``networks.csv``,
``example_rsms.npz``, ``config.json`` and, with ``--figures``, ``figures/``.
A complete run with the same configuration is loaded instead of rerun unless
``--overwrite`` is given. See :mod:`simulation.experiment` for what one
repetition does.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from nnsrm.cli import (OneLineArgumentParser, add_verbosity_args, check_root, check_srm_engine,
                       non_negative_float, non_negative_int, positive_int, prepare_environment, program_name,
                       setup_logging)

PROG = "run_sim.py"
log = logging.getLogger(__name__)


def comma_list(item_type):
    """argparse type: a comma-separated, non-empty list of ``item_type`` values."""
    def parse(text: str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return tuple(item_type(p) for p in parts)
    parse.__name__ = f"list of {item_type.__name__}"
    return parse


def build_parser() -> OneLineArgumentParser:
    from nnsrm.simulation.experiment import DEFAULT_K_VALUES, DEFAULT_NOISE_LEVELS

    p = OneLineArgumentParser(prog=program_name(PROG), description=__doc__.splitlines()[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n-sims", type=positive_int, default=50, help="repetitions (one trained network each)")
    p.add_argument("--n-nets", type=positive_int, default=10, help="copies of each network's hidden activity")
    p.add_argument("--n-hidden", type=positive_int, default=50, help="hidden units")
    p.add_argument("--noise", type=non_negative_float, default=0.0,
                   help="SD of the Gaussian noise added to every copy (hidden activity lies in (0, 1))")
    p.add_argument("--n-components", type=positive_int, default=None,
                   help="SRM components k (default: --n-hidden, as in the paper)")
    p.add_argument("--n-epochs", type=positive_int, default=1000, help="full-batch training epochs")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of everything random")
    p.add_argument("--srm-engine", choices=("brainiak", "fast"), default="brainiak",
                   help="SRM implementation (brainiak: the paper's; fast: qmvpa.srm)")
    p.add_argument("--center-units", action="store_true",
                   help="not in the paper: subtract each copy's unit means over the training images before "
                        "mapping the test images into the shared space (BrainIAK's SRM removes them when "
                        "fitting, not in transform)")
    p.add_argument("--original", action="store_true",
                   help="the original code's mode: clouds' noise with mean 1 (centres (0,0), (2,2), (2,0), "
                        "(0,2)), PyTorch's initialisation, orthogonal copies from the QR of a uniform [0,1) "
                        "matrix, RSMs compared as whole matrices (diagonal included); not with the sweeps or "
                        "--center-units")
    p.add_argument("--noise-sweep", type=comma_list(non_negative_float), nargs="?", metavar="LEVELS",
                   const=DEFAULT_NOISE_LEVELS, default=(),
                   help=f"also sweep the noise SD; optional comma-separated levels "
                        f"(default levels: {','.join(map(str, DEFAULT_NOISE_LEVELS))})")
    p.add_argument("--k-sweep", type=comma_list(positive_int), nargs="?", metavar="KS",
                   const=DEFAULT_K_VALUES, default=(),
                   help=f"also sweep the SRM components k; optional comma-separated values "
                        f"(default values: {','.join(map(str, DEFAULT_K_VALUES))})")
    p.add_argument("--sweep-sims", type=positive_int, default=None,
                   help="run the sweeps on only the first N repetitions (default: all)")
    p.add_argument("--out", type=Path, default=Path("results/simulation"), help="output folder")
    p.add_argument("--figures", action="store_true", help="also draw the figures into OUT/figures (PNG and PDF)")
    p.add_argument("--overwrite", action="store_true", help="rerun even if OUT holds a complete run of this config")
    add_verbosity_args(p)
    return p


def main(argv=None) -> int:
    prepare_environment(blas_threads=1)  # before numpy loads: SRM's SVDs are slower with 2 threads here
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, prog=program_name(PROG))

    from nnsrm.simulation import experiment

    k_values = args.k_sweep
    if k_values == experiment.DEFAULT_K_VALUES:  # the default list, cut to this network's size
        k_values = tuple(sorted({k for k in k_values if k <= args.n_hidden} | {args.n_hidden}))
    config = experiment.SimConfig(  # raises ValueError (exit 2) for inconsistent values, e.g. k > n_hidden
        n_sims=args.n_sims, n_nets=args.n_nets, n_hidden=args.n_hidden, noise=args.noise,
        n_components=args.n_components, n_epochs=args.n_epochs, seed=args.seed,
        srm_engine=args.srm_engine, center_units=args.center_units, noise_levels=args.noise_sweep, k_values=k_values,
        sweep_sims=args.sweep_sims, original=args.original)
    out = check_root(args.out, flag="--out")
    check_srm_engine(config.srm_engine)  # BrainIAK (the default, the paper's) is optional

    start = time.perf_counter()
    results = experiment.run_or_load(config, out, overwrite=args.overwrite, progress=not args.no_progress)
    summary = experiment.summarise(results.paper(), by=("transform", "space", "measure"))
    print(f"simulation: results in {out} ({time.perf_counter() - start:.0f} s)")
    which = "the original code's" if config.original else "the paper's"
    print(f"{which} condition (noise {config.noise:g}, k {config.k}), mean [95% CI] over {config.n_sims} "
          f"repetitions:")
    print(summary.to_string(index=False, float_format="%.3f"))
    if args.figures:
        from nnsrm.simulation import plots

        written = plots.draw_all(results, out / "figures")
        print(f"figures: {len(written)} files in {out / 'figures'}")
    return 0
