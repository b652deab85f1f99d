"""Colorization: observe the channel average (grayscale)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import Array

from ._base import _image_shape, _OutputBasis
from ._svd import _constant_first_basis, _group_v, _group_vt


class Colorization(_OutputBasis):
    """``y[h, w, 0] = mean_c x[h, w, c]`` (luminance as the channel average, as DDRM/DDNM).

    Shapes: ``x (H, W, C) -> y (H, W, 1)``.

    SVD: per pixel the row ``(1/C) 1^T`` has one singular value ``1/sqrt(C)`` (the mean;
    the channel *sum* would have ``sqrt(C)``). ``V_T(x)`` is ``[ (H*W,) per-pixel mean
    coefficients (sum/sqrt(C)) in (H, W) order, then the (H*W, C-1) orthogonal
    complement (DCT basis) raveled ]``; ``U`` is the flattening of ``y``.

    Example:
        >>> op = Colorization((8, 8, 3))
        >>> op.A(jnp.ones((8, 8, 3))).shape
        (8, 8, 1)
    """

    has_svd = True

    q: Array
    x_shape: tuple[int, int, int] = eqx.field(static=True)
    y_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(self, shape):
        h, w, c = _image_shape(shape, "shape", "Colorization")
        self.x_shape = (h, w, c)
        self.y_shape = (h, w, 1)
        self.q = jnp.asarray(_constant_first_basis(c))

    def A(self, x: Array) -> Array:
        return jnp.mean(self._cx(x), axis=-1, keepdims=True)

    def A_T(self, y: Array) -> Array:
        return jnp.broadcast_to(self._cy(y) / self.x_shape[2], self.x_shape)

    def A_pinv(self, y: Array) -> Array:
        return jnp.broadcast_to(self._cy(y), self.x_shape)

    def V_T(self, x: Array) -> Array:
        return _group_vt(self._cx(x).reshape(-1, self.x_shape[2]), self.q)

    def V(self, z: Array) -> Array:
        h, w, _ = self.x_shape
        return _group_v(self._czx(z), self.q, h * w).reshape(self.x_shape)

    @property
    def singular_values(self) -> Array:
        s = jnp.full((self.y_size,), 1.0 / jnp.sqrt(self.x_shape[2]), jnp.float32)
        return self._pad(s)
