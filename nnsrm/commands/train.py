"""Stage 1: train N copies of a network that differ only in their random seed.

    python train_cifar.py                              # offline default: digits × conv
    python train_cifar.py --data cifar10 --model conv --data-dir ~/datasets
    python train_cifar.py --data cifar10 --model resnet18 --subjects 2 --epochs 5

    python train_cifar.py --group-size 4 --workers 2   # groups of 4 seeds, on a local Dask cluster

Writes ROOT/<data>/<model>/subj<NN>/weights.<EEE>.weights.h5 (epoch 0 = before
training, then every logged epoch), history.csv and config.json. With the JAX
backend a group of seeds trains together in compiled programs (--group-size;
one job per group; docs/performance.md). Resumable: a subject that finished is
skipped; one that was killed continues from its checkpoint at the last logged
epoch. A subject trained with other settings stops the run before anything is
written (--overwrite retrains it; docs/state.md).
"""

from __future__ import annotations

import logging
import os

from nnsrm import cli, config, console, grouping
from nnsrm.paths import ResultsLayout

PROG = "train_cifar.py"

log = logging.getLogger(__name__)


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
    parser.add_argument("--group-size", type=grouping.group_size_arg, default=grouping.AUTO, metavar="N",
                        help="subjects trained together in one job (JAX backend): N >= 1, or auto (default: as "
                             "many as fit in memory, spread over the Dask workers; 1 on other backends)")
    cli.add_verbosity_args(parser)
    cli.add_engine_args(parser)
    return parser


def resolve_config(args):
    """The experiment config with the command line's overrides."""
    return config.get_config(args.data, args.model, n_subjects=args.subjects, n_epochs=args.epochs,
                             batch_size=args.batch_size, seed=args.seed)


def resolve_group_size(args, cfg, subjects, data_dir) -> int:
    """The group size to use: the flag's, or what ``auto`` stands for here (:mod:`nnsrm.grouping`)."""
    backend = os.environ.get("KERAS_BACKEND", "jax")
    grouping.check_group_size(args.group_size, len(subjects), backend)
    if args.group_size != grouping.AUTO:
        return args.group_size
    if len(subjects) <= 1:
        return 1
    if backend != "jax":
        log.warning("--group-size auto: training seeds together needs the JAX backend (KERAS_BACKEND=%s); "
                    "the %d subjects train one at a time", backend, len(subjects))
        return 1
    if args.workers or args.scheduler:
        # The jobs run elsewhere: spread them over the workers (this process keeps off their devices).
        from nnsrm.dask_engine import count_workers

        n_workers = args.workers or count_workers(args.scheduler)
        return grouping.auto_group_size(cfg, len(subjects), backend, n_workers=n_workers or None)
    from nnsrm.compiled_training import default_strategy
    from nnsrm.training import cached_dataset

    data = cached_dataset(cfg.data, data_dir, cfg.subtract_mean)
    per_member = grouping.member_bytes(cfg, data.input_shape, data.n_classes,
                                       stacked=default_strategy() == "vmap")
    return grouping.auto_group_size(cfg, len(subjects), backend, memory_per_member=per_member,
                                    memory_available=grouping.device_memory_bytes())


def group_name(group) -> str:
    """A job's name: ``train subj03``, ``train subj00-04`` (consecutive) or ``train subj01,05,07``."""
    if len(group) == 1:
        return f"train subj{group[0]:02d}"
    if list(group) == list(range(group[0], group[-1] + 1)):
        return f"train subj{group[0]:02d}-{group[-1]:02d}"
    return "train subj" + ",".join(f"{s:02d}" for s in group)


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
    cli.prepare_environment(cpu_devices=True)
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
    grouping.check_group_size(args.group_size, len(subjects), os.environ.get("KERAS_BACKEND", "jax"))
    if args.data != "digits":  # fail now, not in every job, if the data is missing
        from nnsrm.training import cached_dataset

        cached_dataset(args.data, args.data_dir)

    from nnsrm import state
    from nnsrm.jobs import Job
    from nnsrm.runner import run_jobs
    from nnsrm.training import train_group

    layout = ResultsLayout(root, cfg.data, cfg.model)
    # A complete subject trained with other settings stops the run here, before anything is written.
    record = state.stage1_record(cfg)
    state.refuse_stale(((f"train subj{s:02d}", layout.subject_dir(s), record) for s in subjects),
                       overwrite=args.overwrite)
    console.start_log_file(root, "train")
    write_condition_config(layout, cfg)
    from nnsrm.jax_cache import enable_compilation_cache

    enable_compilation_cache(root)  # before the first network is built: its initialisers compile too
    size = resolve_group_size(args, cfg, subjects, args.data_dir)
    groups = grouping.split_into_groups(subjects, size)
    jobs = [Job(group_name(g), train_group,
                dict(cfg=cfg, root=str(root), subjects=g, data_dir=args.data_dir, overwrite=args.overwrite,
                     # a transient per-epoch bar under the stage's bar, on a terminal and in this process only
                     progress=not (args.no_progress or args.scheduler or args.workers)))
            for g in groups]
    report = run_jobs(jobs, scheduler=args.scheduler, workers=args.workers,
                      desc=f"stage 1: train {cfg.data}×{cfg.model}", progress=not args.no_progress)
    results = [r for group in report.results.values() for r in group]
    trained = {r["subject"]: r for r in results if not r["skipped"]}
    resumed = sorted(s for s, r in trained.items() if r.get("resumed_from"))
    print(f"stage 1: {len(subjects)} subjects of {cfg.data}×{cfg.model} under {layout.condition_dir} "
          f"({len(trained)} trained, {len(subjects) - len(trained)} already complete; "
          f"{len(jobs)} job(s) of up to {size})")
    if resumed:
        print("  resumed from checkpoints: " + ", ".join(f"subj{s:02d} at epoch {trained[s]['resumed_from']}"
                                                        for s in resumed))
    if trained:
        accs = [r["final_val_accuracy"] for r in trained.values()]
        secs = sum(r["seconds"] for r in trained.values())
        print(f"  test accuracy {min(accs):.3f}–{max(accs):.3f} after {cfg.n_epochs} epoch"
              f"{'s' if cfg.n_epochs != 1 else ''}; {secs:.0f} s of training")
    return 0
