"""Stage 2: save every subject's hidden activity on the test images at every logged epoch.

    python save_acts_cifar.py                          # offline default: digits × conv
    python save_acts_cifar.py --data cifar10 --model conv --data-dir ~/datasets

Reads the weights of stage 1 (and the configuration it saved), writes
ROOT/<data>/<model>/subj<NN>/epoch_<EEE>/activations/<layer>.npy (float32,
images × units, at most max_units units per layer, the kept unit indices in
<layer>.units.npy), layers.json and test_labels.npy. One job per subject: its
logged epochs go through the images together, in one compiled program per
condition (docs/performance.md). Resumable: complete subject × epoch folders
are skipped; one made with other settings or from other weights stops the run
before anything is written (--overwrite redoes it; docs/state.md).
"""

from __future__ import annotations

from nnsrm import cli, config, console
from nnsrm.paths import ResultsLayout

PROG = "save_acts_cifar.py"


def build_parser():
    parser = cli.OneLineArgumentParser(prog=cli.program_name(PROG), description=__doc__.split("\n\n")[0])
    cli.add_condition_args(parser, config.DATASETS, config.MODELS)
    parser.add_argument("--data-dir", default=None,
                        help="folder with the official archive, as for train_cifar.py")
    parser.add_argument("--max-units", type=cli.positive_int, default=None,
                        help="unit cap per layer (default: the config's, 1000)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=None, dest="extract_batch_size",
                        help="images per forward pass (default: the config's, 500)")
    cli.add_verbosity_args(parser)
    cli.add_engine_args(parser)
    return parser


def main(argv=None):
    cli.prepare_environment(cpu_devices=True)
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose, prog=cli.program_name(PROG))
    root = cli.check_root(args.root)
    cli.check_engine(args)
    layout = ResultsLayout(root, args.data, args.model)

    from nnsrm.run_config import load_trained_config

    cfg = load_trained_config(layout, max_units=args.max_units,
                              extract_batch_size=args.extract_batch_size)
    from nnsrm import state
    from nnsrm.extract import (
        check_trained,
        condition_metadata,
        extract_subject,
        write_condition_metadata,
    )
    from nnsrm.jax_cache import enable_compilation_cache
    from nnsrm.jobs import Job
    from nnsrm.runner import run_jobs

    # Everything is checked before anything is written: stage 1, the layers, stale outputs.
    check_trained(cfg, layout)
    metadata = condition_metadata(cfg, args.data_dir)
    pairs = [(s, e) for s in cfg.subjects for e in cfg.logged_epochs]
    state.refuse_stale(((f"activations subj{s:02d} epoch {e:03d}", layout.activations_dir(s, e),
                         state.stage2_record(cfg, layout, s)) for s, e in pairs), overwrite=args.overwrite)
    console.start_log_file(root, "extract")
    enable_compilation_cache(root)  # for the forward programs (the network was built above, uncached)
    names = write_condition_metadata(cfg, root, args.data_dir, metadata=metadata)
    jobs = [Job(f"activations subj{s:02d}", extract_subject,
                dict(cfg=cfg, root=str(root), subject=s, data_dir=args.data_dir, overwrite=args.overwrite))
            for s in cfg.subjects]
    report = run_jobs(jobs, scheduler=args.scheduler, workers=args.workers,
                      desc=f"stage 2: activations {cfg.data}×{cfg.model}", progress=not args.no_progress)
    results = [r for per_subject in report.results.values() for r in per_subject]
    n_folders = len(cfg.subjects) * len(cfg.logged_epochs)
    done = sum(1 for r in results if not r["skipped"])
    print(f"stage 2: {n_folders} subject×epoch folders of {cfg.data}×{cfg.model} under {layout.condition_dir} "
          f"({done} extracted, {n_folders - done} already complete)")
    print(f"  layers: {', '.join(names)}")
    return 0
