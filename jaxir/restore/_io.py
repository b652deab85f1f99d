"""Image files (Pillow): every PNG mode read exactly, atomic writes, the comparison picture.

Read (:func:`read_image`): 1-, 2-, 4-, 8- and 16-bit grayscale, grayscale + alpha, 8- and
16-bit RGB and RGBA, palette images, and any other file Pillow converts to RGB (JPEG, CMYK
TIFF, ...). 16-bit grayscale keeps its 16-bit precision (``v / 65535``); 16-bit RGB(A) PNGs are
read by Pillow as their high bytes (8-bit precision, which is what the output keeps). Alpha is
dropped (the stored colours are restored; ``info["alpha"]`` says there was one). 32-bit
integer and floating-point images are refused: their value range is not defined by the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

#: Pillow modes that hold one grey channel (with or without alpha).
_GRAY_MODES = ("1", "L", "LA", "La", "I;16", "I;16L", "I;16B", "I;16N")
_COLOUR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def to_uint8(x) -> np.ndarray:
    """[-1, 1] float → uint8 [0, 255] (rounded, clipped)."""
    x = np.asarray(x, np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_uint8(x) -> np.ndarray:
    """uint8 [0, 255] → float32 [-1, 1]."""
    return np.asarray(x, np.float32) / 127.5 - 1.0


def from_uint16(x) -> np.ndarray:
    """uint16 [0, 65535] → float32 [-1, 1]."""
    return (np.asarray(x, np.float64) / 32767.5 - 1.0).astype(np.float32)


def _png_header(path: Path) -> tuple[int, int] | None:
    """``(bit depth, colour type)`` from a PNG's IHDR, or None for another format."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24], head[25]
    return None


