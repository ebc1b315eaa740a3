"""Seeded augmentation and batching: same seed, same batches bit for bit; each transform
checked against its definition or an independent implementation."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from common import transforms as T
from common.data import get_dataset
from common.loader import BatchLoader
from parity_tests.tolerances import assert_close


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", "train")


def _epoch(loader, epoch):
    return [(x.copy(), y.copy()) for x, y in loader.epoch(epoch)]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x1, x2) and np.array_equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b))


def test_same_seed_same_batches_bit_for_bit(digits):
    make = lambda seed, workers: BatchLoader(digits, 100, T.cifar_train(digits.mean, digits.std),
                                             shuffle=True, drop_last=True, seed=seed, workers=workers)
    first = _epoch(make(7, 2), 3)
    assert len(first) == 14 and first[0][0].shape == (100, 3, 32, 32) and first[0][0].dtype == np.float32
    assert _same(first, _epoch(make(7, 0), 3))          # threads do not change the batches
    assert _same(first, _epoch(make(7, 3), 3))
    assert not np.array_equal(first[0][0], _epoch(make(8, 2), 3)[0][0])   # another seed
    assert not np.array_equal(first[0][1], _epoch(make(7, 2), 4)[0][1])   # another epoch
    # a resumed run: epoch 3 alone equals epoch 3 after epochs 0-2
    loader = make(7, 2)
    for e in range(3):
        _epoch(loader, e)
    assert _same(first, _epoch(loader, 3))


def test_every_image_once_per_epoch(digits):
    loader = BatchLoader(digits, 128, T.plain(digits.mean, digits.std), shuffle=True, seed=1)
    labels = np.concatenate([y for _, y in loader.epoch(0)])
    assert len(loader) == 12 and len(labels) == 1437
    assert np.array_equal(np.bincount(labels), np.bincount(digits.labels))
    unshuffled = BatchLoader(digits, 128, T.plain(digits.mean, digits.std))
    assert np.array_equal(np.concatenate([y for _, y in unshuffled.epoch(5)]), digits.labels)


def test_pad_crop_is_a_window_of_the_padded_image():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    windows = {(t, l) for t in range(9) for l in range(9)}
    seen = set()
    rng = np.random.default_rng(1)
    for _ in range(300):
        out = T.PadCrop(32, 4)(image, rng)
        match = [(t, l) for t, l in windows if np.array_equal(padded[t:t + 32, l:l + 32], out)]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) > 60  # the offsets cover the 9 x 9 possibilities


@pytest.mark.parametrize("size, pad", [(32, 4), (64, 8)])
def test_cifar_pipeline_pixels_by_hand(size, pad):
    """The CIFAR / Tiny ImageNet recipe, pixel for pixel: rows ``top`` to ``top + size`` and
    columns ``left`` to ``left + size`` of the zero-padded image (``top``, then ``left``, drawn
    uniform in 0..2 * pad), mirrored when the next draw is below 0.5, then normalised."""
    mean, std = np.array([0.3, 0.4, 0.5]), np.array([0.2, 0.25, 0.3])
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    seen = set()
    for seed in range(16):
        out = T.cifar_train(mean, std, size, pad)(image, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        top, left, flip = rng.integers(0, 2 * pad + 1), rng.integers(0, 2 * pad + 1), rng.random() < 0.5
        expected = np.zeros((size, size, 3))
        for i in range(size):
            for j in range(size):
                y, x = top + i - pad, left + (size - 1 - j if flip else j) - pad
                if 0 <= y < size and 0 <= x < size:
                    expected[i, j] = image[y, x]
        expected = ((expected / 255 - mean) / std).transpose(2, 0, 1)
        assert out.dtype == np.float32 and np.abs(out - expected).max() < 1e-5
        seen.add((top != pad or left != pad, flip))
    assert {(True, False), (True, True)} <= seen  # shifted windows, mirrored and not


def test_flip_probability_and_normalize():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    rng = np.random.default_rng(0)
    flips = [np.array_equal(T.HorizontalFlip()(image, rng), image[:, ::-1]) for _ in range(2000)]
    assert abs(np.mean(flips) - 0.5) < 0.04
    out = T.Normalize((0.1, 0.2, 0.3), (0.5, 0.25, 0.2))(image)
    expected = (image / 255.0 - np.array([0.1, 0.2, 0.3])) / np.array([0.5, 0.25, 0.2])
    assert out.shape == (3, 2, 3) and np.allclose(out, expected.transpose(2, 0, 1), atol=1e-6)


def test_normalize_is_its_formula_bit_for_bit():
    """Normalize computes plane by plane what the formula computes on H x W x 3, to the bit,
    on uint8 and float pixels and on views (a flip, a crop); so does pil_resize on a view."""
    rng = np.random.default_rng(0)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    m, s = np.float32(mean) * 255, np.float32(std) * 255
    image = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    floats = rng.uniform(0, 255, (9, 7, 3))
    for pixels in (image, image[:, ::-1], image[3:30, 5:40], floats.astype(np.float32), floats):
        expected = np.ascontiguousarray(((pixels.astype(np.float32) - m) / s).transpose(2, 0, 1))
        out = T.Normalize(mean, std)(pixels)
        assert out.dtype == np.float32 and out.flags.c_contiguous and np.array_equal(out, expected)
    crop = image[3:30, 5:40]
    expected = np.asarray(Image.fromarray(crop.copy()).resize((20, 11), Image.Resampling.BILINEAR))
    assert np.array_equal(T.pil_resize(crop, (11, 20)), expected)


def test_normalization_reads_the_pipelines_normalize_step():
    """A recipe's mean/std in [0, 1] units, read back off its pipeline (Normalize keeps them
    for [0, 255] pixels), whichever recipe built it."""
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    for transform in (T.alexnet_test(mean, std), T.cifar_train(mean, std), T.Normalize(mean, std)):
        got_mean, got_std = T.normalization(transform)
        assert_close(got_mean, mean, np.float32, f"mean of {transform!r}")
        assert_close(got_std, std, np.float32, f"std of {transform!r}")
    with pytest.raises(ValueError, match="expected one Normalize step"):
        T.normalization(T.Compose([T.HorizontalFlip()]))


@pytest.mark.parametrize("size", [(130, 130), (16, 20), (7, 45)])
def test_resize_matches_torch_bilinear(size):
    image = np.random.default_rng(0).integers(0, 256, (32, 24, 3)).astype(np.float32)
    ours = T.resize_image(image, size)
    ref = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None], size=size, mode="bilinear",
                        align_corners=False, antialias=False)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() < 1e-3


def test_random_resized_crop_window_statistics():
    crop = T.RandomResizedCrop(128, scale=(0.6, 1.0))
    rng = np.random.default_rng(0)
    windows = [crop.window(130, 130, rng) for _ in range(2000)]
    areas = np.array([h * w for _, _, h, w in windows]) / 130 ** 2
    ratios = np.array([w / h for _, _, h, w in windows])
    assert all(t >= 0 and l >= 0 and t + h <= 130 and l + w <= 130 for t, l, h, w in windows)
    assert areas.min() > 0.58 and areas.max() <= 1.0 and ratios.min() > 0.74 and ratios.max() < 1.35
    assert crop(np.zeros((130, 130, 3), np.uint8), rng).shape == (128, 128, 3)


def test_rotation_and_colour_jitter():
    image = np.random.default_rng(0).integers(0, 256, (20, 20, 3)).astype(np.uint8)
    rng = np.random.default_rng(0)
    assert np.array_equal(T.RandomRotation(0)(image, rng), image)

    class QuarterTurn:  # an rng whose angle draw is exactly 90 degrees
        def uniform(self, low, high):
            return 90.0

    assert np.array_equal(T.RandomRotation(90)(image, QuarterTurn()), np.rot90(image, 1))
    rotated = T.RandomRotation(30)(image.astype(np.float32), np.random.default_rng(5))
    assert rotated.shape == image.shape and (rotated == 0).any()  # corners filled with zeros
    assert np.array_equal(T.ColorJitter(0, 0, 0)(image, rng), image.astype(np.float32))
    bright = T.ColorJitter(brightness=0.2)(np.full((4, 4, 3), 100, np.uint8), np.random.default_rng(3))
    assert 80 <= bright[0, 0, 0] <= 120 and np.all(bright == bright[0, 0, 0])
    grey = np.full((4, 4, 3), 77, np.uint8)  # contrast and saturation leave a flat grey image alone
    assert np.allclose(T.ColorJitter(0, 0.5, 0.5)(grey, rng), 77, atol=1e-3)


def test_alexnet_recipe_shapes(digits):
    loader = BatchLoader(digits, 8, T.alexnet_train(digits.mean, digits.std), seed=0)
    x, _ = loader.batch(0, 0)
    assert x.shape == (8, 3, 128, 128) and np.isfinite(x).all()
    x, _ = BatchLoader(digits, 8, T.alexnet_test(digits.mean, digits.std)).batch(0, 0)
    assert x.shape == (8, 3, 128, 128)
    x, _ = BatchLoader(digits, 4, T.imagenet_test(digits.mean, digits.std, 28, 32)).batch(0, 0)
    assert x.shape == (4, 3, 28, 28)
