"""Every PNG mode in and out of ``jaxir restore``: read exactly (against values written by an
independent PNG encoder below, not by Pillow), grayscale in → grayscale out.

``--method pinv --task denoise`` is the identity (A = I, so A⁺y = y), so the file it writes must
equal the input rounded to 8 bits: ``round(v · 255 / (2^b − 1))`` for a b-bit grey value v, the
high byte of a 16-bit colour value (Pillow reads 16-bit RGB(A) as its high bytes), the palette's
colour for a palette index.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxir.cli import main
from jaxir.restore import read_image


def write_png(path: Path, a: np.ndarray, bit_depth: int, color_type: int, palette=None) -> Path:
    """A minimal PNG encoder (filter 0, one IDAT): colour type 0 grey, 2 RGB, 3 palette,
    4 grey + alpha, 6 RGBA; bit depths 1, 2, 4 (grey / palette), 8 and 16."""
    a = np.asarray(a)
    h, w = a.shape[:2]
    if bit_depth == 16:
        rows = a.astype(">u2").reshape(h, -1).view(np.uint8).reshape(h, -1)
    elif bit_depth < 8:
        per = 8 // bit_depth
        padded = np.zeros((h, -(-w // per) * per), np.uint16)
        padded[:, :w] = a.reshape(h, w)
        b = padded.reshape(h, -1, per)
        packed = np.zeros(b.shape[:2], np.uint16)
        for k in range(per):
            packed = (packed << bit_depth) | b[..., k]
        rows = packed.astype(np.uint8)
    else:
        rows = a.astype(np.uint8).reshape(h, -1)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    blob = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth,
                                                            color_type, 0, 0, 0))
    if palette is not None:
        blob += chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    path.write_bytes(blob + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


H, W = 20, 18
RNG = np.random.default_rng(0)
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 200, 0], [10, 20, 250]])
GRAY_PALETTE = np.array([[0, 0, 0], [90, 90, 90], [200, 200, 200], [255, 255, 255]])


def _case(name):
    """(array written, bit depth, colour type, palette, expected 8-bit output, expected float
    read, gray, alpha)."""
    if name.startswith("gray"):
        b = int(name[4:])
        v = RNG.integers(0, 2**b, (H, W))
        out = np.round(v * 255 / (2**b - 1)).astype(np.uint8)[..., None]
        return v, b, 0, None, out, (v / (2**b - 1) * 2 - 1)[..., None], True, False
    if name in ("la8", "la16"):
        b = int(name[2:])
        v = RNG.integers(0, 2**b, (H, W, 2))
        g = v[..., 0] if b == 8 else v[..., 0] >> 8
        return v, b, 4, None, g.astype(np.uint8)[..., None], g[..., None] / 127.5 - 1, True, True
    if name in ("rgb8", "rgb16", "rgba8", "rgba16"):
        b = int(name[-1] if name.endswith("8") else 16)
        c = 4 if name.startswith("rgba") else 3
        v = RNG.integers(0, 2**b, (H, W, c))
        hi = (v if b == 8 else v >> 8)[..., :3]
        return v, b, 6 if c == 4 else 2, None, hi.astype(np.uint8), hi / 127.5 - 1, False, c == 4
    if name in ("palette", "palette_gray"):
        pal = GRAY_PALETTE if name == "palette_gray" else PALETTE
        v = RNG.integers(0, 4, (H, W))
        col = pal[v]
        gray = name == "palette_gray"
        out = col[..., :1] if gray else col
        return v, 8, 3, pal, out.astype(np.uint8), out / 127.5 - 1, gray, False
    raise KeyError(name)


MODES = ["gray1", "gray2", "gray4", "gray8", "gray16", "la8", "la16", "rgb8", "rgb16", "rgba8",
         "rgba16", "palette", "palette_gray"]


@pytest.mark.parametrize("name", MODES)
def test_read_image_every_png_mode(name, tmp_path):
    v, b, ct, pal, _, want, gray, alpha = _case(name)
    path = write_png(tmp_path / f"{name}.png", v, b, ct, pal)
    x, info = read_image(path)
    assert info["gray"] == gray and info["alpha"] == alpha, info
    assert x.shape == (H, W, 1 if gray else 3) and x.dtype == np.float32
    # float32 of v / (2^b - 1) * 2 - 1: exact to float32 rounding
    np.testing.assert_allclose(x, want, rtol=0, atol=2e-7 * (2 if b == 16 else 1) + 1e-7)
    x3 = read_image(path, 3)[0]
    assert x3.shape == (H, W, 3)
    if gray:
        np.testing.assert_array_equal(x3, np.repeat(x, 3, -1))


@pytest.mark.parametrize("name", MODES)
def test_restore_round_trip_keeps_mode_and_values(name, tmp_path, capsys):
    """``jaxir restore --method pinv --task denoise`` (the identity) writes the input back:
    grey files as 8-bit grey ("L"), colour ones as RGB, values exact after rounding to 8 bits
    (the 16-bit grey bug this guards against wrote near-white: mean 252 for 78)."""
    v, b, ct, pal, out8, _, gray, _ = _case(name)
    src = write_png(tmp_path / f"{name}.png", v, b, ct, pal)
    dst = tmp_path / "out.png"
    assert main(["restore", "--method", "pinv", "--task", "denoise", str(src), "-o",
                 str(dst)]) == 0
    im = Image.open(dst)
    assert im.mode == ("L" if gray else "RGB")
    got = np.asarray(im)
    got = got[..., None] if got.ndim == 2 else got
    np.testing.assert_array_equal(got, out8)
    assert ("alpha channel is ignored" in capsys.readouterr().out) == (ct in (4, 6))


def test_sixteen_bit_gray_metrics_use_the_true_image(tmp_path, capsys):
    """--degrade on a dark 16-bit grey photo: the printed PSNR of A⁺y is that of σ = 25/255
    noise on the true image (about 20.2 dB before clipping), not of a near-white image."""
    v = (np.full((32, 32), 78 * 257) + RNG.integers(-2000, 2000, (32, 32))).astype(np.int64)
    src = write_png(tmp_path / "g16.png", v, 16, 0)
    dst = tmp_path / "o.png"
    assert main(["restore", "--method", "gaussian", "--task", "denoise", str(src), "--degrade",
                 "-o", str(dst)]) == 0
    out = np.asarray(Image.open(dst), np.float64)
    assert Image.open(dst).mode == "L"
    # the noise's mean over 1024 pixels has sd 25/√1024 = 0.78 grey levels: 3 levels ≈ 4 sd
    assert abs(out.mean() - v.mean() / 257) < 3, out.mean()
    text = capsys.readouterr().out
    psnr_input = float(text.split("(A+y): PSNR")[1].split("dB")[0])
    # σ = 2·25/255 in [-1, 1] units → PSNR = 20 log10(2 / σ) = 20.17 dB; the MSE of 1024 noise
    # values has relative sd √(2/1024) = 4.4 %, i.e. 0.19 dB: 5 sd = 1 dB
    assert abs(psnr_input - 20.17) < 1.0, text


def test_colour_restorations_of_grey_input_are_grey(tmp_path, capsys):
    """A grey file through a colour (RGB) method path comes back grey: SR by bicubic."""
    v = RNG.integers(0, 256, (16, 12))
    src = write_png(tmp_path / "g8.png", v, 8, 0)
    dst = tmp_path / "up.png"
    assert main(["restore", "--method", "bicubic", "--task", "sr4", str(src), "-o",
                 str(dst)]) == 0
    im = Image.open(dst)
    assert im.mode == "L" and im.size == (48, 64)
