"""The simulation's experiment: repetitions, the tidy results table, saving and loading.

One repetition (docs/simulation.md):

1. draw a training and a test set of XOR data, train one 2-50-1 network;
2. record its hidden activity H (units × images) on both sets;
3. for each transform (``"orthogonal"``, ``"permutation"``) make ``n_nets``
   copies ``Q_i H + noise``, the same ``Q_i`` for the training and test sets;
4. truth: the mean within-network RSM (wRSM) of the test copies;
5. fit SRM (``k = n_hidden`` by default) on the training copies, map the test
   copies into the shared space;
6. compare the shared-space iRSM and the native-space iRSM with the truth by
   Pearson r ("linear") and Kendall τ ("rank"; the original code used Pearson
   for the native rank value by mistake) of their strict lower triangles.

``SimConfig(original=True)`` (``run_sim.py --original``) follows the original
code (``simulation/`` and ``run_sim.ipynb`` of qihongl/nnsrm-neurips18) where it
differs from the above: the clouds' noise has mean 1 (centres (2, 0), (0, 2),
(2, 2), (0, 0)); the network starts from PyTorch's default initialisation
(kernels and biases U(±1/sqrt(fan_in)), not Glorot-uniform kernels and zero
biases); the orthogonal copies use the Q of the QR decomposition of a uniform
[0, 1) matrix, not a uniformly random rotation; and the RSMs are compared as
whole matrices (diagonal and both triangles, each image pair twice). The
native rank value stays Kendall's τ in both modes. Kept in both modes: Keras'
Adam (epsilon 1e-7 where PyTorch's is 1e-8) and the SRM (``srm_engine``).

Sweeps rerun steps 3-6 on the same trained network at other noise levels or
numbers of SRM components. All randomness of repetition ``rep`` comes from
``numpy.random.SeedSequence(seed, spawn_key=(rep, purpose))``, so a repetition's
numbers do not depend on how many repetitions or sweep points run beside it,
and the copies at different noise levels and ``k`` share their ``Q_i`` and
noise draws (common random numbers make the sweeps' curves smoother).

Outputs of :func:`save_results` in one folder::

    results.csv        tidy: rep, transform, noise, n_components, space, measure, value
    networks.csv       per repetition: final training loss, train/test accuracy, hidden units' SD
    example_rsms.npz   repetition 0, paper condition: the three matrices of Fig. 6
    config.json        the configuration, wall time, versions, git commit, machine
    _complete.json     completion marker (sizes and checksums of the files above)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nnsrm.simulation import xor
from nnsrm.errors import MissingInputError, UsageError

log = logging.getLogger(__name__)

SPACES = ("shared", "native")
#: Name of each measure in the table -> method of :func:`qmvpa.rsa.rsm_similarity`.
MEASURES = {"linear": "pearson", "rank": "kendall"}
DEFAULT_NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
DEFAULT_K_VALUES = (2, 3, 5, 10, 20, 30, 40, 50)
TABLE_COLUMNS = ("rep", "transform", "noise", "n_components", "space", "measure", "value")
FIG6_MATRICES = ("shared_irsm", "native_wrsm", "native_irsm")

# Purpose keys of the per-repetition random streams.
_DATA_TRAIN, _DATA_TEST, _INIT, _SRM = 0, 1, 2, 3
_COPIES = {"orthogonal": 10, "permutation": 11}
_NOISE = {"orthogonal": 20, "permutation": 21}


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Everything that determines the simulation's numbers; defaults are the paper's.

    ``n_components=None`` means ``k = n_hidden``. ``noise_levels`` and
    ``k_values`` are the sweeps (empty: no sweep); they run on the first
    ``sweep_sims`` repetitions (``None``: all). The noise sweep uses
    ``n_components``, the k sweep uses ``noise``.

    ``center_units`` (not in the paper): before mapping the test copies into
    the shared space, subtract each copy's unit means over the training
    images. BrainIAK's SRM removes those means when fitting but its transform
    (and :func:`qmvpa.factor.transform`) maps the data as given; the mean
    activity then passes through directions of ``W_i`` the fit barely
    determines, which is most of why the shared score stays below 1.

    ``original``: the original code's data, initialisation, orthogonal copies
    and whole-matrix comparison (see the module docstring). It reproduces one condition, so it
    cannot be combined with the sweeps (``noise_levels``, ``k_values``) nor
    with ``center_units``, which the original did not have.
    """

    n_sims: int = 50
    n_nets: int = 10
    n_hidden: int = 50
    n_per_cloud: int = 50
    sigma: float = 0.3
    n_epochs: int = 1000
    learning_rate: float = 0.003
    noise: float = 0.0
    n_components: int | None = None
    srm_n_iter: int = 10
    srm_engine: str = "brainiak"
    center_units: bool = False
    noise_levels: tuple = ()
    k_values: tuple = ()
    sweep_sims: int | None = None
    seed: int = 0
    train_method: str = "auto"
    original: bool = False

    def __post_init__(self):
        # Tuples (not lists) so that the config is hashable and compares equal after a JSON round trip.
        object.__setattr__(self, "noise_levels", tuple(float(v) for v in self.noise_levels))
        object.__setattr__(self, "k_values", tuple(int(v) for v in self.k_values))
        self.validate()

    @property
    def k(self) -> int:
        """Number of SRM components of the paper condition."""
        return self.n_hidden if self.n_components is None else self.n_components

    @property
    def n_sweep_sims(self) -> int:
        return self.n_sims if self.sweep_sims is None else self.sweep_sims

    def validate(self) -> None:
        """Raise :class:`~nnsrm.errors.UsageError` (a ``ValueError``) naming the first bad field."""
        for name in ("n_sims", "n_per_cloud", "n_epochs", "srm_n_iter"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("n_hidden", self.n_hidden, minimum=2, why="the RSMs correlate images across units")
        _require_int("n_nets", self.n_nets, minimum=2, why="SRM and the iRSM need at least 2 networks")
        _require_int("seed", self.seed, minimum=0)
        for name in ("sigma", "noise"):
            _require_number(name, getattr(self, name))
        if not (isinstance(self.learning_rate, (int, float)) and np.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise UsageError(f"learning_rate must be a number > 0, got {self.learning_rate!r}")
        for name, ks in (("n_components", (self.k,)), ("k_values", self.k_values)):
            for k in ks:
                # The shared-space RSM correlates images across k components: k = 1 leaves nothing to correlate.
                _require_int(name, k, minimum=2, why="a Pearson RSM across k SRM components needs k >= 2")
                if k > self.n_hidden:
                    raise UsageError(f"{name} (k) must be <= n_hidden = {self.n_hidden} (SRM cannot "
                                     f"find more shared features than units), got {k}")
                if k > 4 * self.n_per_cloud:
                    raise UsageError(f"{name} (k) must be <= the {4 * self.n_per_cloud} training "
                                     f"points, got {k}")
        for level in self.noise_levels:
            _require_number("noise_levels", level)
        if self.sweep_sims is not None:
            _require_int("sweep_sims", self.sweep_sims, minimum=1)
            if self.sweep_sims > self.n_sims:
                raise UsageError(f"sweep_sims must be <= n_sims = {self.n_sims}, got {self.sweep_sims}")
        from qmvpa import factor

        if self.srm_engine not in factor.ENGINES:
            raise UsageError(f"srm_engine must be one of {', '.join(factor.ENGINES)}, got {self.srm_engine!r}")
        if not isinstance(self.center_units, bool):
            raise UsageError(f"center_units must be True or False, got {self.center_units!r}")
        if self.train_method not in xor.TRAIN_METHODS:
            raise UsageError(f"train_method must be one of {xor.TRAIN_METHODS}, got {self.train_method!r}")
        if not isinstance(self.original, bool):
            raise UsageError(f"original must be True or False, got {self.original!r}")
        if self.original:
            extras = [name for name, used in (("noise_levels (--noise-sweep)", self.noise_levels),
                                              ("k_values (--k-sweep)", self.k_values),
                                              ("center_units (--center-units)", self.center_units)) if used]
            if extras:
                raise UsageError(f"original mode reproduces the original code's single condition; it cannot "
                                 f"be combined with {', '.join(extras)}")

    def conditions(self, rep: int) -> list:
        """The (noise, k) pairs repetition ``rep`` evaluates: the paper's first, then the sweeps'."""
        pairs = [(self.noise, self.k)]
        if rep < self.n_sweep_sims:
            pairs += [(level, self.k) for level in self.noise_levels]
            pairs += [(self.noise, k) for k in self.k_values]
        return list(dict.fromkeys(pairs))  # unique, in order

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["noise_levels"], d["k_values"] = list(self.noise_levels), list(self.k_values)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SimConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


def _require_int(name, value, minimum, why=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}{f' ({why})' if why else ''}, "
                         f"got {value!r}")


def _require_number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise UsageError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclasses.dataclass
class SimResults:
    """What a simulation run produced (see the module docstring for the files)."""

    config: SimConfig
    table: pd.DataFrame  # tidy, columns TABLE_COLUMNS
    networks: pd.DataFrame  # rep, final_loss, train_accuracy, test_accuracy, hidden_sd
    example_rsms: dict  # transform -> {name in FIG6_MATRICES: (n_test, n_test)}; "cloud": (n_test,)
    wall_s: float | None = None

    def paper(self) -> pd.DataFrame:
        """Rows of the paper condition (noise = config.noise, k = config.k)."""
        return select(self.table, noise=self.config.noise, n_components=self.config.k)


def _stream(config: SimConfig, rep: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(rep, purpose)))