def read_image(path, channels: int | None = None, *, max_side: int | None = None):
    """Read an image file as ``(array, info)``: ``array`` ``(H, W, C)`` float32 in [-1, 1].

    ``channels`` None keeps the file's kind (C = 1 for grayscale files, 3 for colour); 3 makes
    grayscale RGB (repeated); 1 makes colour luma (Pillow's ITU-R 601 ``"L"`` conversion).
    ``max_side`` refuses, before decoding, a file that claims more pixels a side.
    ``info``: ``gray`` (the file is grayscale), ``alpha`` (it had an alpha channel that was
    dropped), ``bits`` (8 or 16), ``mode`` (Pillow's), ``size`` ``(H, W)``.

    Raises `FileNotFoundError` (missing), `IsADirectoryError` (a folder), `ValueError`
    (unreadable, too large, or a mode without a defined range).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"input image {str(path)!r} is a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"input image {str(path)!r} does not exist")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it and raises beyond: both are refused
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if max_side is not None and max(h, w) > max_side:
                    raise ValueError(f"{str(path)!r} is {h}x{w} pixels; at most {max_side} "
                                     f"a side is accepted")
                arr, info = _decode(im, path, channels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"{str(path)!r} claims too many pixels to decode safely ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as e:
        if isinstance(e, (FileNotFoundError, IsADirectoryError)):
            raise
        raise ValueError(f"cannot read {str(path)!r} as an image ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'not an image'})") from None
    info["size"] = tuple(arr.shape[:2])
    return arr, info


def _decode(im, path: Path, channels: int | None):
    header = _png_header(path) if im.format == "PNG" else None
    mode = im.mode
    gray = mode in _GRAY_MODES or (header is not None and header[1] in (0, 4))
    if mode == "P":
        pal = im.convert("RGB")
        a = np.asarray(pal)
        gray = bool(np.all(a[..., 0] == a[..., 1]) and np.all(a[..., 1] == a[..., 2]))
    alpha = ("A" in mode or "a" in mode or "transparency" in im.info
             or (header is not None and header[1] in (4, 6)))
    bits = 16 if (mode.startswith("I;16") or (header is not None and header[0] == 16)) else 8
    info = {"gray": gray, "alpha": alpha, "bits": bits, "mode": mode}
    if mode in ("I", "F") and not (mode == "I" and header is not None and header[0] == 16):
        raise ValueError(f"{str(path)!r} is a {'32-bit integer' if mode == 'I' else 'float'} "
                         f"image (Pillow mode {mode!r}) whose value range is not defined; save "
                         f"it as an 8- or 16-bit PNG")
    want = channels or (1 if gray else 3)
    if mode.startswith("I"):  # 16-bit grayscale: exact
        g = from_uint16(np.asarray(im, np.uint32).astype(np.float64).clip(0, 65535))
        arr = g[..., None]
        if want == 3:
            arr = np.repeat(arr, 3, -1)
        return arr, info
    if gray and mode in ("LA", "La", "RGBA") and want == 1:  # grey + alpha (16-bit reads as RGBA)
        return from_uint8(np.asarray(im)[..., 0])[..., None], info
    try:
        if want == 1:
            u = np.asarray(im.convert("L"))[..., None]
        else:
            u = np.asarray(im.convert("RGB"))
    except ValueError as e:  # (a decoding failure is an OSError: "cannot read" above)
        raise ValueError(f"cannot convert {str(path)!r} (Pillow mode {mode!r}) to "
                         f"{'grayscale' if want == 1 else 'RGB'}: {e}") from None
    return from_uint8(u), info


def load_image(path, channels: int | None = 3, *, max_side: int | None = None) -> np.ndarray:
    """Read an image file as ``(H, W, C)`` float32 in [-1, 1]: :func:`read_image` without the
    info (``channels`` 3: RGB, 1: grey, None: the file's own kind).

    Raises `FileNotFoundError` for a missing file, `IsADirectoryError` for a folder and
    `ValueError` for one that cannot be read.
    """
    return read_image(path, channels, max_side=max_side)[0]


def load_mask(path, *, max_side: int | None = None) -> np.ndarray:
    """Read a mask image as ``(H, W, 1)`` float32, 1 where observed (brighter than mid-grey:
    white = observed), 0 elsewhere. Errors as :func:`load_image`."""
    return (load_image(path, channels=1, max_side=max_side) > 0).astype(np.float32)


def atomic_write(path, write) -> Path:
    """``write(tmp_path)`` then ``os.replace(tmp_path, path)``, the temporary file beside
    ``path`` (same filesystem): ``path`` is either as it was or complete, never half-written;
    an error leaves no temporary file, a killed process at most a ``.NAME.tmpPID.SUFFIX``
    (``jaxir.distributed.run_shards`` removes stale ones)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _atomic_save(pil_image, path: Path) -> Path:
    """``pil_image`` written to ``path`` through :func:`atomic_write` (format from the
    suffix)."""
    from PIL import Image

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {str(path)!r} from its suffix")
    return atomic_write(path, lambda tmp: pil_image.save(tmp, format=fmt))


def atomic_write_text(path, text: str) -> Path:
    """``text`` (UTF-8) written to ``path`` through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_image(path, x) -> Path:
    """Write ``(H, W, C)`` in [-1, 1] (C = 1: grayscale, C = 3: RGB) as an 8-bit PNG (or the
    suffix's format), atomically (:func:`_atomic_save`)."""
    from PIL import Image

    path = Path(path)
    u = to_uint8(x)
    if u.ndim != 3 or u.shape[-1] not in (1, 3):
        raise ValueError(f"save_image: expected (H, W, 1 or 3), got shape {u.shape}")
    return _atomic_save(Image.fromarray(u[..., 0] if u.shape[-1] == 1 else u), path)


def save_uint8(path, u) -> Path:
    """Write a uint8 ``(H, W, 3)`` or ``(H, W)`` picture atomically."""
    from PIL import Image

    return _atomic_save(Image.fromarray(np.asarray(u, np.uint8)), Path(path))


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
