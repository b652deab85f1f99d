"""Small host-side (numpy + Pillow) image helpers shared by the sources and the loader."""

from __future__ import annotations

import operator

import numpy as np
from PIL import Image

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def _resample(name: str) -> Image.Resampling:
    try:
        return _RESAMPLE[name]
    except KeyError:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {name!r}") from None


def _check_size(size, name: str = "size") -> int | None:
    """`None` or a positive int."""
    if size is None:
        return None
    try:
        size = operator.index(size)
    except TypeError:
        raise ValueError(f"{name} must be a positive int or None, got {size!r}") from None
    if size <= 0:
        raise ValueError(f"{name} must be a positive int or None, got {size}")
    return size


def _check_index(index, length: int) -> int:
    """Python-style index into a sequence of `length` items (negative counts from the end)."""
    try:
        i = operator.index(index)
    except TypeError:
        raise TypeError(f"source indices must be integers, got {type(index).__name__}") from None
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"index {index} out of range for a source of {length} examples")
    return i


def _as_hwc_uint8(image, what: str = "image") -> np.ndarray:
    """Check (and, for (H, W), expand) an image to uint8 (H, W, C)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"{what} must have shape (H, W) or (H, W, C), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 in [0, 255], got dtype {image.dtype}")
    return image


def _float_to_uint8(x: np.ndarray, maximum: float) -> np.ndarray:
    """Map floats in [0, maximum] to uint8 in [0, 255] (rounded, clipped)."""
    return np.clip(np.round(np.asarray(x, np.float64) * (255.0 / maximum)), 0, 255).astype(np.uint8)


def _resize(image: np.ndarray, height: int, width: int, resample: str = "bilinear") -> np.ndarray:
    """Resize uint8 (H, W, C) to (height, width, C) with Pillow (C = 1, 3 or 4)."""
    if image.shape[:2] == (height, width):
        return image
    channels = image.shape[2]
    if channels == 1:
        pil = Image.fromarray(np.ascontiguousarray(image[:, :, 0]))
    elif channels in (3, 4):
        pil = Image.fromarray(np.ascontiguousarray(image))
    else:  # Pillow has no mode for other channel counts: resize channel by channel
        return np.stack(
            [
                _resize(image[:, :, c : c + 1], height, width, resample)[:, :, 0]
                for c in range(channels)
            ],
            axis=-1,
        )
    out = np.asarray(pil.resize((width, height), _resample(resample)))
    return out.reshape(height, width, channels)


def _fit_square(image: np.ndarray, size: int, resample: str = "bilinear") -> np.ndarray:
    """Resize so the shorter side is `size`, then take the central `size` x `size` crop."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    image = _resize(image, nh, nw, resample)
    top, left = (nh - size) // 2, (nw - size) // 2
    return image[top : top + size, left : left + size]


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Convert uint8 (H, W, C) between gray (1) and RGB (3); RGBA drops alpha."""
    c = image.shape[2]
    if c == channels:
        return image
    if c == 4:
        image, c = image[:, :, :3], 3
        if channels == 3:
            return image
    if c == 1 and channels == 3:
        return np.repeat(image, 3, axis=2)
    if c == 3 and channels == 1:
        gray = np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("L"))
        return gray[:, :, None]
    raise ValueError(f"cannot convert an image with {c} channels to {channels} channels")
