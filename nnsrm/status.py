"""What is complete, missing or corrupt under a results root, per stage, as a table.

    python status.py                                  # every condition under results/
    python status.py --root results --data digits --model conv --verify

Each stage is a list of jobs (stage 1: one per subject, stage 2: one per
subject × logged epoch, stage 3: one per logged epoch × layer), and each job
leaves a completion marker (``_complete.json``) listing its files with their
sizes and SHA-256 checksums, and what made them (:mod:`nnsrm.state`). A job is

- ``complete``: its marker is there and every file it lists has the recorded
  size (with ``--verify`` also the recorded checksum, which reads every byte);
- ``stale``: complete, but made with other settings or from other inputs than
  the condition has now (stage 1: other training settings than ``config.json``;
  stage 2: other weights than the subject's, or other extraction settings than
  ``layers.json``; stage 3: other activations than stage 2's). The stage
  scripts refuse to mix such outputs: rerun that stage with ``--overwrite``;
- ``missing``: no marker (never run, or killed before it finished);
- ``corrupt``: a marker whose files are gone, truncated or changed.

The stage scripts skip exactly the jobs this command calls complete (without
``--verify``) and redo the missing and corrupt ones. The expected jobs come
from the condition's ``config.json`` (written by stage 1) and ``layers.json``
(stage 2). Hidden ``.*.tmp*`` files are what a killed run was writing; no job
reads them. A hidden ``.lock`` file in a job's folder is its lock (it holds no data).

Nothing here imports Keras or writes anything.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from nnsrm import atomic, cli, state
from nnsrm.errors import MissingInputError
from nnsrm.paths import ResultsLayout

STAGES = {1: "train", 2: "activations", 3: "analyses"}
STATES = ("complete", "stale", "missing", "corrupt")
SHOW_AT_MOST = 20  # unfinished jobs listed per stage without --all


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """The state of one job: ``state`` is one of ``STATES``; ``detail`` says why, for people."""

    stage: int
    name: str  # as the stage script names the job in its reports
    directory: Path
    state: str
    detail: str = ""


@dataclasses.dataclass
class ConditionStatus:
    """Every expected job of one condition (data × model), and what could not be known."""

    layout: ResultsLayout
    jobs: list  # list[JobStatus]
    notes: dict  # stage -> a line about the stage as a whole (e.g. "layers.json missing")
    temp_files: dict  # stage -> number of leftover temporary files
    description: str = ""

    def counts(self, stage: int) -> dict:
        out = {s: 0 for s in STATES}
        for job in self.jobs:
            if job.stage == stage:
                out[job.state] += 1
        return out

    @property
    def all_complete(self) -> bool:
        return all(j.state == "complete" for j in self.jobs) and not any(
            "missing" in note or "unreadable" in note for note in self.notes.values())


def job_status(stage: int, name: str, directory: Path, verify: bool = False, wanted: dict | None = None) -> JobStatus:
    """The state of the job whose marker lives in ``directory``, with the reason if not complete.

    The state is :func:`nnsrm.state.job_state`'s (``wanted`` is the record the
    job's outputs should have been made with; None skips that comparison), so it
    is what the stage scripts' skip logic sees.
    """
    directory = Path(directory)
    st, detail = state.job_state(directory, wanted, verify=verify)
    if st == "complete":
        return JobStatus(stage, name, directory, st)
    if st == "stale":
        return JobStatus(stage, name, directory, st, detail.replace("this run asks for", "the condition now has"))
    if st == "missing":
        started = directory.is_dir() and any(p.name not in (atomic.MARKER_NAME, atomic.LOCK_NAME)
                                             for p in directory.iterdir())
        return JobStatus(stage, name, directory, st,
                         "started but not finished (killed?)" if started else "not started")
    return JobStatus(stage, name, directory, st, _corruption(directory, verify))


def _corruption(directory: Path, verify: bool) -> str:
    """What is wrong with a marker that :func:`nnsrm.atomic.marker_status` calls corrupt."""
    try:
        files = json.loads((directory / atomic.MARKER_NAME).read_text())["files"]
        items = list(files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{atomic.MARKER_NAME} is unreadable"
    for rel, meta in items:
        f = directory / rel
        if not f.exists():
            return f"{rel} is missing"
        size = f.stat().st_size
        if size != meta["bytes"]:
            return f"{rel} has {size} bytes, the marker recorded {meta['bytes']}"
        if verify and atomic.file_digest(f) != meta["sha256"]:
            return f"{rel} changed: its SHA-256 differs from the marker's"
    return "changed while being checked"


def _temp_files(directory: Path) -> list:
    """Leftover temporary files of atomic writes (``.<stem>.<random>.tmp<suffix>``) under ``directory``."""
    if not directory.is_dir():
        return []
    return [p for p in directory.rglob(".*.tmp*") if p.is_file()]


def condition_status(layout: ResultsLayout, verify: bool = False) -> ConditionStatus:
    """Every expected job of ``layout``'s condition and its state.

    Raises
    ------
    nnsrm.errors.MissingInputError
        If the condition folder does not exist (also a ``FileNotFoundError``).
    """
    from nnsrm.run_config import load_trained_config

    if not layout.condition_dir.is_dir():
        raise MissingInputError(f"no results for {layout.data}×{layout.model} under {layout.root} "
                                f"({layout.condition_dir} does not exist); run train_cifar.py first")
    if layout.manifest_path.is_file() and not layout.config_path.exists():
        return _registered_status(layout, verify)
    jobs, notes = [], {}
    temp = {1: 0, 2: 0, 3: len(_temp_files(layout.analyses_dir))}
    for subj_dir in sorted(layout.condition_dir.glob("subj*")):
        for p in _temp_files(subj_dir):
            temp[2 if "epoch_" in str(p.relative_to(subj_dir)) else 1] += 1
    try:
        cfg = load_trained_config(layout)
    except cli.UsageError:
        reason = "missing" if not layout.config_path.exists() else "unreadable"
        for stage in STAGES:
            notes[stage] = f"config.json {reason}: the expected jobs are unknown (run train_cifar.py)"
        return ConditionStatus(layout, jobs, notes, temp, "config.json " + reason)

    layers, extraction = None, None
    if layout.layers_path.exists():
        try:
            info = json.loads(layout.layers_path.read_text())
            layers = [str(name) for name in info["layers"]]
            extraction = info.get(state.RECORD_KEY)
        except (ValueError, KeyError, TypeError):
            notes[3] = "layers.json unreadable: the expected jobs are unknown (rerun save_acts_cifar.py)"
    elif 3 not in notes:
        notes[3] = "layers.json missing: the expected jobs are unknown until stage 2 has run"

    stage1 = state.stage1_record(cfg)
    for s in cfg.subjects:
        jobs.append(job_status(1, f"train subj{s:02d}", layout.subject_dir(s), verify, stage1))
    for s in cfg.subjects:
        for e in cfg.logged_epochs:
            adir = layout.activations_dir(s, e)
            jobs.append(job_status(2, f"activations subj{s:02d} epoch {e:03d}", adir, verify,
                                   _stage2_wanted(layout, s, adir, extraction)))
    stage2_meta = [p.name for p in (layout.layers_path, layout.test_labels_path) if not p.exists()]
    if stage2_meta:
        notes[2] = f"{' and '.join(stage2_meta)} missing (written by save_acts_cifar.py)"

    if layers is not None:
        for e in cfg.logged_epochs:
            for layer in layers:
                jdir = layout.analysis_dir(e, layer)
                jobs.append(job_status(3, f"epoch {e:03d} layer {layer}", jdir, verify,
                                       _stage3_wanted(layout, e, jdir)))
        if not layout.summary_path.exists():
            notes[3] = "summary.csv missing (written by run_analyses.py)"
    description = (f"{cfg.n_subjects} subjects, epochs {' '.join(map(str, cfg.logged_epochs))}"
                   + (f", layers {' '.join(layers)}" if layers else ""))
    return ConditionStatus(layout, jobs, notes, temp, description)


def _registered_status(layout: ResultsLayout, verify: bool) -> ConditionStatus:
    """A condition registered with ``nnsrm register``: no stages 1-2; stage 3's jobs from the manifest."""
    from nnsrm.manifest import ManifestSource

    temp = {1: 0, 2: 0, 3: len(_temp_files(layout.analyses_dir))}
    notes = {1: "registered activations (nnsrm register): not trained here",
             2: "registered activations (nnsrm register): not recorded here"}
    try:
        source = ManifestSource(layout)
        epochs, layers, subjects = source.epochs(), source.layers(), source.subjects()
    except cli.UsageError as err:
        notes[3] = f"manifest.json unusable: {str(err).splitlines()[0]}"
        return ConditionStatus(layout, [], notes, temp, "registered; manifest.json unusable")
    jobs = []
    for e in epochs:
        for layer in layers:
            jdir = layout.analysis_dir(e, layer)
            jobs.append(job_status(3, f"epoch {e:03d} layer {layer}", jdir, verify, _stage3_wanted(layout, e, jdir)))
    if not layout.summary_path.exists():
        notes[3] = "summary.csv missing (written by nnsrm analyse)"
    description = (f"registered: {len(subjects)} networks, checkpoints {' '.join(map(str, epochs))}, "
                   f"layers {' '.join(layers)}")
    return ConditionStatus(layout, jobs, notes, temp, description)


