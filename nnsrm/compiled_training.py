"""Stage 1's JAX engine: a group of seeds trained by compiled programs over their stacked variables.

One Keras model and optimiser describe the architecture; the seeds' variables
live outside them, as arrays, and every update goes through
``model.stateless_call`` and ``optimizer.stateless_apply`` inside
``jax.jit``. The randomness of epoch ``e`` of a seed comes from
:mod:`nnsrm.seeding` (data order computed on the host, seed states reset at the
start of the epoch), the learning rate from the optimiser's own schedule
(:mod:`nnsrm.lr_control`), so each seed gets exactly the initial weights, data
order, dropout and augmentation masks and learning rates that
:class:`nnsrm.fit_training.FitEngine` gives it alone.

Two ways to run a group, the same arithmetic per seed:

``"vmap"`` (GPUs and other accelerators)
    One jitted program per epoch: ``jax.vmap`` over the seeds of the whole
    epoch — a ``lax.scan`` over the full batches, the last partial batch, the
    evaluation on the test set (a scan over padded batches) — with the
    variables of all seeds stacked along a leading axis.
``"loop"`` (CPUs)
    One jitted training step and one jitted evaluation step for a single seed,
    called from Python for each seed and batch (dispatch is asynchronous).
    XLA's CPU backend runs the convolutions of a vmapped step as grouped
    convolutions and those of a ``lax.scan`` body without its fast convolution
    library, each several times slower than a plain step (measured on the
    digits conv net: 10 seeds vmapped 434 ms per step against 10 × 8.9 ms; the
    backward pass in a scan 12× slower than at top level). With ``"loop"`` a
    seed's numbers do not depend on which other seeds share its group.

The programs are built once per process and architecture (:func:`get_program`)
and cached by XLA in the results root, so further groups and later runs start
without compiling.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from nnsrm import seeding
from nnsrm.checkpoint import TrainState
from nnsrm.lr_control import base_rate_index, configured_optimizer
from nnsrm.model_state import assign_state, read_state, save_weights

log = logging.getLogger(__name__)

STRATEGIES = ("vmap", "loop")


def default_strategy() -> str:
    """``"loop"`` on a CPU, ``"vmap"`` on an accelerator (see the module docstring)."""
    import jax

    return "loop" if jax.default_backend() == "cpu" else "vmap"


@dataclasses.dataclass(frozen=True)
class ProgramKey:
    """What the compiled programs depend on (anything else is an argument)."""

    model: str
    augment: bool
    resnet_variant: str
    optimizer: str
    learning_rate: float
    lr_decay: float
    batch_size: int
    eval_batch_size: int
    data: str
    input_shape: tuple
    n_classes: int
    n_train: int
    n_test: int
    strategy: str

    @classmethod
    def of(cls, cfg, data, strategy: str) -> ProgramKey:
        return cls(cfg.model, bool(cfg.augment), cfg.resnet_variant, cfg.optimizer, float(cfg.learning_rate),
                   float(cfg.lr_decay), int(cfg.batch_size), int(min(cfg.extract_batch_size, len(data.x_test))),
                   data.name, tuple(data.input_shape), int(data.n_classes), len(data.x_train), len(data.x_test),
                   strategy)


class TrainProgram:
    """The compiled training and evaluation programs of one :class:`ProgramKey`.

    Attributes
    ----------
    model, optimizer : Keras objects describing the architecture (their own
        variables are never trained; the template model writes weight files).
    traces : dict
        How often each program was traced (each trace is a compilation, or a
        load from the persistent cache).
    """

    def __init__(self, cfg, data, strategy: str):
        import jax
        import jax.numpy as jnp
        import keras

        from nnsrm.models import build_model

        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.key = ProgramKey.of(cfg, data, strategy)
        self.strategy = strategy
        self.model = build_model(cfg.model, data.input_shape, data.n_classes, cfg.subject_seed(0),
                                 augment=cfg.augment, resnet_variant=cfg.resnet_variant)
        self.optimizer = configured_optimizer(cfg)
        self.optimizer.build(self.model.trainable_variables)
        self.initial_optimizer = [np.array(keras.ops.convert_to_numpy(v.value)) for v in self.optimizer.variables]
        self.base_index = base_rate_index(self.optimizer)
        self.seed_index = seeding.seed_state_indices(self.model)
        self.seed_dtypes = [self.model.non_trainable_variables[i].dtype for i in self.seed_index]
        self.loss = keras.losses.SparseCategoricalCrossentropy()
        self.batch_size = self.key.batch_size
        self.n_train, self.n_test = self.key.n_train, self.key.n_test
        self.n_full, self.tail = divmod(self.n_train, self.batch_size)
        self.eval_batch = self.key.eval_batch_size
        self.n_eval_batches = -(-self.n_test // self.eval_batch)
        self.traces = {"step": 0, "eval": 0, "epoch": 0}
        self._jax, self._jnp = jax, jnp
        if strategy == "loop":
            self.step = jax.jit(self._step, static_argnames=("size",), donate_argnums=(0, 1, 2, 3))
            self.evaluate = jax.jit(self._eval, donate_argnums=(2,))
        else:
            self.epoch = jax.jit(self._group_epoch, donate_argnums=(0,))

    # ----------------------------------------------------------------- the arithmetic of one seed

    def _step(self, tv, ntv, ov, metrics, order, start, x_all, y_all, size):
        """One update of one seed on the images ``order[start:start+size]``; adds (loss·n, correct) to ``metrics``."""
        self.traces["step"] += 1
        jax, jnp = self._jax, self._jnp
        idx = jax.lax.dynamic_slice_in_dim(order, start, size)
        x, y = jnp.take(x_all, idx, axis=0), jnp.take(y_all, idx, axis=0)

        def loss_of(tv, ntv):
            y_pred, ntv, losses = self.model.stateless_call(tv, ntv, x, training=True, return_losses=True)
            loss = self.loss(y, y_pred)
            if losses:  # weight penalties (ResNet-18's L2), as model.fit adds them
                loss = loss + sum(losses)
            return loss, (y_pred, ntv)

        (loss, (y_pred, ntv)), grads = jax.value_and_grad(loss_of, has_aux=True)(tv, ntv)
        tv, ov = self.optimizer.stateless_apply(ov, grads, tv)
        correct = jnp.sum(jnp.argmax(y_pred, axis=-1) == y.astype(jnp.int32))
        metrics = metrics + jnp.stack([loss * size, correct.astype(jnp.float32)])
        return tv, ntv, ov, metrics

    def _eval(self, tv, ntv, metrics, x, y, mask):
        """Adds (summed test loss, correct) over the real rows (``mask``) of one padded batch."""
        self.traces["eval"] += 1
        jnp = self._jnp
        import keras

        y_pred, _, losses = self.model.stateless_call(tv, ntv, x, training=False, return_losses=True)
        per_image = keras.losses.sparse_categorical_crossentropy(y, y_pred)
        if losses:
            per_image = per_image + sum(losses)
        correct = (jnp.argmax(y_pred, axis=-1) == y.astype(jnp.int32)).astype(jnp.float32)
        return metrics + jnp.stack([jnp.sum(per_image * mask), jnp.sum(correct * mask)])

    def _with_seeds(self, ntv, seed_states):
        ntv = list(ntv)
        for j, i in enumerate(self.seed_index):
            ntv[i] = seed_states[j].astype(self.seed_dtypes[j])
        return ntv

    # ----------------------------------------------------------------- "vmap": one program per epoch

    def _group_epoch(self, state, orders, seed_states, active, x_all, y_all, x_eval, y_eval, mask_eval):
        """One epoch of every seed of a group; inactive seeds keep their state.

        Shapes: ``state`` stacked (n_seeds, ...); ``orders`` (n_seeds, n_train);
        ``seed_states`` (n_seeds, n_generators, 2); ``active`` (n_seeds,);
        ``x_eval`` (n_eval_batches, eval_batch, h, w, c). Returns the new
        state and (n_seeds, 4) sums: train loss·n, train correct, test loss, test correct.
        """
        self.traces["epoch"] += 1
        jax, jnp = self._jax, self._jnp
        bs = self.batch_size

        def one_seed(st, order, seeds):
            tv, ntv, ov = st
            ntv = self._with_seeds(ntv, seeds)

            def train_body(carry, k):
                return self._step(*carry, order, k * bs, x_all, y_all, size=bs), None

            carry = (tv, ntv, ov, jnp.zeros(2, jnp.float32))
            carry, _ = jax.lax.scan(train_body, carry, jnp.arange(self.n_full))
            if self.tail:
                carry = self._step(*carry, order, self.n_full * bs, x_all, y_all, size=self.tail)
            tv, ntv, ov, train = carry

            def eval_body(acc, batch):
                return self._eval(tv, ntv, acc, *batch), None

            test, _ = jax.lax.scan(eval_body, jnp.zeros(2, jnp.float32), (x_eval, y_eval, mask_eval))
            return (tv, ntv, ov), jnp.concatenate([train, test])

        new, sums = jax.vmap(one_seed)(state, orders, seed_states)

        def keep(n, o):
            return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

        return jax.tree_util.tree_map(keep, new, state), sums


_PROGRAMS: dict = {}
_MAX_PROGRAMS = 4


def get_program(cfg, data, strategy: str) -> TrainProgram:
    """The :class:`TrainProgram` of ``cfg`` on ``data``, built once per process (a few kept)."""
    key = ProgramKey.of(cfg, data, strategy)
    if key not in _PROGRAMS:
        while len(_PROGRAMS) >= _MAX_PROGRAMS:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = TrainProgram(cfg, data, strategy)
    return _PROGRAMS[key]


class CompiledEngine:
    """Trains the subjects ``seeds`` together with JAX (see the module docstring).

    Same interface as :class:`nnsrm.fit_training.FitEngine`: ``run_epoch``,
    ``get_state``/``set_state``, ``set_base_rate``, ``save_weights``.

    With ``"loop"`` the seeds are spread round-robin over the local devices:
    on a CPU, start the process with ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``
    (the stage commands do, :func:`nnsrm.cli.prepare_environment`) and each
    core runs its own seeds' steps; a seed's arithmetic is the same on every
    device.
    """

    def __init__(self, cfg, data, seeds, strategy: str | None = None):
        import jax
        import jax.numpy as jnp

        from nnsrm.models import build_model

        strategy = strategy or default_strategy()
        self.name = f"jax-{strategy}"
        self.cfg, self.data, self.seeds = cfg, data, [int(s) for s in seeds]
        self.program = p = get_program(cfg, data, strategy)
        self._jax, self._jnp = jax, jnp
        n_pad = p.n_eval_batches * p.eval_batch - p.n_test
        x_eval = np.concatenate([data.x_test, np.zeros((n_pad,) + data.x_test.shape[1:], data.x_test.dtype)])
        y_eval = np.concatenate([data.y_test, np.zeros(n_pad, data.y_test.dtype)]).astype(np.int32)
        mask = (np.arange(len(y_eval)) < p.n_test).astype(np.float32)
        shape = (p.n_eval_batches, p.eval_batch)
        host_data = (data.x_train, data.y_train.astype(np.int32),
                     x_eval.reshape(shape + x_eval.shape[1:]),  # (n_batches, eval_batch, h, w, c)
                     y_eval.reshape(shape), mask.reshape(shape))
        states, self.initial_seed_states = [], []
        for seed in self.seeds:
            model = build_model(cfg.model, data.input_shape, data.n_classes, seed,
                                augment=cfg.augment, resnet_variant=cfg.resnet_variant)
            s = read_state(model)
            states.append(TrainState(s.trainable, s.non_trainable, [a.copy() for a in p.initial_optimizer]))
            self.initial_seed_states.append(np.array([s.non_trainable[i] for i in p.seed_index],
                                                     dtype=np.int64).reshape(-1, 2))
        if strategy == "loop":
            devices = jax.local_devices()
            self.placement = [devices[i % len(devices)] for i in range(len(self.seeds))]
            self.device_data = {d: tuple(jax.device_put(a, d) for a in host_data) for d in set(self.placement)}
            self.states = [self._put(s, self.placement[i]) for i, s in enumerate(states)]
        else:
            self.device_data = {None: tuple(jnp.asarray(a) for a in host_data)}
            # each variable stacked over the seeds: (n_seeds, ...)
            self.states = tuple([jnp.stack([jnp.asarray(getattr(s, part)[j]) for s in states])
                                 for j in range(len(getattr(states[0], part)))]
                                for part in ("trainable", "non_trainable", "optimizer"))

    def _put(self, state: TrainState, device):
        put = self._jax.device_put
        return tuple([put(np.asarray(a), device) for a in part]
                     for part in (state.trainable, state.non_trainable, state.optimizer))

    @property
    def steps_per_epoch(self) -> int:
        return self.program.n_full + (1 if self.program.tail else 0)

    def get_state(self, i: int) -> TrainState:
        if self.program.strategy == "loop":
            parts = self.states[i]
        else:
            parts = tuple([a[i] for a in part] for part in self.states)
        return TrainState(*([np.array(a) for a in part] for part in parts))

    def set_state(self, i: int, state: TrainState) -> None:
        template = self.get_state(i)
        for mine, given, what in zip((template.trainable, template.non_trainable, template.optimizer),
                                     (state.trainable, state.non_trainable, state.optimizer),
                                     ("trainable", "non-trainable", "optimizer")):
            if len(mine) != len(given) or any(np.shape(a) != np.shape(b) for a, b in zip(mine, given)):
                raise ValueError(f"the {what} arrays do not match this network")
        if self.program.strategy == "loop":
            state = TrainState(*([np.asarray(b, dtype=a.dtype) for a, b in zip(mine, given)]
                                 for mine, given in zip((template.trainable, template.non_trainable,
                                                         template.optimizer),
                                                        (state.trainable, state.non_trainable, state.optimizer))))
            self.states[i] = self._put(state, self.placement[i])
        else:
            parts = (state.trainable, state.non_trainable, state.optimizer)
            self.states = tuple([a.at[i].set(self._jnp.asarray(v, dtype=a.dtype)) for a, v in zip(part, values)]
                                for part, values in zip(self.states, parts))

    def set_base_rate(self, i: int, value: float) -> None:
        b = self.program.base_index
        if self.program.strategy == "loop":
            ov = self.states[i][2]
            ov[b] = self._jax.device_put(np.asarray(value, dtype=ov[b].dtype), self.placement[i])
        else:
            ov = self.states[2]
            ov[b] = ov[b].at[i].set(value)

    def save_weights(self, i: int, path) -> None:
        state = self.get_state(i)
        assign_state(self.program.model, TrainState(state.trainable, state.non_trainable, []))
        save_weights(self.program.model, path)

    def run_epoch(self, epochs, active) -> list:
        """Train each active seed ``i`` for its epoch ``epochs[i]`` (counted from 0).

        Returns
        -------
        list
            Per seed, ``{"loss", "accuracy", "val_loss", "val_accuracy"}``
            (floats) if it was active, else None.
        """
        p, jnp = self.program, self._jnp
        orders = [seeding.epoch_permutation(seed, e, p.n_train) for seed, e in zip(self.seeds, epochs)]
        seeds = [seeding.epoch_seed_states(init, e) for init, e in zip(self.initial_seed_states, epochs)]
        with seeding.rng_context():
            if p.strategy == "loop":
                sums = self._loop_epoch([i for i, on in enumerate(active) if on], orders, seeds)
            else:
                self.states, out = p.epoch(self.states, jnp.asarray(np.stack(orders)), jnp.asarray(np.stack(seeds)),
                                           jnp.asarray(np.asarray(active, dtype=bool)), *self.device_data[None])
                out = np.asarray(out)
                sums = {i: out[i] for i, on in enumerate(active) if on}
        result = []
        for i in range(len(self.seeds)):
            if i not in sums:
                result.append(None)
                continue
            s = sums[i]
            result.append({"loss": float(s[0] / p.n_train), "accuracy": float(s[1] / p.n_train),
                           "val_loss": float(s[2] / p.n_test), "val_accuracy": float(s[3] / p.n_test)})
        return result

    def _loop_epoch(self, members, orders, seeds) -> dict:
        """One epoch of ``members``, step by step, the seeds' steps interleaved (so every device has work)."""
        p, jax = self.program, self._jax
        put = jax.device_put
        run = {}
        for i in members:
            d = self.placement[i]
            tv, ntv, ov = self.states[i]
            ntv = p._with_seeds(ntv, put(seeds[i], d))
            run[i] = [tv, ntv, ov, put(np.zeros(2, np.float32), d), put(orders[i], d)]
        bs = p.batch_size
        starts = [(k * bs, bs) for k in range(p.n_full)] + ([(p.n_full * bs, p.tail)] if p.tail else [])
        for start, size in starts:
            for i, r in run.items():
                x, y = self.device_data[self.placement[i]][:2]
                r[:4] = p.step(*r[:4], r[4], np.int32(start), x, y, size=size)
        tests = {i: put(np.zeros(2, np.float32), self.placement[i]) for i in run}
        for b in range(p.n_eval_batches):
            for i, r in run.items():
                _, _, x_eval, y_eval, mask = self.device_data[self.placement[i]]
                tests[i] = p.evaluate(r[0], r[1], tests[i], x_eval[b], y_eval[b], mask[b])
        for i, r in run.items():
            self.states[i] = (r[0], r[1], r[2])
        # Waits for the dispatched work.
        return {i: np.concatenate([np.asarray(r[3]), np.asarray(tests[i])]) for i, r in run.items()}
