"""Loading data never runs code from it: CIFAR pickles, MNIST .npz, checksums, and a scan of the code."""

import ast
import copyreg
import hashlib
import io
import json
import logging
import os
import pickle
import re
import shlex
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from cifar_fixture import (FIXTURE_ENV, NUMPY_MODULES, cifar_members, make_cifar_archive, python2_pickle,
                           write_cifar_tar)
from conftest import ROOT, run_script

from nnsrm import data_loader
from nnsrm import archive_checksums
from nnsrm.safe_pickle import CIFAR_HOME, UnsafeArchiveError, load_cifar_batch

REFUSED = r"is not in the official CIFAR python format and may be unsafe"


class _Gadget:
    """Pickles as ``call(*args)``: what a hostile batch would hide among its data."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _touch(marker: Path) -> _Gadget:
    return _Gadget(os.system, f"touch {shlex.quote(str(marker))}")


def _hostile_batch(marker: Path) -> dict:
    batch = cifar_members()["data_batch_1"]
    batch[b"batch_label"] = _touch(marker)  # among genuine-looking data
    return batch


def _hostile_archive(folder: Path, marker: Path) -> Path:
    """A cifar-10-python.tar.gz whose data_batch_1, once unpickled by plain pickle, touches ``marker``."""
    members = cifar_members()
    blobs = {m: python2_pickle(d) for m, d in members.items()}
    blobs["data_batch_1"] = python2_pickle(_hostile_batch(marker))
    return write_cifar_tar(folder / "cifar-10-python.tar.gz", "cifar-10-batches-py", blobs)


def test_the_gadget_is_real_under_plain_pickle(tmp_path):
    """Control: the payload used below does run when the batch is unpickled without restriction."""
    marker = tmp_path / "MARKER"
    blob = tmp_path / "batch.pickle"
    blob.write_bytes(python2_pickle(_hostile_batch(marker)))
    # The unrestricted load runs in a child process, as the old loader did in stage 1.
    code = "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read(), encoding='bytes')"
    run_script("-c", code, blob, check=True)
    assert marker.exists()


def test_stage1_refuses_a_hostile_archive_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(FIXTURE_ENV[0], raising=False)  # the refusal alone, without the checksum warning
    marker = tmp_path / "MARKER"
    archive = _hostile_archive(tmp_path / "data", marker)
    root = tmp_path / "results"
    proc = run_script("train_cifar.py", "--data", "cifar10", "--data-dir", archive.parent, "--root", root,
                      "--subjects", "1", "--epochs", "1", "--no-progress", timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("train_cifar.py: error: ")
    assert f"{archive} (member cifar-10-batches-py/data_batch_1)" in lines[0]
    assert re.search(REFUSED, lines[0]) and "posix.system" in lines[0] and CIFAR_HOME in lines[0]
    assert not marker.exists()
    assert not root.exists() or not any(root.rglob("*"))  # nothing written


def test_api_raises_the_dedicated_error(tmp_path):
    marker = tmp_path / "MARKER"
    archive = _hostile_archive(tmp_path, marker)
    with pytest.raises(UnsafeArchiveError, match=REFUSED) as info:
        data_loader.load_dataset("cifar10", data_dir=tmp_path)
    assert isinstance(info.value, ValueError)  # the command lines' one-line error, exit status 2
    assert str(archive) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def _stack_global_pickle(marker):  # protocol 4 names globals with STACK_GLOBAL
    return pickle.dumps({b"data": _touch(marker)}, protocol=4)


def _extension_pickle(marker):  # EXT opcodes name a global through copyreg's registry
    copyreg.add_extension("posix", "system", 0xBEEF)
    try:
        return pickle.dumps({b"data": _touch(marker)}, protocol=4)
    finally:
        copyreg.remove_extension("posix", "system", 0xBEEF)


def _exec_pickle(marker):
    return pickle.dumps([_Gadget(exec, f"open({str(marker)!r}, 'w').close()")], protocol=2)


def _numpy_scalar_pickle(marker):  # harmless, but not in the official batches: labels as NumPy ints
    return python2_pickle({b"labels": list(np.arange(3))})


def _python3_bytes_pickle(marker):  # Python 3 writes bytes in protocol 2 as calls of _codecs.encode
    return pickle.dumps({b"batch_label": b"x"}, protocol=2)


def _persistent_id_pickle(marker):
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=4)
    pickler.persistent_id = lambda obj: "outside" if obj == "x" else None
    pickler.dump({b"data": "x"})
    return buffer.getvalue()


@pytest.mark.parametrize("make, named", [(_stack_global_pickle, "posix.system"),
                                         (_extension_pickle, "posix.system"),
                                         (_exec_pickle, ".exec"),  # protocol 2 writes __builtin__
                                         (_numpy_scalar_pickle, "multiarray.scalar"),
                                         (_python3_bytes_pickle, "_codecs.encode"),
                                         (_persistent_id_pickle, "persistent id")])
def test_every_other_global_is_refused(tmp_path, make, named):
    marker = tmp_path / "MARKER"
    blob = make(marker)
    if make is _extension_pickle:  # the reader's process knows the extension code too
        copyreg.add_extension("posix", "system", 0xBEEF)
    try:
        with pytest.raises(UnsafeArchiveError, match=rf"{REFUSED}: it names \S*{re.escape(named)}"):
            load_cifar_batch(io.BytesIO(blob), "member x")
    finally:
        if make is _extension_pickle:
            copyreg.remove_extension("posix", "system", 0xBEEF)
    assert not marker.exists()


def test_a_crafted_name_cannot_break_the_one_line_message():
    # STACK_GLOBAL takes the module and name from strings, which may hold newlines.
    module, name = b"os\nfake\n", b"system"
    blob = (pickle.PROTO + b"\x04" + pickle.SHORT_BINUNICODE + bytes([len(module)]) + module
            + pickle.SHORT_BINUNICODE + bytes([len(name)]) + name + pickle.STACK_GLOBAL + pickle.STOP)
    with pytest.raises(UnsafeArchiveError) as info:
        load_cifar_batch(io.BytesIO(blob), "member x")
    assert "\n" not in str(info.value) and r"os\nfake\n.system" in str(info.value)


@pytest.mark.parametrize("numpy_module", NUMPY_MODULES)
@pytest.mark.parametrize("member", ["data_batch_1", "meta"])
def test_official_format_members_load_under_both_numpy_names(numpy_module, member):
    if member == "meta":  # batches.meta: names and sizes only
        content = {b"num_cases_per_batch": 10000, b"label_names": [b"airplane", b"automobile"],
                   b"num_vis": 3072}
    else:
        content = cifar_members()[member]
    loaded = load_cifar_batch(io.BytesIO(python2_pickle(content, numpy_module)), member)
    assert loaded.keys() == content.keys()
    for key, value in content.items():
        if isinstance(value, np.ndarray):
            assert loaded[key].dtype == np.uint8
            np.testing.assert_array_equal(loaded[key], value)
        else:
            assert loaded[key] == value and type(loaded[key]) is type(value)


@pytest.mark.parametrize("name, label_key, train_members, test_member",
                         [("cifar10", b"labels", [f"data_batch_{i}" for i in range(1, 6)], "test_batch"),
                          ("cifar100", b"fine_labels", ["train"], "test")])
def test_fixture_archives_load_identically(tmp_path, monkeypatch, name, label_key, train_members, test_member):
    monkeypatch.setenv(*FIXTURE_ENV)
    make_cifar_archive(tmp_path, name)
    raw = data_loader._read_cifar_archive(tmp_path / data_loader.ARCHIVES[name], name)
    members = cifar_members(name)
    images = [members[m][b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) for m in train_members]
    np.testing.assert_array_equal(raw[0][0], np.concatenate(images))
    np.testing.assert_array_equal(raw[0][1], np.concatenate([members[m][label_key] for m in train_members]))
    np.testing.assert_array_equal(raw[1][1], members[test_member][label_key])
    assert raw[0][0].dtype == np.uint8 and raw[0][1].dtype == np.int64


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_checksum_warning_unless_declared(tmp_path, monkeypatch, caplog):
    path = make_cifar_archive(tmp_path, "cifar10")
    monkeypatch.delenv(FIXTURE_ENV[0], raising=False)
    with caplog.at_level(logging.WARNING):
        data_loader.load_dataset("cifar10", data_dir=tmp_path)
    (record,) = _warnings(caplog)
    message = record.getMessage()
    assert str(path) in message and "is not the official cifar-10-python.tar.gz" in message
    assert archive_checksums.file_md5(path) in message and "c58f30108f718f92721af3b95e74349a" in message
    assert CIFAR_HOME in message and FIXTURE_ENV[0] in message and "\n" not in message

    caplog.clear()
    monkeypatch.setenv(*FIXTURE_ENV)
    with caplog.at_level(logging.WARNING):
        data_loader.load_dataset("cifar10", data_dir=tmp_path)
    assert _warnings(caplog) == []


def test_matching_checksum_is_silent(tmp_path, monkeypatch, caplog):
    path = make_cifar_archive(tmp_path, "cifar100")
    monkeypatch.delenv(FIXTURE_ENV[0], raising=False)
    monkeypatch.setitem(archive_checksums.OFFICIAL_MD5, path.name, hashlib.md5(path.read_bytes()).hexdigest())
    with caplog.at_level(logging.WARNING):
        assert archive_checksums.warn_if_not_official(path) is False
        data_loader.load_dataset("cifar100", data_dir=tmp_path)
    assert _warnings(caplog) == []


def test_declaring_fixtures_does_not_relax_the_unpickler(tmp_path, monkeypatch):
    monkeypatch.setenv(*FIXTURE_ENV)
    marker = tmp_path / "MARKER"
    _hostile_archive(tmp_path, marker)
    with pytest.raises(UnsafeArchiveError, match=REFUSED):
        data_loader.load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


def test_safe_but_malformed_batch_is_not_official(tmp_path, monkeypatch):
    monkeypatch.setenv(*FIXTURE_ENV)
    members = cifar_members()
    members["test_batch"][b"data"] = members["test_batch"][b"data"].astype(np.float64)
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                    {m: python2_pickle(d) for m, d in members.items()})
    with pytest.raises(ValueError, match=r"test_batch\) is not in the official CIFAR python format "
                                         r"\(expected a dict with b'data', a uint8 array"):
        data_loader.load_dataset("cifar10", data_dir=tmp_path)


def test_mnist_object_array_is_refused_unrun(tmp_path):
    marker = tmp_path / "MARKER"
    hostile = np.empty(1, dtype=object)
    hostile[0] = _touch(marker)
    np.savez(tmp_path / "mnist.npz", x_train=hostile, y_train=np.arange(1), x_test=hostile, y_test=np.arange(1))
    with pytest.raises(ValueError, match=r"mnist\.npz is not a readable mnist\.npz of plain arrays .*allow_pickle"):
        data_loader.load_dataset("mnist", data_dir=tmp_path)
    assert not marker.exists()


def _fake_keras(monkeypatch, serve: Path, calls: list):
    def get_file(fname, origin, file_hash):
        calls.append((fname, origin, file_hash))
        return str(serve)

    keras = types.ModuleType("keras")
    keras.utils = types.SimpleNamespace(get_file=get_file)
    monkeypatch.setitem(sys.modules, "keras", keras)


def test_downloads_are_read_by_the_restricted_reader(tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    hostile = _hostile_archive(tmp_path / "cache", marker)
    calls = []
    _fake_keras(monkeypatch, hostile, calls)
    with pytest.raises(UnsafeArchiveError, match=REFUSED):
        data_loader.load_dataset("cifar10")
    assert calls == [("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                      "c58f30108f718f92721af3b95e74349a")]
    assert not marker.exists()

    monkeypatch.setenv(*FIXTURE_ENV)
    shutil.copy(make_cifar_archive(tmp_path / "fixture", "cifar10"), hostile)
    ds = data_loader.load_dataset("cifar10")
    np.testing.assert_array_equal(ds.y_test, cifar_members()["test_batch"][b"labels"])


# --------------------------------------------------------------------------- scanning the code

RESTRICTED_UNPICKLER_MODULE = "nnsrm/safe_pickle.py"
# Calls that unpickle (or run code) whatever the arguments.
FORBIDDEN_CALLS = {
    "pickle.load", "pickle.loads", "_pickle.load", "_pickle.loads", "cPickle.load", "cPickle.loads",
    "cloudpickle.load", "cloudpickle.loads", "dill.load", "dill.loads", "joblib.load", "marshal.load",
    "marshal.loads", "shelve.open", "jsonpickle.decode", "pandas.read_pickle",
    "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all",
}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _aliases(tree) -> dict:
    """Local name -> dotted name it was imported as (``np`` -> ``numpy``, ``loads`` -> ``pickle.loads``)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node, aliases) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(aliases.get(node.id, node.id))
    elif isinstance(node, ast.Call):
        parts.append(_dotted(node.func, aliases) + "()")
    else:
        return ""
    return ".".join(reversed(parts))


