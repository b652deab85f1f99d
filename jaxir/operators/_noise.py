"""Noise models and ``degrade``: ``y = A(x) + n``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from ._base import Operator


def gaussian_noise(key: Array, y: Array, sigma) -> Array:
    """``y + sigma * eps`` with ``eps ~ N(0, I)`` of ``y``'s shape and dtype.

    Example:
        >>> y = gaussian_noise(jax.random.key(0), jnp.zeros(3), 0.05)
    """
    y = jnp.asarray(y)
    return y + sigma * jax.random.normal(key, y.shape, y.dtype)


def poisson_noise(key: Array, y: Array, rate) -> Array:
    """Photon-count noise: ``2 * Poisson(rate * (y + 1)/2) / rate - 1``.

    ``(y + 1)/2`` (clipped at 0) is the intensity in [0, 1]; ``rate`` is the expected photon
    count at full intensity. Mean ``y``, variance ``2 (y + 1) / rate``. Not differentiable.

    Example:
        >>> y = poisson_noise(jax.random.key(0), jnp.zeros(3), 100.0)
    """
    y = jnp.asarray(y)
    lam = rate * jnp.clip((y + 1.0) * 0.5, 0.0, None)
    counts = jax.random.poisson(key, lam, y.shape).astype(y.dtype)
    return 2.0 * counts / rate - 1.0


def degrade(key: Array, op: Operator, x: Array, sigma_y) -> Array:
    """``y = op.A(x) + sigma_y * eps``, ``eps ~ N(0, I)`` (DESIGN layer 6: ``y = A(x) + n``).

    Example:
        >>> from jaxir.operators import SuperResolution
        >>> y = degrade(jax.random.key(0), SuperResolution((8, 8, 3), 2), jnp.zeros((8, 8, 3)), 0.05)
    """
    return gaussian_noise(key, op.A(x), sigma_y)
