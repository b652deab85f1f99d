"""`fit`: the train step on data held in memory, for small models trained inside a function.

The autoencoder of latent diffusion (`jaxir.latent.train_autoencoder`), the latent U-Net
(`jaxir.latent.train_latent_diffusion`) and the FID feature network
(`jaxir.metrics.train_feature_net`) train here, with the same step body as
`jaxir.training.train` (`make_update`: gradient, optax update, EMA, metrics); only the loop
around it differs (no files, no mesh, batches from memory).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._state import TrainState
from ._step import make_update

__all__ = ["FitResult", "fit"]


class FitResult(NamedTuple):
    """What `fit` returns: the trained ``params``, their EMA (None without ``ema_decay``), the
    per-step ``losses`` (steps,) and the final `TrainState`."""

    params: Any
    ema_params: Any
    losses: jax.Array
    state: TrainState


def fit(loss_fn: Callable, apply_fn: Callable, params, tx, batches: Callable | Iterable, *,
        steps: int, key=None, ema_decay: float | None = None) -> FitResult:
    """``steps`` train steps of ``loss_fn`` (`make_update`) from ``params``.

    Args:
      loss_fn: ``loss_fn(model_fn, batch, key) -> (loss, aux)``.
      apply_fn: ``apply_fn(params, dropout_key) -> model_fn``.
      params: the initial parameters (a pytree).
      tx: an optax transformation.
      batches: ``batch_fn(key) -> batch``, traced inside the jitted step (batches drawn on the
        device from arrays it closes over), or an iterable of batches (host data).
      steps: number of steps (a positive int).
      key: the run's key: step i uses ``k_i = split(key, steps)[i]``, split into the batch's
        key and the loss's key. Needed with a ``batch_fn`` or a loss that draws.
      ema_decay: keep an EMA of the params with this decay (None: no EMA).

    One jitted step per iteration, the state donated (a ``lax.scan`` over convolution steps
    runs ~20× slower on XLA:CPU); the losses stay on the device until the end (no host
    synchronisation per step). Deterministic given ``key`` and ``batches``.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    traced = callable(batches)
    if traced and key is None:
        raise ValueError("fit: a batch function needs a key")
    update = make_update(loss_fn, apply_fn, tx, ema_decay=ema_decay)
    params = jax.tree.map(jnp.copy, params)  # the caller's arrays survive the donation
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       ema_params=jax.tree.map(jnp.copy, params) if ema_decay is not None
                       else None, rng=jnp.zeros((2,), jnp.uint32))

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, batch, k):
        k_batch, k_loss = jax.random.split(k)
        if traced:
            batch = batches(k_batch)
        state, metrics = update(state, batch, k_loss)
        return state, metrics["loss"]

    keys = jax.random.split(key if key is not None else jax.random.key(0), steps)
    it = None if traced else iter(batches)
    losses = []
    for i in range(steps):
        state, loss = step(state, None if traced else next(it), keys[i])
        losses.append(loss)
    return FitResult(state.params, state.ema_params, jnp.stack(losses), state)