def _stage2_wanted(layout: ResultsLayout, subject: int, directory: Path, extraction) -> dict:
    """The record a stage-2 job should have now: the subject's current weights, ``layers.json``'s settings.

    Without settings in ``layers.json`` (written by an earlier nnsrm) only the
    weights are compared.
    """
    own = state.recorded(directory) or {}
    settings = extraction if isinstance(extraction, dict) else {k: v for k, v in own.items() if k != "stage1"}
    return {"stage1": atomic.marker_digest(layout.subject_dir(subject)), **settings}


def _stage3_wanted(layout: ResultsLayout, epoch: int, directory: Path) -> dict | None:
    """The record a stage-3 job should have now: its own parameters and subjects, stage 2's current outputs.

    The parameters of stage 3 live only on its command line, so they are taken
    from the job's own record: status finds jobs whose inputs changed.
    """
    own = state.recorded(directory)
    if own is None or not isinstance(own.get("subjects"), list):
        return {"inputs": None}  # an unrecorded marker: stale, as the stage script would say
    return {"params": own.get("params"), "subjects": own["subjects"],
            "inputs": state.stage3_inputs(layout, epoch, own["subjects"])}


def find_conditions(root: Path) -> list:
    """``(data, model)`` of every condition folder under ``root``.

    A condition folder has a config.json or subj folders (the pipeline's own
    networks), or a manifest.json (networks registered with ``nnsrm register``,
    under any data and model names).
    """
    from nnsrm import config

    out = []
    for data in config.DATASETS:
        for model in config.MODELS:
            d = Path(root) / data / model
            if d.is_dir() and ((d / "config.json").exists() or any(d.glob("subj*"))):
                out.append((data, model))
    for manifest in sorted(Path(root).glob("*/*/manifest.json")):
        pair = (manifest.parent.parent.name, manifest.parent.name)
        if pair not in out:
            out.append(pair)
    return out


