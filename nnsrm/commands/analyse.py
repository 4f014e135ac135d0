"""Stage 3: align the networks with SRM and compare their representational geometry.

    python run_analyses.py                               # offline default: digits × conv
    python run_analyses.py --data cifar10 --model conv --workers 4
    nnsrm analyse --data NAME --model NAME --root ROOT   # activations registered with nnsrm register

One job per logged epoch × analysed layer: load every
subject's activations (stage 2), split the test images 80/20 stratified by
label, z-score each image across units, fit SRM on the 80 %, map the held-out
20 % into the shared space, and compute variance explained and the within- and
inter-network RSMs in the native and the shared space. Writes, per job,
ROOT/<data>/<model>/analyses/epoch_<EEE>/<layer>/results.npz and rsm.png, then
the tidy table ROOT/<data>/<model>/analyses/summary.csv. Resumable: complete
jobs are skipped (--overwrite redoes them); one made with other parameters or
from other activations stops the run before anything is written
(docs/state.md); the summary is rebuilt every run.
"""

from __future__ import annotations

import logging

from nnsrm import cli, config, console
from nnsrm.paths import ResultsLayout

PROG = "run_analyses.py"
log = logging.getLogger(__name__)


def build_parser():
    from qmvpa.factor import DEFAULT_ENGINE, ENGINES

    parser = cli.OneLineArgumentParser(prog=cli.program_name(PROG), description=__doc__.split("\n\n")[0])
    cli.add_condition_args(parser, config.DATASETS, config.MODELS, registered=True)
    parser.add_argument("--k", type=cli.positive_int, default=None,
                        help="shared features of SRM (default: the layer's units kept, an orthogonal map; "
                             "capped at the number of fit images)")
    parser.add_argument("--n-iter", type=cli.positive_int, default=10,
                        help="SRM iterations (default: %(default)s, BrainIAK's)")
    parser.add_argument("--test-size", type=cli.fraction, default=0.2,
                        help="share of the test images held out from the SRM fit (default: %(default)s)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0,
                        help="seed of the split, the unit cap and SRM's initialisation (default: %(default)s)")
    parser.add_argument("--srm-engine", choices=ENGINES, default=DEFAULT_ENGINE,
                        help="SRM implementation: brainiak (the paper's, reference) or fast (qmvpa.srm) "
                             "(default: %(default)s)")
    parser.add_argument("--max-units", type=cli.positive_int, default=None,
                        help="unit cap per layer (default: the config's, 1000)")
    parser.add_argument("--class-order", type=cli.non_negative_int, nargs="+", default=None, metavar="C",
                        help="order of the classes in the held-out images, e.g. 2 3 4 5 6 7 0 8 1 9 "
                             "(default: ascending label)")
    parser.add_argument("--only-subjects", type=cli.non_negative_int, nargs="+", default=None, metavar="S",
                        help="analyse only these subjects (at least 2; default: every trained subject)")
    parser.add_argument("--only-epochs", type=cli.non_negative_int, nargs="+", default=None, metavar="E",
                        help="analyse only these logged epochs (default: all)")
    parser.add_argument("--only-layers", nargs="+", default=None, metavar="LAYER",
                        help="analyse only these layers (default: all in layers.json)")
    cli.add_verbosity_args(parser)
    cli.add_engine_args(parser)
    return parser


def main(argv=None):
    cli.prepare_environment(blas_threads=1)
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose, prog=cli.program_name(PROG))
    if args.verbose < 2:
        # BrainIAK logs every iteration and, at INFO, computes a log-likelihood it only logs.
        logging.getLogger("brainiak").setLevel(logging.WARNING)
    root = cli.check_root(args.root)
    cli.check_engine(args)
    cli.check_condition(root, args.data, args.model, config.DATASETS, config.MODELS)
    layout = ResultsLayout(root, args.data, args.model)

    from nnsrm import analysis, summary
    from nnsrm.activations import is_registered
    from nnsrm.provenance import git_commit
    from nnsrm.run_config import load_trained_config
    from nnsrm.jobs import JobsFailed
    from nnsrm.runner import run_jobs

    if is_registered(layout):  # activations made elsewhere (nnsrm register): networks and checkpoints from the manifest
        from nnsrm.manifest import ManifestSource

        source = ManifestSource(layout)
        all_subjects, all_epochs = source.subjects(), source.epochs()
        max_units = args.max_units or analysis.AnalysisParams.max_units
        has_subjects, logs = f"{layout.manifest_path} registers networks {all_subjects}", "registers checkpoints"
        described = layout.manifest_path
    else:
        cfg = load_trained_config(layout, max_units=args.max_units)
        all_subjects, all_epochs, max_units = list(cfg.subjects), list(cfg.logged_epochs), cfg.max_units
        has_subjects, logs = f"{layout.config_path} has subjects 0..{cfg.n_subjects - 1}", "logs"
        described = layout.config_path
    final_epoch = all_epochs[-1]
    subjects = sorted(set(args.only_subjects)) if args.only_subjects else list(all_subjects)
    unknown = [s for s in subjects if s not in all_subjects]
    if unknown:
        raise cli.UsageError(f"--only-subjects {unknown}: {has_subjects}")
    epochs = sorted(set(args.only_epochs)) if args.only_epochs else list(all_epochs)
    unlogged = [e for e in epochs if e not in all_epochs]
    if unlogged:
        raise cli.UsageError(f"--only-epochs {unlogged}: not logged epochs; {described} {logs} {list(all_epochs)}")
    params = analysis.AnalysisParams(k=args.k, n_iter=args.n_iter, test_size=args.test_size, seed=args.seed,
                                     engine=args.srm_engine, max_units=max_units,
                                     class_order=None if args.class_order is None else tuple(args.class_order))
    # Validates every input before anything is written.
    jobs = analysis.plan_jobs(layout, epochs, args.only_layers, subjects, params, overwrite=args.overwrite,
                              provenance={"git_commit": git_commit()})
    console.start_log_file(root, "analyse")
    log.info("%d jobs to run (%d subjects, epochs %s), engine %s", len(jobs), len(subjects), epochs,
             params.engine)
    try:
        report = run_jobs(jobs, scheduler=args.scheduler, workers=args.workers,
                          desc=f"stage 3: analyses {args.data}×{args.model}", progress=not args.no_progress)
    except JobsFailed:  # also after failed jobs: the summary always matches the complete jobs
        summary.write_summary(layout, final_epoch=final_epoch)
        raise
    # (After Ctrl-C the summary is left as it was: the rerun that resumes rebuilds it.)
    df = summary.write_summary(layout, final_epoch=final_epoch)
    n_jobs = df.groupby(["epoch", "layer"]).ngroups if len(df) else 0
    # Jobs another driver completed meanwhile (it held their lock) were skipped, not run.
    ran = sum(1 for r in report.results.values() if r.get("status") != "skipped")
    print(f"stage 3: {ran} epoch×layer jobs run, {n_jobs} in {layout.summary_path}")
    for line in summary.headline(df):
        print(f"  {line}")
    return 0
