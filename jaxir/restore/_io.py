"""Image files (Pillow) and the side-by-side comparison picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_uint8(x) -> np.ndarray:
    """[-1, 1] float → uint8 [0, 255] (rounded, clipped)."""
    x = np.asarray(x, np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_uint8(x) -> np.ndarray:
    """uint8 [0, 255] → float32 [-1, 1]."""
    return np.asarray(x, np.float32) / 127.5 - 1.0


def load_image(path, channels: int = 3) -> np.ndarray:
    """Read an image file as ``(H, W, channels)`` float32 in [-1, 1] (RGB or luma).

    Raises `FileNotFoundError` for a missing file and `ValueError` for one Pillow cannot read.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input image {str(path)!r} does not exist")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"cannot read {str(path)!r} as an image ({type(e).__name__})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return from_uint8(arr)


def load_mask(path) -> np.ndarray:
    """Read a mask image as ``(H, W, 1)`` float32, 1 where observed (brighter than mid-grey:
    white = observed), 0 elsewhere. Errors as :func:`load_image`."""
    return (load_image(path, channels=1) > 0).astype(np.float32)


def save_image(path, x) -> Path:
    """Write ``(H, W, C)`` in [-1, 1] (C = 1 or 3) as an 8-bit PNG (or the suffix's format)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    u = to_uint8(x)
    Image.fromarray(u[..., 0] if u.shape[-1] == 1 else u).save(path)
    return path


def _rgb(u: np.ndarray) -> np.ndarray:
    return np.repeat(u, 3, -1) if u.shape[-1] == 1 else u


def comparison_image(panels, height: int | None = None, label_height: int = 16) -> np.ndarray:
    """Panels side by side with their labels above: ``[(label, (H, W, C) in [-1, 1]), ...]``.

    Every panel is scaled (nearest neighbour, so pixels stay visible) to the height of the
    tallest one (or ``height``). Returns uint8 ``(label_height + H, ΣW + gaps, 3)``.
    """
    from PIL import Image, ImageDraw

    ims = [(lab, _rgb(to_uint8(x))) for lab, x in panels]
    H = height or max(u.shape[0] for _, u in ims)
    scaled = []
    for lab, u in ims:
        w = max(1, round(u.shape[1] * H / u.shape[0]))
        scaled.append((lab, np.asarray(Image.fromarray(u).resize((w, H), Image.NEAREST))))
    gap = 4
    W = sum(u.shape[1] for _, u in scaled) + gap * (len(scaled) - 1)
    canvas = Image.new("RGB", (W, H + label_height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for lab, u in scaled:
        canvas.paste(Image.fromarray(u), (x, label_height))
        draw.text((x + 2, 2), lab, fill=(0, 0, 0))
        x += u.shape[1] + gap
    return np.asarray(canvas)


def compare_path(out) -> Path:
    """``OUT`` with ``_compare.png`` in place of its suffix: ``a/b.png`` → ``a/b_compare.png``."""
    out = Path(out)
    return out.with_name(out.stem + "_compare.png")
