"""Bring your own activations: scan a folder in the documented format, register it, and read it back in stage 3.

``nnsrm register`` (:func:`register_source`) checks a folder of activations
made anywhere (docs/bring-your-own.md gives the format) and writes
``ROOT/<data>/<model>/manifest.json``, which lists every (network,
checkpoint, layer) with its file, key, shape, dtype and the file's size and
modification time. Nothing is copied. Stage 3 then reads the condition
through :class:`ManifestSource` exactly as it reads stage 2's folders; a file
whose size or modification time changed since registration is refused with
a one-line error until the folder is registered again.

The source folder::

    SOURCE/labels.npy | labels.txt | test_labels.npy    one integer label per image
    SOURCE/layers.txt | layers.json                     optional: layers in depth order
    SOURCE/<network>/<checkpoint>/<layer>.npy           a folder per network ...
    SOURCE/<network>/<checkpoint>/activations/<layer>.npy   (stage 2's layout)
    SOURCE/<network>/<layer>.npy                        (one checkpoint: 0)
    SOURCE/<network>.npz | .h5 | .hdf5                  ... or one file per network,
                                                        keys <checkpoint>/<layer> or <layer>

Every check runs before anything is written: a bad folder leaves the results
root untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from nnsrm import activation_files as af
from nnsrm.activation_checks import (ArrayInfo, check_catalogue, check_finite_catalogue, check_layer_name,
                                     network_ids, parse_checkpoint)
from nnsrm.activations import ActivationSource
from nnsrm.atomic import write_json
from nnsrm.errors import UsageError
from nnsrm.paths import ResultsLayout

log = logging.getLogger(__name__)

FORMAT = "nnsrm-activations"
VERSION = 1
#: Label files looked for in the source folder, in this order (exactly one may exist; --labels chooses).
LABEL_FILES = ("labels.npy", "labels.txt", "test_labels.npy")
#: Files that give the layers' depth order: one name per line, or stage 2's {"layers": [...]}.
LAYER_FILES = ("layers.txt", "layers.json")
#: Suffix of stage 2's unit-index files beside the activations (not layers).
UNITS_SUFFIX = ".units.npy"
ACTIVATIONS_DIR = "activations"  # stage 2 puts a checkpoint's layers in this subfolder


@dataclasses.dataclass(frozen=True)
class ArrayRef:
    """Where one array lives: a file under the source folder and, in an .npz or HDF5 file, its key."""

    file: Path
    key: str | None = None
    units_file: Path | None = None  # stage 2's <layer>.units.npy, if any

    @property
    def name(self) -> str:
        return af.describe(self.file, self.key)


@dataclasses.dataclass
class Scan:
    """What :func:`scan_source` found in a source folder (nothing checked beyond the names yet)."""

    source: Path
    labels_file: Path
    networks: dict  # name -> checkpoint -> layer -> ArrayRef
    layers: list  # depth order
    layers_from: str  # where the order came from
    explicit_layers: bool
    checkpoint_name: str  # the checkpoints' common prefix ("epoch", "step", "")
    ignored: list  # entries of the folder that are not part of the format


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "_"))


def _layer_files(folder: Path) -> dict:
    """``{layer: ArrayRef}`` of the ``.npy`` files directly in ``folder`` (stage 2's unit indices aside)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and _visible(p) and p.suffix == ".npy" and not p.name.endswith(UNITS_SUFFIX):
            units = p.with_name(p.name[:-4] + UNITS_SUFFIX)
            out[p.name[:-4]] = ArrayRef(p, None, units if units.is_file() else None)
    return out


def _checkpoint_of(name: str, where: Path) -> tuple[str, int]:
    parsed = parse_checkpoint(name)
    if parsed is None:
        raise UsageError(f"{where}: {name!r} is not a checkpoint name; name checkpoints by a non-negative integer, "
                         f"optionally after letters (epoch_3, step500, 7)")
    return parsed


def _scan_network_dir(folder: Path, ignored: list) -> tuple[dict, set] | None:
    """``({checkpoint or None: {layer: ArrayRef}}, prefixes)`` of a network folder; None if it holds no layers.

    Subfolders that are not checkpoints with layer files are added to ``ignored`` (only if it is a network).
    """
    inside = []
    direct = _layer_files(folder)
    ckpts, prefixes = {}, set()
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p)):
        parsed = parse_checkpoint(sub.name)
        if parsed is None:
            inside.append(str(sub))
            continue
        inner = sub / ACTIVATIONS_DIR if (sub / ACTIVATIONS_DIR).is_dir() else sub
        layers = _layer_files(inner)
        if not layers:
            inside.append(str(sub))
            continue
        prefix, value = parsed
        if value in ckpts:
            raise UsageError(f"{folder} has two folders for checkpoint {value} ({ckpts[value][1].name} and "
                             f"{sub.name}); keep one")
        ckpts[value] = (layers, sub)
        prefixes.add(prefix)
    if direct and ckpts:
        raise UsageError(f"{folder} holds both layer files ({next(iter(direct))}.npy) and checkpoint folders "
                         f"({next(iter(ckpts.values()))[1].name}); put every layer file in a checkpoint folder")
    if not direct and not ckpts:
        return None
    ignored.extend(inside)
    if direct:
        return {None: direct}, set()
    return {value: layers for value, (layers, _) in ckpts.items()}, prefixes


