"""qmvpa.preproc: stratified split, per-image z-scoring, unit subsampling."""

import numpy as np
import pytest

from qmvpa import preproc


def _labels(n_per_class=20, n_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(n_classes), n_per_class))


@pytest.mark.parametrize("seed", [0, 1])
def test_split_is_a_stratified_partition(seed):
    labels = _labels()
    fit_idx, test_idx = preproc.stratified_split(labels, test_size=0.2, random_state=seed)
    assert len(fit_idx) == 80 and len(test_idx) == 20
    assert np.array_equal(np.sort(np.concatenate([fit_idx, test_idx])), np.arange(100))
    assert np.all(np.diff(fit_idx) > 0)
    # 20% of every class held out, held-out images sorted by label.
    assert np.array_equal(np.bincount(labels[test_idx]), [4] * 5)
    assert np.all(np.diff(labels[test_idx]) >= 0)


def test_split_is_reproducible_and_seeded():
    labels = _labels()
    a = preproc.stratified_split(labels, random_state=3)
    b = preproc.stratified_split(labels, random_state=3)
    c = preproc.stratified_split(labels, random_state=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_split_class_order():
    labels = _labels(n_classes=4)
    order = (2, 0, 3, 1)
    _, test_idx = preproc.stratified_split(labels, class_order=order)
    held = labels[test_idx]
    blocks = [held[0]] + [b for a, b in zip(held[:-1], held[1:]) if a != b]
    assert blocks == list(order)


@pytest.mark.parametrize("kwargs, match", [
    (dict(test_size=1.5), "test_size must be a fraction"),
    (dict(test_size=0), "test_size must be between 1"),
    (dict(test_size="a"), "test_size must be a float"),
    (dict(class_order=(0, 1, 2)), r"class_order .* lacks the label\(s\) \[3, 4\]"),
    (dict(class_order=(0, 1, 1, 2, 3, 4)), "class_order lists a class twice"),
])
def test_split_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        preproc.stratified_split(_labels(), **kwargs)


def test_split_rejects_singleton_class():
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have fewer"):
        preproc.stratified_split(labels)


def test_zscore_images_columns():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(50, 30)).astype(np.float32)
    Z = preproc.zscore_images(X)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(Z.std(axis=0), 1, atol=1e-5)
    # Same as scikit-learn's StandardScaler on the transpose (what the original code did).
    from sklearn.preprocessing import StandardScaler
    np.testing.assert_allclose(Z, StandardScaler().fit_transform(X.astype(np.float64)), atol=1e-5)


def test_zscore_constant_column_is_zero_not_nan():
    X = np.ones((5, 3))
    X[:, 1] = np.arange(5)
    Z = preproc.zscore_images(X)
    assert np.all(np.isfinite(Z)) and np.all(Z[:, 0] == 0)


def test_zscore_bad_shape():
    with pytest.raises(ValueError, match=r"must be 2-D \(n_units, n_images\)"):
        preproc.zscore_images(np.zeros(5))


def test_subsample_units():
    idx = preproc.subsample_units(5000, 1000, random_state=1)
    assert idx.shape == (1000,) and np.all(np.diff(idx) > 0) and idx.max() < 5000
    assert np.array_equal(idx, preproc.subsample_units(5000, 1000, random_state=1))
    assert not np.array_equal(idx, preproc.subsample_units(5000, 1000, random_state=2))
    assert np.array_equal(preproc.subsample_units(300, 1000), np.arange(300))
    assert np.array_equal(preproc.subsample_units(300, None), np.arange(300))
    with pytest.raises(ValueError, match="max_units must be >= 1"):
        preproc.subsample_units(300, 0)
