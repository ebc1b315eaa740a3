"""Loader speed: images/s of :class:`common.loader.BatchLoader` with 0, 1 and 2 worker
processes on ImageNet-size JPEGs, and on the embedded digits against the thread loader the
processes replaced.

    python -m scripts.bench_loader --images 160 --batch 16 --iters 7

JPEGs: ``--images`` crops of the photographs scikit-learn and matplotlib ship (china.jpg,
flower.jpg, grace_hopper.jpg), rescaled to ImageNet's typical 500 x 375 (or 375 x 500) and
written at quality 90 into a temporary ``train/<class>/*.JPEG`` folder, read through the
ImageNet 224 train transform (:func:`common.transforms.imagenet_train`). Digits: the CIFAR
train transform (``runs.cifar_transforms``). Each case is one epoch (shuffled, a new
epoch each time) of one loader, whose workers serve all its epochs (their fork is timed
apart); cases run interleaved (:mod:`scripts.timing`), medians over ``--iters``. numpy's and
BLAS's threads are pinned to one before numpy is imported. Then a profile of the JPEG
pipeline: CPU ms per image for JPEG decoding, the random resized crop, the flip and
normalisation, and the image's generator.
"""
import argparse
import os
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=160, help="JPEGs written")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iters", type=int, default=7, help="timed epochs per case")
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    if min(args.images, args.batch, args.iters) < 1 or args.warmup < 0:
        parser.error("--images, --batch and --iters must be at least 1, --warmup >= 0")
    return args


def write_jpegs(root, count):
    """``count`` 500 x 375 / 375 x 500 JPEGs cut from the shipped photographs, ImageNet layout."""
    import matplotlib
    import numpy as np
    import sklearn.datasets
    from PIL import Image

    photos = [os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", name)
              for name in ("china.jpg", "flower.jpg")]
    photos.append(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))
    sources = []
    for path in photos:
        with Image.open(path) as image:
            sources.append(image.convert("RGB"))
    rng = np.random.default_rng(0)
    for i in range(count):
        source = sources[i % len(sources)]
        w, h = source.size
        portrait = i % 4 == 3
        aspect = 375 / 500 if portrait else 500 / 375
        ch = int(min(h, w / aspect) * rng.uniform(0.6, 1.0))
        cw = int(ch * aspect)
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = source.crop((left, top, left + cw, top + ch))
        crop = crop.resize((375, 500) if portrait else (500, 375), Image.Resampling.BICUBIC)
        folder = os.path.join(root, "train", f"n{i % len(sources):08d}")
        os.makedirs(folder, exist_ok=True)
        crop.save(os.path.join(folder, f"{i:05d}.JPEG"), quality=90)


def thread_loader(base):
    """The loader before worker processes: ``workers`` threads, ``2 * workers`` batches ahead."""
    class ThreadLoader(base):
        def epoch(self, epoch):
            plan = self.order(epoch), self.places(epoch)
            with ThreadPoolExecutor(self.workers) as pool:
                pending = deque()
                for b in range(len(self)):
                    pending.append(pool.submit(self.batch, epoch, b, *plan))
                    if len(pending) > 2 * self.workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
    return ThreadLoader


def epochs(loader):
    """A case: one new epoch of ``loader`` per call, every batch consumed."""
    state = {"epoch": 0}

    def run():
        state["epoch"] += 1
        for _ in loader.epoch(state["epoch"]):
            pass
    return run


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    from common import runs, transforms
    from common.data import IMAGENET_MEAN, IMAGENET_STD, Dataset, get_dataset, image_folder_dataset
    from common.loader import BatchLoader
    from scripts.timing import interleaved

    with tempfile.TemporaryDirectory() as root:
        write_jpegs(root, args.images)
        train = image_folder_dataset("imagenet", root, "train")
        transform = transforms.imagenet_train(IMAGENET_MEAN, IMAGENET_STD)
        cases = {f"{w} workers": epochs(BatchLoader(train, args.batch, transform, shuffle=True,
                                                    workers=w)) for w in (0, 1, 2)}
        seconds = interleaved(cases, args.iters, args.warmup, settle=0)
        sizes = {train.images[i].shape[:2] for i in range(min(8, len(train)))}
        print(f"ImageNet 224 train transform, {len(train)} JPEGs of "
              f"{' and '.join(f'{w}x{h}' for h, w in sorted(sizes))}, batch {args.batch}, "
              f"{os.cpu_count()} CPUs, median of {args.iters} epochs")
        report(seconds, len(train), "1 workers")

        # where the time of one image goes: CPU time of the main process (other processes
        # on the machine slow the wall clock, much less this)
        crop, flip_normalise = transform.transforms[0], transforms.Compose(transform.transforms[1:])
        rng, spent = np.random.default_rng(0), np.zeros(4)
        for _ in range(3):
            for i in range(len(train)):
                t0 = time.process_time()
                image = train.images[i]
                t1 = time.process_time()
                image = crop(image, rng)
                t2 = time.process_time()
                flip_normalise(image, rng)
                t3 = time.process_time()
                np.random.default_rng([0, 1, i])
                spent += np.diff([t0, t1, t2, t3, time.process_time()])
        per = spent / (3 * len(train)) * 1e3
        print(f"  CPU per image: JPEG decode {per[0]:.2f} ms, random resized crop {per[1]:.2f} ms, "
              f"flip + normalise {per[2]:.2f} ms, its generator {per[3]:.2f} ms (total "
              f"{per.sum():.2f} ms: {1e3 / per.sum():.0f} img/s on one free core)")
        pixel = Dataset("pixel", "train", np.zeros((1, 1, 1, 3), np.uint8), train.labels[:1],
                        train.classes, train.mean, train.std)

        def fork_and_stop():
            loader = BatchLoader(pixel, 1, lambda image, rng: image, workers=2)
            list(loader.epoch(0))
            loader.close()
        start = interleaved({"start": fork_and_stop}, args.iters, 1, settle=0)["start"]
        print(f"  forking and stopping 2 workers (an epoch of one 1-pixel image): "
              f"{start * 1e3:.1f} ms")

    digits = get_dataset("digits", "train")
    transform = runs.cifar_transforms()[0](digits.mean, digits.std)
    make = lambda cls, w: epochs(cls(digits, 64, transform, shuffle=True, workers=w))
    cases = {"threads, 2 workers": make(thread_loader(BatchLoader), 2)}  # the loader before
    cases.update({f"{w} workers": make(BatchLoader, w) for w in (0, 1, 2)})
    seconds = interleaved(cases, 3 * args.iters, args.warmup, settle=0)
    print(f"digits, CIFAR train transform, {len(digits)} images 32x32, batch 64, "
          f"median of {3 * args.iters} epochs")
    report(seconds, len(digits), "threads, 2 workers")
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


def report(seconds, images, base):
    for name, s in seconds.items():
        print(f"  {name:20s} {images / s:9.1f} img/s  x{seconds[base] / s:.2f} of {base}")


if __name__ == "__main__":
    sys.exit(main())
