"""Stage 2: record the analysed layers' activity of one subject at its logged epochs.

One job per subject: its logged epochs go through the test images together.
The network is built once per process and condition (:func:`get_extractor`);
each epoch's weights are loaded into it and handed, as arrays, to one compiled
forward function (with the JAX backend; ``jax.jit`` with the weights as
arguments, so new weights never recompile it). The test images go through in
batches (memory bounded by one batch of the full layers per epoch in flight);
on an accelerator the epochs' weights are stacked and run under ``jax.vmap``,
on a CPU one epoch per call, spread over the cores. Each layer keeps at most
``max_units`` units (a seeded random subset, the same at every epoch of a
subject, its indices saved beside the data) and is saved as float32
``<layer>.npy``, images × units, flattened. Writes are atomic and a completion
marker per subject × epoch lists every file with its checksum and records what
made it (:func:`nnsrm.state.stage2_record`).

A condition's folder is also a source in the bring-your-own format
(docs/bring-your-own.md): ``nnsrm register`` accepts it as it is.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from pathlib import Path

import numpy as np

from nnsrm import atomic, state
from nnsrm.errors import StaleOutputError, UsageError
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
    """Run ``images`` (n_images, h, w, c) through ``sub_model`` with ``predict_on_batch``, in batches.

    The reference extractor (any backend). Returns one float32 array per
    output, (n_images, len(keep[j])): the flattened output restricted to the
    unit indices ``keep[j]``.
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


