"""qmvpa.decoding: cross-network decoding in the shared space, its native and within-network baselines."""

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from qmvpa import decoding, factor, preproc

N_CLASSES = 4
CHANCE = 1 / N_CLASSES
NEAR_WITHIN = 0.1  # shared transfer may fall this far below the within-network accuracy
NEAR_CHANCE = 0.15  # native transfer of rotated copies stays this close to chance


def rotated_networks(seed, n_networks=4, n_units=20, n_images=240, noise=0.6):
    """Randomly rotated noisy copies of one labelled signal, units × images, and the labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_images) % N_CLASSES
    signal = rng.standard_normal((n_units, N_CLASSES))[:, labels] + rng.standard_normal((n_units, n_images))
    Xs = [ortho_group.rvs(n_units, random_state=int(rng.integers(2**31))) @ signal
          + noise * rng.standard_normal((n_units, n_images)) for _ in range(n_networks)]
    return Xs, labels


def shared_and_native(seed):
    Xs, labels = rotated_networks(seed)
    fit, held_out = preproc.stratified_split(labels, test_size=0.5, random_state=seed)
    model = factor.fit_srm([X[:, fit] for X in Xs], random_state=seed)
    native = [X[:, held_out] for X in Xs]
    return factor.transform(model, native), native, labels[held_out]


@pytest.mark.parametrize("seed", [0, 1])
def test_shared_space_transfers_nearly_as_well_as_within_and_native_is_near_chance(seed):
    shared, native, labels = shared_and_native(seed)
    within = decoding.within_network_accuracy(native, labels)
    transfer = decoding.cross_network_accuracy(shared, labels)
    native_transfer = decoding.cross_network_accuracy(native, labels)
    assert within.shape == transfer.shape == native_transfer.shape == (4,)
    assert within.min() > 0.7  # the signal is decodable at all
    assert transfer.mean() > within.mean() - NEAR_WITHIN
    assert abs(native_transfer.mean() - CHANCE) < NEAR_CHANCE


def test_cross_network_matches_a_hand_built_leave_one_out():
    shared, _, labels = shared_and_native(0)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000))
    ours = decoding.cross_network_accuracy(shared, labels, estimator=estimator)
    for h in range(len(shared)):
        others = [S.T for i, S in enumerate(shared) if i != h]
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000))
        clf.fit(np.vstack(others), np.tile(labels, len(others)))
        assert ours[h] == pytest.approx(clf.score(shared[h].T, labels))


def test_within_matches_sklearn_cross_val_score():
    _, native, labels = shared_and_native(1)
    ours = decoding.within_network_accuracy(native, labels, n_splits=3, random_state=4)
    folds = StratifiedKFold(3, shuffle=True, random_state=4)
    for i, X in enumerate(native):
        expected = cross_val_score(decoding.default_classifier(), X.T, labels, cv=folds).mean()
        assert ours[i] == pytest.approx(expected)
    single = decoding.within_network_accuracy(native[0], labels, n_splits=3, random_state=4)
    assert single.shape == (1,) and single[0] == pytest.approx(ours[0])


def test_string_labels_and_determinism():
    shared, _, labels = shared_and_native(0)
    names = np.array(["cat", "dog", "car", "ship"])[labels]
    a = decoding.cross_network_accuracy(shared, names)
    np.testing.assert_array_equal(a, decoding.cross_network_accuracy(shared, labels))


@pytest.mark.parametrize("call, match", [
    (lambda Xs, y: decoding.cross_network_accuracy(Xs, y[:-1]),
     r"labels has 239 entries but network 0 has 240 images"),
    (lambda Xs, y: decoding.within_network_accuracy(Xs, y[:-1]),
     r"labels has 239 entries but network 0 has 240 images"),
    (lambda Xs, y: decoding.cross_network_accuracy(Xs[:1], y),
     r"needs at least 2 networks .* got 1"),
    (lambda Xs, y: decoding.cross_network_accuracy([Xs[0], Xs[1][:10]], y),
     r"same number of features \(rows\); got \[20, 10\]"),
    (lambda Xs, y: decoding.cross_network_accuracy(Xs, np.zeros_like(y)),
     "at least 2 classes"),
    (lambda Xs, y: decoding.within_network_accuracy([X[:, :12] for X in Xs], y[:12], n_splits=5),
     r"class 0 has 3 images, fewer than n_splits = 5"),
    (lambda Xs, y: decoding.within_network_accuracy(Xs, y, n_splits=1),
     "n_splits must be an integer >= 2"),
    (lambda Xs, y: decoding.cross_network_accuracy([Xs[0][None]] + Xs[1:], y),
     r"Xs\[0\] must be 2-D"),
    (lambda Xs, y: decoding.cross_network_accuracy(Xs[0], y), "Xs must be a list"),
    (lambda Xs, y: decoding.default_classifier(C=0), "C must be a finite number > 0"),
])
def test_bad_input(call, match):
    Xs, labels = rotated_networks(0)
    with pytest.raises(ValueError, match=match):
        call(Xs, labels)
