"""Datasets: the official CIFAR files read exactly, the embedded digits, image folders,
the download path, and a clear error naming the file for every bad input."""
import hashlib
import io
import os
import pickle
import shutil
import tarfile

import numpy as np
import pytest

from common import data
from common.data import DatasetError, get_dataset, load_cifar


class _Numpy2Unpickler(pickle.Unpickler):
    """Plain pickle, except that numpy 2's module name maps to numpy 1's (independent of
    the restricted unpickler under test)."""

    def find_class(self, module, name):
        return super().find_class(module.replace("numpy._core", "numpy.core"), name)


def _raw_batches(folder, names):
    with tarfile.open(folder / "cifar-10-python.tar.gz") as tar:
        for n in names:
            f = tar.extractfile(f"cifar-10-batches-py/{n}")
            yield _Numpy2Unpickler(io.BytesIO(f.read()), encoding="bytes").load()


@pytest.mark.parametrize("split, count, files", [
    ("train", 5085, [f"data_batch_{i}" for i in range(1, 6)]),
    ("test", 509, ["test_batch"]),
])
def test_cifar10_mini_read_exactly(cifar10_mini, split, count, files):
    ds = load_cifar("cifar10", cifar10_mini, split)
    assert ds.images.shape == (count, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (count,) and ds.labels.dtype == np.int64
    raw = list(_raw_batches(cifar10_mini, files))
    raw_data = np.concatenate([b[b"data"] for b in raw])
    raw_labels = np.concatenate([b[b"labels"] for b in raw])
    # pixel (n, y, x, c) is byte c*1024 + y*32 + x of row n in the official layout
    assert np.array_equal(ds.images[:, 5, 7, 2], raw_data[:, 2 * 1024 + 5 * 32 + 7])
    assert np.array_equal(ds.images.transpose(0, 3, 1, 2).reshape(count, -1), raw_data)
    assert np.array_equal(ds.labels, raw_labels)
    assert np.array_equal(np.bincount(ds.labels, minlength=10),
                          np.bincount(raw_labels, minlength=10))
    per_batch = len(raw_labels) // len(files)
    for b in range(len(files)):
        counts = np.bincount(ds.labels[b * per_batch:(b + 1) * per_batch], minlength=10)
        assert counts.min() >= 35 and counts.max() <= 120
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"


def test_extracted_folder_equals_archive(cifar10_mini, tmp_path):
    with tarfile.open(cifar10_mini / "cifar-10-python.tar.gz") as tar:
        tar.extractall(tmp_path)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        a, b = load_cifar("cifar10", root, "test"), load_cifar("cifar10", cifar10_mini, "test")
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


def test_missing_dataset_says_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz.*--download"):
        get_dataset("cifar10", "train", tmp_path)
    with pytest.raises(DatasetError, match="needs --data-dir"):
        get_dataset("cifar100", "train")
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        get_dataset("mnist", "train", tmp_path)


def test_truncated_archive_names_the_file(cifar10_mini, tmp_path):
    blob = (cifar10_mini / "cifar-10-python.tar.gz").read_bytes()
    target = tmp_path / "cifar-10-python.tar.gz"
    target.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=f"{target}.*truncated"):
        load_cifar("cifar10", tmp_path, "train")


def test_wrong_format_names_the_file(tmp_path):
    target = tmp_path / "cifar-10-python.tar.gz"
    target.write_bytes(b"this is not an archive")
    with pytest.raises(DatasetError, match=f"{target}"):
        load_cifar("cifar10", tmp_path, "train")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"]}))
    (folder / "test_batch").write_bytes(pickle.dumps({b"filenames": []}))
    with pytest.raises(DatasetError, match="test_batch.*not a CIFAR batch"):
        load_cifar("cifar10", tmp_path, "test")


def test_batch_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"]}))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DatasetError, match="refusing to load"):
        load_cifar("cifar10", tmp_path, "test")
    assert not marker.exists()