def _int_seed(config: SimConfig, rep: int, purpose: int) -> int:
    return int(np.random.SeedSequence(config.seed, spawn_key=(rep, purpose)).generate_state(1)[0] >> 1)


def score_against_truth(rsm, truth, whole_matrix: bool = False) -> dict:
    """``{"linear": Pearson r, "rank": Kendall τ}`` of two RSMs.

    By default of their strict lower triangles; with ``whole_matrix`` (the
    original code's ``correlate_solution_to_truth``) of all their entries,
    diagonal included. Kendall's τ is τ-b in both cases.
    """
    from qmvpa.rsa import rsm_similarity

    if whole_matrix:
        from scipy.stats import kendalltau, pearsonr

        a, b = np.ravel(rsm), np.ravel(truth)
        return {"linear": float(pearsonr(a, b).statistic), "rank": float(kendalltau(a, b).statistic)}
    return {measure: rsm_similarity(rsm, truth, method=method) for measure, method in MEASURES.items()}


def train_network(config: SimConfig, rep: int):
    """Data and the trained network of repetition ``rep``.

    Returns
    -------
    h_train : ndarray, shape (n_hidden, 4 * n_per_cloud)
    h_test : ndarray, shape (n_hidden, 4 * n_per_cloud)
    cloud_test : ndarray of int, shape (4 * n_per_cloud,)
    info : dict
        ``rep``, ``final_loss``, ``train_accuracy``, ``test_accuracy`` and
        ``hidden_sd``, the hidden units' mean SD across test images (the
        scale the copies' noise SD compares with).
    """
    offset = xor.ORIGINAL_OFFSET if config.original else 0.0
    x_train, y_train, _ = xor.make_xor_data(config.n_per_cloud, config.sigma, _stream(config, rep, _DATA_TRAIN),
                                            offset=offset)
    x_test, y_test, cloud_test = xor.make_xor_data(config.n_per_cloud, config.sigma,
                                                   _stream(config, rep, _DATA_TEST), offset=offset)
    model, losses = xor.train_xor_net(x_train, y_train, n_hidden=config.n_hidden, n_epochs=config.n_epochs,
                                      learning_rate=config.learning_rate, seed=_int_seed(config, rep, _INIT),
                                      method=config.train_method, init="torch" if config.original else "glorot")
    h_train, h_test = xor.hidden_activity(model, x_train), xor.hidden_activity(model, x_test)
    info = {"rep": rep, "final_loss": float(losses[-1]),
            "train_accuracy": xor.accuracy(model, x_train, y_train),
            "test_accuracy": xor.accuracy(model, x_test, y_test),
            "hidden_sd": float(h_test.std(axis=1).mean())}
    return h_train, h_test, cloud_test, info


