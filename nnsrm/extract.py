"""Stage 2: record the analysed layers' activity of one subject at one logged epoch.

One job per subject × logged epoch: load the weights, run the test images
through a Keras sub-model in batches (memory bounded by one batch of the full
layers plus the kept units of every image), keep at most ``max_units`` units of
each layer (a seeded random subset, the same at every epoch of a subject, its
indices saved beside the data), and save each layer as float32
``<layer>.npy``, images × units, flattened. Writes are atomic and a completion
marker lists every file with its checksum.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np

from nnsrm import atomic
from nnsrm.paths import ResultsLayout

log = logging.getLogger(__name__)


def unit_seed(cfg, subject: int, layer: str) -> int:
    """Seed of a (subject, layer)'s unit subset; independent of the epoch so units stay the same."""
    return (cfg.seed * 1_000_003 + subject * 10_007 + zlib.crc32(layer.encode())) % 2**32


def build_inference_model(cfg, input_shape, n_classes, subject: int):
    """The subject's network (untrained) and the names of its analysed layers, in depth order."""
    from nnsrm.models import build_model, select_layers

    model = build_model(cfg.model, input_shape, n_classes, cfg.subject_seed(subject),
                        augment=cfg.augment, resnet_variant=cfg.resnet_variant)
    return model, select_layers(model, cfg.analysed_layers)


def layer_activations(sub_model, images: np.ndarray, keep: list, batch_size: int) -> list:
    """Run ``images`` (n_images, h, w, c) through ``sub_model`` in batches.

    Returns one float32 array per output, (n_images, len(keep[j])): the
    flattened output restricted to the unit indices ``keep[j]``.
    """
    n = len(images)
    out = [np.empty((n, len(k)), dtype=np.float32) for k in keep]
    for start in range(0, n, batch_size):
        batch = sub_model.predict_on_batch(images[start:start + batch_size])
        batch = batch if isinstance(batch, (list, tuple)) else [batch]
        for j, (acts, k) in enumerate(zip(batch, keep)):
            acts = np.asarray(acts).reshape(len(acts), -1)  # (batch, units)
            out[j][start:start + len(acts)] = acts[:, k]
    return out


def extract_activations(cfg, root: str | Path, subject: int, epoch: int, data_dir: str | None = None,
                        overwrite: bool = False) -> dict:
    """Save the analysed layers' activity of ``subject`` at ``epoch``.

    Returns
    -------
    dict
        ``{"subject", "epoch", "skipped", "units": {layer: n_units_saved}}``.

    Raises
    ------
    FileNotFoundError
        If the weights of that subject and epoch do not exist (stage 1 not run).
    """
    from nnsrm.models import layer_outputs_model
    from nnsrm.jax_cache import enable_compilation_cache
    from nnsrm.training import cached_dataset
    from qmvpa.preproc import subsample_units

    layout = ResultsLayout(root, cfg.data, cfg.model)
    out_dir = layout.activations_dir(subject, epoch)
    if not overwrite and atomic.is_complete(out_dir):
        return {"subject": subject, "epoch": epoch, "skipped": True}
    weights = layout.weights_path(subject, epoch)
    if not weights.exists() or not atomic.is_complete(layout.subject_dir(subject)):
        raise FileNotFoundError(f"{weights} missing or subject {subject} not fully trained; "
                                f"run train_cifar.py --data {cfg.data} --model {cfg.model} first")
    atomic.clear_marker(out_dir)
    atomic.remove_stale_temporaries(out_dir)
    enable_compilation_cache(root)
    data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir), cfg.subtract_mean)
    model, names = build_inference_model(cfg, data.input_shape, data.n_classes, subject)
    model.load_weights(weights)
    sub_model = layer_outputs_model(model, names)
    sizes = [int(np.prod(o.shape[1:])) for o in sub_model.outputs]
    keep = [subsample_units(n, cfg.max_units, unit_seed(cfg, subject, name))
            for n, name in zip(sizes, names)]
    acts = layer_activations(sub_model, data.x_test, keep, cfg.extract_batch_size)
    files = []
    for name, a, k in zip(names, acts, keep):
        if not np.isfinite(a).all():
            log.warning("subject %d epoch %d layer %s has NaN/Inf activations (diverged network?)",
                        subject, epoch, name)
        atomic.save_npy(layout.activation_path(subject, epoch, name), a)
        atomic.save_npy(layout.units_kept_path(subject, epoch, name), k.astype(np.int64))
        files += [layout.activation_path(subject, epoch, name),
                  layout.units_kept_path(subject, epoch, name)]
    atomic.write_marker(out_dir, files, subject=subject, epoch=epoch, layers=names,
                        n_images=len(data.x_test))
    return {"subject": subject, "epoch": epoch, "skipped": False,
            "units": {n: len(k) for n, k in zip(names, keep)}}


def output_layer_name(model, names) -> str | None:
    """The analysed layer that is the network's output (its last layer with weights), or None if not analysed.

    The conv nets' and ResNet-18's output is ``logits`` (softmax follows as a
    weightless layer), the original MNIST MLP's ``softmax`` (a Dense layer with
    the softmax fused): the last weighted layer finds either.
    """
    from nnsrm.models import all_layers

    weighted = [layer.name for layer in all_layers(model) if layer.weights]
    return weighted[-1] if weighted and weighted[-1] in names else None


def write_condition_metadata(cfg, root: str | Path, data_dir: str | None = None) -> list:
    """Write ``layers.json`` and ``test_labels.npy`` for a condition; return the layer names.

    ``layers.json`` holds the analysed layers in depth order, the number of
    units saved for each (after the unit cap), and which of them is the
    network's output layer (``output_layer``, null if none is analysed).
    """
    from nnsrm.models import layer_outputs_model
    from nnsrm.training import cached_dataset

    layout = ResultsLayout(root, cfg.data, cfg.model)
    data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir), cfg.subtract_mean)
    model, names = build_inference_model(cfg, data.input_shape, data.n_classes, 0)
    sizes = [int(np.prod(o.shape[1:])) for o in layer_outputs_model(model, names).outputs]
    atomic.write_json(layout.layers_path, {
        "layers": names,
        "units": {n: min(s, cfg.max_units) for n, s in zip(names, sizes)},
        "units_before_cap": dict(zip(names, sizes)),
        "output_layer": output_layer_name(model, names),
    })
    atomic.save_npy(layout.test_labels_path, data.y_test.astype(np.int64))
    return names
