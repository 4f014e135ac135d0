"""Record a PyTorch model's hidden activity into the bring-your-own format (docs/bring-your-own.md).

    import torch
    from nnsrm.torch_extract import extract, load_weights

    loader = torch.utils.data.DataLoader(test_set, batch_size=256, shuffle=False)
    for seed in range(10):
        for epoch in (0, 1, 5, 20):
            model = load_weights(make_model(), f"ckpt/seed{seed}_epoch{epoch}.pt")
            extract(model, loader, ["layer1", "layer2.1.conv2", "fc"], "acts", f"seed{seed}", epoch)
    # then: nnsrm register --source acts --data cifar10 --model my_resnet --root results

Forward hooks on the named modules (``model.named_modules()``) record each
module's output on every batch of the loader, flattened to units, into
``OUT/<network>/epoch_<checkpoint>/<module>.npy`` (float32, images × units;
written to a preallocated memory-mapped file batch by batch, so memory stays
at one batch when the loader has a length, and renamed into place when
whole). The first call also writes ``OUT/layers.txt`` (the modules in the
order given: list them shallow to deep) and ``OUT/labels.npy`` (the loader's
targets); later calls check that they agree, so every network sees the same
images in the same order.

PyTorch is not a dependency of nnsrm: this module imports it when called.
Checkpoints are loaded with ``torch.load(..., weights_only=True)`` only
(:func:`load_weights`), which never runs code from the file.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nnsrm import atomic
from nnsrm.activation_checks import check_layer_name
from nnsrm.errors import UsageError

log = logging.getLogger(__name__)


def _torch():
    try:
        import torch
    except ImportError:
        raise UsageError("nnsrm.torch_extract needs PyTorch: pip install torch") from None
    return torch


def load_weights(model, path, map_location="cpu"):
    """Load a saved ``state_dict`` into ``model`` safely (``torch.load(..., weights_only=True)``); return ``model``.

    A file saved as ``{"state_dict": ...}`` or ``{"model": ...}`` (a common
    training-loop format) is unwrapped. Anything else a weights-only load
    refuses (pickled objects) raises.
    """
    torch = _torch()
    state = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    model.load_state_dict(state)
    return model


def _default_forward(model, batch):
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (list, tuple)):
        return model(batch[0])
    return model(batch)


def _default_targets(batch):
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[1]
    if isinstance(batch, dict):
        return batch.get("labels", batch.get("label"))
    return None


def _as_numpy(output, name: str, torch) -> np.ndarray:
    """A module's output as float32 (batch, units); the first element of a tuple output (e.g. an RNN's)."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if hasattr(output, "last_hidden_state"):  # Hugging Face model outputs
        output = output.last_hidden_state
    if not isinstance(output, torch.Tensor):
        raise UsageError(f"module {name!r} returns {type(output).__name__}, not a tensor; hook a module that "
                         f"returns a tensor")
    return output.detach().flatten(1).to("cpu", torch.float32).numpy()