def _scan_network_file(path: Path) -> tuple[dict, set, list, bool]:
    """``({checkpoint or None: {layer: ArrayRef}}, prefixes, layers in stored order, order trusted)`` of a file."""
    if path.suffix.lower() in af.NPZ_SUFFIXES:
        keys, tracked = af.npz_keys(path), True  # a zip file keeps its members in the order they were saved
    else:
        datasets = af.hdf5_datasets(path)
        keys, tracked = [k for k, _ in datasets], all(t for _, t in datasets)
    if not keys:
        raise UsageError(f"{path} holds no arrays; save one array per layer (and checkpoint) in it")
    out, prefixes, order = {}, set(), []
    forms = set()
    for key in keys:
        parts = key.split("/")
        if len(parts) == 1:
            ckpt, layer = None, parts[0]
        elif len(parts) == 2:
            prefix, ckpt = _checkpoint_of(parts[0], path)
            prefixes.add(prefix)
            layer = parts[1]
        else:
            raise UsageError(f"{af.describe(path, key)}: keys must be '<layer>' or '<checkpoint>/<layer>' "
                             f"(e.g. 'epoch_3/conv1'); rename the array")
        forms.add(ckpt is None)
        if len(forms) > 1:
            raise UsageError(f"{path} mixes keys with and without a checkpoint ({key!r}); use '<checkpoint>/<layer>' "
                             f"for every array, or '<layer>' alone when there is one checkpoint")
        layers = out.setdefault(ckpt, {})
        if layer in layers:
            raise UsageError(f"{path} holds layer {layer!r} of checkpoint {ckpt} twice; keep one")
        layers[layer] = ArrayRef(path, key)
        if layer not in order:
            order.append(layer)
    return out, prefixes, order, tracked


