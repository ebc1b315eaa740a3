"""Batches prepared in worker processes: the same seed gives the same batches bit for bit
with 0, 1 or 2 workers (in-memory arrays, JPEG folders, a distributed run's shares), skipped
images are counted in the main process, errors in a worker reach the consumer, and no worker
outlives its epoch."""
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
from PIL import Image

from common import transforms as T
from common.data import IMAGENET_MEAN, IMAGENET_STD, DatasetError, get_dataset, image_folder_dataset
from common.loader import BatchLoader
from common.loader import ShardLoader

PHOTO = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", "train")


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    """An ImageNet-layout folder of 11 small real JPEGs (crops of a photograph) in two
    classes, and one file that is not a JPEG."""
    root = tmp_path_factory.mktemp("jpegs")
    with Image.open(PHOTO) as photo:
        photo = photo.convert("RGB")
    for i in range(11):
        folder = root / "train" / ("ant" if i % 2 else "bee")
        folder.mkdir(parents=True, exist_ok=True)
        crop = photo.crop((37 * i, 23 * i, 37 * i + 160, 23 * i + 120)).resize((80, 60))
        crop.save(folder / f"{i}.JPEG", quality=90)
    return root


def _epoch(loader, epoch):
    return [(x.copy(), y.copy()) for x, y in loader.epoch(epoch)]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x1, x2) and np.array_equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b))


def _no_workers_left():
    return multiprocessing.active_children() == []


def test_in_memory_batches_whatever_the_workers(digits):
    make = lambda workers: BatchLoader(digits, 100, T.cifar_train(digits.mean, digits.std),
                                       shuffle=True, seed=7, workers=workers)
    one = _epoch(make(0), 3)
    assert len(one) == 15 and len(one[-1][1]) == 37  # the short last batch is kept
    assert _same(one, _epoch(make(1), 3)) and _same(one, _epoch(make(2), 3))
    assert _no_workers_left()  # the loaders are gone: so are their workers


def test_jpeg_folder_batches_whatever_the_workers(jpegs):
    train = image_folder_dataset("imagenet", jpegs, "train")
    make = lambda workers: BatchLoader(train, 3, T.imagenet_train(IMAGENET_MEAN, IMAGENET_STD, 32),
                                       shuffle=True, drop_last=True, seed=5, workers=workers)
    one = _epoch(make(0), 2)
    assert len(one) == 3 and one[0][0].shape == (3, 3, 32, 32)
    assert _same(one, _epoch(make(1), 2)) and _same(one, _epoch(make(2), 2))
    assert not _same(one, _epoch(make(2), 3))


@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_whatever_the_workers(drop_last):
    small = get_dataset("digits", "test")  # 360 images: 2 processes of 25 in batches of 50
    make = lambda rank, workers: ShardLoader(small, 50, T.cifar_train(small.mean, small.std),
                                             rank=rank, world=2, shuffle=True, seed=3,
                                             drop_last=drop_last, workers=workers)
    for rank in (0, 1):
        one = _epoch(make(rank, 0), 1)
        assert len(one) == len(make(rank, 0))
        assert _same(one, _epoch(make(rank, 1), 1)) and _same(one, _epoch(make(rank, 2), 1))


def test_a_corrupt_image_is_skipped_and_counted_in_the_main_process(jpegs, tmp_path):
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    for c in ("ant", "bee"):
        (root / "train" / c).symlink_to(jpegs / "train" / c)
    (root / "train" / "cat").mkdir()
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    train = image_folder_dataset("imagenet", root, "train")
    transform = T.imagenet_train(IMAGENET_MEAN, IMAGENET_STD, 16)
    messages = []
    loader = BatchLoader(train, 1, transform, shuffle=True, seed=1, workers=2,
                         skip_bad=messages.append)
    batches = _epoch(loader, 0)
    assert len(batches) == 11 and loader.skipped(0) == 1  # its batch, left empty, is not yielded
    assert len(messages) == 1 and "broken.jpg: cannot decode image" in messages[0]
    assert _same(batches, _epoch(BatchLoader(train, 1, transform, shuffle=True, seed=1, workers=0,
                                             skip_bad=lambda m: None), 0))
    loader.close()
    with pytest.raises(DatasetError, match="broken.jpg: cannot decode image"):
        _epoch(BatchLoader(train, 4, transform, workers=2), 0)  # no skip_bad: fatal
    assert _no_workers_left()


def test_an_error_in_a_worker_reaches_the_consumer(digits):
    def fails(image, rng):
        raise ValueError(f"no pixels for an image of shape {image.shape}")

    with pytest.raises(ValueError, match=r"no pixels for an image of shape \(32, 32, 3\)") as error:
        _epoch(BatchLoader(digits, 50, fails, workers=2), 0)
    assert any("loader worker" in note and "fails" in note for note in error.value.__notes__)
    assert _no_workers_left()

    def dies(image, rng):
        os._exit(3)

    with pytest.raises(RuntimeError, match=r"worker 0 .* stopped unexpectedly \(exit code 3\)"):
        _epoch(BatchLoader(digits, 50, dies, workers=2), 0)
    assert _no_workers_left()


def test_workers_serve_every_epoch_and_stop_when_one_is_left_early(digits):
    loader = BatchLoader(digits, 10, T.cifar_train(digits.mean, digits.std), shuffle=True,
                         workers=2)
    _epoch(loader, 0)
    workers = {p.pid for p in multiprocessing.active_children()}
    assert len(workers) == 2
    _epoch(loader, 1)
    assert {p.pid for p in multiprocessing.active_children()} == workers  # the same processes
    for index, _ in enumerate(loader.epoch(2)):
        if index == 2:
            break  # as fit does at --max-batches
    assert _no_workers_left()
    batches = loader.epoch(3)
    next(batches)
    assert len(multiprocessing.active_children()) == 2
    batches.close()
    assert _no_workers_left()
    _epoch(loader, 4)
    loader.close()
    assert _no_workers_left()
    _epoch(loader, 5)
    del loader  # garbage-collected: its workers stop
    assert _no_workers_left()


def test_a_new_transform_or_an_epoch_beside_another_gets_its_own_workers(digits):
    loader = BatchLoader(digits, 100, T.cifar_train(digits.mean, digits.std), shuffle=True,
                         workers=1)
    first = _epoch(loader, 0)
    loader.transform = T.plain(digits.mean, digits.std)
    plain = _epoch(loader, 0)
    alone = BatchLoader(digits, 100, loader.transform, shuffle=True, workers=0)
    assert _same(plain, _epoch(alone, 0))
    loader.transform = T.cifar_train(digits.mean, digits.std)
    pairs = list(zip(loader.epoch(0), loader.epoch(0)))
    assert all(np.array_equal(a[0], b[0]) for a, b in pairs)
    assert _same(first, [a for a, _ in pairs])
    loader.close()
    assert _no_workers_left()
