"""Stage 1: train N copies of a network that differ only in their random seed.

    python train_cifar.py                              # offline default: digits × conv
    python train_cifar.py --data cifar10 --model conv --data-dir ~/datasets
    python train_cifar.py --data cifar10 --model resnet18 --subjects 2 --epochs 5

Writes ROOT/<data>/<model>/subj<NN>/weights.<EEE>.weights.h5 (epoch 0 = before
training, then every logged epoch), history.csv and config.json. Resumable: a
subject that finished is skipped; one that was killed is trained again. A
subject trained with other settings stops the run before anything is written
(--overwrite retrains it; docs/state.md).
"""

from __future__ import annotations

from nnsrm import cli, config, console
from nnsrm.paths import ResultsLayout

PROG = "train_cifar.py"


def build_parser():
    parser = cli.OneLineArgumentParser(
        prog=cli.program_name(PROG), description=__doc__.split("\n\n")[0],
        epilog="Paper settings for each (data, model) live in nnsrm/config.py; flags override them.")
    cli.add_condition_args(parser, config.DATASETS, config.MODELS)
    parser.add_argument("--data-dir", default=None,
                        help="folder with the official archive (cifar-10-python.tar.gz, "
                             "cifar-100-python.tar.gz, mnist.npz); default: download once into ~/.keras/datasets")
    parser.add_argument("--subjects", type=cli.positive_int, default=None,
                        help="number of networks (default: the config's)")
    parser.add_argument("--epochs", type=cli.positive_int, default=None,
                        help="training epochs (default: the config's; logged epochs beyond it are dropped)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=None,
                        help="batch size (default: the config's)")
    parser.add_argument("--seed", type=int, default=None, help="seed of subject 0; subject s uses seed + s")
    parser.add_argument("--only-subjects", type=int, nargs="+", default=None, metavar="S",
                        help="train only these subject indices (e.g. one per cluster job)")
    cli.add_verbosity_args(parser)
    cli.add_engine_args(parser)
    return parser


def resolve_config(args):
    """The experiment config with the command line's overrides."""
    return config.get_config(args.data, args.model, n_subjects=args.subjects, n_epochs=args.epochs,
                             batch_size=args.batch_size, seed=args.seed)


def write_condition_config(layout, cfg) -> bool:
    """Write ``config.json`` (the resolved configuration and provenance) unless it already holds ``cfg``.

    Kept as it is when the configuration is the same, so a rerun does not
    change it; returns True if written.
    """
    from nnsrm import state
    from nnsrm.provenance import provenance

    wanted = cfg.to_dict()
    return state.write_json_if_changed(
        layout.config_path, {"config": wanted, "stage": "train", "provenance": provenance()},
        same=lambda old: old.get("config") == state.as_json(wanted))


def main(argv=None):
    cli.prepare_environment()
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.verbose, prog=cli.program_name(PROG))
    root = cli.check_root(args.root)
    cli.check_engine(args)
    cfg = resolve_config(args)
    subjects = list(cfg.subjects)
    if args.only_subjects:
        bad = [s for s in args.only_subjects if s not in subjects]
        if bad:
            raise cli.UsageError(f"--only-subjects {bad} out of range 0..{cfg.n_subjects - 1}")
        subjects = sorted(set(args.only_subjects))
    if args.data != "digits":  # fail now, not in every job, if the data is missing
        from nnsrm.training import cached_dataset

        cached_dataset(args.data, args.data_dir)

    from nnsrm import state
    from nnsrm.jobs import Job
    from nnsrm.runner import run_jobs
    from nnsrm.training import train_subject

    layout = ResultsLayout(root, cfg.data, cfg.model)
    # A complete subject trained with other settings stops the run here, before anything is written.
    record = state.stage1_record(cfg)
    state.refuse_stale(((f"train subj{s:02d}", layout.subject_dir(s), record) for s in subjects),
                       overwrite=args.overwrite)
    console.start_log_file(root, "train")
    write_condition_config(layout, cfg)
    jobs = [Job(f"train subj{s:02d}", train_subject,
                dict(cfg=cfg, root=str(root), subject=s, data_dir=args.data_dir, overwrite=args.overwrite,
                     # a transient per-epoch bar under the stage's bar, on a terminal and in this process only
                     progress=not (args.no_progress or args.scheduler or args.workers)))
            for s in subjects]
    report = run_jobs(jobs, scheduler=args.scheduler, workers=args.workers,
                      desc=f"stage 1: train {cfg.data}×{cfg.model}", progress=not args.no_progress)
    trained = {r["subject"]: r for r in report.results.values() if not r["skipped"]}
    print(f"stage 1: {len(jobs)} subjects of {cfg.data}×{cfg.model} under {layout.condition_dir} "
          f"({len(trained)} trained, {len(jobs) - len(trained)} already complete)")
    if trained:
        accs = [r["final_val_accuracy"] for r in trained.values()]
        secs = sum(r["seconds"] for r in trained.values())
        print(f"  test accuracy {min(accs):.3f}–{max(accs):.3f} after {cfg.n_epochs} epoch"
              f"{'s' if cfg.n_epochs != 1 else ''}; {secs:.0f} s of training")
    return 0
