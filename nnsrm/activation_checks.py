"""Checks shared by every route that brings its own activations: registered files and in-memory arrays.

A *catalogue* maps network name → checkpoint → layer → :class:`ArrayInfo`
(the stored shape and dtype of one images × units array and how messages
name it). :func:`check_catalogue` checks it the same way whether the arrays
are files (``nnsrm register``) or in memory (:func:`nnsrm.compare`), so both
routes accept and refuse the same inputs, each with a one-line
:class:`~nnsrm.errors.UsageError` naming the array and the fix.

Network ids (the ``subject`` of the summary table) and checkpoint values come
from names here too, the same way for both routes (:func:`network_ids`,
:func:`parse_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping, Sequence

import numpy as np

from nnsrm.activation_files import ActivationArray, check_dtype, check_shape
from nnsrm.errors import UsageError

#: ``<prefix><value>``: letters, an optional ``_`` or ``-``, a non-negative integer (``epoch_003``, ``step500``, ``7``).
CHECKPOINT_NAME = re.compile(r"^([A-Za-z]*)[_-]?(\d+)$")
#: Layer names become folder names of the stage-3 outputs: letters, digits, ``_ . + -``, not starting with a dot.
LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_TRAILING_INT = re.compile(r"^(.*?)(\d+)$")


@dataclasses.dataclass(frozen=True)
class ArrayInfo:
    """One array's stored shape and dtype, and its name in messages."""

    shape: tuple
    dtype: np.dtype
    name: str


def parse_checkpoint(name) -> tuple[str, int] | None:
    """``(prefix, value)`` of a checkpoint name, e.g. ``"epoch_003"`` → ``("epoch", 3)``; None if it is not one."""
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        return ("", int(name)) if name >= 0 else None
    m = CHECKPOINT_NAME.match(str(name))
    return (m.group(1), int(m.group(2))) if m else None


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def network_ids(names: Sequence[str]) -> dict[str, int]:
    """The id (``subject`` in the summary) of each network name; the same rule for files and arrays.

    Names that are integers (``"3"``) are their own ids; names that share a
    prefix and end in distinct integers (``seed0``, ``seed1``, ``subj07``)
    take those integers; otherwise the networks are numbered 0, 1, … in the
    natural sort order of their names (``net2`` before ``net10``).

    Returns
    -------
    dict
        Name → id, ordered by id.
    """
    names = [str(n) for n in names]
    matches = [_TRAILING_INT.match(n) for n in names]
    if all(matches):
        prefixes = {m.group(1) for m in matches}
        numbers = [int(m.group(2)) for m in matches]
        if len(prefixes) == 1 and len(set(numbers)) == len(numbers):
            return dict(sorted(zip(names, numbers), key=lambda t: t[1]))
    return {name: i for i, name in enumerate(sorted(names, key=lambda n: (_natural_key(n), n)))}


def check_layer_name(layer: str, where: str) -> str:
    """``layer`` if it can name a folder of the stage-3 outputs; a :class:`UsageError` otherwise."""
    if not LAYER_NAME.match(layer):
        raise UsageError(f"layer name {layer!r} ({where}) cannot name a folder: use letters, digits and _ . + - "
                         f"(not starting with a dot); rename the array")
    return layer