def test_download_verifies_checksum_and_moves_atomically(cifar10_mini, tmp_path, monkeypatch):
    archive = cifar10_mini / "cifar-10-python.tar.gz"
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    spec = data.CIFAR["cifar10"]
    monkeypatch.setitem(data.CIFAR, "cifar10", spec.__class__(
        **{**spec.__dict__, "url": archive.as_uri(), "md5": "0" * 32}))
    with pytest.raises(DatasetError, match="checksum"):
        data.download_cifar("cifar10", tmp_path / "bad")
    assert os.listdir(tmp_path / "bad") == []
    monkeypatch.setitem(data.CIFAR, "cifar10", spec.__class__(
        **{**spec.__dict__, "url": archive.as_uri(), "md5": md5}))
    ds = get_dataset("cifar10", "test", tmp_path / "good", download=True)
    assert os.listdir(tmp_path / "good") == ["cifar-10-python.tar.gz"] and len(ds) == 509


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    spec = data.CIFAR["cifar10"]
    monkeypatch.setitem(data.CIFAR, "cifar10", spec.__class__(
        **{**spec.__dict__, "url": (tmp_path / "nowhere.tar.gz").as_uri()}))
    with pytest.raises(DatasetError, match="could not download.*copy cifar-10-python.tar.gz"):
        data.download_cifar("cifar10", tmp_path)
    assert os.listdir(tmp_path) == []


def test_digits_embedded_default():
    from sklearn.datasets import load_digits
    train, test = get_dataset("digits", "train"), get_dataset("digits", "test")
    assert train.images.shape == (1437, 32, 32, 3) and test.images.shape == (360, 32, 32, 3)
    assert train.images.dtype == np.uint8 and set(np.unique(train.labels)) == set(range(10))
    # the split is a partition of the 1,797 real digits
    digits = load_digits()
    assert np.array_equal(np.bincount(np.concatenate([train.labels, test.labels])),
                          np.bincount(digits.target))
    # upsampling keeps each image: its 4x4-block means track the original 8x8 pixels
    small = train.images[..., 0].reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4)) / 255 * 16
    matches = [np.abs(small[i] - digits.images).reshape(len(digits.images), -1).mean(1).argmin()
               for i in range(5)]
    assert all(digits.target[m] == train.labels[i] for i, m in enumerate(matches))
    assert np.array_equal(get_dataset("digits", "train").images, train.images)
    assert np.allclose(train.mean, train.images.reshape(-1, 3).mean(0) / 255)


def _write_png(path, value, size=(6, 5)):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path)


def test_image_folder_imagenet_layout(tmp_path):
    for split in ("train", "val"):
        for c, value in (("n01", 10), ("n02", 200)):
            for i in range(2):
                _write_png(tmp_path / split / c / f"{i}.png", value)
    ds = get_dataset("imagenet", "test", tmp_path)
    assert ds.classes == ["n01", "n02"] and list(ds.labels) == [0, 0, 1, 1]
    assert ds.images[3].shape == (6, 5, 3) and ds.images[3][0, 0, 0] == 200


def test_image_folder_tiny_imagenet_layout(tmp_path):
    for c, value in (("n01", 10), ("n02", 200)):
        _write_png(tmp_path / "train" / c / "images" / f"{c}_0.JPEG", value)
    _write_png(tmp_path / "val" / "images" / "val_0.png", 200)
    _write_png(tmp_path / "val" / "images" / "val_1.png", 10)
    (tmp_path / "val" / "val_annotations.txt").write_text(
        "val_0.png\tn02\t0\t0\t5\t5\nval_1.png\tn01\t0\t0\t5\t5\n")
    train, val = get_dataset("tiny_imagenet", "train", tmp_path), get_dataset("tiny_imagenet", "test", tmp_path)
    assert list(train.labels) == [0, 1] and list(val.labels) == [1, 0]
    assert val.images[0][0, 0, 0] == 200
    (tmp_path / "val" / "images" / "val_1.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="val_1.png: cannot decode"):
        get_dataset("tiny_imagenet", "test", tmp_path).images[1]


def test_image_folder_missing_split(tmp_path):
    with pytest.raises(DatasetError, match="train: no such folder"):
        get_dataset("imagenet", "train", tmp_path)
    shutil.os.makedirs(tmp_path / "train" / "n01")
    with pytest.raises(DatasetError, match="no images found"):
        get_dataset("imagenet", "train", tmp_path)
