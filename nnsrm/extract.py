"""Stage 2: record the analysed layers' activity of one subject at one logged epoch.

One job per subject × logged epoch: load the weights, run the test images
through a Keras sub-model in batches (memory bounded by one batch of the full
layers plus the kept units of every image), keep at most ``max_units`` units of
each layer (a seeded random subset, the same at every epoch of a subject, its
indices saved beside the data), and save each layer as float32
``<layer>.npy``, images × units, flattened. Writes are atomic and a completion
marker lists every file with its checksum.

A condition's folder is also a source in the bring-your-own format
(docs/bring-your-own.md): ``nnsrm register`` accepts it as it is.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np

from nnsrm import atomic, state
from nnsrm.errors import UsageError
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


def check_trained(cfg, layout: ResultsLayout, subjects=None) -> None:
    """Raise a one-line :class:`~nnsrm.errors.UsageError` unless stage 1 is complete and current for ``subjects``.

    Current: each subject's record (:func:`nnsrm.state.stage1_record`) agrees
    with ``cfg``, the configuration in ``config.json``. Reads only markers.
    """
    for s in (cfg.subjects if subjects is None else subjects):
        subj_dir = layout.subject_dir(s)
        st, detail = state.job_state(subj_dir, state.stage1_record(cfg))
        if st == "complete":
            continue
        fix = f"run train_cifar.py --data {cfg.data} --model {cfg.model} --root {layout.root}"
        if st == "stale":
            raise UsageError(f"subject {s} ({subj_dir}) {detail.replace('this run asks for', 'config.json says')}; "
                             f"{fix} --overwrite (with the flags config.json records) first")
        missing = [str(p) for p in [*(layout.weights_path(s, e) for e in cfg.logged_epochs),
                                    layout.history_path(s)] if not p.exists()]
        what = f"{missing[0]} missing" if missing else f"{subj_dir} has no valid {atomic.MARKER_NAME}"
        raise UsageError(f"{what}: subject {s} is not fully trained; {fix} first")


def extract_activations(cfg, root: str | Path, subject: int, epoch: int, data_dir: str | None = None,
                        overwrite: bool = False) -> dict:
    """Save the analysed layers' activity of ``subject`` at ``epoch``.

    Skipped if complete from the same stage-1 outputs and parameters
    (:mod:`nnsrm.state`); runs under the folder's lock.

    Returns
    -------
    dict
        ``{"subject", "epoch", "skipped", "units": {layer: n_units_saved}}``.

    Raises
    ------
    nnsrm.errors.UsageError
        If the subject is not completely trained (stage 1 not run).
    nnsrm.errors.StaleOutputError
        If the folder is complete but was made otherwise (and not ``overwrite``).
    """
    layout = ResultsLayout(root, cfg.data, cfg.model)
    if not atomic.is_complete(layout.subject_dir(subject)) or not layout.weights_path(subject, epoch).exists():
        check_trained(cfg, layout, [subject])  # names what is missing
        raise UsageError(f"{layout.weights_path(subject, epoch)} missing: subject {subject} does not log epoch "
                         f"{epoch}; run train_cifar.py --data {cfg.data} --model {cfg.model} first")
    return state.run_job(layout.activations_dir(subject, epoch), state.stage2_record(cfg, layout, subject),
                         f"activations subj{subject:02d} epoch {epoch:03d}", overwrite,
                         lambda: _extract(cfg, root, subject, epoch, data_dir),
                         skipped={"subject": subject, "epoch": epoch, "skipped": True})


def _extract(cfg, root, subject, epoch, data_dir) -> dict:
    """The body of :func:`extract_activations`, run while holding the folder's lock."""
    from nnsrm.models import layer_outputs_model
    from nnsrm.jax_cache import enable_compilation_cache
    from nnsrm.training import cached_dataset
    from qmvpa.preproc import subsample_units

    layout = ResultsLayout(root, cfg.data, cfg.model)
    out_dir = layout.activations_dir(subject, epoch)
    record = state.stage2_record(cfg, layout, subject)
    atomic.clear_marker(out_dir)
    atomic.remove_stale_temporaries(out_dir)
    enable_compilation_cache(root)
    data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir), cfg.subtract_mean)
    model, names = build_inference_model(cfg, data.input_shape, data.n_classes, subject)
    model.load_weights(layout.weights_path(subject, epoch))
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
                        n_images=len(data.x_test), **state.marker_fields(record))
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


def condition_metadata(cfg, data_dir: str | None = None) -> tuple[dict, np.ndarray]:
    """What ``layers.json`` and ``test_labels.npy`` of a condition hold (computed, not written).

    Returns
    -------
    layers : dict
        ``{"layers": [names in depth order], "units": {name: units saved (after the cap)},
        "units_before_cap": {...}, "output_layer": the analysed layer that is the network's output
        (:func:`output_layer_name`; null if none is analysed), "made_with": {"max_units",
        "analysed_layers"}}``.
    labels : ndarray of int64, shape (n_test_images,)
    """
    from nnsrm.models import layer_outputs_model
    from nnsrm.training import cached_dataset

    data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir), cfg.subtract_mean)
    model, names = build_inference_model(cfg, data.input_shape, data.n_classes, 0)
    sizes = [int(np.prod(o.shape[1:])) for o in layer_outputs_model(model, names).outputs]
    layers = {
        "layers": names,
        "units": {n: min(s, cfg.max_units) for n, s in zip(names, sizes)},
        "units_before_cap": dict(zip(names, sizes)),
        "output_layer": output_layer_name(model, names),
        state.RECORD_KEY: {"max_units": cfg.max_units, "analysed_layers": list(cfg.analysed_layers)},
    }
    return layers, data.y_test.astype(np.int64)


def write_condition_metadata(cfg, root: str | Path, data_dir: str | None = None, metadata=None) -> list:
    """Write ``layers.json`` and ``test_labels.npy`` for a condition (each only if it changed); return the layer names.

    ``layers.json`` holds the analysed layers in depth order, the number of
    units saved for each (after the unit cap) and the extraction parameters.
    ``metadata`` is :func:`condition_metadata`'s result, if already computed.
    """
    layout = ResultsLayout(root, cfg.data, cfg.model)
    layers, labels = metadata if metadata is not None else condition_metadata(cfg, data_dir)
    state.write_json_if_changed(layout.layers_path, layers)
    state.write_npy_if_changed(layout.test_labels_path, labels)
    return layers["layers"]
