"""Pieces the family losses share: the batch's x_0 and LQ, per-example means, step draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._losses import _x0 as x0_of  # the shared batch check

__all__ = ["degrade_fn", "int_steps", "lq_of", "mean_per_example", "x0_of"]


def lq_of(batch, x0, key, cond_key, degrade_fn, same_shape: bool = True):
    """The degraded image: ``batch[cond_key]`` or ``degrade_fn(key, x0)``, at x_0's shape
    (any shape with ``same_shape=False``: the latent family resizes it)."""
    if isinstance(batch, dict) and cond_key in batch:
        lq = jnp.asarray(batch[cond_key], x0.dtype)
    elif degrade_fn is not None:
        lq = degrade_fn(key, x0)
    else:
        raise ValueError(f"batch has no {cond_key!r} entry (the degraded image) and no "
                         "degrade_fn was given to make it")
    if same_shape and lq.shape != x0.shape:
        raise ValueError(f"the degraded image must have x_0's shape {x0.shape} (upsample SR "
                         f"inputs first), got {lq.shape}")
    return lq


def mean_per_example(x):
    return jnp.mean(x.reshape(x.shape[0], -1), axis=-1)


def int_steps(key, b, T):
    """``t ~ U{1, …, T}`` as float32 (B,)."""
    return jax.random.randint(key, (b,), 1, T + 1).astype(jnp.float32)


def degrade_fn(config):
    """``degrade(key, x0)`` of ``config.loss.degradation`` (`jaxir.operators.make_degradation`)."""
    from ...operators import make_degradation

    return make_degradation(config.loss.degradation)
