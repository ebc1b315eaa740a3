"""Seeded image augmentation on numpy arrays, resampled with Pillow or numpy.

Each transform is called as ``t(image, rng)`` on one H x W x 3 image (uint8, or float32
in [0, 255] after :func:`resize_image` or :class:`ColorJitter`) with a
``numpy.random.Generator``; :class:`Normalize` ends a pipeline and returns a 3 x H x W
float32 array. Because the randomness comes only from ``rng`` and the pixels only from numpy
and Pillow, the same seed gives the same pixels whatever framework trains on them.
The random transforms follow torchvision's definitions (sampling order and ranges).

Two resamplers:

* :func:`pil_resize`, Pillow's bilinear filter on uint8 images, antialiased when shrinking:
  torchvision's transforms on PIL images, as hszhao/SAN's ImageNet recipe ran them. The
  image-folder recipes (:func:`imagenet_train`, :func:`imagenet_test`) use it, and it is the
  default of :class:`Resize` and :class:`RandomResizedCrop`.
* :func:`resize_image`, bilinear interpolation in float32 without antialiasing: the digits
  upsampling (:mod:`common.data`) and the AlexNet recipe (:func:`alexnet_train`).
"""
import math

import numpy as np
from PIL import Image


def resize_image(image, size):
    """Bilinear resize of an H x W x C image to ``size`` = (h, w), half-pixel centres
    (``align_corners=False``), no antialiasing. Returns float32."""
    out_h, out_w = size
    in_h, in_w = image.shape[:2]
    image = image.astype(np.float32, copy=False)

    def axis(n_out, n_in):
        x = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (x - lo).astype(np.float32)

    y0, y1, wy = axis(out_h, in_h)
    x0, x1, wx = axis(out_w, in_w)
    top = image[y0][:, x0] * (1 - wx)[None, :, None] + image[y0][:, x1] * wx[None, :, None]
    bottom = image[y1][:, x0] * (1 - wx)[None, :, None] + image[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def pil_resize(image, size):
    """Pillow's ``Image.resize((w, h), BILINEAR)`` of an H x W x 3 uint8 image to ``size`` =
    (h, w): a triangle filter whose support widens by the scale factor when shrinking
    (antialiasing), in fixed point one axis at a time, rounded to uint8. torchvision's
    ``Resize`` on a PIL image computes exactly this. Returns uint8."""
    if image.dtype != np.uint8:
        raise TypeError(f"pil_resize resamples uint8 pixels, got {image.dtype}")
    out_h, out_w = size
    image = np.ascontiguousarray(image)  # a crop's view: Pillow copies a strided one 100x slower
    pil = Image.frombytes("RGB", image.shape[1::-1], image) if image.ndim == 3 and \
        image.shape[2] == 3 else Image.fromarray(image)
    return np.asarray(pil.resize((out_w, out_h), Image.Resampling.BILINEAR))


class Compose:
    """Apply ``transforms`` in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, rng):
        for t in self.transforms:
            image = t(image, rng)
        return image

    def __repr__(self):
        return f"Compose({self.transforms})"


class PadCrop:
    """Zero-pad by ``pad`` on every side, then crop a random ``size`` x ``size`` window."""

    def __init__(self, size, pad):
        self.size, self.pad = size, pad

    def __call__(self, image, rng):
        p = self.pad
        padded = np.pad(image, ((p, p), (p, p), (0, 0)))
        top = rng.integers(0, padded.shape[0] - self.size + 1)
        left = rng.integers(0, padded.shape[1] - self.size + 1)
        return padded[top:top + self.size, left:left + self.size]


class HorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, image, rng):
        return image[:, ::-1] if rng.random() < self.p else image


class Resize:
    """Bilinear resize to ``size`` (an int for a square, or (h, w)) with ``resize``
    (:func:`pil_resize` or :func:`resize_image`); torchvision's ``Resize(int)``, the shorter
    side, is :class:`ShorterSide`."""

    def __init__(self, size, resize=pil_resize):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.resize = resize

    def __call__(self, image, rng=None):
        return self.resize(image, self.size)


class CenterCrop:
    """Crop the central ``size`` x ``size`` window at torchvision's offsets
    ``int(round((h - size) / 2))`` (half to even) from the top and likewise from the left."""

    def __init__(self, size):
        self.size = size

    def __call__(self, image, rng=None):
        h, w = image.shape[:2]
        top, left = int(round((h - self.size) / 2.0)), int(round((w - self.size) / 2.0))
        return image[top:top + self.size, left:left + self.size]


class RandomResizedCrop:
    """A crop of random area (``scale`` of the image) and aspect ratio (``ratio``), resized
    to ``size`` x ``size`` with ``resize`` (:func:`pil_resize` or :func:`resize_image`);
    torchvision's sampler, 10 tries, then a centre crop, and its crop-then-resize."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), resize=pil_resize):
        self.size, self.scale, self.ratio, self.resize = size, scale, ratio, resize

    def window(self, h, w, rng):
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
        in_ratio = w / h
        if in_ratio < min(self.ratio):
            cw, ch = w, int(round(w / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            ch, cw = h, int(round(h * max(self.ratio)))
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, image, rng):
        top, left, ch, cw = self.window(*image.shape[:2], rng)
        return self.resize(image[top:top + ch, left:left + cw], (self.size, self.size))


def _grey(image):
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114


class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 - x, 1 + x], applied in a
    random order (torchvision's ColorJitter without hue)."""

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0):
        self.amounts = (brightness, contrast, saturation)

    def __call__(self, image, rng):
        image = image.astype(np.float32, copy=False)
        order = rng.permutation(3)
        for op in order:
            amount = self.amounts[op]
            if amount <= 0:
                continue
            f = np.float32(rng.uniform(max(0.0, 1 - amount), 1 + amount))
            if op == 0:
                blend = np.float32(0)
            elif op == 1:
                blend = np.float32(_grey(image).mean())
            else:
                blend = _grey(image)[..., None]
            image = np.clip(f * image + (1 - f) * blend, 0, 255)
        return image


class RandomRotation:
    """Rotate by an angle uniform in [-degrees, degrees] about the image centre, nearest
    neighbour, zero fill (torchvision's RandomRotation defaults)."""

    def __init__(self, degrees):
        self.degrees = degrees

    def __call__(self, image, rng):
        angle = math.radians(rng.uniform(-self.degrees, self.degrees))
        h, w = image.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w]
        cx, cy = xs + 0.5 - w / 2, ys + 0.5 - h / 2
        cos, sin = math.cos(angle), math.sin(angle)
        src_x = np.floor(cos * cx - sin * cy + w / 2).astype(np.int64)
        src_y = np.floor(sin * cx + cos * cy + h / 2).astype(np.int64)
        inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
        out = np.zeros_like(image)
        out[inside] = image[src_y[inside], src_x[inside]]
        return out


