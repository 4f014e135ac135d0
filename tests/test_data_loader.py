"""Datasets: the real CIFAR code path on tiny archives, the paper's preprocessing, clear errors."""

import numpy as np
import pytest
from cifar_fixture import FIXTURE_ENV, cifar_members, make_cifar_archive

from nnsrm import data_loader


@pytest.mark.parametrize("name, n_classes, label_key, train_members",
                         [("cifar10", 10, b"labels", [f"data_batch_{i}" for i in range(1, 6)]),
                          ("cifar100", 100, b"fine_labels", ["train"])])
def test_tiny_cifar_archive_loads_with_paper_preprocessing(tmp_path, monkeypatch, name, n_classes,
                                                            label_key, train_members):
    monkeypatch.setenv(*FIXTURE_ENV)
    make_cifar_archive(tmp_path, name)
    ds = data_loader.load_dataset(name, data_dir=tmp_path)
    members = cifar_members(name)  # what the archive holds
    raw_train = np.concatenate([members[m][b"data"] for m in train_members])
    raw_test = members["test" if name == "cifar100" else "test_batch"]
    # Official layout: 3 planes of 32×32, channel-major; ours is channels-last.
    img_train = raw_train.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32)
    img_test = raw_test[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32)
    mean_image = img_train.mean(axis=0)
    np.testing.assert_allclose(ds.x_train, (img_train - mean_image) / 128.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, (img_test - mean_image) / 128.0, atol=1e-5)
    np.testing.assert_array_equal(ds.y_test, raw_test[label_key])
    assert ds.x_train.dtype == np.float32 and ds.input_shape == (32, 32, 3)
    assert ds.n_classes == n_classes
    assert ds.y_test_onehot.shape == (len(ds.y_test), n_classes)
    np.testing.assert_array_equal(ds.y_test_onehot.argmax(1), ds.y_test)
    # Red channel of pixel (0, 1) of image 0 is byte 1 of the row; green is byte 1024 + 1.
    assert img_train[0, 0, 1, 0] == raw_train[0, 1] and img_train[0, 0, 1, 1] == raw_train[0, 1025]


def test_digits_is_offline_stratified_and_centred():
    ds = data_loader.load_dataset("digits")
    assert ds.input_shape == (8, 8, 1) and ds.n_classes == 10
    assert len(ds.x_train) + len(ds.x_test) == 1797
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-6)
    counts = np.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 85  # stratified: every class about half of its ~180 images
    again = data_loader.load_dataset("digits")
    np.testing.assert_array_equal(ds.x_test, again.x_test)


def test_missing_archive_names_the_file_and_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz not found in .*download it"):
        data_loader.load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        data_loader.load_dataset("cifar100", data_dir=tmp_path / "nope")


def test_corrupt_archive_is_a_clear_error(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="not a readable cifar-10-python.tar.gz archive"):
        data_loader.load_dataset("cifar10", data_dir=tmp_path)


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="choose from digits, mnist, cifar10, cifar100"):
        data_loader.load_dataset("imagenet")


def test_mnist_npz_from_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_train=np.arange(20) % 10, x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
             y_test=np.arange(10))
    ds = data_loader.load_dataset("mnist", data_dir=tmp_path)
    assert ds.input_shape == (28, 28, 1) and len(ds.y_test) == 10
    raw = np.load(tmp_path / "mnist.npz")
    # The original study's MNIST preprocessing: pixels / 255, no mean image subtracted.
    np.testing.assert_allclose(ds.x_train[..., 0], raw["x_train"] / 255.0, atol=1e-7)
    centred = data_loader.load_dataset("mnist", data_dir=tmp_path, subtract_mean=True)
    np.testing.assert_allclose(centred.x_train.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(centred.x_test, ds.x_test - ds.x_train.mean(axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="subtract_mean must be True, False or None, got 'no'"):
        data_loader.load_dataset("mnist", data_dir=tmp_path, subtract_mean="no")
