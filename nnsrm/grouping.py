"""How stage 1 splits subjects into groups trained together (``--group-size``).

One stage-1 job trains one group. ``--group-size N`` asks for groups of at
most ``N`` subjects; ``auto`` (the default) chooses:

- on a Keras backend other than JAX: 1 (subjects are trained one by one with
  ``model.fit``);
- on JAX: as many subjects as fit in half of the device's memory (the GPU's,
  or the host's RAM on a CPU), from the network's parameter and activation
  sizes (:func:`member_bytes`), and no more than ``ceil(n_subjects /
  n_workers)`` when Dask runs the jobs, so every worker gets a group.

Groups are of near-equal size and keep the subjects in order.
"""

from __future__ import annotations

import argparse
import logging
import math
import os

from nnsrm.errors import UsageError

log = logging.getLogger(__name__)

AUTO = "auto"
#: Part of the device's memory that a group may plan to use.
MEMORY_FRACTION = 0.5


def group_size_arg(text: str):
    """argparse type: ``auto`` or an integer >= 1."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value}")
    return value


def check_group_size(requested, n_subjects: int, backend: str) -> None:
    """Refuse a group size that cannot be honoured.

    Raises
    ------
    UsageError
        A size larger than the number of subjects, or a group of several
        subjects on a backend other than JAX.
    """
    if requested == AUTO:
        return
    if requested > n_subjects:
        raise UsageError(f"--group-size {requested} is larger than the number of subjects to train "
                         f"({n_subjects}); use at most {n_subjects}, or auto")
    if requested > 1 and backend != "jax":
        raise UsageError(f"--group-size {requested}: training several subjects together needs the JAX backend "
                         f"(KERAS_BACKEND={backend}); use --group-size 1 or auto with this backend")


def split_into_groups(subjects, size: int) -> list:
    """``subjects`` in order, cut into ``ceil(n / size)`` groups of near-equal size (each at most ``size``)."""
    subjects = list(subjects)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not subjects:
        return []
    n_groups = math.ceil(len(subjects) / size)
    base, extra = divmod(len(subjects), n_groups)
    out, start = [], 0
    for g in range(n_groups):
        stop = start + base + (1 if g < extra else 0)
        out.append(subjects[start:stop])
        start = stop
    return out


def host_memory_bytes() -> int | None:
    """Physical memory of this machine, or None if unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def device_memory_bytes() -> int | None:
    """Memory of JAX's first device (an accelerator's limit, or host RAM on a CPU); None if unknown."""
    import jax

    device = jax.local_devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:  # noqa: BLE001 - not every backend reports memory
            stats = {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"])
        return None
    return host_memory_bytes()


def member_bytes(cfg, input_shape, n_classes: int, stacked: bool = True) -> int:
    """Rough device memory one subject of a group needs while it trains (bytes).

    Variables, gradients and optimiser moments (4 copies of the parameters),
    plus, when the group's steps run stacked (``"vmap"``), three copies of
    every layer's output for a training batch (forward values kept for the
    backward pass, their gradients, slack) and one for an evaluation batch,
    all float32. Run one seed at a time (``"loop"``), a seed holds only its
    variables between steps.
    """
    from nnsrm.models import all_layers, build_model

    model = build_model(cfg.model, tuple(input_shape), n_classes, cfg.subject_seed(0), augment=cfg.augment,
                        resnet_variant=cfg.resnet_variant)
    params = model.count_params()
    activations = 0
    for layer in all_layers(model):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        shapes = shape if isinstance(shape, list) else [shape]
        for s in shapes:
            if s is not None and all(d is not None for d in s[1:]):
                activations += math.prod(s[1:])
    eval_batch = min(cfg.extract_batch_size, 1000)
    per_step = (3 * cfg.batch_size + eval_batch) * activations
    return 4 * (4 * params + (per_step if stacked else 0))


def auto_group_size(cfg, n_subjects: int, backend: str, n_workers: int | None = None,
                    memory_per_member: int | None = None, memory_available: int | None = None) -> int:
    """The group size ``auto`` stands for (see the module docstring).

    Parameters
    ----------
    n_subjects : int
        Subjects to train.
    backend : str
        Keras backend.
    n_workers : int, optional
        Dask workers that will run the jobs.
    memory_per_member, memory_available : int, optional
        Bytes; without both, memory sets no limit.
    """
    if backend != "jax" or n_subjects <= 1:
        return 1
    size = n_subjects
    if n_workers:
        size = min(size, math.ceil(n_subjects / n_workers))
    if memory_per_member and memory_available:
        fit = int(MEMORY_FRACTION * memory_available // memory_per_member)
        if fit < size:
            log.info("auto group size: %d subjects fit in %.1f GB (%.2f GB each)", max(fit, 1),
                     MEMORY_FRACTION * memory_available / 1e9, memory_per_member / 1e9)
        size = min(size, max(fit, 1))
    return max(size, 1)
