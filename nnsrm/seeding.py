"""The randomness of one subject at one epoch, a pure function of (subject seed, epoch).

Stage 1 draws three kinds of random numbers while it trains: the initial
weights (from the subject's seed, :func:`nnsrm.models.build_model`), the order
in which the training images are visited, and the dropout and augmentation
masks. The last two are made here so that epoch ``e`` of a subject sees the
same numbers however it is trained — alone through ``model.fit``, in a group
of seeds in one compiled program, or resumed from a checkpoint:

- the data order of epoch ``e`` is a permutation computed on the host from
  ``(seed, e)`` (:func:`epoch_permutation`); training then visits the images
  in that order, without shuffling of its own;
- every Keras ``SeedGenerator`` of the network (one per dropout or
  augmentation layer; its state is a non-trainable variable of the model) is
  reset at the start of epoch ``e`` to a state computed from its initial state
  (which comes from the subject's seed) and ``e`` (:func:`epoch_seed_states`).

So no random state survives from one epoch to the next, and a checkpoint
needs none.
"""

from __future__ import annotations

import contextlib

import numpy as np

#: Name Keras gives the state variable of every ``SeedGenerator``.
SEED_STATE_NAME = "seed_generator_state"

# Distinguish the streams drawn from one seed.
_DATA_ORDER = 0x0D
_LAYER_MASKS = 0x1A


def epoch_permutation(seed: int, epoch: int, n_images: int) -> np.ndarray:
    """The order in which subject ``seed`` visits the training images in epoch ``epoch``.

    Parameters
    ----------
    seed : int
        The subject's seed (``cfg.subject_seed(subject)``).
    epoch : int
        Counted from 0 (the first epoch of training).
    n_images : int

    Returns
    -------
    array, shape (n_images,), int32
        A permutation of ``0 .. n_images-1``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) % 2**32, int(epoch), _DATA_ORDER]))
    return rng.permutation(n_images).astype(np.int32)


def seed_state_indices(model) -> list:
    """Positions of the ``SeedGenerator`` states in ``model.non_trainable_variables``.

    One per dropout or augmentation layer, in the model's variable order.
    """
    return [i for i, v in enumerate(model.non_trainable_variables)
            if v.name == SEED_STATE_NAME or v.path.endswith("/" + SEED_STATE_NAME)]


def epoch_seed_states(initial_states: np.ndarray, epoch: int) -> np.ndarray:
    """The ``SeedGenerator`` states at the start of epoch ``epoch``.

    Parameters
    ----------
    initial_states : array, shape (n_generators, 2)
        The states the generators had when the network was built from the
        subject's seed (``[layer seed, 0]`` in Keras 3).
    epoch : int
        Counted from 0.

    Returns
    -------
    array, shape (n_generators, 2), int64
        ``[s, 0]`` per generator, ``s`` in ``[0, 2**31)`` drawn from the
        generator's initial state and ``epoch``; representable in every
        backend's seed dtype. Keras advances the second entry at each draw.
    """
    initial_states = np.asarray(initial_states).reshape(-1, 2)
    out = np.zeros((len(initial_states), 2), dtype=np.int64)
    for j, (a, b) in enumerate(initial_states):
        seq = np.random.SeedSequence([int(a) % 2**32, int(b) % 2**32, int(epoch), _LAYER_MASKS])
        out[j, 0] = int(seq.generate_state(1, np.uint32)[0]) >> 1
    return out


def rng_context():
    """Where stage 1 traces and runs its JAX programs: the classic (non-partitionable) Threefry.

    The dropout masks are then drawn by the same bit generator on every path
    (``model.fit`` and the compiled loop), and XLA compiles the training step
    about twice as fast on a CPU as with the partitionable variant (measured
    with the digits conv net: 9 s instead of 20 s). A no-op on other backends.
    """
    import keras

    if keras.backend.backend() != "jax":
        return contextlib.nullcontext()
    import jax

    setting = getattr(jax, "threefry_partitionable", None)
    return setting(False) if setting is not None else contextlib.nullcontext()
