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


DEFAULT_NULL_DRAWS = 20
NULL_EPOCH_CHOICES = ("ends", "all", "none")
INTERVALS = ("jackknife", "bootstrap")


def build_parser():
    from nnsrm.analysis import MEASURES
    from nnsrm.layer_identification import PAIR_CHOICES
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
    inference = parser.add_argument_group("measures, nulls and intervals (docs/analyses.md)")
    inference.add_argument("--measures", nargs="+", default=None, metavar="NAME",
                           help=f"measures beside Pearson RSA, variance explained and consistency: "
                                f"{' '.join(MEASURES)} (default: all)")
    inference.add_argument("--n-perm", type=cli.positive_int, default=1000,
                           help="permutations of every Mantel test (default: %(default)s)")
    inference.add_argument("--null-refits", type=cli.positive_int, default=None, metavar="N",
                           help=f"draws of the correspondence-broken nulls: SRM refits, CKA and Procrustes "
                                f"shuffles (default: {DEFAULT_NULL_DRAWS}, at the null epochs of every layer where "
                                f"affordable; an explicit count that is not affordable needs --force)")
    inference.add_argument("--null-epochs", nargs="+", default=["ends"], metavar="E",
                           help="epochs whose jobs run the correspondence-broken nulls: ends (the first and last "
                                "logged epochs, the default), all, none, or a list of epochs")
    inference.add_argument("--force", action="store_true",
                           help="run the nulls even where their estimated cost exceeds the budget "
                                "(nnsrm/null_budget.py)")
    inference.add_argument("--interval", choices=INTERVALS, default="jackknife",
                           help="interval over networks of the means over networks and pairs (default: "
                                "%(default)s; the iRSM-wRSM r's always use the jackknife)")
    inference.add_argument("--n-boot", type=cli.positive_int, default=2000,
                           help="bootstrap resamples with --interval bootstrap (default: %(default)s)")
    extras = parser.add_argument_group("layer identification and variance explained by k (at one epoch)")
    extras.add_argument("--layer-id", choices=(*PAIR_CHOICES, "none"), default="disjoint",
                        help="pairs of networks of the layer-identification benchmark at the final epoch: disjoint "
                             "(0-1, 2-3, ...; the default), all, or none")
    extras.add_argument("--var-by-k-layer", default=None, metavar="LAYER",
                        help="layer of the variance-by-k curves (default: the deepest hidden layer; none: skip)")
    extras.add_argument("--var-by-k-epoch", type=cli.non_negative_int, default=None, metavar="E",
                        help="epoch of the variance-by-k curves (default: the final epoch)")
    extras.add_argument("--var-by-k-ks", type=cli.positive_int, nargs="+", default=None, metavar="K",
                        help="values of k (default: 1 2 5 10 20 ... up to the units or fit images)")
    parser.add_argument("--processes", type=cli.positive_int, default=None, metavar="N",
                        help="without --workers/--scheduler: run the jobs on N processes of this machine, one "
                             "BLAS thread each (default: every core; 1: one after another in this process)")
    cli.add_verbosity_args(parser)
    cli.add_engine_args(parser)
    return parser


