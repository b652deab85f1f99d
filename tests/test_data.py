"""Tests for jaxir.data: offline sources, get_source, and the deterministic resumable DataLoader."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxir.data import (
    PHOTO_SPLITS,
    ArraySource,
    DataLoader,
    ImageFolder,
    Source,
    digits,
    faces,
    get_source,
    images_to_float,
    images_to_uint8,
    photos,
    tfds_source,
)
from jaxir.data._photos import _load_photo

# ---------------------------------------------------------------------------------------------
# sources


@pytest.fixture(scope="module")
def digits16():
    return digits(size=16)


def _check_example(example, shape, labelled):
    image = example["image"]
    assert image.dtype == np.uint8 and image.shape == shape
    assert ("label" in example) == labelled
    if labelled:
        assert isinstance(example["label"], int)


def test_digits(digits16):
    src = digits16
    assert isinstance(src, Source) and src.name == "digits"
    assert len(src) == 1797
    _check_example(src[0], (16, 16, 1), labelled=True)
    labels = [src[i]["label"] for i in range(len(src))]
    assert sorted(set(labels)) == list(range(10))
    images = np.stack([src[i]["image"] for i in range(50)])
    assert images.min() == 0 and images.max() >= 240  # 0..16 mapped onto 0..255
    assert src[-1]["label"] == src[len(src) - 1]["label"]
    with pytest.raises(IndexError):
        src[len(src)]
    raw = digits(size=None)
    _check_example(raw[3], (8, 8, 1), labelled=True)
    assert raw[3]["image"].max() <= 255 and np.all(raw[3]["image"] % 1 == 0)


def test_faces():
    src = faces(size=32)
    assert len(src) == 100 and src.name == "faces"
    _check_example(src[0], (32, 32, 1), labelled=False)
    both = faces(size=None, include_non_faces=True)
    assert len(both) == 200
    _check_example(both[0], (25, 25, 1), labelled=True)
    assert [both[i]["label"] for i in (0, 99, 100, 199)] == [1, 1, 0, 0]


def test_photos_shapes_and_determinism():
    src = photos(size=48, crops_per_image=4, seed=3)
    assert len(src) == 4 * len(PHOTO_SPLITS["train"])
    for i in range(len(src)):
        _check_example(src[i], (48, 48, 3), labelled=False)
    again = photos(size=48, crops_per_image=4, seed=3)
    other = photos(size=48, crops_per_image=4, seed=4)
    assert all(np.array_equal(src[i]["image"], again[i]["image"]) for i in range(len(src)))
    assert any(src.crop_box(i) != other.crop_box(i) for i in range(len(src)))
    # crop i is the photo's pixels at crop_box(i)
    name, top, left = src.crop_box(5)
    assert name == PHOTO_SPLITS["train"][5 // 4]
    np.testing.assert_array_equal(
        src[5]["image"], _load_photo(name)[top : top + 48, left : left + 48]
    )
    gray = photos(size=32, split="test", crops_per_image=2, channels=1)
    _check_example(gray[0], (32, 32, 1), labelled=False)
    with pytest.raises(ValueError, match="split"):
        photos(split="val")
    with pytest.raises(ValueError, match="smaller than the crop"):
        photos(size=256, scale=0.1, crops_per_image=1)


def test_photos_splits_share_no_image():
    train, test = set(PHOTO_SPLITS["train"]), set(PHOTO_SPLITS["test"])
    assert train and test and not train & test
    test_src = photos(split="test", crops_per_image=8)
    assert {test_src.crop_box(i)[0] for i in range(len(test_src))} == test
    # No held-out photo is pixel-identical (e.g. skimage's cat == chelsea) to a training photo.
    for a in test:
        for b in train:
            pa, pb = _load_photo(a), _load_photo(b)
            assert pa.shape != pb.shape or not np.array_equal(pa, pb), (a, b)


def test_array_source_errors():
    with pytest.raises(ValueError, match="uint8"):
        ArraySource(np.zeros((2, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="labels"):
        ArraySource(np.zeros((2, 4, 4, 1), np.uint8), labels=np.zeros(3, int))


# ---------------------------------------------------------------------------------------------
# ImageFolder


@pytest.fixture
def png_folder(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "b.png": rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
        "a.png": rng.integers(0, 256, (24, 24, 3), dtype=np.uint8),
        "c.PNG": rng.integers(0, 256, (16, 16), dtype=np.uint8),  # grayscale
    }
    for name, a in arrays.items():
        Image.fromarray(a).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path, arrays


def test_image_folder(png_folder):
    path, arrays = png_folder
    src = ImageFolder(path)
    assert [f.name for f in src.files] == ["a.png", "b.png", "c.PNG"]  # sorted, .txt ignored
    np.testing.assert_array_equal(src[0]["image"], arrays["a.png"])
    np.testing.assert_array_equal(src[1]["image"], arrays["b.png"])
    np.testing.assert_array_equal(src[2]["image"], np.repeat(arrays["c.PNG"][..., None], 3, -1))
    sized = ImageFolder(path, size=12)
    for i in range(3):
        _check_example(sized[i], (12, 12, 3), labelled=False)
    gray = ImageFolder(path, size=8, channels=1)
    _check_example(gray[1], (8, 8, 1), labelled=False)
    # images of different sizes need size= in the loader
    with pytest.raises(ValueError, match="different shapes"):
        next(DataLoader(src, 3, seed=0))
    batch = next(DataLoader(src, 3, seed=0, size=10))
    assert batch["image"].shape == (3, 10, 10, 3) and "label" not in batch


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ImageFolder(tmp_path / "file.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="contains no"):
        ImageFolder(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(bad / "good.png")
    (bad / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        ImageFolder(bad)
    lazy = ImageFolder(bad, check=False)  # the error then comes on access, naming the file
    with pytest.raises(ValueError, match="broken.png"):
        lazy[0]
    assert lazy[1]["image"].shape == (4, 4, 3)


# ---------------------------------------------------------------------------------------------
# get_source


def test_get_source(png_folder, tmp_path):
    assert get_source("digits", size=8)[0]["image"].shape == (8, 8, 1)
    assert get_source("faces", size=None)[0]["image"].shape == (25, 25, 1)
    assert get_source("photos", size=16, crops_per_image=1).name == "photos:train"
    assert get_source("photos:test", size=16, crops_per_image=1).name == "photos:test"
    folder = get_source(f"folder:{png_folder[0]}", size=8)
    assert isinstance(folder, ImageFolder) and len(folder) == 3
    for bad in ["mnist", "digits:8", "photos:val", "folder:", "tfds:", "tfds::train", ""]:
        with pytest.raises(ValueError, match="valid forms"):
            get_source(bad)
    with pytest.raises(FileNotFoundError):
        get_source(f"folder:{tmp_path / 'nope'}")


# ---------------------------------------------------------------------------------------------
# DataLoader


@pytest.fixture(scope="module")
def small():
    """40 labelled 12x12 RGB images; every image is distinct (its label is its index)."""
    rng = np.random.default_rng(1)
    return ArraySource(rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8), np.arange(40))


def _take(loader, k):
    return [next(loader) for _ in range(k)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


AUG = {"random_crop": (8, 10), "random_flip": True}


def test_loader_batches(small):
    loader = DataLoader(small, 8, seed=0)
    assert loader.steps_per_epoch == 5 and loader.local_batch_size == 8
    batch = next(loader)
    assert batch["image"].shape == (8, 12, 12, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    np.testing.assert_array_equal(batch["image"], images_to_float(small.images[batch["label"]]))
    assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    np.testing.assert_array_equal(images_to_uint8(batch["image"]), small.images[batch["label"]])
    assert images_to_float(np.array([0, 255], np.uint8)).tolist() == [-1.0, 1.0]
    # one epoch visits every example once
    epoch = np.concatenate([b["label"] for b in [batch, *_take(loader, 4)]])
    assert sorted(epoch) == list(range(40))
    assert loader.state == {"epoch": 1, "position": 0}
    no_shuffle = DataLoader(small, 8, seed=0, shuffle=False)
    assert next(no_shuffle)["label"].tolist() == list(range(8))


def test_loader_same_seed_same_batches(small):
    a = _take(DataLoader(small, 8, seed=5, **AUG), 12)
    b = _take(DataLoader(small, 8, seed=5, **AUG), 12)
    c = _take(DataLoader(small, 8, seed=6, **AUG), 12)
    _assert_same(a, b)
    assert a[0]["image"].shape == (8, 8, 10, 3)
    assert not all(np.array_equal(x["label"], y["label"]) for x, y in zip(a, c))
    assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, c))
    # epochs differ in order
    assert not np.array_equal(
        np.concatenate([x["label"] for x in a[:5]]), np.concatenate([x["label"] for x in a[5:10]])
    )


def test_loader_augmentation_is_applied(small):
    flips = DataLoader(small, 40, seed=0, random_flip=True, shuffle=False)
    images = images_to_uint8(next(flips)["image"])
    flipped = [np.array_equal(im, small.images[i][:, ::-1]) for i, im in enumerate(images)]
    kept = [np.array_equal(im, small.images[i]) for i, im in enumerate(images)]
    assert all(f != k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 35


@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("k", [3, 5, 7])  # inside epoch 0, at the boundary, inside epoch 1
def test_loader_resume(small, k, prefetch):
    kwargs = dict(seed=11, **AUG)
    full = _take(DataLoader(small, 8, **kwargs), 12)
    first = DataLoader(small, 8, prefetch=prefetch, **kwargs)
    head = _take(first, k)
    state = json.loads(json.dumps(first.state))  # JSON round trip: plain ints
    assert set(state) == {"epoch", "position"}
    assert all(type(v) is int for v in state.values())
    first.close()
    resumed = DataLoader(small, 8, prefetch=prefetch, state=state, **kwargs)
    _assert_same(head + _take(resumed, 12 - k), full)
    resumed.close()
    other = DataLoader(small, 8, **kwargs)  # restore() on an existing loader
    _take(other, 1)
    other.restore(state)
    _assert_same(_take(other, 12 - k), full[k:])


def test_loader_state_values(small):
    loader = DataLoader(small, 16, seed=0)  # 2 batches per epoch, 8 examples skipped
    assert loader.state == {"epoch": 0, "position": 0}
    next(loader)
    assert loader.state == {"epoch": 0, "position": 16}
    next(loader)
    assert loader.state == {"epoch": 1, "position": 0}
    for bad in [
        {"epoch": 0},
        {"epoch": -1, "position": 0},
        {"epoch": 0, "position": 41},
        {"epoch": 0.5, "position": 0},
        [0, 0],
    ]:
        with pytest.raises(ValueError, match="state"):
            loader.restore(bad)


@pytest.mark.parametrize("prefetch", [0, 1])
def test_loader_processes_partition_global_batch(small, prefetch):
    kwargs = dict(seed=2, **AUG)
    glob = _take(DataLoader(small, 8, **kwargs), 7)
    hosts = [
        _take(
            DataLoader(small, 8, process_index=p, process_count=4, prefetch=prefetch, **kwargs), 7
        )
        for p in range(4)
    ]
    for step, g in enumerate(glob):
        parts = [h[step] for h in hosts]
        assert all(part["image"].shape[0] == 2 for part in parts)
        labels = [set(part["label"].tolist()) for part in parts]
        assert all(not a & b for i, a in enumerate(labels) for b in labels[i + 1 :])
        for key in g:
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), g[key])
    # resume on a different number of hosts continues the same global stream
    one = DataLoader(small, 8, **kwargs)
    _take(one, 3)
    two = [
        DataLoader(small, 8, process_index=p, process_count=2, state=one.state, **kwargs)
        for p in range(2)
    ]
    for step in range(3, 7):
        both = [next(h) for h in two]
        np.testing.assert_array_equal(
            np.concatenate([b["image"] for b in both]), glob[step]["image"]
        )


def test_loader_epochs_and_remainder(small):
    loader = DataLoader(small, 16, seed=0, drop_remainder=False, shuffle=False, num_epochs=2)
    sizes = [b["image"].shape[0] for b in loader]
    assert sizes == [16, 16, 8, 16, 16, 8] and loader.steps_per_epoch == 3
    with pytest.raises(StopIteration):
        next(loader)
    assert loader.state == {"epoch": 2, "position": 0}
    with DataLoader(small, 16, seed=0, num_epochs=1, prefetch=3) as pre:
        assert len(list(pre)) == 2
        with pytest.raises(StopIteration):
            next(pre)


def test_loader_errors(small):
    with pytest.raises(ValueError, match="divisible"):
        DataLoader(small, 6, seed=0, process_count=4)
    with pytest.raises(ValueError, match="process_index"):
        DataLoader(small, 8, seed=0, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="drop_remainder"):
        DataLoader(small, 8, seed=0, drop_remainder=False, process_count=2)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        DataLoader(small, 41, seed=0)
    with pytest.raises(ValueError, match="seed"):
        DataLoader(small, 8, seed=-1)
    with pytest.raises(ValueError, match="random_crop"):
        DataLoader(small, 8, seed=0, random_crop=(4, 0))
    with pytest.raises(ValueError, match="larger than"):
        next(DataLoader(small, 8, seed=0, random_crop=13))
    with pytest.raises(ValueError, match="larger than"):  # errors cross the prefetch thread
        next(DataLoader(small, 8, seed=0, random_crop=13, prefetch=2))


def test_loader_over_real_sources(digits16):
    batch = next(DataLoader(digits16, 32, seed=0, random_crop=14, random_flip=True))
    assert batch["image"].shape == (32, 14, 14, 1) and batch["label"].shape == (32,)
    crops = photos(size=32, crops_per_image=8)
    batch = next(DataLoader(crops, 16, seed=0, random_flip=True))
    assert batch["image"].shape == (16, 32, 32, 3) and "label" not in batch


# ---------------------------------------------------------------------------------------------
# TFDS (mock_data: no TensorFlow, no network)


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_source_mock(name, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=10):
        src = tfds_source(name, "train")
        assert len(src) == 10 and src.name == f"tfds:{name}:train"
        _check_example(src[3], shape, labelled=True)
        assert 0 <= src[3]["label"] < 10
        with pytest.raises(IndexError):
            src[10]  # tfds itself would not raise
        assert get_source(f"tfds:{name}:test", size=16)[0]["image"].shape == (16, 16, shape[2])
        loader = DataLoader(src, 4, seed=0, random_flip=True)
        batch = next(loader)
        assert batch["image"].shape == (4, *shape) and batch["label"].dtype == np.int32
        resumed = DataLoader(src, 4, seed=0, random_flip=True, state=loader.state)
        _assert_same([next(resumed)], [next(loader)])
        with pytest.raises(ValueError, match="no feature"):
            tfds_source(name, image_key="picture")


def test_tfds_source_missing(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="tfds build mnist --file_format=array_record"):
        tfds_source("mnist", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown TFDS dataset"):
        tfds_source("no_such_dataset_xyz")