def run_repetition(config: SimConfig, rep: int, keep_rsms: bool = False):
    """One repetition: train, copy, align, compare, for every condition of ``config.conditions(rep)``.

    Returns
    -------
    rows : list of dict
        One per (transform, noise, k, space, measure), keys TABLE_COLUMNS.
    info : dict
        The network's final loss and accuracies.
    rsms : dict or None
        With ``keep_rsms``, the paper condition's matrices per transform
        (keys FIG6_MATRICES, each (n_test, n_test)) and ``"cloud"``.
    """
    from qmvpa import factor
    from qmvpa.rsa import inter_subject_rsm, mean_within_rsm

    h_train, h_test, cloud_test, info = train_network(config, rep)
    conditions = config.conditions(rep)
    noise_levels = list(dict.fromkeys(noise for noise, _ in conditions))
    srm_seed = _int_seed(config, rep, _SRM)
    rows, rsms = [], ({"cloud": cloud_test} if keep_rsms else None)
    for transform in xor.TRANSFORMS:
        qs = xor.make_transforms(transform, config.n_hidden, config.n_nets, _stream(config, rep, _COPIES[transform]),
                                 orthogonal="qr_uniform" if config.original else "haar")
        for noise in noise_levels:
            # A fresh stream per noise level: every level adds noise * the same Z_i.
            noise_rng = _stream(config, rep, _NOISE[transform])
            train_copies = xor.copy_activity(h_train, qs, noise, noise_rng)  # n_nets × (units, n_train)
            test_copies = xor.copy_activity(h_test, qs, noise, noise_rng)  # n_nets × (units, n_test)
            truth = mean_within_rsm(test_copies)  # (n_test, n_test)
            native = inter_subject_rsm(test_copies)  # (n_test, n_test)
            native_scores = score_against_truth(native, truth, whole_matrix=config.original)
            to_map = test_copies
            if config.center_units:
                to_map = [x - t.mean(axis=1, keepdims=True) for x, t in zip(test_copies, train_copies)]
            for cond_noise, k in conditions:
                if cond_noise != noise:
                    continue
                model = factor.fit_srm(train_copies, n_components=k, n_iter=config.srm_n_iter,
                                       random_state=srm_seed, engine=config.srm_engine)
                shared = inter_subject_rsm(factor.transform(model, to_map))  # (n_test, n_test)
                scores = {"shared": score_against_truth(shared, truth, whole_matrix=config.original),
                          "native": native_scores}
                for space in SPACES:
                    for measure, value in scores[space].items():
                        rows.append({"rep": rep, "transform": transform, "noise": float(noise),
                                     "n_components": int(k), "space": space, "measure": measure,
                                     "value": float(value)})
                if keep_rsms and (noise, k) == (config.noise, config.k):
                    rsms[transform] = {"shared_irsm": shared, "native_wrsm": truth, "native_irsm": native}
    return rows, info, rsms


