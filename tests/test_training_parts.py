"""The pieces of stage 1: per-(seed, epoch) randomness, the learning-rate control, checkpoints, grouping."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from nnsrm import checkpoint, config, grouping, seeding
from nnsrm.errors import UsageError
from nnsrm.lr_control import PlateauRule, configured_optimizer, decayed_rate

SEEDS = [0, 1, 12345]


# --------------------------------------------------------------------------- seeding

@pytest.mark.parametrize("seed", SEEDS)
def test_epoch_permutation_is_a_fixed_permutation_per_seed_and_epoch(seed):
    a = seeding.epoch_permutation(seed, 3, 100)
    assert a.dtype == np.int32 and sorted(a) == list(range(100))
    np.testing.assert_array_equal(a, seeding.epoch_permutation(seed, 3, 100))
    assert not np.array_equal(a, seeding.epoch_permutation(seed, 4, 100))
    assert not np.array_equal(a, seeding.epoch_permutation(seed + 1, 3, 100))


def test_epoch_seed_states_depend_on_layer_and_epoch_only():
    initial = np.array([[11, 0], [22, 0], [33, 0]])
    s0, s1 = seeding.epoch_seed_states(initial, 0), seeding.epoch_seed_states(initial, 1)
    assert s0.shape == (3, 2) and (s0[:, 1] == 0).all()
    assert ((s0[:, 0] >= 0) & (s0[:, 0] < 2**31)).all()
    assert len(set(s0[:, 0])) == 3 and not np.array_equal(s0, s1)
    np.testing.assert_array_equal(s0, seeding.epoch_seed_states(initial, 0))


def test_seed_states_are_the_dropout_layers_non_trainable_variables():
    from nnsrm.models import build_model

    model = build_model("conv", (8, 8, 1), 10, seed=0)
    n_dropout = sum(type(layer).__name__ == "Dropout" for layer in model.layers)
    idx = seeding.seed_state_indices(model)
    assert n_dropout == 3 and len(idx) == n_dropout
    assert all(tuple(model.non_trainable_variables[i].shape) == (2,) for i in idx)
    # Augmentation layers have seed states too.
    augmented = build_model("conv", (8, 8, 1), 10, seed=0, augment=True)
    assert len(seeding.seed_state_indices(augmented)) == n_dropout + 2


# --------------------------------------------------------------------------- learning rate

def test_optimiser_rate_decays_per_step_and_follows_its_base_variable():
    import keras

    cfg = config.get_config("digits", "conv", learning_rate=1.0, lr_decay=0.1)
    opt = configured_optimizer(cfg)
    w = keras.Variable(np.zeros(3, np.float32))
    opt.build([w])
    rates = []
    for _ in range(3):
        rates.append(float(keras.ops.convert_to_numpy(opt.learning_rate)))
        opt.apply([keras.ops.ones(3)], [w])
    np.testing.assert_allclose(rates, [decayed_rate(1.0, 0.1, t) for t in range(3)], rtol=1e-6)
    opt.base_learning_rate.assign(0.5)  # what the plateau rule does
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(opt.learning_rate)), 0.5 / 1.3, rtol=1e-6)


def test_plateau_rule_matches_keras_reduce_lr_on_plateau():
    import keras

    factor, patience, min_lr, lr = math.sqrt(0.1), 2, 1e-3, 0.1
    losses = [1.0, 0.9, 0.95, 0.91, 0.8999, 0.85, 0.86, 0.86, 0.87, 0.84, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    callback = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=factor, patience=patience,
                                                 min_lr=min_lr, min_delta=1e-4, cooldown=0)
    callback.set_model(model)
    callback.on_train_begin()
    rule = PlateauRule(base_lr=lr, factor=factor, patience=patience, min_lr=min_lr)
    for epoch, loss in enumerate(losses):
        callback.on_epoch_end(epoch, {"val_loss": loss})
        rule.update(loss)
        np.testing.assert_allclose(rule.base_lr, float(model.optimizer.learning_rate), rtol=1e-6)
    assert rule.base_lr == min_lr  # the sequence reaches the floor
    assert PlateauRule.from_dict(rule.to_dict()) == rule


# --------------------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip_and_replacement(tmp_path):
    rng = np.random.default_rng(0)
    state = checkpoint.TrainState([rng.standard_normal((3, 4)).astype(np.float32)],
                                  [np.array([5, 0], np.uint32)],
                                  [np.array(7, np.int64), np.array(1e-3, np.float32)])
    cfg = config.get_config("digits", "conv", n_epochs=4)
    ckpt = checkpoint.Checkpoint(epoch=2, state=state, plateau={"best": math.inf, "wait": 1},
                                 history=[{"epoch": 1}, {"epoch": 2}], seed=3, config=cfg.to_dict())
    checkpoint.save_checkpoint(tmp_path, ckpt)
    ckpt.epoch = 3
    checkpoint.save_checkpoint(tmp_path, ckpt)  # replaces: one file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]
    back = checkpoint.load_checkpoint(tmp_path)
    assert back.epoch == 3 and back.seed == 3 and back.plateau["best"] == math.inf
    assert checkpoint.same_config(back.config, cfg.to_dict())
    assert not checkpoint.same_config(back.config, config.get_config("digits", "conv", n_epochs=5).to_dict())
    for mine, theirs in zip((state.trainable, state.non_trainable, state.optimizer),
                            (back.state.trainable, back.state.non_trainable, back.state.optimizer)):
        for a, b in zip(mine, theirs):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    (tmp_path / "checkpoint.npz").write_bytes(b"not a zip")
    assert checkpoint.load_checkpoint(tmp_path) is None  # unreadable: ignored, training restarts
    checkpoint.remove_checkpoint(tmp_path)
    assert checkpoint.load_checkpoint(tmp_path) is None and not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- grouping

@pytest.mark.parametrize("n, size, expected", [
    (10, 10, [10]), (10, 4, [4, 3, 3]), (10, 1, [1] * 10), (3, 2, [2, 1]), (7, 3, [3, 2, 2])])
def test_split_into_groups_is_balanced_and_ordered(n, size, expected):
    groups = grouping.split_into_groups(range(n), size)
    assert [len(g) for g in groups] == expected
    assert [s for g in groups for s in g] == list(range(n))


def test_auto_group_size():
    cfg = config.get_config("digits", "conv")
    assert grouping.auto_group_size(cfg, 10, "tensorflow") == 1
    assert grouping.auto_group_size(cfg, 10, "jax") == 10
    assert grouping.auto_group_size(cfg, 10, "jax", n_workers=3) == 4
    # Half of 10 GB at 1.2 GB a subject: 4 subjects.
    assert grouping.auto_group_size(cfg, 10, "jax", memory_per_member=1_200_000_000,
                                    memory_available=10_000_000_000) == 4
    assert grouping.auto_group_size(cfg, 10, "jax", memory_per_member=10**12, memory_available=10**9) == 1


def test_member_bytes_counts_parameters_and_stacked_activations():
    from nnsrm.models import build_model

    cfg = config.get_config("digits", "conv")
    params = build_model("conv", (8, 8, 1), 10, cfg.subject_seed(0)).count_params()
    # One seed at a time: its variables, gradients and two optimiser moments, float32.
    assert grouping.member_bytes(cfg, (8, 8, 1), 10, stacked=False) == 4 * 4 * params
    stacked = grouping.member_bytes(cfg, (8, 8, 1), 10)
    bigger_batches = grouping.member_bytes(config.get_config("digits", "conv", batch_size=64), (8, 8, 1), 10)
    assert 4 * 4 * params < stacked < bigger_batches  # stacked steps keep every layer's output per image


@pytest.mark.parametrize("text, message", [("0", "expected a positive integer or 'auto', got 0"),
                                           ("-2", "expected a positive integer or 'auto', got -2"),
                                           ("many", "expected a positive integer or 'auto', got 'many'")])
def test_group_size_argument_errors(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        grouping.group_size_arg(text)


def test_group_size_checks():
    assert grouping.group_size_arg("AUTO") == "auto" and grouping.group_size_arg("3") == 3
    grouping.check_group_size(3, 3, "jax")
    grouping.check_group_size(1, 3, "tensorflow")
    grouping.check_group_size("auto", 3, "tensorflow")
    with pytest.raises(UsageError, match=r"--group-size 4 is larger than the number of subjects to train \(3\)"):
        grouping.check_group_size(4, 3, "jax")
    with pytest.raises(UsageError, match=r"--group-size 2: training several subjects together needs the JAX "
                                         r"backend \(KERAS_BACKEND=tensorflow\)"):
        grouping.check_group_size(2, 3, "tensorflow")


def test_auto_group_size_falls_back_to_one_subject_at_a_time_off_jax_and_says_so(monkeypatch, caplog):
    from nnsrm.commands import train

    cfg = config.get_config("digits", "conv", n_subjects=4)
    args = argparse.Namespace(group_size="auto", workers=None, scheduler=None)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    with caplog.at_level("WARNING", logger="nnsrm.commands.train"):
        assert train.resolve_group_size(args, cfg, [0, 1, 2, 3], None) == 1
    assert [r.getMessage() for r in caplog.records] == [
        ("--group-size auto: training seeds together needs the JAX backend (KERAS_BACKEND=tensorflow); "
         "the 4 subjects train one at a time")]
    caplog.clear()
    assert train.resolve_group_size(argparse.Namespace(group_size=1, workers=None, scheduler=None),
                                    cfg, [0, 1, 2, 3], None) == 1
    assert not caplog.records  # asked for one at a time: nothing to say
    with pytest.raises(UsageError, match=r"--group-size 2: training several subjects together needs the JAX"):
        train.resolve_group_size(argparse.Namespace(group_size=2, workers=None, scheduler=None),
                                 cfg, [0, 1, 2, 3], None)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert train.resolve_group_size(argparse.Namespace(group_size="auto", workers=2, scheduler=None),
                                    cfg, [0, 1, 2, 3], None) == 2  # spread over the Dask workers
