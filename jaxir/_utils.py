"""Private helpers shared across layers (no jaxir imports here)."""

from __future__ import annotations

import jax.numpy as jnp


def bcast(c, x):
    """Reshape a per-example coefficient ``c`` (scalar or ``(B,)``) to broadcast against ``x``.

    ``c`` of shape ``(B,)`` against ``x`` of shape ``(B, ...)`` becomes ``(B, 1, ..., 1)``.
    """
    c = jnp.asarray(c)
    x = jnp.asarray(x)
    if c.ndim == 0 or c.ndim >= x.ndim:
        return c
    return jnp.reshape(c, c.shape + (1,) * (x.ndim - c.ndim))


def batch_sum(x):
    """Sum over all but the leading axis: ``(B, ...) -> (B,)``."""
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def safe_sqrt(x):
    """``√max(x, 0)`` whose gradient is 0 (not NaN) where ``x <= 0``.

    Needed wherever a variance is exactly zero (σ(0) = 0, the last sampler step), so that
    ``jax.grad`` through a sampler stays finite.
    """
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)