def format_table(status: ConditionStatus, show_all: bool = False) -> str:
    """The status of one condition as a plain-text table, then the jobs that are not complete."""
    lines = [f"{status.layout.condition_dir}" + (f"  ({status.description})" if status.description else "")]
    header = ("stage", "jobs", "complete", "stale", "missing", "corrupt", "temp files")
    rows = []
    for stage, label in STAGES.items():
        c = status.counts(stage)
        n = sum(c.values())
        rows.append((f"{stage} {label}", str(n), *(str(c[s]) for s in STATES),
                     str(status.temp_files.get(stage, 0))))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row):  # first column left-aligned, numbers right-aligned
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))

    lines += ["  " + fmt(header)] + ["  " + fmt(r) for r in rows]
    for stage, note in sorted(status.notes.items()):
        lines.append(f"  stage {stage}: {note}")
    for stage, label in STAGES.items():
        todo = [j for j in status.jobs if j.stage == stage and j.state != "complete"]
        shown = todo if show_all else todo[:SHOW_AT_MOST]
        for j in shown:
            lines.append(f"  {j.state:8s} {j.name}: {j.detail}  [{j.directory}]")
        if len(todo) > len(shown):
            lines.append(f"  ... and {len(todo) - len(shown)} more in stage {stage} (--all lists them)")
    return "\n".join(lines)


def build_parser():
    parser = cli.OneLineArgumentParser(prog=cli.program_name("status.py"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("results"), help="results root (default: %(default)s)")
    parser.add_argument("--data", default=None,
                        help="only this dataset, configured or registered (default: every condition found)")
    parser.add_argument("--model", default=None,
                        help="only this architecture, configured or registered (default: every condition found)")
    parser.add_argument("--verify", action="store_true",
                        help="also compare every file's SHA-256 with its marker (reads every byte)")
    parser.add_argument("--all", action="store_true", dest="show_all",
                        help=f"list every job that is not complete (default: at most {SHOW_AT_MOST} per stage)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if any job is not complete (for scripts)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = args.root
    if not root.is_dir():
        raise cli.UsageError(f"--root {root} is not a directory with results; pass the --root the stages used")
    found = find_conditions(root)
    if args.data or args.model:
        wanted = [(d, m) for d, m in found if args.data in (None, d) and args.model in (None, m)]
        if not wanted:
            have = ", ".join(f"{d}×{m}" for d, m in found) or "none"
            raise cli.UsageError(f"no results for --data {args.data or 'any'} --model {args.model or 'any'} "
                                 f"under {root} (found: {have})")
        found = wanted
    if not found:
        print(f"no results under {root} (nothing has run yet; start with train_cifar.py)")
        return 1 if args.check else 0
    statuses = [condition_status(ResultsLayout(root, d, m), verify=args.verify) for d, m in found]
    print(("\n\n").join(format_table(s, args.show_all) for s in statuses))
    checked = "sizes and SHA-256 checksums" if args.verify else "sizes (--verify also checks SHA-256 checksums)"
    incomplete = not all(s.all_complete for s in statuses)
    hint = ("; rerun a stage's script to redo its missing and corrupt jobs (complete ones are skipped)"
            if incomplete else "")
    if any(j.state == "stale" for s in statuses for j in s.jobs):
        hint += ("; stale jobs were made with other settings or inputs than the condition has now: rerun "
                 "their stage with --overwrite (and the flags you mean), or use another --root")
    print(f"\nchecked {checked}{hint}")
    if any(sum(s.temp_files.values()) for s in statuses):
        print("temp files (.*.tmp*) are what a killed run was writing; no job reads them, and they are safe "
              "to delete while no stage is running")
    return 1 if args.check and incomplete else 0

