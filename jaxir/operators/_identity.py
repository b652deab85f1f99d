"""Identity operator (denoising)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import Array

from ._base import _PixelBasis


class Identity(_PixelBasis):
    """``A(x) = x`` (denoising: ``y = x + n``).

    Shapes: ``x_shape == y_shape == shape`` (any tuple, e.g. ``(H, W, C)`` or ``(d,)``).
    SVD: ``V = U =`` C-order flattening, all singular values 1.

    Example:
        >>> import jax.numpy as jnp
        >>> op = Identity((4, 4, 3))
        >>> op.A(jnp.zeros((4, 4, 3))).shape
        (4, 4, 3)
    """

    has_svd = True

    x_shape: tuple[int, ...] = eqx.field(static=True)
    y_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape):
        shape = tuple(int(s) for s in shape)
        if not shape or min(shape) < 1:
            raise ValueError(
                f"Identity: `shape` must be a non-empty tuple of positive ints, got {shape}."
            )
        self.x_shape = shape
        self.y_shape = shape

    def A(self, x: Array) -> Array:
        return self._cx(x)

    def A_T(self, y: Array) -> Array:
        return self._cy(y)

    def A_pinv(self, y: Array) -> Array:
        return self._cy(y)

    @property
    def singular_values(self) -> Array:
        return jnp.ones((self.x_size,), jnp.float32)
