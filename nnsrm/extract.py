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
marker per subject × epoch lists every file with its checksum.
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


def extract_subject(cfg, root: str | Path, subject: int, data_dir: str | None = None, overwrite: bool = False,
                    epochs=None) -> list:
    """Save the analysed layers' activity of ``subject`` at its logged epochs (one stage-2 job).

    Complete subject × epoch folders are skipped unless ``overwrite``.

    Returns
    -------
    list of dict
        Per epoch, ``{"subject", "epoch", "skipped", "units": {layer: n_units_saved}}``.

    Raises
    ------
    FileNotFoundError
        If the subject's weights of an epoch to extract do not exist (stage 1 not run).
    """
    from nnsrm.jax_cache import enable_compilation_cache
    from nnsrm.training import cached_dataset
    from qmvpa.preproc import subsample_units

    layout = ResultsLayout(root, cfg.data, cfg.model)
    epochs = list(cfg.logged_epochs if epochs is None else epochs)
    todo = [e for e in epochs if overwrite or not atomic.is_complete(layout.activations_dir(subject, e))]
    results = {e: {"subject": subject, "epoch": e, "skipped": True} for e in epochs if e not in todo}
    if todo:
        for e in todo:
            weights = layout.weights_path(subject, e)
            if not weights.exists() or not atomic.is_complete(layout.subject_dir(subject)):
                raise FileNotFoundError(f"{weights} missing or subject {subject} not fully trained; "
                                        f"run train_cifar.py --data {cfg.data} --model {cfg.model} first")
        enable_compilation_cache(root)
        data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir))
        ex = get_extractor(cfg, data.input_shape, data.n_classes)
        keep = [subsample_units(n, cfg.max_units, unit_seed(cfg, subject, name))
                for n, name in zip(ex.sizes, ex.names)]
        acts = ex.run([layout.weights_path(subject, e) for e in todo], [keep] * len(todo), data.x_test)
        for e, layer_acts in zip(todo, acts):
            out_dir = layout.activations_dir(subject, e)
            atomic.clear_marker(out_dir)
            atomic.remove_stale_temporaries(out_dir)
            files = []
            for name, a, k in zip(ex.names, layer_acts, keep):
                if not np.isfinite(a).all():
                    log.warning("subject %d epoch %d layer %s has NaN/Inf activations (diverged network?)",
                                subject, e, name)
                atomic.save_npy(layout.activation_path(subject, e, name), a)
                atomic.save_npy(layout.units_kept_path(subject, e, name), np.asarray(k).astype(np.int64))
                files += [layout.activation_path(subject, e, name), layout.units_kept_path(subject, e, name)]
            atomic.write_marker(out_dir, files, subject=subject, epoch=e, layers=ex.names,
                                n_images=len(data.x_test))
            results[e] = {"subject": subject, "epoch": e, "skipped": False,
                          "units": {n: len(k) for n, k in zip(ex.names, keep)}}
    return [results[e] for e in epochs]


def extract_activations(cfg, root: str | Path, subject: int, epoch: int, data_dir: str | None = None,
                        overwrite: bool = False) -> dict:
    """Save the analysed layers' activity of ``subject`` at ``epoch`` (:func:`extract_subject` of one epoch)."""
    return extract_subject(cfg, root, subject, data_dir=data_dir, overwrite=overwrite, epochs=[epoch])[0]


def write_condition_metadata(cfg, root: str | Path, data_dir: str | None = None) -> list:
    """Write ``layers.json`` and ``test_labels.npy`` for a condition; return the layer names.

    ``layers.json`` holds the analysed layers in depth order and the number of
    units saved for each (after the unit cap).
    """
    from nnsrm.training import cached_dataset

    layout = ResultsLayout(root, cfg.data, cfg.model)
    data = cached_dataset(cfg.data, None if data_dir is None else str(data_dir))
    ex = get_extractor(cfg, data.input_shape, data.n_classes)
    names, sizes = ex.names, ex.sizes
    atomic.write_json(layout.layers_path, {
        "layers": names,
        "units": {n: min(s, cfg.max_units) for n, s in zip(names, sizes)},
        "units_before_cap": dict(zip(names, sizes)),
    })
    atomic.save_npy(layout.test_labels_path, data.y_test.astype(np.int64))
    return names