def _keyword(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unpickling_calls(source: str, restricted_module: bool = False) -> list:
    """``(line, what)`` for each place in ``source`` that may unpickle or run code from data."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not restricted_module:
            for base in node.bases:
                if _dotted(base, aliases).endswith("Unpickler"):
                    found.append((node.lineno, f"subclass of {_dotted(base, aliases)}"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        short = name.rsplit(".", 1)[-1]
        allow_pickle, safe_mode = _keyword(node, "allow_pickle"), _keyword(node, "safe_mode")
        if name in FORBIDDEN_CALLS or short == "read_pickle":
            found.append((node.lineno, name))
        elif short.endswith("Unpickler") and not restricted_module:
            found.append((node.lineno, name))
        elif allow_pickle is not None and not _is_constant(allow_pickle, False):
            found.append((node.lineno, f"{name}(allow_pickle={ast.unparse(allow_pickle)})"))
        elif safe_mode is not None and not _is_constant(safe_mode, True):
            found.append((node.lineno, f"{name}(safe_mode={ast.unparse(safe_mode)})"))
        elif name == "torch.load" and not _is_constant(_keyword(node, "weights_only"), True):
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif name in ("yaml.load", "yaml.load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader, aliases).rsplit(".", 1)[-1] not in SAFE_YAML_LOADERS:
                found.append((node.lineno, f"{name} without a safe Loader"))
    return found


def _notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    # IPython magics and shell lines are not Python; keep the line numbers.
    return "\n".join(re.sub(r"(?m)^(\s*)[%!]", r"\1#", c) for c in code)


def _repository_files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__pycache__")) and d != "results"
                       and not d.endswith(".egg-info") and not (Path(dirpath, d) / "pyvenv.cfg").exists()]
        for f in filenames:
            if f.endswith((".py", ".ipynb")):
                yield Path(dirpath, f)


def test_nothing_in_the_repository_unpickles_data():
    files = list(_repository_files())
    assert any(p.name == "data_loader.py" for p in files) and any(p.suffix == ".ipynb" for p in files)
    problems = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        source = _notebook_code(path) if path.suffix == ".ipynb" else path.read_text()
        for line, what in unpickling_calls(source, restricted_module=relative == RESTRICTED_UNPICKLER_MODULE):
            problems.append(f"{relative}:{line}: {what}")
    assert problems == [], "places that may unpickle or run code from data:\n" + "\n".join(problems)


def test_numpy_load_refuses_pickles_by_default():
    """``np.load(path)`` without ``allow_pickle`` is safe only because NumPy's default is False."""
    import inspect

    assert inspect.signature(np.load).parameters["allow_pickle"].default is False


@pytest.mark.parametrize("snippet", [
    "import pickle\npickle.load(f)",
    "import pickle as pk\npk.loads(b)",
    "from pickle import loads\nloads(b)",
    "import pickle\npickle.Unpickler(f).load()",
    "import pickle\nclass U(pickle.Unpickler):\n    pass",
    "import cloudpickle\ncloudpickle.loads(b)",
    "import dill\ndill.load(f)",
    "import marshal\nmarshal.loads(b)",
    "import shelve\nshelve.open(p)",
    "import joblib\njoblib.load(p)",
    "import pandas as pd\npd.read_pickle(p)",
    "import numpy as np\nnp.load(p, allow_pickle=True)",
    "import numpy\nnumpy.load(p, allow_pickle=flag)",
    "import torch\ntorch.load(p)",
    "import torch\ntorch.load(p, weights_only=False)",
    "import yaml\nyaml.load(s)",
    "import yaml\nyaml.load(s, Loader=yaml.Loader)",
    "import yaml\nyaml.unsafe_load(s)",
    "import keras\nkeras.saving.load_model(p, safe_mode=False)",
])
def test_the_scan_finds_unsafe_loads(snippet):
    assert len(unpickling_calls(snippet)) == 1


@pytest.mark.parametrize("snippet", [
    "import numpy as np\nnp.load(p)",
    "import numpy as np\nnp.load(p, allow_pickle=False)",
    "import torch\ntorch.load(p, weights_only=True)",
    "import yaml\nyaml.safe_load(s)",
    "import yaml\nyaml.load(s, Loader=yaml.SafeLoader)",
    "import json\njson.load(f)",
    "import pickle\npickle.dumps(x)",
    "import pandas as pd\npd.read_csv(p)",
])
def test_the_scan_passes_safe_loads(snippet):
    assert unpickling_calls(snippet) == []
