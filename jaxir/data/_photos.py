"""Deterministic random crops from the natural photographs that ship with scikit-image / -learn.

Splits are disjoint by whole photograph, so held-out evaluation never sees a training pixel:

- "train": chelsea (the cat; `skimage.data.cat()` is the same picture), rocket,
  motorcycle_left (left view of `stereo_motorcycle()`; the right view is not used at all),
  immunohistochemistry (a stained-tissue microscope photo), sklearn_china, sklearn_flower
  (`sklearn.datasets.load_sample_images()`).
- "test": astronaut, coffee.

Left out: grayscale photos (camera, moon, clock, coins, text, page, brick, grass, gravel), mostly
black scientific images (hubble_deep_field, retina), synthetic ones (colorwheel, logo), and the
images scikit-image would download (eagle, lily, skin, ...). All used files are inside the
installed packages; nothing is downloaded.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from ._image import _check_index, _check_size, _resize, _to_channels

PHOTO_SPLITS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "train": (
            "chelsea",
            "rocket",
            "motorcycle_left",
            "immunohistochemistry",
            "sklearn_china",
            "sklearn_flower",
        ),
        "test": ("astronaut", "coffee"),
    }
)
"""The photographs of each `photos` split (disjoint by image)."""

_DEFAULT_CROPS = {"train": 512, "test": 32}


@functools.cache
def _load_photo(name: str) -> np.ndarray:
    """One photograph as uint8 (H, W, 3), read from the installed package (cached, read-only)."""
    import skimage.data

    if name == "motorcycle_left":
        image = skimage.data.stereo_motorcycle()[0]
    elif name.startswith("sklearn_"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name.removeprefix("sklearn_") + ".jpg")
    else:
        image = getattr(skimage.data, name)()
    image = np.ascontiguousarray(image, dtype=np.uint8)
    image.setflags(write=False)
    return image


class PhotoCrops:
    """Square crops from a fixed list of photographs; crop `i` is a pure function of (seed, i).

    Example `i` comes from photograph `i // crops_per_image` (in `image_names` order); its top-left
    corner is drawn uniformly over all valid positions by `Generator(PCG64(SeedSequence([seed,
    i])))`. Build it with `photos(...)`.
    """

    def __init__(
        self,
        image_names,
        *,
        size: int,
        seed: int,
        crops_per_image: int,
        scale: float = 1.0,
        channels: int = 3,
        name: str = "photos",
    ):
        self.image_names = tuple(image_names)
        if not self.image_names:
            raise ValueError("image_names is empty")
        self.size = _check_size(size)
        if self.size is None:
            raise ValueError("size must be a positive int")
        self.seed = operator.index(seed)
        if self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        self.crops_per_image = operator.index(crops_per_image)
        if self.crops_per_image <= 0:
            raise ValueError(f"crops_per_image must be positive, got {crops_per_image}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.scale = float(scale)
        self.channels = channels
        self.name = name
        images = []
        for n in self.image_names:
            image = _load_photo(n)
            if self.scale != 1.0:
                h, w = image.shape[:2]
                image = _resize(image, round(h * self.scale), round(w * self.scale), "bicubic")
            image = _to_channels(image, channels)
            if min(image.shape[:2]) < self.size:
                raise ValueError(
                    f"photo {n!r} is {image.shape[0]}x{image.shape[1]} after scale={scale}, "
                    f"smaller than the crop size {self.size}"
                )
            images.append(image)
        self._images = images

    def __len__(self) -> int:
        return len(self.image_names) * self.crops_per_image

    def crop_box(self, index) -> tuple[str, int, int]:
        """(photo name, top, left) of crop `index`: where its pixels come from."""
        i = _check_index(index, len(self))
        k = i // self.crops_per_image
        h, w = self._images[k].shape[:2]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, i])))
        top = int(rng.integers(0, h - self.size + 1))
        left = int(rng.integers(0, w - self.size + 1))
        return self.image_names[k], top, left

    def __getitem__(self, index) -> dict[str, Any]:
        name, top, left = self.crop_box(index)
        image = self._images[self.image_names.index(name)]
        return {"image": image[top : top + self.size, left : left + self.size]}

    def __repr__(self) -> str:
        return f"PhotoCrops(name={self.name!r}, images={self.image_names}, n={len(self)})"


def photos(
    size: int = 64,
    split: str = "train",
    *,
    seed: int = 0,
    crops_per_image: int | None = None,
    scale: float = 1.0,
    channels: int = 3,
) -> PhotoCrops:
    """Random-access `size` x `size` crops of natural photographs, split by whole photograph.

    See `PHOTO_SPLITS` for which photographs are in "train" and "test" (disjoint).

    Args:
      size: crop side in pixels.
      split: "train" or "test".
      seed: crop positions are a pure function of (seed, index).
      crops_per_image: crops per photograph, so `len = crops_per_image * n_photos`
        (default 512 for "train", 32 for "test").
      scale: resize each photograph by this factor (bicubic) before cropping; < 1 puts more of
        the scene in a crop.
      channels: 3 (RGB) or 1 (luma).

    Returns:
      a `PhotoCrops` source; items are `{"image": uint8 (size, size, channels)}`, no labels.
      Nothing is downloaded.
    """
    if split not in PHOTO_SPLITS:
        raise ValueError(f"split must be one of {sorted(PHOTO_SPLITS)}, got {split!r}")
    if crops_per_image is None:
        crops_per_image = _DEFAULT_CROPS[split]
    return PhotoCrops(
        PHOTO_SPLITS[split],
        size=size,
        seed=seed,
        crops_per_image=crops_per_image,
        scale=scale,
        channels=channels,
        name=f"photos:{split}",
    )
