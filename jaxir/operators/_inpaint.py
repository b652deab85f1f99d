"""Inpainting: keep the observed pixels, zero the others; and mask generators."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from ._base import _PixelBasis, _safe_inv


class Inpainting(_PixelBasis):
    """``A(x) = mask * x`` (1 = observed, 0 = missing).

    Layout: ``y`` is the *masked image* with zeros at missing entries, so
    ``y_shape == x_shape`` and ``dy = D``. (Noise added by ``degrade`` also lands on the
    missing entries; SVD solvers ignore them since their singular value is 0.) Because the
    layout does not depend on the mask's values, the mask is an array leaf: it may be traced,
    differentiated, or ``vmap``-ed (one mask per example).

    SVD: ``V = U =`` C-order flattening, ``singular_values = mask`` broadcast to ``x_shape``
    and flattened (values in {0, 1} for a binary mask; fractional masks also work and
    ``A_pinv`` divides by them where nonzero).

    Args:
        mask: shape ``shape``, ``shape[:-1]`` or ``shape[:-1] + (1,)`` (e.g. ``(H, W, C)``,
            ``(H, W)`` or ``(H, W, 1)``), or any shape when ``shape`` is ``None``.
        shape: ``x_shape``; defaults to ``mask.shape``.

    Example:
        >>> import jax
        >>> op = Inpainting(random_mask(jax.random.key(0), (8, 8), 0.5), shape=(8, 8, 3))
        >>> op.A(jax.numpy.ones((8, 8, 3))).shape
        (8, 8, 3)
    """

    has_svd = True

    mask: Array
    x_shape: tuple[int, ...] = eqx.field(static=True)
    y_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, mask, shape=None):
        mask = jnp.asarray(mask)
        if not (
            jnp.issubdtype(mask.dtype, jnp.floating)
            or mask.dtype == jnp.bool_
            or jnp.issubdtype(mask.dtype, jnp.integer)
        ):
            raise ValueError(f"Inpainting: `mask` must be a real array, got dtype {mask.dtype}.")
        mask = mask.astype(jnp.float32)
        shape = tuple(mask.shape) if shape is None else tuple(int(s) for s in shape)
        if mask.shape == shape[:-1]:
            mask = mask[..., None]
        if mask.shape not in (shape, shape[:-1] + (1,)) or not shape:
            raise ValueError(
                f"Inpainting: `mask` must have shape {shape}, {shape[:-1]} or "
                f"{shape[:-1] + (1,)} for shape={shape}, got {tuple(mask.shape)}."
            )
        self.mask = mask
        self.x_shape = shape
        self.y_shape = shape

    def _full_mask(self) -> Array:
        return jnp.broadcast_to(self.mask, self.x_shape)

    def A(self, x: Array) -> Array:
        return self.mask * self._cx(x)

    def A_T(self, y: Array) -> Array:
        return self.mask * self._cy(y)

    def A_pinv(self, y: Array) -> Array:
        return _safe_inv(self.mask) * self._cy(y)

    @property
    def singular_values(self) -> Array:
        return self._full_mask().reshape(-1)


def _mask_shape(shape, who: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"{who}: `shape` must be (H, W) or (H, W, C), got {shape}.")
    return shape


def random_mask(key: Array, shape, keep_fraction: float) -> Array:
    """Bernoulli mask, each entry observed (1.0) with probability ``keep_fraction``.

    ``shape`` is ``(H, W)`` (same mask for all channels) or ``(H, W, C)``; returns float32.

    Example:
        >>> m = random_mask(jax.random.key(0), (8, 8), 0.25)
    """
    shape = _mask_shape(shape, "random_mask")
    if not 0.0 <= float(keep_fraction) <= 1.0:
        raise ValueError(f"random_mask: `keep_fraction` must be in [0, 1], got {keep_fraction}.")
    return jax.random.bernoulli(key, keep_fraction, shape).astype(jnp.float32)


def box_mask(shape, box=None) -> Array:
    """Mask that is 0 inside a rectangle ``box = (top, left, height, width)`` and 1 outside.

    The default box is the centred ``H/2 x W/2`` rectangle. ``shape`` is ``(H, W)`` or
    ``(H, W, C)``; returns float32.

    Example:
        >>> box_mask((8, 8))[4, 4], box_mask((8, 8))[0, 0]
        (Array(0., dtype=float32), Array(1., dtype=float32))
    """
    shape = _mask_shape(shape, "box_mask")
    h, w = shape[:2]
    if box is None:
        box = (h // 4, w // 4, h // 2, w // 2)
    top, left, bh, bw = (int(b) for b in box)
    if top < 0 or left < 0 or bh < 0 or bw < 0 or top + bh > h or left + bw > w:
        raise ValueError(
            f"box_mask: `box` (top, left, height, width)={box} does not fit in {(h, w)}."
        )
    rows = (jnp.arange(h) >= top) & (jnp.arange(h) < top + bh)
    cols = (jnp.arange(w) >= left) & (jnp.arange(w) < left + bw)
    m = 1.0 - (rows[:, None] & cols[None, :]).astype(jnp.float32)
    return jnp.broadcast_to(m[..., None], shape) if len(shape) == 3 else m


def half_mask(shape, side: str = "right") -> Array:
    """Mask with one half missing (0): ``side`` in {"right", "left", "top", "bottom"}.

    For odd sizes the missing half is the smaller one (``floor(W/2)`` columns).

    Example:
        >>> half_mask((4, 4))[0]
        Array([1., 1., 0., 0.], dtype=float32)
    """
    shape = _mask_shape(shape, "half_mask")
    h, w = shape[:2]
    boxes = {
        "right": (0, w - w // 2, h, w // 2),
        "left": (0, 0, h, w // 2),
        "top": (0, 0, h // 2, w),
        "bottom": (h - h // 2, 0, h // 2, w),
    }
    if side not in boxes:
        raise ValueError(f"half_mask: `side` must be one of {sorted(boxes)}, got {side!r}.")
    return box_mask(shape, boxes[side])
