"""Datasets read from their official files, as uint8 images and int64 labels.

* CIFAR-10 / CIFAR-100: the official python archives (``cifar-10-python.tar.gz``) or their
  extracted folders; :func:`download_cifar` fetches and verifies the archive.
* Tiny ImageNet and ImageNet: image folders (see :class:`ImageFolder`).
* ``digits``: the embedded default, scikit-learn's 1,797 real 8x8 hand-written digits
  upsampled to 32x32 RGB with a fixed train/test split, so everything runs offline.

Every dataset has ``images`` (an ``N x H x W x 3`` uint8 array, or an :class:`ImageFolder`
that decodes on access), ``labels`` (int64), ``classes`` and the channel ``mean``/``std``
used to normalise it.
"""
import functools
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass

import numpy as np

from .checkpoint import CheckpointError, safe_loads_pickle

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


class DatasetError(RuntimeError):
    """A dataset that is missing or unreadable; the message names the file and what to do."""


@dataclass
class Dataset:
    name: str
    split: str
    images: object          # uint8 array N x H x W x 3, or an ImageFolder
    labels: np.ndarray      # int64, N
    classes: list
    mean: tuple
    std: tuple

    def __len__(self):
        return len(self.labels)

    @property
    def num_classes(self):
        return len(self.classes)


# --------------------------------------------------------------------------- CIFAR
@dataclass(frozen=True)
class _CifarSpec:
    archive: str
    folder: str
    url: str
    md5: str
    train_files: tuple
    test_files: tuple
    label_key: bytes
    meta_file: str
    names_key: bytes


CIFAR = {
    "cifar10": _CifarSpec("cifar-10-python.tar.gz", "cifar-10-batches-py",
                          "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                          "c58f30108f718f92721af3b95e74349a",
                          tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                          b"labels", "batches.meta", b"label_names"),
    "cifar100": _CifarSpec("cifar-100-python.tar.gz", "cifar-100-python",
                           "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                           "eb9058c3a382ffc7106e4002c42a8d85",
                           ("train",), ("test",), b"fine_labels", "meta", b"fine_label_names"),
}


def _cifar_reader(name, root):
    """Return (where, read(member) -> bytes) for the archive or the extracted folder."""
    spec = CIFAR[name]
    root = os.fspath(root)
    candidates = [root, os.path.join(root, spec.folder), os.path.join(root, spec.archive)]
    for path in candidates:
        if os.path.isdir(path) and os.path.exists(os.path.join(path, spec.meta_file)):
            def read(member, path=path):
                file = os.path.join(path, member)
                if not os.path.exists(file):
                    raise DatasetError(f"{file}: missing from the extracted {name} folder")
                with open(file, "rb") as f:
                    return f.read(), file
            return path, read
        if os.path.isfile(path) and (path.endswith(".tar.gz") or path.endswith(".tgz")):
            return path, _tar_reader(path, spec.folder)
    raise DatasetError(
        f"{name} not found under {root}: expected {spec.archive} or the folder {spec.folder}/ "
        f"(the official python version). Download {spec.url} into {root}, or run with "
        f"--download where there is internet.")


def _tar_reader(path, folder):
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"{path}: truncated or not a gzip tar archive ({e})") from None

    def read(member):
        key = f"{folder}/{member}"
        if key not in members:
            raise DatasetError(f"{path}: the archive has no {key}")
        return members[key], f"{path}:{key}"
    return read


def _load_batch(read, member, keys):
    data, where = read(member)
    try:
        batch = safe_loads_pickle(data, where, encoding="bytes")
    except CheckpointError as e:
        raise DatasetError(f"not a CIFAR batch file: {e}") from None
    if not isinstance(batch, dict) or any(k not in batch for k in keys):
        raise DatasetError(f"{where}: not a CIFAR batch (expected the keys "
                           f"{', '.join(k.decode() for k in keys)})")
    return batch


def load_cifar(name, root, split):
    """CIFAR-10 or CIFAR-100 (``name``) from ``root``, ``split`` 'train' or 'test'."""
    if name not in CIFAR:
        raise DatasetError(f"unknown CIFAR variant {name!r}; expected one of {sorted(CIFAR)}")
    spec = CIFAR[name]
    _, read = _cifar_reader(name, root)
    images, labels = [], []
    for member in spec.train_files if split == "train" else spec.test_files:
        batch = _load_batch(read, member, (b"data", spec.label_key))
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(batch[spec.label_key]):
            raise DatasetError(f"{member}: data of shape {data.shape} for "
                               f"{len(batch[spec.label_key])} labels, expected N x 3072")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[spec.label_key], dtype=np.int64))
    meta = _load_batch(read, spec.meta_file, (spec.names_key,))
    classes = [c.decode() for c in meta[spec.names_key]]
    return Dataset(name, split, np.ascontiguousarray(np.concatenate(images)),
                   np.concatenate(labels), classes, CIFAR_MEAN, CIFAR_STD)