class Extractor:
    """The analysed layers of one condition's network as a function of (weights, images).

    Built once per process (:func:`get_extractor`). With the JAX backend,
    :meth:`run` calls one jitted forward function whose arguments are the
    weights, a batch of images and the kept unit indices; ``traces`` counts
    how often it was traced (compiled or loaded from the cache).

    Attributes
    ----------
    names : list of str
        Analysed layers in depth order.
    sizes : list of int
        Units of each analysed layer (flattened), before the cap.
    """

    def __init__(self, cfg, input_shape, n_classes, strategy: str | None = None):
        import keras

        from nnsrm.models import layer_outputs_model

        self.model, self.names = build_inference_model(cfg, input_shape, n_classes, 0)
        self.sub_model = layer_outputs_model(self.model, self.names)
        self.sizes = [int(np.prod(o.shape[1:])) for o in self.sub_model.outputs]
        self.batch_size = int(cfg.extract_batch_size)
        self.backend = keras.backend.backend()
        self.traces = 0
        if self.backend == "jax":
            import jax

            from nnsrm.compiled_training import default_strategy

            self.strategy = strategy or default_strategy()
            self._jax = jax
            self.forward = jax.jit(self._forward)
            self.stacked_forward = jax.jit(jax.vmap(self._forward, in_axes=(0, 0, None, 0)))
        else:
            self.strategy = "predict"

    def _forward(self, tv, ntv, images, keep):
        """Kept units of every analysed layer: a list of (n_images, len(keep[j]))."""
        self.traces += 1
        outputs, _ = self.sub_model.stateless_call(tv, ntv, images, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [o.reshape(o.shape[0], -1)[:, k] for o, k in zip(outputs, keep)]

    def load(self, path):
        """The weights in ``path`` as the arrays the forward function takes: (trainable, non-trainable)."""
        import keras

        self.model.load_weights(path)
        values = [[np.array(keras.ops.convert_to_numpy(v.value)) for v in part]
                  for part in (self.sub_model.trainable_variables, self.sub_model.non_trainable_variables)]
        return values[0], values[1]

    def run(self, weight_files, keeps, images) -> list:
        """Activations of several weight files on ``images``.

        Parameters
        ----------
        weight_files : list of path
        keeps : list
            Per file, one int array of unit indices per analysed layer.
        images : array, shape (n_images, h, w, c)

        Returns
        -------
        list
            Per file, one float32 array per layer, (n_images, len(keep)).
        """
        if self.backend != "jax":
            out = []
            for path, keep in zip(weight_files, keeps):
                self.model.load_weights(path)
                out.append(layer_activations(self.sub_model, images, keep, self.batch_size))
            return out
        weights = [self.load(p) for p in weight_files]
        keeps = [[np.asarray(k, dtype=np.int32) for k in keep] for keep in keeps]
        n = len(images)
        n_batches = -(-n // self.batch_size)
        padded = np.zeros((n_batches * self.batch_size,) + images.shape[1:], np.float32)
        padded[:n] = images  # one batch shape: one compiled program
        batches = padded.reshape((n_batches, self.batch_size) + images.shape[1:])
        out = [[np.empty((n, len(k)), np.float32) for k in keep] for keep in keeps]
        if self.strategy == "vmap":
            self._run_stacked(weights, keeps, batches, out, n)
        else:
            self._run_loop(weights, keeps, batches, out, n)
        return out

    def _run_loop(self, weights, keeps, batches, out, n):
        jax = self._jax
        devices = jax.local_devices()
        place = [devices[i % len(devices)] for i in range(len(weights))]
        on_device = {d: [jax.device_put(b, d) for b in batches] for d in set(place)}
        args = [jax.device_put((tv, ntv, keep), d) for (tv, ntv), keep, d in zip(weights, keeps, place)]
        for b in range(len(batches)):
            results = [self.forward(tv, ntv, on_device[d][b], keep) for (tv, ntv, keep), d in zip(args, place)]
            start, stop = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            for i, res in enumerate(results):
                for j, acts in enumerate(res):
                    out[i][j][start:stop] = np.asarray(acts)[:stop - start]

    def _run_stacked(self, weights, keeps, batches, out, n):
        jnp = self._jax.numpy
        # Always stacks of `width` (the last one padded by repeating its last file), so one program serves all.
        width = self.stack_width
        for first in range(0, len(weights), width):
            chunk = list(range(first, min(first + width, len(weights))))
            chunk += [chunk[-1]] * (width - len(chunk))
            tv = [jnp.stack([weights[i][0][v] for i in chunk]) for v in range(len(weights[0][0]))]
            ntv = [jnp.stack([weights[i][1][v] for i in chunk]) for v in range(len(weights[0][1]))]
            keep = [jnp.stack([keeps[i][j] for i in chunk]) for j in range(len(keeps[0]))]
            for b, batch in enumerate(batches):
                res = self.stacked_forward(tv, ntv, jnp.asarray(batch), keep)
                start, stop = b * self.batch_size, min(n, (b + 1) * self.batch_size)
                for pos, i in enumerate(chunk[:min(width, len(weights) - first)]):
                    for j, acts in enumerate(res):
                        out[i][j][start:stop] = np.asarray(acts[pos])[:stop - start]

    #: Weight files per vmapped call (see :func:`choose_stack_width`); set by :func:`get_extractor`.
    stack_width = 1


_EXTRACTORS: dict = {}


def get_extractor(cfg, input_shape, n_classes) -> Extractor:
    """The :class:`Extractor` of a condition, built once per process (a few kept)."""
    import keras

    key = (cfg.model, cfg.augment, cfg.resnet_variant, tuple(cfg.analysed_layers), int(cfg.extract_batch_size),
           tuple(input_shape), int(n_classes), keras.backend.backend())
    if key not in _EXTRACTORS:
        while len(_EXTRACTORS) >= 4:
            _EXTRACTORS.pop(next(iter(_EXTRACTORS)))
        ex = Extractor(cfg, input_shape, n_classes)
        if ex.strategy == "vmap":
            ex.stack_width = choose_stack_width(cfg, ex)
        _EXTRACTORS[key] = ex
    return _EXTRACTORS[key]


def choose_stack_width(cfg, extractor) -> int:
    """How many epochs' weights go through the images at once under ``vmap``.

    All logged epochs of a subject, fewer if four copies of every layer's
    output for a batch, per epoch, would not fit in half of the device's
    memory. Depends on the configuration and the device only, so a rerun
    stacks the same way and gives the same bits.
    """
    from nnsrm.grouping import device_memory_bytes
    from nnsrm.models import all_layers

    units = 0
    for layer in all_layers(extractor.model):
        try:
            units += int(np.prod(layer.output.shape[1:]))
        except (AttributeError, ValueError, TypeError):
            continue
    per_epoch = 4 * 4 * units * extractor.batch_size
    memory = device_memory_bytes()
    width = len(cfg.logged_epochs)
    if memory:
        width = min(width, max(1, int(0.5 * memory // max(per_epoch, 1))))
    return width


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


def _job_name(subject: int, epoch: int) -> str:
    return f"activations subj{subject:02d} epoch {epoch:03d}"


def _to_do(layout, subject, epochs, record, overwrite) -> list:
    """The epochs whose folders need extracting: not complete with ``record`` (all of them with ``overwrite``).

    Raises
    ------
    nnsrm.errors.StaleOutputError
        A folder complete with another record, without ``overwrite``.
    """
    if overwrite:
        return list(epochs)
    todo = []
    for e in epochs:
        directory = layout.activations_dir(subject, e)
        st, diff = state.job_state(directory, record)
        if st == "stale":
            raise StaleOutputError(state.stale_message(_job_name(subject, e), directory, diff))
        if st != "complete":
            todo.append(e)
    return todo


def extract_subject(cfg, root: str | Path, subject: int, data_dir: str | None = None, overwrite: bool = False,
                    epochs=None) -> list:
    """Save the analysed layers' activity of ``subject`` at its logged epochs (one stage-2 job).

    Each subject × epoch folder is skipped if complete from the same stage-1
    outputs and parameters (:mod:`nnsrm.state`), unless ``overwrite``. The
    folders to write are locked (:func:`nnsrm.atomic.job_lock`, in epoch
    order), so a second writer waits, then finds them complete.

    Parameters
    ----------
    cfg : nnsrm.config.ExperimentConfig
    root : path
        Results root.
    subject : int
    data_dir : str, optional
        Folder of the dataset archive.
    overwrite : bool
        Extract complete folders again.
    epochs : sequence of int, optional
        Logged epochs to extract (default: all of ``cfg.logged_epochs``).

    Returns
    -------
    list of dict
        Per epoch, ``{"subject", "epoch", "skipped", "units": {layer: n_units_saved}}``
        (``units`` only for an extracted one).

    Raises
    ------
    nnsrm.errors.UsageError
        If the subject is not completely trained (stage 1 not run), or does not log an epoch asked for.
    nnsrm.errors.StaleOutputError
        If a folder is complete but was made otherwise (and not ``overwrite``).
    """
    layout = ResultsLayout(root, cfg.data, cfg.model)
    epochs = list(cfg.logged_epochs if epochs is None else epochs)
    missing = [e for e in epochs if not layout.weights_path(subject, e).exists()]
    if not atomic.is_complete(layout.subject_dir(subject)) or missing:
        check_trained(cfg, layout, [subject])  # names what is missing
        raise UsageError(f"{layout.weights_path(subject, missing[0])} missing: subject {subject} does not log epoch "
                         f"{missing[0]}; run train_cifar.py --data {cfg.data} --model {cfg.model} first")
    record = state.stage2_record(cfg, layout, subject)
    results = {e: {"subject": subject, "epoch": e, "skipped": True} for e in epochs}
    todo = _to_do(layout, subject, epochs, record, overwrite)
    if not todo:
        log.info("activations subj%02d: complete, skipped (--overwrite redoes it)", subject)
        return [results[e] for e in epochs]
    with contextlib.ExitStack() as locks:
        for e in todo:
            locks.enter_context(atomic.job_lock(layout.activations_dir(subject, e), _job_name(subject, e)))
        # A writer that held a lock may have completed its folder meanwhile.
        todo = _to_do(layout, subject, todo, record, overwrite)
        if todo:
            results.update(_extract(cfg, layout, subject, todo, record, data_dir))
    return [results[e] for e in epochs]


def _extract(cfg, layout, subject, epochs, record, data_dir) -> dict:
    """The body of :func:`extract_subject`, run while holding the folders' locks; ``{epoch: result}``."""
    from nnsrm.jax_cache import enable_compilation_cache
    from nnsrm.training import cached_dataset
    from qmvpa.preproc import subsample_units

    enable_compilation_cache(layout.root)
    data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir), cfg.subtract_mean)
    ex = get_extractor(cfg, data.input_shape, data.n_classes)
    keep = [subsample_units(n, cfg.max_units, unit_seed(cfg, subject, name)) for n, name in zip(ex.sizes, ex.names)]
    for e in epochs:  # nothing of the old folders counts from here on
        atomic.clear_marker(layout.activations_dir(subject, e))
        atomic.remove_stale_temporaries(layout.activations_dir(subject, e))
    acts = ex.run([layout.weights_path(subject, e) for e in epochs], [keep] * len(epochs), data.x_test)
    results = {}
    for e, layer_acts in zip(epochs, acts):
        files = []
        for name, a, k in zip(ex.names, layer_acts, keep):
            if not np.isfinite(a).all():
                log.warning("subject %d epoch %d layer %s has NaN/Inf activations (diverged network?)",
                            subject, e, name)
            atomic.save_npy(layout.activation_path(subject, e, name), a)
            atomic.save_npy(layout.units_kept_path(subject, e, name), np.asarray(k).astype(np.int64))
            files += [layout.activation_path(subject, e, name), layout.units_kept_path(subject, e, name)]
        atomic.write_marker(layout.activations_dir(subject, e), files, subject=subject, epoch=e, layers=ex.names,
                            n_images=len(data.x_test), **state.marker_fields(record))
        results[e] = {"subject": subject, "epoch": e, "skipped": False,
                      "units": {n: len(k) for n, k in zip(ex.names, keep)}}
    return results


def extract_activations(cfg, root: str | Path, subject: int, epoch: int, data_dir: str | None = None,
                        overwrite: bool = False) -> dict:
    """Save the analysed layers' activity of ``subject`` at ``epoch`` (:func:`extract_subject` of one epoch)."""
    return extract_subject(cfg, root, subject, data_dir=data_dir, overwrite=overwrite, epochs=[epoch])[0]


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
    from nnsrm.training import cached_dataset

    data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir), cfg.subtract_mean)
    ex = get_extractor(cfg, data.input_shape, data.n_classes)  # the network stage 2's jobs will use
    names, sizes = ex.names, ex.sizes
    layers = {
        "layers": names,
        "units": {n: min(s, cfg.max_units) for n, s in zip(names, sizes)},
        "units_before_cap": dict(zip(names, sizes)),
        "output_layer": output_layer_name(ex.model, names),
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