def null_epochs_choice(words):
    """``--null-epochs``: one of ends/all/none, or a list of epochs."""
    if len(words) == 1 and words[0] in NULL_EPOCH_CHOICES:
        return words[0]
    try:
        return [int(w) for w in words]
    except ValueError:
        raise cli.UsageError(f"--null-epochs {' '.join(words)}: give one of {', '.join(NULL_EPOCH_CHOICES)} or "
                             f"a list of logged epochs") from None


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

    from nnsrm import analysis, layer_identification, summary
    from nnsrm.activations import is_registered
    from nnsrm.jobs import JobsFailed
    from nnsrm.process_pool import default_processes
    from nnsrm.provenance import git_commit
    from nnsrm.run_config import load_trained_config
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
    null_epochs = analysis.resolve_null_epochs(null_epochs_choice(args.null_epochs), all_epochs)
    params = analysis.AnalysisParams(k=args.k, n_iter=args.n_iter, test_size=args.test_size, seed=args.seed,
                                     engine=args.srm_engine, max_units=max_units,
                                     class_order=None if args.class_order is None else tuple(args.class_order),
                                     measures=tuple(args.measures) if args.measures else analysis.MEASURES,
                                     n_perm=args.n_perm, null_draws=args.null_refits or DEFAULT_NULL_DRAWS,
                                     null_epochs=null_epochs, force_nulls=args.force, interval=args.interval,
                                     n_boot=args.n_boot, final_epoch=final_epoch)
    # Validates every input before anything is written.
    jobs = analysis.plan_jobs(layout, epochs, args.only_layers, subjects, params, overwrite=args.overwrite,
                              provenance={"git_commit": git_commit()},
                              explicit_null_draws=args.null_refits is not None)
    extra = plan_extras(layout, args, subjects, params, final_epoch, all_epochs)
    console.start_log_file(root, "analyse")
    jobs = extra["layer_id"] + order_jobs(jobs) + extra["var_by_k"]
    processes = args.processes or default_processes()
    log.info("%d jobs to run (%d subjects, epochs %s), engine %s, %d processes", len(jobs), len(subjects), epochs,
             params.engine, processes)
    try:
        report = run_jobs(jobs, scheduler=args.scheduler, workers=args.workers, processes=processes,
                          desc=f"stage 3: analyses {args.data}×{args.model}", progress=not args.no_progress)
    except JobsFailed:  # also after failed jobs: the tables always match the complete jobs
        summary.write_summary(layout, final_epoch=final_epoch)
        layer_identification.write_table(layout, extra["pairs"])
        raise
    # (After Ctrl-C the tables are left as they were: the rerun that resumes rebuilds them.)
    df = summary.write_summary(layout, final_epoch=final_epoch)
    layer_id = layer_identification.write_table(layout, extra["pairs"])
    n_jobs = df.groupby(["epoch", "layer"]).ngroups if len(df) else 0
    # Jobs another driver completed meanwhile (it held their lock) were skipped, not run.
    ran = sum(1 for job in jobs if job.fn is analysis.analyse_job
              and (report.results.get(job.name) or {}).get("status") != "skipped")
    print(f"stage 3: {ran} epoch×layer jobs run, {n_jobs} in {layout.summary_path}")
    for line in summary.headline(df):
        print(f"  {line}")
    if len(layer_id):
        accuracies = ", ".join(f"{r.measure} {r.accuracy:.2f}" for r in layer_id.itertuples())
        print(f"  layer identification at epoch {int(layer_id['epoch'].iloc[0])} "
              f"({int(layer_id['n_pairs'].iloc[0])} pairs): {accuracies}")
    return 0


def order_jobs(jobs):
    """The longest jobs first for the process pool: the null epochs', then shallow layers (more units) first."""
    def cost(job):
        kw = job.kwargs
        return (kw["epoch"] not in kw["params"]["null_epochs"], kw["layer_depth"])

    return sorted(jobs, key=cost)


def plan_extras(layout, args, subjects, params, final_epoch, all_epochs) -> dict:
    """The layer-identification pair jobs and the variance-by-k job (validated; nothing written)."""
    from nnsrm import layer_identification, variance_by_k
    from nnsrm.activations import check_inputs, open_source
    from qmvpa import preproc

    source = open_source(layout)
    layers = source.layers()
    out = {"layer_id": [], "var_by_k": [], "pairs": None}
    p = params.as_dict()
    if args.layer_id != "none" and len(subjects) >= 2:
        out["pairs"] = layer_identification.choose_pairs(subjects, args.layer_id)
        out["layer_id"] = layer_identification.plan_pair_jobs(layout, final_epoch, layers, subjects, p,
                                                              args.layer_id, overwrite=args.overwrite)
    if args.var_by_k_layer is not None and args.var_by_k_layer.lower() == "none":
        return out
    hidden = [name for name in layers if name != source.output_layer()]
    layer = args.var_by_k_layer or (hidden or layers)[-1]
    if layer not in layers:
        raise cli.UsageError(f"--var-by-k-layer {layer!r}: not an analysed layer; analysed layers: {layers}")
    epoch = final_epoch if args.var_by_k_epoch is None else args.var_by_k_epoch
    if epoch not in all_epochs:
        raise cli.UsageError(f"--var-by-k-epoch {epoch}: not a logged epoch; logged: {list(all_epochs)}")
    plan = check_inputs(source, subjects, [epoch], [layer], params)
    labels = source.labels()
    n_fit = len(preproc.stratified_split(labels, params.test_size, params.seed, params.class_order)[0])
    units = plan.units[layer]
    ks = (variance_by_k.check_ks(args.var_by_k_ks, units, n_fit, layer) if args.var_by_k_ks
          else variance_by_k.default_ks(min(units, n_fit)))
    out["var_by_k"] = variance_by_k.plan_job(layout, epoch, layer, subjects, ks, p, overwrite=args.overwrite)
    return out
