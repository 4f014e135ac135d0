"""The in-memory route: :func:`compare` analyses activations held in arrays and returns the summary table.

    import nnsrm
    df = nnsrm.compare({"seed0": {"hidden": A0}, "seed1": {"hidden": A1}}, labels)
    df[df.metric.str.startswith("r_")]

No results root, no files: every checkpoint × layer is one stage-3 job
(:func:`nnsrm.analysis.job_result`, the function the command-line route's
jobs call) and its rows are :func:`nnsrm.summary.job_rows`'s, so the table
has the columns and metrics of ``summary.csv`` and, for the same arrays and
parameters, the same numbers. The inputs are checked like registered files
(:func:`nnsrm.activation_checks.check_catalogue`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from nnsrm.activation_checks import ArrayInfo, check_catalogue, check_finite_catalogue, network_ids, parse_checkpoint
from nnsrm.activation_files import ActivationArray, labels_from_array
from nnsrm.errors import UsageError

log = logging.getLogger(__name__)


def _as_array(x, name: str) -> np.ndarray:
    if isinstance(x, Mapping):
        raise UsageError(f"{name} is a mapping where an array (images × units) was expected; nest activations as "
                         f"network -> layer -> array or network -> checkpoint -> layer -> array")
    try:
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise UsageError(f"{name} cannot be read as an array ({str(err).splitlines()[0]}); pass a numeric array of "
                         f"images × units (a PyTorch tensor: t.detach().cpu().numpy())") from None


def _catalogue(activations) -> tuple[dict, dict, list]:
    """``(arrays, infos, first_layers)``: name -> checkpoint -> layer -> ndarray / ArrayInfo, in id order."""
    if not isinstance(activations, Mapping):
        raise UsageError(f"activations must map network -> layer -> array (images × units), or network -> checkpoint "
                         f"-> layer -> array; got {type(activations).__name__}")
    names = [str(n) for n in activations]
    if len(set(names)) != len(names):
        raise UsageError(f"activations has networks whose names are equal as text ({names}); name each network once")
    arrays, first_layers = {}, None
    for key, per_net in activations.items():
        net = str(key)
        where = f"activations[{key!r}]"
        if not isinstance(per_net, Mapping):
            raise UsageError(f"{where} must map layer -> array (or checkpoint -> layer -> array), got "
                             f"{type(per_net).__name__}")
        nested = [isinstance(v, Mapping) for v in per_net.values()]
        if any(nested) and not all(nested):
            raise UsageError(f"{where} mixes checkpoints (mappings) and layers (arrays); use network -> checkpoint -> "
                             f"layer -> array for every entry, or network -> layer -> array for one checkpoint")
        by_ckpt = per_net if nested and all(nested) else {0: per_net}
        arrays[net] = {}
        for ckpt_key, layers in by_ckpt.items():
            parsed = parse_checkpoint(ckpt_key)
            if parsed is None:
                raise UsageError(f"{where}: checkpoint {ckpt_key!r} is not a non-negative integer (or a name like "
                                 f"epoch_3); key checkpoints by epoch or step")
            ckpt = parsed[1]
            if ckpt in arrays[net]:
                raise UsageError(f"{where} has two checkpoints with the value {ckpt}; keep one")
            arrays[net][ckpt] = {}
            for layer_key, x in layers.items():
                name = (f"{where}[{layer_key!r}]" if by_ckpt is not per_net
                        else f"{where}[{ckpt_key!r}][{layer_key!r}]")
                arrays[net][ckpt][str(layer_key)] = (_as_array(x, name), name)
            if first_layers is None:
                first_layers = list(arrays[net][ckpt])
    ids = network_ids(list(arrays))
    arrays = {name: arrays[name] for name in ids}
    infos = {net: {c: {l: ArrayInfo(a.shape, a.dtype, name) for l, (a, name) in layers.items()}
                   for c, layers in ckpts.items()} for net, ckpts in arrays.items()}
    return arrays, infos, first_layers or []


def compare(activations, labels, *, layers=None, k: int | None = None, n_iter: int = 10, test_size: float = 0.2,
            seed: int = 0, engine: str | None = None, max_units: int | None = 1000, class_order=None,
            final_checkpoint: int | None = None, data: str = "arrays", model: str = "arrays"):
    """SRM alignment and RSA of several networks' activations in memory, as the tidy summary table.

    Parameters
    ----------
    activations : mapping
        Network → layer → array of shape (n_images, n_units), or network →
        checkpoint → layer → array (checkpoints: non-negative integers such as
        epochs or steps, or names like ``"epoch_3"``). Arrays are images ×
        units (trailing dimensions flattened), numeric, the same images in
        the same order in every network; anything ``np.asarray`` reads
        (a PyTorch tensor after ``.detach().cpu()``). Network ids (the
        ``subject`` column) follow :func:`nnsrm.activation_checks.network_ids`:
        ``seed0``, ``seed1``, … → 0, 1, …
    labels : array of int, shape (n_images,)
        Class of every image (or one-hot rows); the held-out images are split
        off stratified by it and sorted by it.
    layers : sequence of str, optional
        Layers to analyse, shallow to deep. Default: the first network's
        layers in the mapping's order (which is then their depth order).
    k, n_iter, test_size, seed, engine, max_units, class_order
        As ``nnsrm analyse``'s ``--k``, ``--n-iter``, ``--test-size``,
        ``--seed``, ``--srm-engine``, ``--max-units``, ``--class-order``
        (:class:`nnsrm.analysis.AnalysisParams`); ``engine`` None is
        :data:`qmvpa.factor.DEFAULT_ENGINE`.
    final_checkpoint : int, optional
        The checkpoint the ``*_final_wrsm`` metrics compare with; default the latest.
    data, model : str
        The ``data`` and ``model`` columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``data, model, epoch, layer, layer_depth, subject, metric,
        value`` (``epoch`` holds the checkpoint), the rows ``summary.csv``
        would hold for the same arrays registered and analysed with the same
        parameters.

    Raises
    ------
    ValueError
        (:class:`nnsrm.errors.UsageError`) for fewer than 2 networks, networks
        whose checkpoints, layers, image or unit counts differ, a label count
        that disagrees, non-numeric, object or 1-D arrays, NaN or Inf, or a
        ``k`` that does not fit; the message names the array and the fix.

    Notes
    -----
    Memory: the arrays themselves, plus one job's working set (the fit and
    held-out activity of every network in float32, the RSMs) at a time.
    """
    from nnsrm.analysis import AnalysisParams, job_result
    from nnsrm.summary import final_reference, job_rows, summary_frame
    from qmvpa import factor

    engine = factor.DEFAULT_ENGINE if engine is None else engine
    if engine not in factor.ENGINES:
        raise UsageError(f"engine must be one of {factor.ENGINES}, got {engine!r}")
    try:
        factor.srm_class(engine)  # an unavailable engine fails now, not in the first job
    except ImportError as err:
        raise UsageError(f"engine {engine!r} cannot be used here ({err}); use engine='fast'") from None
    labels = labels_from_array(_as_array(labels, "labels"), "labels")
    arrays, infos, first_layers = _catalogue(activations)
    explicit = layers is not None
    layers = [str(name) for name in layers] if explicit else first_layers
    if not layers:
        raise UsageError("activations holds no layers; map each network to its layers' arrays")
    check_catalogue(infos, layers, len(labels), "labels", "activations", explicit_layers=explicit)

    def open_array(net, ckpt, layer):
        a, name = arrays[net][ckpt][layer]
        return ActivationArray(a, a.shape, a.dtype, name)

    check_finite_catalogue(infos, layers, open_array)
    params = AnalysisParams(k=k, n_iter=n_iter, test_size=test_size, seed=seed, engine=engine, max_units=max_units,
                            class_order=None if class_order is None else tuple(int(c) for c in class_order))
    ids = network_ids(list(arrays))
    checkpoints = sorted(next(iter(arrays.values())))
    final = checkpoints[-1] if final_checkpoint is None else int(final_checkpoint)
    if final not in checkpoints:
        raise UsageError(f"final_checkpoint {final} is not a checkpoint of the activations ({checkpoints})")
    rows = []
    for depth, layer in enumerate(layers):
        reference = None
        for ckpt in [final] + [c for c in checkpoints if c != final]:  # the final one first: the others need it
            networks = [open_array(net, ckpt, layer) for net in ids]
            result = job_result(networks, labels, list(ids.values()), params, data=data, model=model, epoch=ckpt,
                                layer=layer, layer_depth=depth)
            if ckpt == final:
                reference = final_reference(result)
            rows += job_rows(result, data, model, ckpt, layer, reference, where=f"checkpoint {ckpt} layer {layer}")
            log.info("checkpoint %d layer %s: r shared %.3f, native %.3f", ckpt, layer,
                     float(result["r_shared_irsm_wrsm"]), float(result["r_native_irsm_wrsm"]))
            del result, networks
    return summary_frame(rows)