def run_simulation(config: SimConfig, progress: bool = False) -> SimResults:
    """All repetitions of ``config``, one after another in this process."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    rows, infos, example = [], [], None
    for rep in tqdm(range(config.n_sims), desc="repetitions", disable=not progress, unit="rep"):
        rep_rows, info, rsms = run_repetition(config, rep, keep_rsms=(rep == 0))
        rows += rep_rows
        infos.append(info)
        if rsms is not None:
            example = rsms
    wall_s = time.perf_counter() - start
    log.info("simulation: %d repetitions in %.1f s", config.n_sims, wall_s)
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return SimResults(config, table, pd.DataFrame(infos), example, wall_s)


# --------------------------------------------------------------------------- statistics


def mean_ci95(values) -> tuple:
    """Mean and two-sided 95% t-interval of the mean: ``(mean, low, high)``.

    With one value the interval is ``(mean, mean)``; NaNs are dropped.
    """
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(v.mean())
    if v.size < 2:
        return (mean, mean, mean)
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return (mean, mean - half, mean + half)


def ci95_interval(values) -> tuple:
    """``(low, high)`` of :func:`mean_ci95`; seaborn's ``errorbar=`` accepts it."""
    _, low, high = mean_ci95(values)
    return (low, high)


def select(table: pd.DataFrame, **equal) -> pd.DataFrame:
    """Rows of ``table`` whose columns equal the given values (floats compared with a tolerance)."""
    mask = np.ones(len(table), dtype=bool)
    for column, value in equal.items():
        col = table[column]
        mask &= np.isclose(col, value) if pd.api.types.is_float_dtype(col) else (col == value).to_numpy()
    return table[mask]


