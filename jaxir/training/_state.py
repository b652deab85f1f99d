"""The train state pytree, the optimizer, EMA and dynamic loss scaling — all pure.

``TrainState(step, params, opt_state, ema_params, rng, loss_scale)`` is a NamedTuple, so it
is a pytree that ``jax.jit`` shards, donates and orbax saves. ``rng`` is raw uint32 key data
(``jax.random.key_data``) so that it checkpoints as a plain array; `step_keys` turns it into
typed keys.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "DynamicLossScale",
    "TrainState",
    "all_finite",
    "ema_decay_at",
    "ema_update",
    "init_loss_scale",
    "make_lr_schedule",
    "make_optimizer",
    "update_loss_scale",
]


class DynamicLossScale(NamedTuple):
    """Dynamic loss scaling for low-precision gradients (Micikevicius et al. 2018, Sec. 3.3).

    The loss is multiplied by ``scale`` before differentiation and the gradients divided by it
    afterwards, so small float16 gradients do not flush to zero. If a step's gradients are not
    finite the update is skipped and the scale halved; after ``period`` finite steps in a row
    it doubles. bfloat16 has float32's exponent range and rarely needs it; float16 does.
    """

    scale: jax.Array  # float32 scalar
    good_steps: jax.Array  # int32 scalar


class TrainState(NamedTuple):
    """Everything that changes during training.

    Attributes:
      step: int32 scalar, the number of optimizer steps taken.
      params: the model's `nnx.Param` state (from `jaxir.models.split_model`).
      opt_state: the optax state for ``params``.
      ema_params: exponential moving average of ``params`` (same tree).
      rng: uint32 key data (2,) for the typed threefry key; split once per step.
      loss_scale: a `DynamicLossScale`, or None (no loss scaling).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any
    rng: jax.Array
    loss_scale: DynamicLossScale | None = None


def make_lr_schedule(lr: float, total_steps: int, warmup_steps: int = 0,
                     decay_steps: int | None = None, end_lr_factor: float = 0.0):
    """Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then cosine decay to
    ``lr * end_lr_factor`` at ``decay_steps`` (default ``total_steps``); constant after."""
    decay = total_steps if decay_steps is None else decay_steps
    decay = max(int(decay), int(warmup_steps) + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup_steps > 0 else lr, peak_value=lr,
        warmup_steps=int(warmup_steps), decay_steps=decay, end_value=lr * end_lr_factor)


def make_optimizer(optim, total_steps: int) -> tuple[optax.GradientTransformation, Any]:
    """``(tx, lr_schedule)`` from an `OptimConfig`: clip by global norm, then AdamW
    (Loshchilov & Hutter 2019) on the warm-up + cosine schedule."""
    schedule = make_lr_schedule(optim.lr, total_steps, optim.warmup_steps, optim.decay_steps,
                                optim.end_lr_factor)
    parts = []
    if optim.grad_clip is not None:
        parts.append(optax.clip_by_global_norm(optim.grad_clip))
    parts.append(optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                             weight_decay=optim.weight_decay))
    return optax.chain(*parts), schedule


def ema_decay_at(step, decay: float, warmup: bool = False):
    """The EMA decay used after ``step`` updates: ``decay``, or with ``warmup``
    ``min(decay, (1 + step)/(10 + step))``."""
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema_params, params, decay):
    """``ema ← decay · ema + (1 − decay) · params``, leaf by leaf (dtype of ``ema``)."""
    return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype),
                        ema_params, params)


def init_loss_scale(initial: float = 2.0**15) -> DynamicLossScale:
    return DynamicLossScale(jnp.asarray(initial, jnp.float32), jnp.zeros((), jnp.int32))


def all_finite(tree) -> jax.Array:
    """True iff every entry of every leaf is finite (a bool scalar)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def update_loss_scale(ls: DynamicLossScale, finite, *, period: int = 2000,
                      factor: float = 2.0, min_scale: float = 1.0) -> DynamicLossScale:
    """Halve on non-finite gradients (not below ``min_scale``); double after ``period`` finite
    steps in a row."""
    good = jnp.where(finite, ls.good_steps + 1, 0)
    grow = good >= period
    scale = jnp.where(finite, jnp.where(grow, ls.scale * factor, ls.scale),
                      jnp.maximum(ls.scale / factor, min_scale))
    return DynamicLossScale(scale.astype(jnp.float32), jnp.where(grow, 0, good).astype(jnp.int32))
