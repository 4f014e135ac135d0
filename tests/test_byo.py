"""Bring your own activations: the format, nnsrm register, stage 3 on a manifest, and nnsrm.compare.

Synthetic networks (no training): per layer one class-structured pattern,
each network a random rotation of it plus noise; checkpoint 0 is unrelated
random features, so alignment appears with "training". The same arrays go
through the files (.npy folders, .npz, HDF5) and through memory; both routes
must give the same table, and bad input must fail in one line that names the
file and the fix, touching nothing under the results root.
"""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group

import nnsrm
from conftest import ROOT as REPO
from nnsrm import activation_files as af
from nnsrm import cli, summary
from nnsrm.activation_checks import network_ids, parse_checkpoint
from nnsrm.commands import analyse as analyse_cmd
from nnsrm.commands import register as register_cmd
from nnsrm.errors import UsageError
from nnsrm.manifest import scan_source
from nnsrm.paths import ResultsLayout

LAYERS = {"h1": 12, "h2": 6}
CHECKPOINTS = (0, 2)
N_IMAGES, N_CLASSES = 60, 3
DATA, MODEL = "mine", "mlp"


def make_activations(n_networks=3, checkpoints=CHECKPOINTS, layers=LAYERS, n_images=N_IMAGES, seed=0):
    """``({seed<i>: {checkpoint: {layer: float32 (n_images, units)}}}, labels)``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % N_CLASSES
    pattern = {name: rng.standard_normal((u, N_CLASSES))[:, labels] + 0.7 * rng.standard_normal((u, n_images))
               for name, u in layers.items()}
    acts = {}
    for s in range(n_networks):
        rot = {name: ortho_group.rvs(u, random_state=int(rng.integers(2**31))) for name, u in layers.items()}
        acts[f"seed{s}"] = {c: {name: (rng.standard_normal((n_images, u)) if c == 0 else
                                       (rot[name] @ pattern[name]).T + 0.2 * rng.standard_normal((n_images, u)))
                                .astype(np.float32) for name, u in layers.items()}
                            for c in checkpoints}
    return acts, labels


def write_npy_network(src, net, ckpts):
    for c, layers in ckpts.items():
        for name, a in layers.items():
            (src / net / f"epoch_{c}").mkdir(parents=True, exist_ok=True)
            np.save(src / net / f"epoch_{c}" / f"{name}.npy", a)


def write_npz_network(src, net, ckpts, compressed=False):
    save = np.savez_compressed if compressed else np.savez
    save(src / f"{net}.npz", **{f"epoch_{c}/{name}": a for c, layers in ckpts.items() for name, a in layers.items()})


def write_h5_network(src, net, ckpts):
    with h5py.File(src / f"{net}.h5", "w", track_order=True) as f:
        for c, layers in ckpts.items():
            g = f.create_group(f"epoch_{c}", track_order=True)
            for name, a in layers.items():
                g.create_dataset(name, data=a)


WRITERS = {"npy": write_npy_network, "npz": write_npz_network, "h5": write_h5_network}


def write_source(src, acts, labels, formats=("npy",), layers_txt=True):
    """The documented format: one network per format in ``formats`` (cycled), labels.npy, layers.txt."""
    src.mkdir(parents=True, exist_ok=True)
    for i, (net, ckpts) in enumerate(acts.items()):
        WRITERS[formats[i % len(formats)]](src, net, ckpts)
    np.save(src / "labels.npy", labels)
    if layers_txt:
        (src / "layers.txt").write_text("\n".join(next(iter(next(iter(acts.values())).values()))) + "\n")
    return src


def tree_digest(root: Path) -> str:
    """One checksum of every path and file content under ``root`` (logs aside: each command may add one)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == "logs":
            continue
        h.update(str(rel).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def run(capsys, main, prog, *argv):
    code = cli.run_main(main, [str(a) for a in argv], prog=prog)
    out, err = capsys.readouterr()
    return code, out, err


def register(capsys, src, root, *extra):
    return run(capsys, register_cmd.main, "nnsrm register", "--source", src, "--data", DATA, "--model", MODEL,
               "--root", root, *extra)


def analyse(capsys, root, *extra):
    return run(capsys, analyse_cmd.main, "run_analyses.py", "--root", root, "--data", DATA, "--model", MODEL,
               "--no-progress", *extra)


# --------------------------------------------------------------------------- the two routes agree

def test_compare_and_command_line_give_the_same_numbers(tmp_path, capsys):
    """One network per format (.npy folder, .npz, HDF5); register + run_analyses == nnsrm.compare."""
    acts, labels = make_activations()
    src = write_source(tmp_path / "src", acts, labels, formats=("npy", "npz", "h5"))
    root = tmp_path / "root"
    code, out, err = register(capsys, src, root)
    assert code == 0, err
    assert "registered 3 networks × 2 checkpoints (0 2) × 2 layers (h1, h2), 60 images" in out
    assert "seed0=0, seed1=1, seed2=2" in out
    code, out, err = analyse(capsys, root)
    assert code == 0, err
    assert "stage 3: 4 epoch×layer jobs run" in out
    on_disk = pd.read_csv(ResultsLayout(root, DATA, MODEL).summary_path, dtype={"subject": str})

    in_memory = nnsrm.compare(acts, labels, data=DATA, model=MODEL)
    assert tuple(in_memory.columns) == summary.SUMMARY_COLUMNS
    assert set(in_memory.metric) == set(summary.METRICS)
    pd.testing.assert_frame_equal(in_memory, on_disk, check_exact=True)
    # And the synthetic networks align after "training", not at checkpoint 0.
    r = in_memory[in_memory.subject == "all"].set_index(["epoch", "layer", "metric"]).value
    assert r[2, "h1", "r_shared_irsm_wrsm"] > 0.9 and r[2, "h1", "r_native_irsm_wrsm"] < 0.5
    assert r[0, "h1", "r_shared_irsm_final_wrsm"] < 0.3
    # Rerun: nothing to do, same table.
    code, out, _ = analyse(capsys, root)
    assert code == 0 and "stage 3: 0 epoch×layer jobs run" in out


def _stage2_root(tmp_path):
    from stage_outputs import write_synthetic_stage2

    return write_synthetic_stage2(tmp_path / "trained", "digits", "conv", {"dense": 8}, n_subjects=2, n_epochs=1,
                                  n_images=N_IMAGES, n_classes=N_CLASSES, pattern_noise=0.5)


def test_stage2_layout_is_part_of_the_format(tmp_path, capsys):
    """A stage-2 condition folder registers as a source, and stage 3 reads the same arrays through either source."""
    from nnsrm.activations import Stage2Source, open_source

    stage2 = _stage2_root(tmp_path)
    root = tmp_path / "root"
    code, out, err = register(capsys, stage2.condition_dir, root)
    assert code == 0, err
    assert "2 networks × 2 checkpoints (0 1) × 1 layers (dense)" in out and "subj00=0, subj01=1" in out
    manifest = json.loads(ResultsLayout(root, DATA, MODEL).manifest_path.read_text())
    assert manifest["layers_from"].endswith("layers.json") and manifest["checkpoint_name"] == "epoch"
    ours, theirs = open_source(ResultsLayout(root, DATA, MODEL)), Stage2Source(stage2)
    assert ours.kind == "registered" and ours.layers() == theirs.layers() == ["dense"]
    np.testing.assert_array_equal(ours.labels(), theirs.labels())
    for s in (0, 1):
        for e in (0, 1):
            with ours.open(s, e, "dense") as a, theirs.open(s, e, "dense") as b:
                np.testing.assert_array_equal(a.columns(), b.columns())


@pytest.mark.slow
def test_stage2_layout_registered_gives_the_same_analyses(tmp_path, capsys):
    """Stage 3 on a registered stage-2 folder equals stage 3 on the folder itself (fast sibling above)."""
    stage2 = _stage2_root(tmp_path)
    code, _, err = run(capsys, analyse_cmd.main, "run_analyses.py", "--root", tmp_path / "trained", "--no-progress")
    assert code == 0, err
    root = tmp_path / "root"
    code, out, err = register(capsys, stage2.condition_dir, root)
    assert code == 0, err
    assert "ignored" in out and "analyses" in out  # stage 3's outputs are not networks
    code, _, err = analyse(capsys, root)
    assert code == 0, err
    ours = pd.read_csv(ResultsLayout(root, DATA, MODEL).summary_path, dtype={"subject": str})
    theirs = pd.read_csv(stage2.summary_path, dtype={"subject": str})
    pd.testing.assert_frame_equal(ours.drop(columns=["data", "model"]), theirs.drop(columns=["data", "model"]),
                                  check_exact=True)


def test_single_checkpoint_and_plain_layer_keys():
    """network -> layer -> array is checkpoint 0; ids come from the names; the layer order from the mapping."""
    acts, labels = make_activations(checkpoints=(1,), layers={"b": 5, "a": 4})
    flat = {f"net_{chr(97 + i)}": ckpts[1] for i, ckpts in enumerate(acts.values())}
    df = nnsrm.compare(flat, labels, engine="fast")
    assert df.epoch.unique().tolist() == [0]
    assert df.drop_duplicates("layer").sort_values("layer_depth").layer.tolist() == ["b", "a"]
    assert sorted(df[df.metric == "var_exp_test"].subject.unique()) == ["0", "1", "2"]
    assert sorted(df[df.metric == "consistency"].subject) == ["0-1", "0-1", "0-2", "0-2", "1-2", "1-2"]


# --------------------------------------------------------------------------- reading the format

def test_arrays_are_memory_mapped_or_read_by_slices(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((50, 4, 3)).astype(np.float32)  # trailing dimensions are flattened
    flat = a.reshape(50, 12)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "n.npz", **{"epoch_1/a": np.asfortranarray(a)})
    np.savez_compressed(tmp_path / "c.npz", a=a)
    with h5py.File(tmp_path / "h.h5", "w") as f:
        f.create_dataset("a", data=a, chunks=(7, 4, 3))
    monkeypatch.setattr(af, "BLOCK_BYTES", 12 * 4 * 8)  # 8 images per block: several blocks
    units = np.array([0, 5, 11])
    for path, key, kind in [("a.npy", None, np.memmap), ("n.npz", "epoch_1/a", np.memmap), ("h.h5", "a", h5py.Dataset),
                            ("c.npz", "a", np.ndarray)]:
        with af.open_array(tmp_path / path, key) as arr:
            assert arr.shape == (50, 12) and arr.block_rows == 8
            assert isinstance(arr._source(), kind), path
            np.testing.assert_array_equal(arr.columns(units), flat[:, units])
            np.testing.assert_array_equal(arr.columns(), flat)
            assert arr.count_nonfinite() == 0
    assert af.is_compressed(tmp_path / "c.npz", "a") and not af.is_compressed(tmp_path / "n.npz", "epoch_1/a")


def test_layer_depth_order_comes_from_the_input(tmp_path):
    acts, labels = make_activations(n_networks=2, checkpoints=(1,), layers={"conv": 4, "fc": 3, "out": 2})
    # .npz: the order the arrays were saved in.
    src = write_source(tmp_path / "npz", acts, labels, formats=("npz",), layers_txt=False)
    assert scan_source(src).layers == ["conv", "fc", "out"]
    # HDF5 created with track_order=True: creation order.
    src = write_source(tmp_path / "h5", acts, labels, formats=("h5",), layers_txt=False)
    assert scan_source(src).layers == ["conv", "fc", "out"]
    # layers.txt wins (and chooses the layers: others are left out).
    (src / "layers.txt").write_text("# shallow to deep\nout\nconv\n")
    scan = scan_source(src)
    assert scan.layers == ["out", "conv"] and scan.explicit_layers
    # A folder of .npy files has no order: layers.txt is asked for.
    src = write_source(tmp_path / "npy", acts, labels, formats=("npy",), layers_txt=False)
    with pytest.raises(ValueError, match=rf"depth order of the layers .* unknown .*{re.escape(str(src))}/layers.txt"):
        scan_source(src)
    # HDF5 without tracked order stores names alphabetically: layers.txt is asked for.
    src = tmp_path / "h5_untracked"
    src.mkdir()
    np.save(src / "labels.npy", labels)
    for net, ckpts in acts.items():
        with h5py.File(src / f"{net}.h5", "w") as f:
            for name, a in ckpts[1].items():
                f.create_dataset(f"epoch_1/{name}", data=a)
    with pytest.raises(ValueError, match=r"stores its datasets alphabetically .*layers.txt"):
        scan_source(src)


@pytest.mark.parametrize("names, ids", [
    (["seed0", "seed1", "seed10", "seed2"], {"seed0": 0, "seed1": 1, "seed2": 2, "seed10": 10}),
    (["subj03", "subj01"], {"subj01": 1, "subj03": 3}),
    (["4", "7"], {"4": 4, "7": 7}),
    (["net2", "net10", "other"], {"net2": 0, "net10": 1, "other": 2}),
    (["b", "a"], {"a": 0, "b": 1}),
    (["run1", "run01"], {"run01": 0, "run1": 1}),  # equal numbers: numbered in natural order instead
])
def test_network_ids(names, ids):
    assert network_ids(names) == ids


@pytest.mark.parametrize("name, parsed", [("epoch_003", ("epoch", 3)), ("step500", ("step", 500)), ("7", ("", 7)),
                                          (12, ("", 12)), ("ckpt-2", ("ckpt", 2)), ("final", None), (-1, None),
                                          ("epoch_1.5", None)])
def test_checkpoint_names(name, parsed):
    assert parse_checkpoint(name) == parsed


def test_changed_file_is_refused_until_registered_again(tmp_path, capsys):
    acts, labels = make_activations(n_networks=2, checkpoints=(1,), layers={"h1": 6})
    src = write_source(tmp_path / "src", acts, labels)
    root = tmp_path / "root"
    assert register(capsys, src, root)[0] == 0
    code, out, _ = register(capsys, src, root)
    assert code == 0 and out.startswith("unchanged ")
    path = src / "seed1" / "epoch_1" / "h1.npy"
    np.save(path, np.load(path)[:, ::-1].copy())  # same size, new content and time
    before = tree_digest(root)
    code, _, err = analyse(capsys, root)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{path} changed since it was registered" in err and "--overwrite" in err
    assert tree_digest(root) == before
    code, _, err = register(capsys, src, root)
    assert code == 2 and "already registers other activations" in err and "--overwrite" in err
    code, out, _ = register(capsys, src, root, "--overwrite")
    assert code == 0 and out.startswith("replaced ")
    assert analyse(capsys, root)[0] == 0


def test_status_lists_a_registered_condition_and_its_stale_analyses(tmp_path, capsys):
    from nnsrm import status as status_mod

    acts, labels = make_activations(n_networks=2, checkpoints=(0, 1), layers={"h1": 6, "h2": 5})
    src = write_source(tmp_path / "src", acts, labels)
    root = tmp_path / "root"
    assert register(capsys, src, root)[0] == 0
    assert (DATA, MODEL) in status_mod.find_conditions(root)
    lay = ResultsLayout(root, DATA, MODEL)
    before = status_mod.condition_status(lay)
    assert sorted(j.name for j in before.jobs) == ["epoch 000 layer h1", "epoch 000 layer h2",
                                                   "epoch 001 layer h1", "epoch 001 layer h2"]
    assert {j.stage for j in before.jobs} == {3} and {j.state for j in before.jobs} == {"missing"}
    assert analyse(capsys, root)[0] == 0
    assert {j.state for j in status_mod.condition_status(lay).jobs} == {"complete"}
    path = src / "seed1" / "epoch_1" / "h1.npy"
    np.save(path, np.load(path)[:, ::-1].copy())
    assert register(capsys, src, root, "--overwrite")[0] == 0
    states = {j.name: j.state for j in status_mod.condition_status(lay).jobs}
    assert states == {"epoch 000 layer h1": "complete", "epoch 000 layer h2": "complete",
                      "epoch 001 layer h1": "stale", "epoch 001 layer h2": "stale"}
    code, out, err = run(capsys, status_mod.main, "status.py", "--root", root)
    assert code == 0, err
    assert "registered: 2 networks" in out and "stale" in out


def test_unknown_condition_points_to_register(tmp_path, capsys):
    code, _, err = analyse(capsys, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--data 'mine': not a configured condition" in err and "nnsrm register --source DIR" in err
    assert not any(tmp_path.iterdir())


def test_registering_over_trained_networks_is_refused(tmp_path, capsys):
    layout = ResultsLayout(tmp_path, DATA, MODEL)
    layout.condition_dir.mkdir(parents=True)
    layout.config_path.write_text("{}")  # what train_cifar.py leaves in a condition it trained
    acts, labels = make_activations(n_networks=2, checkpoints=(1,), layers={"h1": 4})
    src = write_source(tmp_path / "src", acts, labels)
    code, _, err = register(capsys, src, tmp_path)
    assert code == 2 and "holds networks trained by train_cifar.py" in err
    assert not layout.manifest_path.exists()


def test_import_is_cheap():
    code = ("import sys, nnsrm; heavy = [m for m in ('numpy', 'pandas', 'keras', 'jax', 'h5py', 'scipy') "
            "if m in sys.modules]; print(heavy); nnsrm.compare; print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True"]


# --------------------------------------------------------------------------- bad input

class _Touch:
    """Unpickling this creates a file: proof that an object array was (or was not) unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _object_array(src, sentinel):
    a = np.empty((N_IMAGES, 4), dtype=object)
    a[:] = _Touch(sentinel)
    np.save(src / "seed1" / "epoch_2" / "h2.npy", a)  # np.save pickles object arrays by default
    return src / "seed1" / "epoch_2" / "h2.npy"


def _set(src, net, name, a):
    path = src / net / "epoch_2" / f"{name}.npy"
    np.save(path, a)
    return path


def _break_counts(src, _):
    return _set(src, "seed1", "h1", np.load(src / "seed1/epoch_2/h1.npy")[:-5])


def _break_missing_layer(src, _):
    (src / "seed2" / "epoch_2" / "h2.npy").unlink()
    return src / "seed0" / "epoch_2" / "h2.npy"  # the message names where the layer is found


def _break_labels(src, labels):
    np.save(src / "labels.npy", labels[:-1])
    return src / "labels.npy"


def _break_nan(src, _):
    a = np.load(src / "seed2/epoch_0/h1.npy")
    a[3, 1] = np.nan
    np.save(src / "seed2/epoch_0/h1.npy", a)
    return src / "seed2/epoch_0/h1.npy"


def _break_inf(src, _):
    a = np.load(src / "seed0/epoch_2/h2.npy")
    a[0, 0] = -np.inf
    return _set(src, "seed0", "h2", a)


def _break_strings(src, _):
    return _set(src, "seed1", "h2", np.full((N_IMAGES, 6), "x"))


def _break_1d(src, _):
    return _set(src, "seed1", "h2", np.zeros(N_IMAGES, np.float32))


def _break_one_network(src, _):
    import shutil

    shutil.rmtree(src / "seed1")
    shutil.rmtree(src / "seed2")
    return src


def _break_h5_strings(src, _):
    import shutil

    shutil.rmtree(src / "seed1")
    with h5py.File(src / "seed1.h5", "w", track_order=True) as f:
        for c in CHECKPOINTS:
            f.create_dataset(f"epoch_{c}/h1", data=np.zeros((N_IMAGES, 12), np.float32))
            f.create_dataset(f"epoch_{c}/h2", data=np.full((N_IMAGES, 6), b"abc"))
    return f"{src / 'seed1.h5'}[epoch_0/h2]"


def _break_h5_objects(src, _):
    import shutil

    shutil.rmtree(src / "seed1")
    with h5py.File(src / "seed1.h5", "w", track_order=True) as f:
        for c in CHECKPOINTS:
            f.create_dataset(f"epoch_{c}/h1", data=np.zeros((N_IMAGES, 12), np.float32))
            ds = f.create_dataset(f"epoch_{c}/h2", (N_IMAGES,), dtype=h5py.vlen_dtype(np.float32))
            ds[0] = np.arange(3, dtype=np.float32)
    return f"{src / 'seed1.h5'}[epoch_0/h2]"


BAD = [
    ("image counts differ", _break_counts,
     r"image counts differ across networks at checkpoint 2, layer 'h1': .*seed1/epoch_2/h1.npy \(55\), .*; every "
     r"network must see the same images"),
    ("layer missing", _break_missing_layer,
     r"layer 'h2' missing in network seed2 at checkpoint 2 \(found in .*seed0/epoch_2/h2.npy\) .*every network needs "
     r"every layer"),
    ("label count", _break_labels, r"has 60 images but .*labels.npy has 59 labels; give one label per image"),
    ("NaN", _break_nan, r"seed2/epoch_0/h1.npy contains 1 NaN or Inf values"),
    ("Inf", _break_inf, r"seed0/epoch_2/h2.npy contains 1 NaN or Inf values"),
    ("strings", _break_strings, r"seed1/epoch_2/h2.npy holds <U1 values, not numbers: .*np.asarray\(a, dtype=np.float32\)"),
    ("object array", None, r"seed1/epoch_2/h2.npy holds object values, not numbers"),
    ("1-D array", _break_1d, r"seed1/epoch_2/h2.npy has shape \(60,\), but activations must be images × units"),
    ("one network", _break_one_network, r"SRM needs at least 2 networks, got 1 \(seed0\) in .*add the activations of "
                                        r"more networks"),
    ("HDF5 strings", _break_h5_strings, r"seed1.h5\[epoch_0/h2\] is a string or variable-length dataset"),
    ("HDF5 objects", _break_h5_objects, r"seed1.h5\[epoch_0/h2\] is a string or variable-length dataset"),
]


@pytest.mark.parametrize("case, breaker, match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_naming_the_file_and_touches_nothing(tmp_path, capsys, case, breaker, match):
    acts, labels = make_activations()
    src = write_source(tmp_path / "src", acts, labels)
    sentinel = tmp_path / "unpickled"
    named = _object_array(src, sentinel) if breaker is None else breaker(src, labels)
    root = tmp_path / "root"
    (root / "other" / "thing").mkdir(parents=True)
    (root / "other" / "thing" / "manifest.json").write_text("{}")  # something already under the root
    before = tree_digest(root)

    code, out, err = register(capsys, src, root)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("nnsrm register: error: ") and re.search(match, err), err
    assert str(named) in err
    assert tree_digest(root) == before
    with pytest.raises(ValueError, match=match):  # the Python route: a ValueError (UsageError)
        nnsrm.register(src, root, DATA, MODEL)
    assert tree_digest(root) == before
    assert not sentinel.exists()
    if breaker is None:  # the refused file really would have run code if unpickled (shown in a child process)
        unsafe = f"import numpy; numpy.load({str(named)!r}, allow_pickle=True)"
        subprocess.run([sys.executable, "-c", unsafe], check=True, capture_output=True)
        assert sentinel.exists()


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_object_member_is_refused_unread(tmp_path, compressed):
    sentinel = tmp_path / "unpickled"
    a = np.empty((4, 2), dtype=object)
    a[:] = _Touch(sentinel)
    (np.savez_compressed if compressed else np.savez)(tmp_path / "net.npz", **{"epoch_1/h1": a})
    with pytest.raises(ValueError, match=r"net.npz\[epoch_1/h1\] holds object values, not numbers"):
        af.open_array(tmp_path / "net.npz", "epoch_1/h1")
    assert not sentinel.exists()


def _memory_counts(acts, labels):
    acts["seed1"][2]["h1"] = acts["seed1"][2]["h1"][:-5]
    return r"image counts differ across networks at checkpoint 2, layer 'h1': .*activations\['seed1'\]\[2\]\['h1'\] \(55\)"


def _memory_missing(acts, labels):
    del acts["seed2"][2]["h2"]
    return r"layer 'h2' missing in network seed2 at checkpoint 2"


def _memory_labels(acts, labels):
    return r"activations\['seed0'\]\[0\]\['h1'\] has 60 images but labels has 59 labels"


def _memory_nan(acts, labels):
    acts["seed0"][0]["h2"][5, 2] = np.nan
    return r"activations\['seed0'\]\[0\]\['h2'\] contains 1 NaN or Inf values"


def _memory_inf(acts, labels):
    acts["seed2"][2]["h1"][1, 1] = np.inf
    return r"activations\['seed2'\]\[2\]\['h1'\] contains 1 NaN or Inf values"


def _memory_objects(acts, labels):
    acts["seed1"][2]["h2"] = acts["seed1"][2]["h2"].astype(object)
    return r"activations\['seed1'\]\[2\]\['h2'\] holds object values, not numbers"


def _memory_strings(acts, labels):
    acts["seed1"][2]["h2"] = np.full((N_IMAGES, 6), "x")
    return r"holds <U1 values, not numbers"


def _memory_1d(acts, labels):
    acts["seed1"][0]["h1"] = np.zeros(N_IMAGES)
    return r"activations\['seed1'\]\[0\]\['h1'\] has shape \(60,\), but activations must be images × units"


def _memory_one(acts, labels):
    del acts["seed1"], acts["seed2"]
    return r"SRM needs at least 2 networks, got 1 \(seed0\) in activations"


@pytest.mark.parametrize("breaker", [_memory_counts, _memory_missing, _memory_labels, _memory_nan, _memory_inf,
                                     _memory_objects, _memory_strings, _memory_1d, _memory_one])
def test_compare_bad_input_is_a_value_error_naming_the_array(breaker):
    acts, labels = make_activations()
    match = breaker(acts, labels)
    if breaker is _memory_labels:
        labels = labels[:-1]
    with pytest.raises(ValueError, match=match) as info:
        nnsrm.compare(acts, labels)
    assert isinstance(info.value, UsageError) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- commands around it

def test_command_line_exit_status_and_figures_before_the_analyses(tmp_path, capsys):
    """``python -m nnsrm register``: exit status 2 on bad input; make_figures names stage 3 for a registered one."""
    from nnsrm.commands import figures as figures_cmd

    acts, labels = make_activations(n_networks=2, checkpoints=(1,), layers={"h1": 4})
    src = write_source(tmp_path / "src", acts, labels)
    np.save(src / "labels.npy", labels[:-2])
    proc = subprocess.run([sys.executable, "-m", "nnsrm", "register", "--source", str(src), "--data", DATA,
                           "--model", MODEL, "--root", str(tmp_path / "root")], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("nnsrm register: error: ") and "has 58 labels" in proc.stderr
    assert not (tmp_path / "root").exists()
    np.save(src / "labels.npy", labels)
    assert register(capsys, src, tmp_path / "root")[0] == 0
    code, _, err = run(capsys, figures_cmd.main, "make_figures.py", "--root", tmp_path / "root", "--data", DATA,
                       "--model", MODEL)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"no analyses for {DATA}×{MODEL} under {tmp_path / 'root'}: run run_analyses.py --data {DATA}" in err


@pytest.mark.slow
def test_make_figures_on_a_registered_condition(tmp_path, capsys):
    """Every figure of the paper for registered activations (the notebooks in Jupyter kernels: slow)."""
    from conftest import run_script
    from nnsrm import figures as nf

    acts, labels = make_activations(n_networks=5, layers={"h1": 12, "h2": 6, "logits": 3})
    src = write_source(tmp_path / "src", acts, labels)
    root = tmp_path / "root"
    assert register(capsys, src, root)[0] == 0
    assert analyse(capsys, root)[0] == 0
    proc = run_script("make_figures.py", "--root", root, "--data", DATA, "--model", MODEL, "--gif-seconds", "1",
                      "--gif-fps", "3")
    assert proc.returncode == 0, proc.stderr
    assert "(epoch 2, layer h2)" in proc.stdout
    for path in nf.expected_files(root / "figures", DATA, MODEL):
        assert path.is_file() and path.stat().st_size > 0, path.name


# --------------------------------------------------------------------------- every other refusal, in one line

def _small_source(src):
    acts, labels = make_activations(n_networks=2, checkpoints=(1, 2), layers={"h1": 4, "h2": 3}, n_images=12)
    return write_source(src, acts, labels)


def _mv(src, a, b):
    (src / a).rename(src / b)


SOURCE_ERRORS = [
    ("no labels", lambda s: (s / "labels.npy").unlink(), r"no labels in .*: save one integer label per image"),
    ("two label files", lambda s: (s / "labels.txt").write_text("0\n"), r"holds several label files \(labels.npy, "
                                                                         r"labels.txt\); keep one, or choose with --labels"),
    ("text labels", lambda s: ((s / "labels.npy").unlink(), (s / "labels.txt").write_text("0\ncat\n")),
     r"labels.txt holds 'cat', not an integer"),
    ("float labels", lambda s: np.save(s / "labels.npy", np.full(12, 0.5)), r"labels.npy holds non-integer labels"),
    ("object labels", lambda s: np.save(s / "labels.npy", np.array([None] * 12)),
     r"labels.npy holds Python objects"),
    ("prefixes", lambda s: _mv(s, "seed1/epoch_2", "seed1/step_2"),
     r"checkpoints in .* are named with different prefixes \(epoch, step\)"),
    ("checkpoint missing", lambda s: _mv(s, "seed1/epoch_2", "seed1/notes"),
     r"checkpoint 2 missing in network seed1 \(network seed0 has it\)"),
    ("two folders, one checkpoint", lambda s: (s / "seed1/epoch_002").mkdir() or np.save(
        s / "seed1/epoch_002/h1.npy", np.zeros((12, 4))), r"seed1 has two folders for checkpoint 2"),
    ("layers and checkpoints", lambda s: np.save(s / "seed0/h1.npy", np.zeros((12, 4))),
     r"seed0 holds both layer files \(h1.npy\) and checkpoint folders"),
    ("empty layers.txt", lambda s: (s / "layers.txt").write_text("# nothing\n"), r"layers.txt lists no layers"),
    ("layer listed twice", lambda s: (s / "layers.txt").write_text("h1\nh2\nh1\n"), r"lists layer 'h1' twice"),
    ("layer nowhere", lambda s: (s / "layers.txt").write_text("h1\nfc\n"),
     r"layer 'fc' is listed as a layer to analyse but no network"),
    ("bad layer name", lambda s: (s / "layers.txt").write_text("h1\n.h2\n"), r"layer name '.h2' .* cannot name a folder"),
    ("unit counts", lambda s: np.save(s / "seed1/epoch_1/h2.npy", np.zeros((12, 5), np.float32)),
     r"unit counts differ across networks at checkpoint 1, layer 'h2': .*seed1/epoch_1/h2.npy \(5\)"),
    ("units over checkpoints", lambda s: [np.save(s / f"seed{i}/epoch_2/h2.npy", np.zeros((12, 5), np.float32))
                                          for i in (0, 1)],
     r"layer 'h2' has 5 units at checkpoint 2 .* but 3 at checkpoint 1; record the same layer at every checkpoint"),
    ("not an npy", lambda s: (s / "seed1/epoch_1/h2.npy").write_bytes(b"garbage"),
     r"seed1/epoch_1/h2.npy is not a readable .npy array"),
    ("no networks", lambda s: [_mv(s, f"seed{i}", f"_seed{i}") for i in (0, 1)], r"no activations found in"),
]


@pytest.mark.parametrize("case, breaker, match", SOURCE_ERRORS, ids=[c[0] for c in SOURCE_ERRORS])
def test_source_refusals(tmp_path, case, breaker, match):
    src = _small_source(tmp_path / "src")
    breaker(src)
    with pytest.raises(ValueError, match=match) as info:
        nnsrm.register(src, tmp_path / "root", DATA, MODEL)
    assert isinstance(info.value, UsageError) and "\n" not in str(info.value)
    assert not (tmp_path / "root").exists()


def _npz_source(src, keys):
    src.mkdir()
    np.save(src / "labels.npy", np.arange(12) % 3)
    for net in ("a", "b"):
        np.savez(src / f"{net}.npz", **{k: np.zeros((12, 2), np.float32) for k in keys})
    return src


@pytest.mark.parametrize("keys, match", [
    (["epoch_1/x/h1"], r"a.npz\[epoch_1/x/h1\]: keys must be '<layer>' or '<checkpoint>/<layer>'"),
    (["h1", "epoch_1/h2"], r"a.npz mixes keys with and without a checkpoint"),
    (["final/h1"], r"a.npz: 'final' is not a checkpoint name"),
    (["epoch_1/h1", "epoch_01/h1"], r"a.npz holds layer 'h1' of checkpoint 1 twice"),
])
def test_npz_key_refusals(tmp_path, keys, match):
    with pytest.raises(ValueError, match=match):
        scan_source(_npz_source(tmp_path / "src", keys))


def test_register_argument_refusals(tmp_path, capsys):
    src = _small_source(tmp_path / "src")
    with pytest.raises(ValueError, match=r"--data 'my data' cannot name a folder"):
        nnsrm.register(src, tmp_path / "root", "my data", MODEL)
    with pytest.raises(ValueError, match=r"--source .*nowhere is not a folder"):
        nnsrm.register(tmp_path / "nowhere", tmp_path / "root", DATA, MODEL)
    with pytest.raises(ValueError, match=r"--labels .*none.npy is not a file"):
        nnsrm.register(src, tmp_path / "root", DATA, MODEL, labels=tmp_path / "none.npy")
    with pytest.raises(SystemExit) as exc:
        analyse_cmd.main(["--root", str(tmp_path), "--data", "a/b"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "argument --data: 'a/b' cannot name a folder" in err
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("activations, kwargs, match", [
    ([np.zeros((12, 2))] * 2, {}, r"activations must map network -> layer -> array"),
    ({"a": np.zeros((12, 2)), "b": np.zeros((12, 2))}, {}, r"activations\['a'\] must map layer -> array"),
    ({"a": {1: {"h": np.zeros((12, 2))}, "h": np.zeros((12, 2))}, "b": {}}, {},
     r"activations\['a'\] mixes checkpoints \(mappings\) and layers \(arrays\)"),
    ({"a": {"final": {"h": np.zeros((12, 2))}}, "b": {}}, {}, r"checkpoint 'final' is not a non-negative integer"),
    ({1: {"h": np.zeros((12, 2))}, "1": {"h": np.zeros((12, 2))}}, {}, r"networks whose names are equal as text"),
    ({"a": {"h": np.zeros((12, 2))}, "b": {"h": np.zeros((12, 2))}}, {"final_checkpoint": 5},
     r"final_checkpoint 5 is not a checkpoint of the activations \(\[0\]\)"),
    ({"a": {"h": np.zeros((12, 2))}, "b": {"h": np.zeros((12, 2))}}, {"engine": "torch"}, r"engine must be one of"),
    ({"a": {"h": [[1, 2], [3]]}, "b": {"h": np.zeros((12, 2))}}, {},
     r"activations\['a'\]\['h'\] cannot be read as an array"),
    ({"a": {}, "b": {}}, {}, r"activations holds no layers"),
])
def test_compare_structure_refusals(activations, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nnsrm.compare(activations, np.arange(12) % 3, **kwargs)