def download_cifar(name, root):
    """Download the official archive into ``root``, verify its MD5 and move it into place
    atomically. Returns the archive's path; does nothing if a verified copy is there."""
    spec = CIFAR[name]
    os.makedirs(root, exist_ok=True)
    target = os.path.join(root, spec.archive)
    if os.path.exists(target) and _md5(target) == spec.md5:
        return target
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.archive}.", dir=root)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        digest = _md5(tmp)
        if digest != spec.md5:
            raise DatasetError(f"{spec.url}: checksum {digest} does not match the official "
                               f"{spec.md5}; nothing was written")
        os.replace(tmp, target)
    except OSError as e:
        raise DatasetError(f"could not download {spec.url} ({e}). Without internet, copy "
                           f"{spec.archive} into {root} by hand.") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- image folders
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp")


class ImageFolder:
    """Images decoded on access: ``folder[i]`` is an H x W x 3 uint8 array, decoded by Pillow
    and converted to RGB as torchvision's default image loader does.

    :func:`image_folder_dataset` builds one for the two layouts people have:
    ImageNet (``split/<class>/<image>``) and Tiny ImageNet (``train/<wnid>/images/<image>``,
    ``val/images`` with ``val/val_annotations.txt``).
    """

    def __init__(self, paths):
        self.paths = list(paths)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        from PIL import Image, UnidentifiedImageError
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise DatasetError(f"{path}: cannot decode image ({e})") from None


def _files(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTENSIONS))


def image_folder_dataset(name, root, split, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """ImageNet-style ``root/split/<class>/*`` or Tiny ImageNet's layout under ``root``."""
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise DatasetError(f"{split_dir}: no such folder; {name} expects {root}/train and "
                           f"{root}/val (ImageNet or Tiny ImageNet layout)")
    tiny_val = os.path.join(split_dir, "val_annotations.txt")
    if os.path.exists(tiny_val):  # Tiny ImageNet validation: one folder and an annotation file
        classes = sorted(d for d in os.listdir(os.path.join(root, "train"))
                         if os.path.isdir(os.path.join(root, "train", d)))
        index = {c: i for i, c in enumerate(classes)}
        paths, labels = [], []
        with open(tiny_val) as f:
            for line in f:
                fields = line.split("\t")
                if len(fields) < 2 or fields[1] not in index:
                    raise DatasetError(f"{tiny_val}: bad line {line.strip()!r}")
                paths.append(os.path.join(split_dir, "images", fields[0]))
                labels.append(index[fields[1]])
    else:
        classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
        paths, labels = [], []
        for i, c in enumerate(classes):
            folder = os.path.join(split_dir, c)
            if os.path.isdir(os.path.join(folder, "images")):  # Tiny ImageNet train
                folder = os.path.join(folder, "images")
            files = _files(folder)
            paths += files
            labels += [i] * len(files)
    if not paths:
        raise DatasetError(f"{split_dir}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return Dataset(name, split, ImageFolder(paths), np.asarray(labels, dtype=np.int64),
                   classes, mean, std)


# --------------------------------------------------------------------------- embedded default
DIGITS_TEST_SIZE = 360


@functools.lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits as sklearn_digits

    from .transforms import resize_image
    digits = sklearn_digits()
    grey = np.repeat(digits.images[..., None] * (255.0 / 16.0), 3, axis=3).astype(np.float32)
    images = np.stack([resize_image(g, (32, 32)) for g in grey])
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:-DIGITS_TEST_SIZE], order[-DIGITS_TEST_SIZE:]
    pixels = images[train].reshape(-1, 3) / 255.0
    mean, std = tuple(pixels.mean(0).tolist()), tuple(pixels.std(0).tolist())
    labels = digits.target.astype(np.int64)
    return {split: (images[idx], labels[idx]) for split, idx in (("train", train), ("test", test))}, mean, std


def load_digits(split):
    """scikit-learn's bundled 8x8 digits (1,797 real images, 10 classes), bilinearly upsampled
    to 32x32 RGB uint8; a fixed permutation puts 1,437 images in train and 360 in test.
    Mean and std are those of the train split."""
    splits, mean, std = _digits()
    images, labels = splits[split]
    return Dataset("digits", split, images, labels, [str(d) for d in range(10)], mean, std)


# --------------------------------------------------------------------------- by name
DATASETS = ("digits", "cifar10", "cifar100", "tiny_imagenet", "imagenet")
DEFAULT_DATASET = "digits"


def get_dataset(name, split, data_dir=None, download=False):
    """The ``split`` ('train' or 'test') of dataset ``name`` (see ``DATASETS``).

    ``data_dir`` is where its official files are; ``digits`` needs none. ImageNet-style
    datasets call their test split 'val' on disk."""
    if split not in ("train", "test"):
        raise DatasetError(f"unknown split {split!r}; expected 'train' or 'test'")
    if name == "digits":
        return load_digits(split)
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if data_dir is None:
        raise DatasetError(f"{name} needs --data-dir: the folder holding its official files")
    if name in CIFAR:
        if download:
            download_cifar(name, data_dir)
        return load_cifar(name, data_dir, split)
    return image_folder_dataset(name, data_dir, "train" if split == "train" else "val")