def summarise(table: pd.DataFrame, by=("transform", "noise", "n_components", "space", "measure")) -> pd.DataFrame:
    """Mean and 95% CI over repetitions of every group of ``by``.

    Returns columns ``*by, n, mean, ci_low, ci_high``.
    """
    records = []
    for key, group in table.groupby(list(by), sort=False):
        mean, low, high = mean_ci95(group["value"])
        records.append({**dict(zip(by, key)), "n": len(group), "mean": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(records)


# --------------------------------------------------------------------------- files

RESULTS_CSV, NETWORKS_CSV, RSMS_NPZ, CONFIG_JSON = "results.csv", "networks.csv", "example_rsms.npz", "config.json"


def save_results(results: SimResults, out) -> Path:
    """Write a run's files into ``out`` atomically, then its completion marker."""
    from nnsrm import atomic
    from nnsrm.provenance import write_config_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.clear_marker(out)
    atomic.write_text(out / RESULTS_CSV, results.table.to_csv(index=False))
    atomic.write_text(out / NETWORKS_CSV, results.networks.to_csv(index=False))
    arrays = {"cloud": results.example_rsms["cloud"]}
    for transform in xor.TRANSFORMS:
        for name in FIG6_MATRICES:
            arrays[f"{transform}__{name}"] = results.example_rsms[transform][name]
    atomic.save_npz(out / RSMS_NPZ, **arrays)
    write_config_json(out / CONFIG_JSON, results.config.to_dict(), wall_s=results.wall_s)
    files = [out / name for name in (RESULTS_CSV, NETWORKS_CSV, RSMS_NPZ, CONFIG_JSON)]
    atomic.write_marker(out, files, kind="simulation")
    return out


def saved_config(out) -> SimConfig | None:
    """The configuration of the complete run in ``out``, or None if there is none."""
    from nnsrm import atomic

    out = Path(out)
    if not atomic.is_complete(out):
        return None
    try:
        return SimConfig.from_dict(json.loads((out / CONFIG_JSON).read_text())["config"])
    except (ValueError, KeyError, TypeError):
        return None


def load_results(out) -> SimResults:
    """Read the files :func:`save_results` wrote into ``out``."""
    out = Path(out)
    config = saved_config(out)
    if config is None:
        raise MissingInputError(f"{out} holds no complete simulation run; run simulation/run_sim.py "
                                f"--out {out} first")
    meta = json.loads((out / CONFIG_JSON).read_text())
    table = pd.read_csv(out / RESULTS_CSV)
    networks = pd.read_csv(out / NETWORKS_CSV)
    with np.load(out / RSMS_NPZ) as npz:
        example = {"cloud": npz["cloud"]}
        for transform in xor.TRANSFORMS:
            example[transform] = {name: npz[f"{transform}__{name}"] for name in FIG6_MATRICES}
    return SimResults(config, table, networks, example, meta.get("wall_s"))


def run_or_load(config: SimConfig, out, overwrite: bool = False, progress: bool = False) -> SimResults:
    """Load the run in ``out`` if it is complete and has exactly ``config``; else run and save it."""
    if not overwrite and saved_config(out) == config:
        log.info("loading the complete run in %s", out)
        return load_results(out)
    results = run_simulation(config, progress=progress)
    save_results(results, out)
    return results