def _read_layer_order(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} cannot be read ({err}); list the layers shallow to deep, one per line") from None
    if path.suffix == ".json":
        try:
            layers = [str(name) for name in json.loads(text)["layers"]]
        except (ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{path} is not valid: expected {{\"layers\": [names shallow to deep]}} ({err})") from None
    else:
        layers = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not layers:
        raise UsageError(f"{path} lists no layers; list the layers shallow to deep, one per line")
    dup = next((name for name in layers if layers.count(name) > 1), None)
    if dup is not None:
        raise UsageError(f"{path} lists layer {dup!r} twice; list each layer once, shallow to deep")
    return layers


def scan_source(source, labels=None) -> Scan:
    """Find the labels, networks, checkpoints and layers of a source folder (the module docstring's format).

    Raises
    ------
    UsageError
        One line naming the file and the fix, for a folder that does not follow the format.
    """
    source = Path(source)
    if not source.is_dir():
        raise UsageError(f"--source {source} is not a folder; pass the folder that holds the activations "
                         f"(see docs/bring-your-own.md)")
    source = source.resolve()
    if labels is not None:
        labels_file = Path(labels).resolve()
        if not labels_file.is_file():
            raise UsageError(f"--labels {labels} is not a file; pass the image labels (.npy, or .txt with one "
                             f"integer per line)")
    else:
        found = [source / name for name in LABEL_FILES if (source / name).is_file()]
        if not found:
            raise UsageError(f"no labels in {source}: save one integer label per image, in the order of the "
                             f"activations' rows, as {source / LABEL_FILES[0]} (or pass --labels FILE)")
        if len(found) > 1:
            raise UsageError(f"{source} holds several label files ({', '.join(p.name for p in found)}); keep one, "
                             f"or choose with --labels FILE")
        labels_file = found[0]

    networks, prefixes, ignored = {}, {}, []
    stored_orders = {}
    known = set(LABEL_FILES) | set(LAYER_FILES) | {labels_file.name}
    for entry in sorted(source.iterdir()):
        if not _visible(entry) or entry.name in known:
            continue
        if entry.is_dir():
            found = _scan_network_dir(entry, ignored)
            if found is None:
                ignored.append(str(entry))
                continue
            name = entry.name
            ckpts, pre = found
        elif entry.suffix.lower() in af.NPZ_SUFFIXES + af.HDF5_SUFFIXES:
            name = entry.stem
            ckpts, pre, order, tracked = _scan_network_file(entry)
            stored_orders[name] = (order, tracked, entry)
        else:
            ignored.append(str(entry))
            continue
        if name in networks:
            raise UsageError(f"network {name!r} appears twice in {source} (a folder and a file, or two files); "
                             f"keep one")
        networks[name] = ckpts
        prefixes[name] = pre
    if not networks:
        raise UsageError(f"no activations found in {source}: expected one folder or .npz/.h5 file per network "
                         f"(see docs/bring-your-own.md)")

    # One checkpoint axis for the whole source.
    with_ckpt = [n for n, c in networks.items() if None not in c]
    without = [n for n, c in networks.items() if None in c]
    if with_ckpt and without:
        raise UsageError(f"network {without[0]} in {source} has no checkpoints but {with_ckpt[0]} has; give every "
                         f"network the same checkpoint folders (or keys '<checkpoint>/<layer>')")
    networks = {n: {(0 if k is None else k): v for k, v in c.items()} for n, c in networks.items()}
    names = set().union(*prefixes.values())
    if len(names) > 1:
        raise UsageError(f"checkpoints in {source} are named with different prefixes ({', '.join(sorted(names))}); "
                         f"name them all the same way (e.g. epoch_<N>)")
    checkpoint_name = names.pop() if names else ""

    # Networks in id order, so "the first network" is well defined.
    ids = network_ids(list(networks))
    networks = {name: networks[name] for name in ids}

    layer_file = next((source / n for n in LAYER_FILES if (source / n).is_file()), None)
    first = next(iter(networks))
    first_layers = list(networks[first][min(networks[first])])
    if layer_file is not None:
        layers, layers_from, explicit = _read_layer_order(layer_file), str(layer_file), True
    elif first in stored_orders and (stored_orders[first][1] or len(stored_orders[first][0]) == 1):
        order, _, stored_in = stored_orders[first]
        layers, layers_from, explicit = order, f"the order of the arrays in {stored_in}", False
    elif len(first_layers) == 1:
        layers, layers_from, explicit = first_layers, "the only layer", False
    else:
        what = ("stores its datasets alphabetically (not created with track_order=True)"
                if first in stored_orders else "is a folder of .npy files, which has no order")
        raise UsageError(f"the depth order of the layers {sorted(first_layers)} is unknown ({first} {what}); list "
                         f"them shallow to deep, one per line, in {source / 'layers.txt'}")
    for layer in layers:
        check_layer_name(layer, layers_from)
    return Scan(source=source, labels_file=labels_file, networks=networks, layers=layers, layers_from=layers_from,
                explicit_layers=explicit, checkpoint_name=checkpoint_name, ignored=ignored)


# --------------------------------------------------------------------------- registering

def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _relative(path: Path, source: Path) -> str:
    try:
        return str(path.relative_to(source))
    except ValueError:
        return str(path)  # a --labels file outside the source folder


@dataclasses.dataclass
class Registration:
    """What :func:`register_source` did."""

    manifest: Path
    status: str  # "registered", "replaced" or "unchanged"
    n_networks: int
    checkpoints: list
    layers: list
    n_images: int
    networks: dict  # name -> id
    ignored: list
    compressed: int  # .npz members that cannot be memory-mapped

    def lines(self) -> list[str]:
        """A few lines for the console."""
        ckpts = " ".join(map(str, self.checkpoints))
        ids = ", ".join(f"{name}={i}" for name, i in self.networks.items())
        out = [f"{self.status} {self.n_networks} networks × {len(self.checkpoints)} checkpoints ({ckpts}) × "
               f"{len(self.layers)} layers ({', '.join(self.layers)}), {self.n_images} images: {self.manifest}",
               f"  network ids (the summary's subject column): {ids}"]
        if self.compressed:
            out.append(f"  {self.compressed} compressed .npz arrays are decompressed into memory when read (save "
                       f"them with np.savez, not np.savez_compressed, to have them memory-mapped)")
        if self.ignored:
            more = f" and {len(self.ignored) - 3} more" if len(self.ignored) > 3 else ""
            out.append(f"  ignored (not in the format): {', '.join(self.ignored[:3])}{more}")
        return out


def build_manifest(scan: Scan, check_finite: bool = True) -> tuple[dict, int]:
    """Check every array of a scanned source and describe it as a manifest (a JSON-able dict).

    Returns the manifest and the number of compressed ``.npz`` members.

    Raises
    ------
    UsageError
        For labels that are not integers, arrays that are not numeric or not
        images × units, networks that disagree (image counts, units, layers,
        checkpoints), a label count that disagrees, fewer than 2 networks,
        and (``check_finite``) NaN or Inf.
    """
    labels = af.read_labels_file(scan.labels_file)
    catalogue = {}
    for net, ckpts in scan.networks.items():
        catalogue[net] = {}
        for ckpt, layers in sorted(ckpts.items()):
            catalogue[net][ckpt] = {}
            for layer, ref in layers.items():
                if layer not in scan.layers and scan.explicit_layers:
                    continue
                shape, dtype = af.array_info(ref.file, ref.key)
                catalogue[net][ckpt][layer] = ArrayInfo(shape, dtype, ref.name)
    check_catalogue(catalogue, scan.layers, len(labels), str(scan.labels_file), str(scan.source),
                    explicit_layers=scan.explicit_layers)
    if check_finite:
        check_finite_catalogue(catalogue, scan.layers,
                               lambda n, c, l: af.open_array(scan.networks[n][c][l].file, scan.networks[n][c][l].key))
    ids = network_ids(list(scan.networks))
    files, arrays, compressed = {}, [], 0
    for net, ckpts in scan.networks.items():
        for ckpt in sorted(ckpts):
            for layer in scan.layers:
                ref = ckpts[ckpt][layer]
                info = catalogue[net][ckpt][layer]
                rel = _relative(ref.file, scan.source)
                files.setdefault(rel, _fingerprint(ref.file))
                entry = {"network": ids[net], "checkpoint": int(ckpt), "layer": layer, "file": rel, "key": ref.key,
                         "shape": list(info.shape), "dtype": info.dtype.str, "units_file": None}
                if ref.units_file is not None:
                    entry["units_file"] = _relative(ref.units_file, scan.source)
                    files.setdefault(entry["units_file"], _fingerprint(ref.units_file))
                if af.is_compressed(ref.file, ref.key):
                    compressed += 1
                arrays.append(entry)
    labels_rel = _relative(scan.labels_file, scan.source)
    manifest = {
        "format": FORMAT, "version": VERSION, "source": str(scan.source),
        "labels": {"file": labels_rel, "n_images": int(len(labels)), **_fingerprint(scan.labels_file)},
        "layers": list(scan.layers), "layers_from": scan.layers_from,
        "checkpoint_name": scan.checkpoint_name,
        "checkpoints": sorted(int(c) for c in next(iter(scan.networks.values()))),
        "networks": [{"id": i, "name": name} for name, i in ids.items()],
        "arrays": arrays, "files": files,
    }
    return manifest, compressed


def check_destination(layout: ResultsLayout) -> None:
    """Refuse to register into a condition that stages 1-2 made (its config.json or subject folders)."""
    cond = layout.condition_dir
    if layout.config_path.exists() or (cond.is_dir() and any(cond.glob("subj[0-9]*"))):
        raise UsageError(f"{cond} holds networks trained by train_cifar.py; register your activations under another "
                         f"--data/--model (or another --root)")


def register_source(source, root, data: str, model: str, labels=None, overwrite: bool = False,
                    check_finite: bool = True) -> Registration:
    """Check a folder of activations (docs/bring-your-own.md) and register it as ``ROOT/<data>/<model>``.

    Parameters
    ----------
    source : path
        The folder in the documented format.
    root : path
        Results root; the manifest goes to ``ROOT/<data>/<model>/manifest.json``.
    data, model : str
        The condition's name (any names that can name folders).
    labels : path, optional
        The labels file, if it is not ``SOURCE/labels.npy`` (or ``labels.txt``).
    overwrite : bool
        Replace a manifest that registers other activations (stage-3 outputs
        made from the old ones are then stale: ``nnsrm analyse --overwrite``).
    check_finite : bool
        Read every array once to refuse NaN and Inf now (stage 3 checks the
        arrays it analyses anyway).

    Returns
    -------
    Registration

    Raises
    ------
    UsageError
        For any bad input (nothing is written then).
    """
    for flag, name in (("--data", data), ("--model", model)):
        check_condition_name(name, flag)
    layout = ResultsLayout(Path(root), data, model)
    check_destination(layout)
    scan = scan_source(source, labels)
    manifest, compressed = build_manifest(scan, check_finite=check_finite)
    status = "registered"
    if layout.manifest_path.is_file():
        try:
            old = json.loads(layout.manifest_path.read_text())
        except ValueError:
            old = None
        if old == manifest:
            status = "unchanged"
        elif not overwrite:
            raise UsageError(f"{layout.manifest_path} already registers other activations (from "
                             f"{(old or {}).get('source', 'an unreadable manifest')}); pass --overwrite to replace it")
        else:
            status = "replaced"
    if status != "unchanged":
        write_json(layout.manifest_path, manifest)
    log.info("%s %s from %s", status, layout.manifest_path, scan.source)
    return Registration(manifest=layout.manifest_path, status=status, n_networks=len(scan.networks),
                        checkpoints=manifest["checkpoints"], layers=manifest["layers"],
                        n_images=manifest["labels"]["n_images"], networks=network_ids(list(scan.networks)),
                        ignored=scan.ignored, compressed=compressed)


def check_condition_name(name: str, flag: str) -> str:
    """``name`` if it can name a condition folder (letters, digits, ``_ . + -``); a :class:`UsageError` otherwise."""
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$", name or ""):
        raise UsageError(f"{flag} {name!r} cannot name a folder: use letters, digits and _ . + - (not starting "
                         f"with a dot)")
    return name


# --------------------------------------------------------------------------- reading it back

class ManifestSource(ActivationSource):
    """Stage 3's view of a registered condition: the arrays its ``manifest.json`` lists, where they are."""

    kind = "registered"
    more_networks = "register the activations of more networks"

    def __init__(self, layout: ResultsLayout):
        super().__init__(layout)
        path = layout.manifest_path
        try:
            m = json.loads(path.read_text())
            if m.get("format") != FORMAT or m.get("version") != VERSION:
                raise ValueError(f"format {m.get('format')!r} version {m.get('version')!r}")
            self.source = Path(m["source"])
            self.layer_names = [str(x) for x in m["layers"]]
            self.checkpoints = [int(c) for c in m["checkpoints"]]
            self.names = {int(n["id"]): str(n["name"]) for n in m["networks"]}
            self.files = {str(k): dict(v) for k, v in m["files"].items()}
            self.labels_entry = dict(m["labels"])
            self.entries = {(int(a["network"]), int(a["checkpoint"]), str(a["layer"])): a for a in m["arrays"]}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{path} is not a valid manifest ({err}); register the activations again with "
                             f"nnsrm register --overwrite") from None
        self.manifest = m
        self.rerun = (f"fix it and register again: nnsrm register --source {self.source} --data {layout.data} "
                      f"--model {layout.model} --root {layout.root} --overwrite")

    def path(self, rel: str) -> Path:
        return self.source / rel

    def _check_unchanged(self, rel: str, recorded: dict) -> Path:
        path = self.path(rel)
        if not path.is_file():
            raise UsageError(f"{path}, registered in {self.layout.manifest_path}, is gone; {self.rerun}")
        now = _fingerprint(path)
        if now["bytes"] != recorded["bytes"] or now["mtime_ns"] != recorded["mtime_ns"]:
            raise UsageError(f"{path} changed since it was registered in {self.layout.manifest_path} (size or "
                             f"modification time differ); {self.rerun}")
        return path

    @property
    def labels_name(self) -> str:
        return str(self.path(self.labels_entry["file"]))

    def subjects(self) -> list[int]:
        """Network ids, ascending."""
        return sorted(self.names)

    def epochs(self) -> list[int]:
        """Checkpoints, ascending."""
        return sorted(self.checkpoints)

    def layers(self) -> list[str]:
        return list(self.layer_names)

    def labels(self) -> np.ndarray:
        path = self._check_unchanged(self.labels_entry["file"], self.labels_entry)
        return af.read_labels_file(path)

    def found_subjects(self) -> list[str]:
        return [f"{self.names[i]} (id {i})" for i in self.subjects()]

    def _entry(self, subject: int, epoch: int, layer: str) -> dict:
        try:
            return self.entries[(int(subject), int(epoch), layer)]
        except KeyError:
            raise UsageError(f"network {subject}, checkpoint {epoch}, layer {layer!r} is not registered in "
                             f"{self.layout.manifest_path}; it registers networks {self.subjects()}, checkpoints "
                             f"{self.epochs()}, layers {self.layer_names}") from None

    def check_available(self, subject: int, epoch: int) -> None:
        for layer in self.layer_names:
            e = self._entry(subject, epoch, layer)
            self._check_unchanged(e["file"], self.files[e["file"]])

    def array_name(self, subject: int, epoch: int, layer: str) -> str:
        e = self.entries.get((int(subject), int(epoch), layer))
        if e is None:
            return f"network {self.names.get(int(subject), subject)} checkpoint {epoch} layer {layer}"
        return af.describe(self.path(e["file"]), e["key"])

    def has_array(self, subject: int, epoch: int, layer: str) -> bool:
        return (int(subject), int(epoch), layer) in self.entries

    def open(self, subject: int, epoch: int, layer: str) -> af.ActivationArray:
        e = self._entry(subject, epoch, layer)
        path = self._check_unchanged(e["file"], self.files[e["file"]])
        return af.open_array(path, e["key"])

    def units_kept(self, subject: int, epoch: int, layer: str) -> np.ndarray | None:
        rel = self._entry(subject, epoch, layer).get("units_file")
        if not rel:
            return None
        return np.load(self._check_unchanged(rel, self.files[rel]), allow_pickle=False)

    def input_digests(self, epoch: int, subjects: Sequence[int]) -> dict:
        out = {}
        for s in subjects:
            entries = [self.entries.get((int(s), int(epoch), layer)) for layer in self.layer_names]
            record = [(e, self.files.get(e["file"])) if e else None for e in entries]
            name = f"network {self.names.get(int(s), s)} checkpoint {epoch}"
            out[name] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        out["labels"] = hashlib.sha256(json.dumps(self.labels_entry, sort_keys=True).encode()).hexdigest()
        return out

