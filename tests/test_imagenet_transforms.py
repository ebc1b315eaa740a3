"""The image-folder (ImageNet) recipes give the pixels of torchvision's PIL path, checked
against Pillow itself on the two JPEG photographs scikit-learn ships (640 x 427): shorter
side resized with ``Image.resize(..., BILINEAR)``, centre crop, random resized crop = Pillow
crop then resize, bit for bit in uint8. torchvision is not installed; its definitions are
transcribed here (``Resize(int)``, ``CenterCrop``, ``RandomResizedCrop.get_params``)."""
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
from PIL import Image

from common import transforms as T
from common.data import IMAGENET_MEAN, IMAGENET_STD, get_dataset
from common.loader import BatchLoader

PHOTOS = Path(sklearn.datasets.__file__).parent / "images"
NAMES = ("china.jpg", "flower.jpg")


def _open(name, portrait=False):
    """The photo decoded as torchvision's loader does (``convert('RGB')``), or turned a
    quarter to portrait (427 x 640)."""
    with Image.open(PHOTOS / name) as image:
        image = image.convert("RGB")
    return image.transpose(Image.Transpose.ROTATE_90) if portrait else image


def _shorter_side(image, size):
    """torchvision's ``Resize(size)`` on a PIL image."""
    w, h = image.size
    ow, oh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return image.resize((ow, oh), Image.BILINEAR)


def _center_crop(image, size):
    """torchvision's ``CenterCrop(size)`` on a PIL image."""
    w, h = image.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _get_params(h, w, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's ``RandomResizedCrop.get_params`` with its draws taken from ``rng``:
    (top, left, height, width)."""
    area = h * w
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw = int(round(math.sqrt(target_area * aspect_ratio)))
        ch = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1), ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _resized_crop(image, box, size):
    """torchvision's ``F.resized_crop`` on a PIL image: crop, then bilinear resize."""
    top, left, h, w = box
    return image.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)


@pytest.mark.parametrize("portrait", [False, True], ids=["landscape", "portrait"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("resize, size", [(256, 224), (73, 64)])
def test_shorter_side_and_centre_crop_equal_pillow(name, portrait, resize, size):
    image = _open(name, portrait)
    resized = _shorter_side(image, resize)
    ours = T.ShorterSide(resize)(np.asarray(image))
    # 640 * 256 / 427 = 383.7: torchvision truncates to 383, and (383 - 224) / 2 = 79.5
    # rounds to 80 (half to even), so both roundings are exercised
    assert ours.dtype == np.uint8 and ours.shape[:2] == np.asarray(resized).shape[:2]
    assert np.array_equal(ours, np.asarray(resized))
    assert np.array_equal(T.CenterCrop(size)(ours), np.asarray(_center_crop(resized, size)))


@pytest.mark.parametrize("scale", [(0.08, 1.0), (1.0, 1.0)], ids=["sampled", "fallback"])
@pytest.mark.parametrize("name", NAMES)
def test_random_resized_crop_equals_pillow_crop_then_resize(name, scale):
    """A full-area crop of a 3:2 photo fits no ratio in [3/4, 4/3]: ``scale`` (1, 1) takes
    the fallback centre crop after 10 tries."""
    image = _open(name)
    crop = T.RandomResizedCrop(224, scale=scale)
    for seed in range(12):
        ours_rng, ref_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        ours = crop(np.asarray(image), ours_rng)
        box = _get_params(image.height, image.width, ref_rng, scale)
        assert ours.dtype == np.uint8 and ours.shape == (224, 224, 3)
        assert np.array_equal(ours, np.asarray(_resized_crop(image, box, 224))), (seed, box)
        assert ours_rng.random() == ref_rng.random()  # the same number of draws consumed
    if scale == (1.0, 1.0):
        assert box == (0, 35, 427, 569)


def test_pil_resize_refuses_float_pixels():
    with pytest.raises(TypeError, match="uint8"):
        T.pil_resize(np.zeros((8, 8, 3), np.float32), (4, 4))


@pytest.fixture
def photo_folder(tmp_path):
    """An ImageNet-layout folder holding the two photos in train and val, one class each."""
    for split in ("train", "val"):
        for name in NAMES:
            (tmp_path / split / name[:-4]).mkdir(parents=True)
            shutil.copy(PHOTOS / name, tmp_path / split / name[:-4] / name)
    return tmp_path


def _normalised(pixels):
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    return ((np.asarray(pixels) / 255.0 - mean) / std).transpose(2, 0, 1)


def test_validation_batch_equals_pillow_decode_resize_crop(photo_folder):
    """Decode, ``Resize(256)``, ``CenterCrop(224)`` and normalisation through the dataset
    and loader; one grey level is 0.017 after normalisation, float32 round-off 1e-6."""
    val = get_dataset("imagenet", "test", photo_folder)
    images, labels = BatchLoader(val, 2, T.imagenet_test(IMAGENET_MEAN, IMAGENET_STD)).batch(0, 0)
    assert images.shape == (2, 3, 224, 224) and images.dtype == np.float32
    for x, label in zip(images, labels):
        expected = _center_crop(_shorter_side(_open(NAMES[label]), 256), 224)
        assert np.abs(x - _normalised(expected)).max() < 1e-5


def test_training_batches_are_seeded_pillow_crops(photo_folder):
    """Image ``p`` of an epoch's order is Pillow's crop-then-resize of the box drawn from
    ``default_rng([seed, epoch, p])``, mirrored when the next draw is below 0.5; the same
    seed gives the same batch with or without threads, another seed another batch."""
    train = get_dataset("imagenet", "train", photo_folder)
    make = lambda seed, workers: BatchLoader(train, 2, T.imagenet_train(IMAGENET_MEAN, IMAGENET_STD),
                                             shuffle=True, seed=seed, workers=workers)
    flips = set()
    for epoch in range(4):
        (images, labels), = make(5, 2).epoch(epoch)
        (again, _), = make(5, 0).epoch(epoch)
        assert np.array_equal(images, again)
        for place, (x, label) in enumerate(zip(images, labels)):
            image, rng = _open(NAMES[label]), np.random.default_rng([5, epoch, place])
            expected = _resized_crop(image, _get_params(image.height, image.width, rng), 224)
            flip = rng.random() < 0.5
            flips.add(flip)
            if flip:
                expected = expected.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            assert np.abs(x - _normalised(expected)).max() < 1e-5
    assert flips == {False, True}
    (other, _), = make(6, 2).epoch(0)
    assert not np.array_equal(other, next(make(5, 2).epoch(0))[0])
