"""Random-access data sources: the `Source` protocol, in-memory arrays, digits, faces, folders.

A source is anything with `name`, `len(source)` and `source[i] -> {"image": uint8 (H, W, C),
"label": int (optional)}`. Sources hold raw uint8 pixels; scaling to [-1, 1] float32, batching,
shuffling and augmentation are the job of `DataLoader`. Nothing here downloads: digits and faces
ship inside scikit-learn / scikit-image, folders are read from local disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._image import (
    _as_hwc_uint8,
    _check_index,
    _check_size,
    _fit_square,
    _float_to_uint8,
    _resize,
    _to_channels,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@runtime_checkable
class Source(Protocol):
    """What `DataLoader` reads: a named, random-access sequence of examples.

    `source[i]` (0 <= i < len(source)) returns `{"image": uint8 array (H, W, C)}` plus
    `"label": int` when the source is labelled. The same index always returns the same example.
    """

    name: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


class ArraySource:
    """A source over in-memory arrays.

    Args:
      images: uint8 array (N, H, W, C) (or (N, H, W), read as C = 1).
      labels: optional int array (N,).
      name: shown in errors and logs.

    Example:
      >>> import numpy as np
      >>> src = ArraySource(np.zeros((4, 8, 8, 1), np.uint8), labels=np.arange(4))
      >>> len(src), src[1]["image"].shape, src[1]["label"]
      (4, (8, 8, 1), 1)
    """

    def __init__(self, images, labels=None, *, name: str = "array"):
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 with shape (N, H, W, C), got {images.dtype} {images.shape}"
            )
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(
                    f"labels must be integers with shape ({images.shape[0]},), "
                    f"got {labels.dtype} {labels.shape}"
                )
        self.images = images
        self.labels = labels
        self.name = name

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index) -> dict[str, Any]:
        i = _check_index(index, len(self))
        example: dict[str, Any] = {"image": self.images[i]}
        if self.labels is not None:
            example["label"] = int(self.labels[i])
        return example

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, shape={self.images.shape[1:]})"


def _resize_all(images: np.ndarray, size: int | None, resample: str) -> np.ndarray:
    if size is None or images.shape[1:3] == (size, size):
        return images
    return np.stack([_resize(im, size, size, resample) for im in images])


def digits(size: int | None = 32, *, resample: str = "bilinear") -> ArraySource:
    """The scikit-learn handwritten digits (UCI optdigits test set), as a labelled source.

    1797 grayscale images, originally 8 x 8 with values 0..16, mapped to uint8 (x * 255 / 16),
    then resized with Pillow to `size` x `size` (`None` keeps 8 x 8). Labels are the digits 0..9.
    Loaded from the copy inside scikit-learn; nothing is downloaded.

    Returns:
      `ArraySource` named "digits"; `src[i]["image"]` is uint8 (size, size, 1).
    """
    from sklearn.datasets import load_digits

    size = _check_size(size)
    data = load_digits()
    images = _float_to_uint8(data.images, 16.0)[..., None]  # (1797, 8, 8, 1)
    images = _resize_all(images, size, resample)
    return ArraySource(images, data.target.astype(np.int64), name="digits")


def faces(
    size: int | None = 32, *, include_non_faces: bool = False, resample: str = "bilinear"
) -> ArraySource:
    """Grayscale faces from scikit-image's `lfw_subset()` (Labeled Faces in the Wild).

    `lfw_subset()` holds 200 crops of 25 x 25: the first 100 are faces, the last 100 are
    background patches ("non-faces"). By default only the 100 faces are used, unlabelled; with
    `include_non_faces=True` all 200 are used with `label` 1 for a face and 0 for a non-face.
    Images are resized with Pillow to `size` x `size` (`None` keeps 25 x 25). Loaded from the
    copy inside scikit-image; nothing is downloaded.

    Returns:
      `ArraySource` named "faces"; `src[i]["image"]` is uint8 (size, size, 1).
    """
    from skimage.data import lfw_subset

    size = _check_size(size)
    raw = np.asarray(lfw_subset())
    images = raw if raw.dtype == np.uint8 else _float_to_uint8(raw, 1.0)
    images = _resize_all(images[..., None], size, resample)
    if include_non_faces:
        labels = (np.arange(images.shape[0]) < 100).astype(np.int64)
        return ArraySource(images, labels, name="faces")
    return ArraySource(images[:100], name="faces")


class ImageFolder:
    """PNG / JPEG files in a local folder, in sorted path order, decoded with Pillow.

    Args:
      path: the folder.
      size: `None` keeps each file's size (they may differ: give `DataLoader` a `size` or a
        `random_crop`); an int resizes the shorter side to `size` and takes the central
        `size` x `size` crop.
      channels: 3 (RGB; gray files are replicated) or 1 (grayscale; RGB files are converted
        with ITU-R 601-2 luma). Alpha is dropped.
      recursive: also read sub-folders (paths sorted as relative POSIX paths).
      check: open every file's header now, so that a non-image file fails here rather than
        in the middle of training (cost: one file open per image).
      resample: Pillow filter for `size`.

    Raises:
      FileNotFoundError: `path` does not exist or is not a folder.
      ValueError: the folder holds no .png/.jpg/.jpeg file, or a file is not a readable image
        (the message names the file; a file whose pixels are corrupt is reported on access).

    Items are `{"image": uint8 (H, W, channels)}`; no labels. `files` lists the paths.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        size: int | None = None,
        *,
        channels: int = 3,
        recursive: bool = False,
        check: bool = True,
        resample: str = "bilinear",
    ):
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
        if not root.is_dir():
            raise FileNotFoundError(f"{str(root)!r} is not a folder")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        pattern = "**/*" if recursive else "*"
        files = sorted(
            (p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: p.relative_to(root).as_posix(),
        )
        if not files:
            raise ValueError(
                f"image folder {str(root)!r} contains no {'/'.join(IMAGE_EXTENSIONS)} files"
                + ("" if recursive else " (sub-folders are not read)")
            )
        if check:
            for f in files:
                try:
                    with Image.open(f) as im:
                        im.verify()
                except (UnidentifiedImageError, OSError, SyntaxError) as e:
                    raise ValueError(f"cannot read image file {str(f)!r}: {e}") from e
        self.root = root
        self.files = tuple(files)
        self.size = _check_size(size)
        self.channels = channels
        self.resample = resample
        self.name = f"folder:{root}"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> dict[str, Any]:
        f = self.files[_check_index(index, len(self))]
        try:
            with Image.open(f) as im:
                im = im.convert("L" if self.channels == 1 else "RGB")
                image = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ValueError(f"cannot read image file {str(f)!r}: {e}") from e
        image = _to_channels(_as_hwc_uint8(image, str(f)), self.channels)
        if self.size is not None:
            image = _fit_square(image, self.size, self.resample)
        return {"image": image}

    def __repr__(self) -> str:
        return f"ImageFolder({str(self.root)!r}, n={len(self)}, size={self.size})"