def check_catalogue(catalogue: Mapping[str, Mapping[int, Mapping[str, ArrayInfo]]], layers: Sequence[str],
                    n_labels: int, labels_name: str, where: str, explicit_layers: bool = False) -> None:
    """Check that a catalogue of activations can be analysed; raise a one-line :class:`UsageError` if not.

    Parameters
    ----------
    catalogue : mapping
        Network name → checkpoint → layer → :class:`ArrayInfo`, each array
        images × units (trailing dimensions flattened).
    layers : sequence of str
        The layers to analyse, in depth order.
    n_labels : int
        Images the labels describe.
    labels_name : str
        The labels in messages.
    where : str
        The whole input in messages (a folder, or ``"activations"``).
    explicit_layers : bool
        The user listed ``layers`` (so others are ignored); if False, every
        network must have exactly these layers.

    Checks, in order: at least 2 networks; every network has the same
    checkpoints and, at each, every layer; every array is numeric with at
    least 2 dimensions; within a checkpoint × layer every network has the
    same number of images, equal to the number of labels, and of units; a
    layer keeps its unit count over checkpoints.
    """
    names = list(catalogue)
    if len(names) < 2:
        raise UsageError(f"SRM needs at least 2 networks, got {len(names)} ({', '.join(names) or 'none'}) in "
                         f"{where}; add the activations of more networks (e.g. seeds) of the same architecture")
    first = names[0]
    checkpoints = sorted(catalogue[first])
    for net in names[1:]:
        mine = sorted(catalogue[net])
        if mine != checkpoints:
            gone = sorted(set(checkpoints) ^ set(mine))[0]
            has, lacks = (first, net) if gone in catalogue[first] else (net, first)
            raise UsageError(f"checkpoint {gone} missing in network {lacks} (network {has} has it) in {where}; "
                             f"every network needs the same checkpoints: add it, or remove it from {has}")
    for net in names:
        for ckpt in checkpoints:
            present = catalogue[net][ckpt]
            for layer in layers:
                if layer not in present:
                    other = next((catalogue[n][ckpt][layer].name for n in names if layer in catalogue[n][ckpt]), None)
                    if other is None:
                        raise UsageError(f"layer {layer!r} is listed as a layer to analyse but no network in {where} "
                                         f"has it at checkpoint {ckpt}; drop it from the layer list, or add it")
                    raise UsageError(f"layer {layer!r} missing in network {net} at checkpoint {ckpt} (found in "
                                     f"{other}) in {where}; every network needs every layer: add it"
                                     + ("" if not explicit_layers else ", or drop it from the layer list"))
            if not explicit_layers:
                extra = [name for name in present if name not in layers]
                if extra:
                    raise UsageError(f"layer {extra[0]!r} of network {net} ({present[extra[0]].name}) is missing "
                                     f"in network {first} in {where}; every network needs every layer: add it "
                                     f"to {first}, or list the layers to analyse (layers.txt)")
    units_of_layer = {}
    for ckpt in checkpoints:
        for layer in layers:
            infos = [catalogue[net][ckpt][layer] for net in names]
            for info in infos:
                check_dtype(info.dtype, info.name)
                check_shape(info.shape, info.name)
            sizes = [check_shape(info.shape, info.name) for info in infos]  # (n_images, n_units) each
            counts = [n for n, _ in sizes]
            if len(set(counts)) > 1:
                listed = ", ".join(f"{info.name} ({n})" for info, n in zip(infos, counts))
                raise UsageError(f"image counts differ across networks at checkpoint {ckpt}, layer {layer!r}: "
                                 f"{listed}; every network must see the same images, in the same order")
            if counts[0] != n_labels:
                raise UsageError(f"{infos[0].name} has {counts[0]} images but {labels_name} has {n_labels} labels; "
                                 f"give one label per image, in the order of the activations' rows")
            units = [u for _, u in sizes]
            if len(set(units)) > 1:
                listed = ", ".join(f"{info.name} ({u})" for info, u in zip(infos, units))
                raise UsageError(f"unit counts differ across networks at checkpoint {ckpt}, layer {layer!r}: "
                                 f"{listed}; the inter-network RSMs need the same units in every network "
                                 f"(record the same layer of the same architecture)")
            before = units_of_layer.setdefault(layer, (units[0], ckpt))
            if before[0] != units[0]:
                raise UsageError(f"layer {layer!r} has {units[0]} units at checkpoint {ckpt} ({infos[0].name}) but "
                                 f"{before[0]} at checkpoint {before[1]}; record the same layer at every checkpoint")


def check_finite_catalogue(catalogue: Mapping[str, Mapping[int, Mapping[str, ArrayInfo]]], layers: Sequence[str],
                           open_array: Callable[[str, int, str], ActivationArray]) -> None:
    """Raise a one-line :class:`UsageError` naming the first array that holds NaN or Inf (read by blocks)."""
    for net, ckpts in catalogue.items():
        for ckpt, arrays in ckpts.items():
            for layer in layers:
                with open_array(net, ckpt, layer) as arr:
                    bad = arr.count_nonfinite()
                if bad:
                    raise UsageError(f"{arr.name} contains {bad} NaN or Inf values (a diverged network?); "
                                     f"leave that network or checkpoint out, or fix the values")