class Normalize:
    """Scale to [0, 1], subtract ``mean``, divide by ``std`` and return 3 x H x W float32:
    ``(image.astype(float32) - mean * 255) / (std * 255)`` in float32, computed one channel
    plane at a time (the same values, bit for bit, 10 times faster than on H x W x 3)."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32) * 255
        self.std = np.asarray(std, dtype=np.float32) * 255

    def __call__(self, image, rng=None):
        out = np.empty((image.shape[2],) + image.shape[:2], np.float32)
        for c in range(image.shape[2]):
            np.subtract(image[..., c], self.mean[c], out=out[c], dtype=np.float32)
            out[c] /= self.std[c]
        return out


def normalization(transform):
    """``(mean, std)`` of the :class:`Normalize` step of ``transform`` (a :class:`Compose`
    or a :class:`Normalize`), in [0, 1] pixel units: the float32 values it subtracts and
    divides by (stored for [0, 255] pixels) over 255, as float tuples."""
    steps = transform.transforms if isinstance(transform, Compose) else [transform]
    found = [t for t in steps if isinstance(t, Normalize)]
    if len(found) != 1:
        raise ValueError(f"expected one Normalize step in {transform!r}, found {len(found)}")
    return (tuple(float(m) / 255 for m in found[0].mean), tuple(float(s) / 255 for s in found[0].std))


# --------------------------------------------------------------------------- recipes
def cifar_train(mean, std, size=32, pad=4):
    """Pad-``pad`` random crop and flip (CIFAR recipes; Tiny ImageNet uses size 64, pad 8)."""
    return Compose([PadCrop(size, pad), HorizontalFlip(), Normalize(mean, std)])


def plain(mean, std):
    """Normalisation only (test sets at their native size)."""
    return Compose([Normalize(mean, std)])


def alexnet_train(mean, std):
    """The 128x128 AlexNet recipe: resize 130, colour jitter (0.2, 0.2, 0.2), random resized
    crop 128 with scale (0.6, 1), flip, rotation up to 20 degrees. It resamples in float
    with :func:`resize_image`: the crop resamples the colour jitter's float pixels (which
    :func:`pil_resize` would first round to uint8), and on 32x32 images (digits, CIFAR) the
    resizes enlarge, or shrink at most 130 to 128, where antialiasing hardly acts."""
    return Compose([Resize(130, resize=resize_image), ColorJitter(0.2, 0.2, 0.2),
                    RandomResizedCrop(128, (0.6, 1.0), resize=resize_image),
                    HorizontalFlip(), RandomRotation(20), Normalize(mean, std)])


def alexnet_test(mean, std):
    """Resize 128 with :func:`resize_image` (as :func:`alexnet_train`) and normalise."""
    return Compose([Resize(128, resize=resize_image), Normalize(mean, std)])


def imagenet_train(mean, std, size=224):
    """torchvision's ``RandomResizedCrop(size)`` (Pillow bilinear) and flip: the ImageNet
    recipe on image folders."""
    return Compose([RandomResizedCrop(size), HorizontalFlip(), Normalize(mean, std)])


def imagenet_test(mean, std, size=224, resize=256):
    """torchvision's ``Resize(resize)`` of the shorter side (Pillow bilinear) and
    ``CenterCrop(size)``: the ImageNet validation recipe on image folders."""
    return Compose([ShorterSide(resize), CenterCrop(size), Normalize(mean, std)])


def inference(size, mean, std, resize=pil_resize):
    """The test transform of a recipe for an image of any size: an ImageNet-size model
    (``size`` 224 and up) as :func:`imagenet_test` (the shorter side to ``size * 256 / 224``,
    then the centre crop); a smaller one resizes the whole image to ``size`` x ``size`` with
    ``resize`` (an image of that size passes unchanged, as in the CIFAR recipes' test
    transform; AlexNet's recipe resizes with :func:`resize_image`)."""
    if size >= 224:
        return imagenet_test(mean, std, size, round(size * 256 / 224))
    return Compose([Resize(size, resize=resize), Normalize(mean, std)])


class ShorterSide:
    """torchvision's ``Resize(size)`` with an int: the shorter side becomes ``size`` and the
    longer ``int(size * long / short)`` (truncated), resampled with :func:`pil_resize`."""

    def __init__(self, size):
        self.size = size

    def __call__(self, image, rng=None):
        h, w = image.shape[:2]
        new_long = int(self.size * max(h, w) / min(h, w))
        return pil_resize(image, (self.size, new_long) if h <= w else (new_long, self.size))