def extract(model, loader, layers: Sequence[str], out, network: str, checkpoint: int | None = None, *,
            checkpoint_name: str = "epoch", device=None, forward: Callable | None = None,
            targets: Callable | None = None, overwrite: bool = False) -> dict:
    """Record the outputs of ``layers`` (module names) of ``model`` over ``loader`` into ``out``.

    Parameters
    ----------
    model : torch.nn.Module
        The network, with the weights of this checkpoint loaded.
    loader : iterable of batches
        E.g. a ``torch.utils.data.DataLoader`` with ``shuffle=False``: every
        network must see the same images in the same order.
    layers : sequence of str
        Names of modules (``dict(model.named_modules())``), shallow to deep.
    out : path
        The source folder (created if needed).
    network : str
        The network's name, e.g. ``"seed3"`` (ids come from the names, see the docs).
    checkpoint : int, optional
        Epoch or step (a non-negative integer); None writes the layers
        directly under ``OUT/<network>/`` (a single checkpoint).
    checkpoint_name : str, default "epoch"
        Prefix of the checkpoint folders (``epoch_3``, ``step_500``).
    device : torch.device or str, optional
        Where the batches go (default: the model's first parameter's device).
    forward : callable, optional
        ``forward(model, batch)`` runs the model on a batch. Default:
        ``model(batch[0])`` for a tuple, ``model(**batch)`` for a dict,
        else ``model(batch)``.
    targets : callable, optional
        ``targets(batch)`` gives the batch's labels. Default: ``batch[1]``
        for a tuple, ``batch["labels"]`` for a dict.
    overwrite : bool
        Replace this network × checkpoint's files if they exist.

    Returns
    -------
    dict
        ``{layer: path of the .npy file}``.
    """
    torch = _torch()
    out = Path(out)
    layers = [check_layer_name(str(name), "torch_extract layers") for name in layers]
    if not layers or len(set(layers)) != len(layers):
        raise UsageError(f"layers must name each module once, got {layers}")
    if checkpoint is not None and (not isinstance(checkpoint, (int, np.integer)) or checkpoint < 0):
        raise UsageError(f"checkpoint must be a non-negative integer (an epoch or step), got {checkpoint!r}")
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, torch.utils.data.RandomSampler):
        raise UsageError("the loader shuffles (shuffle=True): every network must see the same images in the same "
                         "order; use shuffle=False")
    modules = dict(model.named_modules())
    unknown = [name for name in layers if name not in modules]
    if unknown:
        some = [n for n in modules if n][:8]
        raise UsageError(f"no module named {unknown[0]!r} in the model; names look like {some} "
                         f"(dict(model.named_modules()))")
    folder = out / network if checkpoint is None else out / network / f"{checkpoint_name}_{int(checkpoint)}"
    paths = {name: folder / f"{name}.npy" for name in layers}
    if not overwrite and all(p.exists() for p in paths.values()):
        log.info("%s: complete, skipped", folder)
        return paths
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
    forward = forward or _default_forward
    targets = targets or _default_targets
    try:
        n_images = len(loader.dataset)
    except (AttributeError, TypeError):
        n_images = None

    captured = {}
    hooks = [modules[name].register_forward_hook(
        lambda _m, _inp, output, name=name: captured.__setitem__(name, _as_numpy(output, name, torch)))
        for name in layers]
    was_training = model.training
    model.eval()
    try:
        # Every file is written under a temporary name and renamed into place only when all are whole.
        with contextlib.ExitStack() as stack, torch.no_grad():
            writers, blocks, label_blocks, start = {}, {name: [] for name in layers}, [], 0
            for batch in loader:
                batch = _to(batch, device, torch)
                captured.clear()
                forward(model, batch)
                y = targets(batch)
                if y is not None:
                    label_blocks.append(np.asarray(y.cpu() if hasattr(y, "cpu") else y).reshape(-1))
                n = 0
                for name in layers:
                    if name not in captured:
                        raise UsageError(f"module {name!r} did not run in the model's forward pass; hook a module "
                                         f"the forward pass uses")
                    a = captured[name]  # (batch, units)
                    n = len(a)
                    if n_images is None:  # unknown length: keep the blocks
                        blocks[name].append(a)
                        continue
                    if name not in writers:
                        tmp = stack.enter_context(atomic.atomic_path(paths[name], suffix=".npy"))
                        writers[name] = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                                                  shape=(n_images, a.shape[1]))
                    writers[name][start:start + n] = a
                start += n
            if n_images is not None and start != n_images:
                raise UsageError(f"the loader gave {start} images but its dataset has {n_images}; pass a loader "
                                 f"that covers every image once (drop_last=False)")
            labels = np.concatenate(label_blocks).astype(np.int64) if label_blocks else None
            _check_or_write_metadata(out, layers, labels)
            for name in layers:
                if n_images is None:
                    atomic.save_npy(paths[name], np.concatenate(blocks[name]))
                else:
                    writers.pop(name).flush()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    log.info("%s: %d images, layers %s", folder, start, ", ".join(layers))
    return paths


def _check_or_write_metadata(out: Path, layers: list, labels) -> None:
    """Write ``layers.txt`` and ``labels.npy`` on the first extraction; check that later ones agree."""
    path = out / "layers.txt"
    if path.exists():
        if path.read_text().split() != list(layers):
            raise UsageError(f"{path} lists other layers ({path.read_text().split()}) than this extraction's "
                             f"({layers}); pass the same layers, shallow to deep, for every network")
    else:
        atomic.write_text(path, "\n".join(layers) + "\n")
    if labels is None:
        return
    path = out / "labels.npy"
    if path.exists():
        if not np.array_equal(np.load(path, allow_pickle=False), labels):
            raise UsageError(f"{path} holds other labels than this extraction's images: every network must see the "
                             f"same images in the same order (shuffle=False)")
    else:
        atomic.save_npy(path, labels)


def _to(batch, device, torch):
    """Move the tensors of a batch (a tensor, tuple, list or dict of them) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device, torch) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device, torch) for k, v in batch.items()}
    return batch
