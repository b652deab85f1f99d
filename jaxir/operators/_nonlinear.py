"""Nonlinear degradations: JPEG-like quantisation, low-light exposure, Fourier magnitude."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from ..precision import heinsum
from ._base import Operator, _image_shape

# Standard JPEG luminance quantisation table (ITU-T T.81, Annex K, Table K.1).
_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)


def _jpeg_table(quality: int) -> np.ndarray:
    """IJG quality scaling: S = 5000/q (q < 50) or 200 - 2q; Q = floor((T S + 50)/100), >= 1."""
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return np.clip(np.floor((_JPEG_LUMA * scale + 50.0) / 100.0), 1.0, 255.0)


def _dct_matrix(n: int = 8) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D[u, a]`` (rows = frequencies); JPEG's FDCT is ``D B D^T``."""
    u = np.arange(n)[:, None]
    a = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * a + 1) * u / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


def _round(q: Array, mode: str) -> Array:
    if mode == "ste":  # forward: exact rounding; backward: identity
        return q + jax.lax.stop_gradient(jnp.round(q) - q)
    return q - jnp.sin(2 * jnp.pi * q) / (2 * jnp.pi)  # smooth surrogate, fixed points at integers


class JPEGLike(Operator):
    """Differentiable JPEG-like compression (no chroma subsampling, no entropy coding).

    Per channel and 8x8 block: pixels to ``[0, 255] - 128``, orthonormal 2-D DCT-II,
    divide by the standard luminance table scaled by ``quality`` (IJG rule), round, multiply
    back, inverse DCT, ``+128``, clip to ``[0, 255]``, back to ``[-1, 1]``.

    Rounding: ``rounding="ste"`` (default) rounds exactly in the forward pass with a
    straight-through (identity) gradient; ``"sin"`` uses the smooth ``q - sin(2πq)/(2π)``.
    Shapes: ``x_shape == y_shape == (H, W, C)`` with H, W multiples of 8. At quality 100 the
    table is all ones and ``A`` is the identity up to rounding of DCT coefficients.

    Example:
        >>> op = JPEGLike((8, 8, 3), quality=50)
        >>> op.A(jnp.zeros((8, 8, 3))).shape
        (8, 8, 3)
    """

    quality: int = eqx.field(static=True)
    rounding: str = eqx.field(static=True)
    x_shape: tuple[int, int, int] = eqx.field(static=True)
    y_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(self, shape, quality: int = 75, rounding: str = "ste"):
        shape = _image_shape(shape, "shape", "JPEGLike")
        if shape[0] % 8 or shape[1] % 8:
            raise ValueError(f"JPEGLike: `shape` (H, W, C)={shape} needs H and W multiples of 8.")
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEGLike: `quality` must be in [1, 100], got {quality}.")
        if rounding not in ("ste", "sin"):
            raise ValueError(f"JPEGLike: `rounding` must be 'ste' or 'sin', got {rounding!r}.")
        self.x_shape = self.y_shape = shape
        self.quality = int(quality)
        self.rounding = rounding

    def A(self, x: Array) -> Array:
        x = self._cx(x)
        h, w, c = self.x_shape
        d = jnp.asarray(_dct_matrix(8), x.dtype)
        table = jnp.asarray(_jpeg_table(self.quality), x.dtype)[None, :, None, :, None]
        b = ((x + 1.0) * 127.5 - 128.0).reshape(h // 8, 8, w // 8, 8, c)
        coef = heinsum("ua,iajbc,vb->iujvc", d, b, d)
        coef = _round(coef / table, self.rounding) * table
        b = heinsum("ua,iujvc,vb->iajbc", d, coef, d).reshape(h, w, c)
        return jnp.clip(b + 128.0, 0.0, 255.0) / 127.5 - 1.0


class LowLight(Operator):
    """Low-light exposure: ``y = 2 * (clip((x + 1)/2 * exposure, eps, 1)) ** gamma - 1``.

    The intensity is clipped to ``[eps, 1]`` (``eps = 1e-6``; sensor saturation above) so
    ``jax.grad`` stays finite at black pixels even for ``gamma < 1``. ``exposure`` and
    ``gamma`` are array leaves (they can be optimised, as GDP does).
    Elementwise: if ``shape`` is None, ``x_shape`` and ``y_shape`` are None and any shape is
    accepted; otherwise inputs are checked against ``shape``.

    Example:
        >>> LowLight(0.2, 1.0).A(jnp.ones(3))
        Array([-0.6, -0.6, -0.6], dtype=float32)
    """

    exposure: Array
    gamma: Array
    x_shape: tuple[int, ...] | None = eqx.field(static=True)
    y_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, exposure: float = 0.2, gamma: float = 1.0, shape=None):
        self.exposure = jnp.asarray(exposure, jnp.float32)
        self.gamma = jnp.asarray(gamma, jnp.float32)
        if self.exposure.shape or self.gamma.shape:
            raise ValueError("LowLight: `exposure` and `gamma` must be scalars.")
        shape = None if shape is None else tuple(int(s) for s in shape)
        self.x_shape = self.y_shape = shape

    def A(self, x: Array) -> Array:
        x = self._cx(x)
        u = jnp.clip((x + 1.0) * 0.5 * self.exposure, 1e-6, 1.0)
        return 2.0 * u**self.gamma - 1.0


class PhaseRetrieval(Operator):
    """Fourier magnitude of the zero-padded image: ``y = |FFT2(pad(x))|`` per channel.

    The image is zero-padded (centred) to ``(P, Q) = (round(oversample H), round(oversample W))``
    and transformed with the orthonormal 2-D FFT (``norm="ortho"``, DC at index 0, no shift),
    so ``sum y**2 == sum x**2`` (Parseval). The modulus uses a safe square root (gradient 0,
    not NaN, where the spectrum is exactly 0).
    Shapes: ``x (H, W, C) -> y (P, Q, C)``; ``oversample >= 1``.

    Example:
        >>> PhaseRetrieval((8, 8, 1), 2.0).A(jnp.zeros((8, 8, 1))).shape
        (16, 16, 1)
    """

    oversample: float = eqx.field(static=True)
    x_shape: tuple[int, int, int] = eqx.field(static=True)
    y_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(self, shape, oversample: float = 2.0):
        h, w, c = _image_shape(shape, "shape", "PhaseRetrieval")
        if float(oversample) < 1.0:
            raise ValueError(f"PhaseRetrieval: `oversample` must be >= 1, got {oversample}.")
        self.oversample = float(oversample)
        self.x_shape = (h, w, c)
        self.y_shape = (int(round(self.oversample * h)), int(round(self.oversample * w)), c)

    def A(self, x: Array) -> Array:
        x = self._cx(x)
        (h, w, _), (p, q, _) = self.x_shape, self.y_shape
        top, left = (p - h) // 2, (q - w) // 2
        xp = jnp.pad(x, ((top, p - h - top), (left, q - w - left), (0, 0)))
        f = jnp.fft.fft2(xp, axes=(0, 1), norm="ortho")
        m2 = f.real**2 + f.imag**2
        pos = m2 > 0
        return jnp.where(pos, jnp.sqrt(jnp.where(pos, m2, 1.0)), 0.0).astype(x.dtype)
