"""Super-resolution: block averaging and separable bicubic downsampling."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import Array

from ._base import _image_shape, _OutputBasis
from ._svd import _constant_first_basis, _group_v, _group_vt, _SeparableSVD


def _check_factor(shape, factor, who: str) -> tuple[tuple[int, int, int], int]:
    shape = _image_shape(shape, "shape", who)
    if int(factor) != factor or int(factor) < 1:
        raise ValueError(f"{who}: `factor` must be a positive int, got {factor!r}.")
    factor = int(factor)
    h, w, _ = shape
    if h % factor or w % factor:
        raise ValueError(
            f"{who}: `shape` (H, W, C)={shape} must have H and W divisible by factor={factor}."
        )
    return shape, factor


def _set_shapes(op, shape, factor, who: str) -> tuple[tuple[int, int, int], int]:
    """Check ``shape`` and ``factor`` and set ``op``'s ``x_shape``, ``y_shape`` and ``factor``."""
    shape, factor = _check_factor(shape, factor, who)
    h, w, c = shape
    op.x_shape, op.y_shape, op.factor = shape, (h // factor, w // factor, c), factor
    return shape, factor


class SuperResolution(_OutputBasis):
    """Block-average downsampling by an integer ``factor`` (DDRM's "SR by averaging").

    ``y[i, j, c] = mean_{a, b < f} x[f i + a, f j + b, c]``;
    shapes ``x (H, W, C) -> y (H/f, W/f, C)``.

    SVD: per block-channel the row ``(1/f^2) 1^T`` has one singular value ``1/f``.
    ``V_T(x)`` is ``[ (H/f * W/f * C,) block coefficients (block sum / f) in y's (h, w, C)
    order, then the (f^2 - 1) orthogonal-complement (DCT) coefficients of each block ]``;
    ``U`` is the flattening of ``y``.

    Example:
        >>> op = SuperResolution((8, 8, 3), 2)
        >>> op.A(jnp.ones((8, 8, 3))).shape
        (4, 4, 3)
    """

    has_svd = True

    q: Array
    factor: int = eqx.field(static=True)
    x_shape: tuple[int, int, int] = eqx.field(static=True)
    y_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(self, shape, factor: int):
        shape, factor = _set_shapes(self, shape, factor, "SuperResolution")
        self.q = jnp.asarray(_constant_first_basis(factor * factor))

    def _blocks(self, x: Array) -> Array:
        h, w, c = self.y_shape
        f = self.factor
        return x.reshape(h, f, w, f, c).transpose(0, 2, 4, 1, 3).reshape(h * w * c, f * f)

    def _unblocks(self, b: Array) -> Array:
        h, w, c = self.y_shape
        f = self.factor
        return b.reshape(h, w, c, f, f).transpose(0, 3, 1, 4, 2).reshape(self.x_shape)

    def A(self, x: Array) -> Array:
        h, w, c = self.y_shape
        f = self.factor
        return self._cx(x).reshape(h, f, w, f, c).mean(axis=(1, 3))

    def A_T(self, y: Array) -> Array:
        f = self.factor
        return jnp.repeat(jnp.repeat(self._cy(y), f, axis=0), f, axis=1) / (f * f)

    def A_pinv(self, y: Array) -> Array:
        f = self.factor
        return jnp.repeat(jnp.repeat(self._cy(y), f, axis=0), f, axis=1)

    def V_T(self, x: Array) -> Array:
        return _group_vt(self._blocks(self._cx(x)), self.q)

    def V(self, z: Array) -> Array:
        return self._unblocks(_group_v(self._czx(z), self.q, self.y_size))

    @property
    def singular_values(self) -> Array:
        return self._pad(jnp.full((self.y_size,), 1.0 / self.factor, jnp.float32))


def _keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys (1981) cubic convolution kernel with parameter ``a`` (bicubic for a = -0.5)."""
    t = np.abs(t)
    inner = (a + 2) * t**3 - (a + 3) * t**2 + 1
    outer = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return np.where(t <= 1, inner, np.where(t < 2, outer, 0.0))


def _bicubic_matrix(n: int, factor: int) -> np.ndarray:
    """1-D bicubic downsampling matrix of shape ``(n // factor, n)`` (float64).

    Output sample ``i`` sits at input coordinate ``c_i = (i + 0.5) f - 0.5`` (pixel centres
    aligned, as in PyTorch/PIL with antialiasing); taps ``j`` with ``|j - c_i| < 2f`` get the
    Keys kernel (a = -0.5) stretched by ``f``, ``W((j - c_i)/f)``; out-of-range taps are
    clamped to the edge pixel (replicate boundary) and each row is normalised to sum to 1,
    so constant images stay constant.
    """
    m = n // factor
    out = np.zeros((m, n))
    for i in range(m):
        c = (i + 0.5) * factor - 0.5
        j = np.arange(int(np.floor(c - 2 * factor)), int(np.ceil(c + 2 * factor)) + 1)
        wts = _keys_cubic((j - c) / factor)
        np.add.at(out[i], np.clip(j, 0, n - 1), wts)
        out[i] /= out[i].sum()
    return out


def _np_svd(m: np.ndarray):
    u, s, vt = np.linalg.svd(m, full_matrices=True)
    return (jnp.asarray(u, jnp.float32), jnp.asarray(s, jnp.float32), jnp.asarray(vt, jnp.float32))


class BicubicSuperResolution(_SeparableSVD):
    """Separable bicubic downsampling (Keys kernel, a = -0.5) by an integer ``factor``.

    ``y[:, :, c] = M_H x[:, :, c] M_W^T`` with the 1-D matrices of ``_bicubic_matrix``
    (shapes ``(H/f, H)`` and ``(W/f, W)``; replicate boundary, rows sum to 1);
    shapes ``x (H, W, C) -> y (H/f, W/f, C)``. No ``H*W x H*W`` matrix is ever formed.

    SVD: Kronecker product of the 1-D SVDs (computed in float64 with numpy at construction).
    ``V_T(x)`` lays the coefficient grid ``G = V_H^T x_c V_W`` out as
    ``[G[:h, :w, :], G[:h, w:, :], G[h:, :, :]]`` (each raveled), so the first
    ``dy = h*w*C`` coefficients have singular values ``s_H[i] s_W[j]``; ``U_T(y)`` is
    ``U_H^T y_c U_W`` raveled in ``(h, w, C)`` order. Singular values are not sorted.

    Example:
        >>> op = BicubicSuperResolution((8, 8, 3), 2)
        >>> op.A(jnp.ones((8, 8, 3)))[0, 0, 0]
        Array(1., dtype=float32)
    """

    factor: int = eqx.field(static=True)
    x_shape: tuple[int, int, int] = eqx.field(static=True)
    y_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(self, shape, factor: int):
        shape, factor = _set_shapes(self, shape, factor, "BicubicSuperResolution")
        h, w, c = shape
        self.ur, sr, self.vtr = _np_svd(_bicubic_matrix(h, factor))
        self.uc, sc, self.vtc = _np_svd(_bicubic_matrix(w, factor))
        self.s2d = sr[:, None] * sc[None, :]
