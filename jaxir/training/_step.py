"""The train step: one function for every model jaxir trains.

`make_update` is the step's body — differentiate ``loss_fn(model_fn(params), batch, key)``
w.r.t. the params (optionally in bfloat16/float16 with dynamic loss scaling), apply the optax
update, update the EMA, return scalar metrics — given the step's keys. Around it:
`make_train_step` draws those keys from the state (``train_step(state, batch)``, the loop of
`jaxir.training.train`) and `jaxir.training.fit` from a key per step (the in-memory loops of
the autoencoder, the latent U-Net and the FID feature net). `jit_train_step` compiles a step
with explicit ``in_shardings`` / ``out_shardings`` and donates the old state's buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ..models import cast_floating, make_model_fn
from ._state import TrainState, all_finite, ema_decay_at, ema_update, update_loss_scale

__all__ = ["jit_train_step", "make_apply_fn", "make_train_step", "make_update"]


def _global_norm(tree):
    tree_mod = getattr(optax, "tree", None)  # optax.tree.norm replaces global_norm in 0.2.5+
    return tree_mod.norm(tree) if hasattr(tree_mod, "norm") else optax.global_norm(tree)


def make_apply_fn(graphdef: Any, *, classifier: bool = False, compute_dtype=None) -> Callable:
    """``apply_fn(params, dropout_key) -> model_fn(x, t, cond)`` for a `jaxir.models` network.

    U-Nets go through `jaxir.models.make_model_fn` (``compute_dtype``: its mixed precision);
    a `NoisyClassifier` returns its logits (``cond`` is ignored). ``dropout_key=None`` runs
    deterministically.
    """
    if not classifier:
        return lambda params, dropout_key=None: make_model_fn(
            graphdef, params, dropout_key=dropout_key, compute_dtype=compute_dtype)

    def apply(params, dropout_key=None):
        def model_fn(x, t, cond=None):
            del cond
            return nnx.merge(graphdef, params)(x, t, deterministic=dropout_key is None,
                                               rngs=dropout_key)

        return model_fn

    return apply


def make_update(
    loss_fn: Callable,
    apply_fn: Callable,
    tx: optax.GradientTransformation,
    *,
    ema_decay: float | None = None,
    ema_warmup: bool = False,
    compute_dtype=jnp.float32,
    lr_schedule: Callable | None = None,
    loss_scale_period: int = 2000,
    layout=None,
) -> Callable[..., tuple[TrainState, dict]]:
    """The step's body ``update(state, batch, k_loss, k_drop) -> (state, metrics)``.

    Args:
      loss_fn: ``loss_fn(model_fn, batch, key) -> (loss, aux)`` (`jaxir.training` losses).
      apply_fn: ``apply_fn(params, dropout_key) -> model_fn`` (`make_apply_fn`).
      tx: the optax transformation (`make_optimizer`).
      ema_decay, ema_warmup: see `ema_decay_at`; ``ema_decay=None`` keeps no EMA (the
        state's ``ema_params`` pass through).
      compute_dtype: params and the model's inputs are cast to it for the forward and
        backward pass; gradients, the update and the master params stay float32. With
        ``state.loss_scale`` set, the loss is scaled and non-finite steps are skipped.
      lr_schedule: reported as ``metrics["lr"]`` when given.
      layout: a `jaxir.training.FlatLayout`: ``state.params``, its EMA and optimizer moments
        are flat vectors (the network sees ``layout.unravel``); None: trees.

    ``k_loss`` goes to the loss, ``k_drop`` (or None) to the network's dropout. The returned
    state has ``step + 1`` and the same ``rng``. Metrics: ``loss``, ``grad_norm`` (of the
    unscaled gradients), the loss's ``aux`` entries, ``lr``, and with loss scaling
    ``loss_scale`` and ``finite``.
    """
    compute_dtype = jnp.dtype(compute_dtype)
    low_precision = compute_dtype != jnp.float32

    def update(state: TrainState, batch, k_loss, k_drop=None):
        ls = state.loss_scale

        def objective(params):
            p = cast_floating(params, compute_dtype) if low_precision else params
            if layout is not None:  # one cast of the flat vector, then slices
                p = layout.unravel(p)
            model_fn = apply_fn(p, k_drop)
            if low_precision:
                inner = model_fn

                def model_fn(x, t, cond=None):
                    c = cast_floating(cond, compute_dtype) if cond is not None else None
                    return inner(x.astype(compute_dtype), t, c).astype(jnp.float32)

            loss, aux = loss_fn(model_fn, batch, k_loss)
            scaled = loss * ls.scale if ls is not None else loss
            return scaled, (loss, aux)

        grads, (loss, aux) = jax.grad(objective, has_aux=True)(state.params)
        metrics = {"loss": loss, **aux}
        if ls is not None:
            grads = jax.tree.map(lambda g: g / ls.scale, grads)
            finite = all_finite(grads)
            metrics["loss_scale"] = ls.scale
            metrics["finite"] = finite
            new_ls = update_loss_scale(ls, finite, period=loss_scale_period)
        metrics["grad_norm"] = _global_norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema_params
        if ema_decay is not None:
            ema = ema_update(ema, params, ema_decay_at(state.step, ema_decay, ema_warmup))
        if ls is not None:  # skip the whole update when the gradients overflowed
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
            params = keep(params, state.params)
            opt_state = keep(opt_state, state.opt_state)
            ema = keep(ema, state.ema_params)
        if lr_schedule is not None:
            metrics["lr"] = jnp.asarray(lr_schedule(state.step), jnp.float32)
        new_state = state._replace(step=state.step + 1, params=params, opt_state=opt_state,
                                   ema_params=ema, loss_scale=new_ls if ls is not None else None)
        return new_state, metrics

    return update


def make_train_step(
    loss_fn: Callable,
    apply_fn: Callable,
    tx: optax.GradientTransformation,
    *,
    ema_decay: float,
    ema_warmup: bool = False,
    compute_dtype=jnp.float32,
    lr_schedule: Callable | None = None,
    dropout: bool = False,
    loss_scale_period: int = 2000,
    layout=None,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """The pure ``train_step(state, batch) -> (state, metrics)`` of `jaxir.training.train`.

    Splits ``state.rng`` into the next key, the loss's key and (``dropout``) the network's
    dropout key, and runs `make_update` (every other argument is its).
    """
    update = make_update(loss_fn, apply_fn, tx, ema_decay=ema_decay, ema_warmup=ema_warmup,
                         compute_dtype=compute_dtype, lr_schedule=lr_schedule,
                         loss_scale_period=loss_scale_period, layout=layout)

    def train_step(state: TrainState, batch):
        key = jax.random.wrap_key_data(state.rng)
        key, k_loss, k_drop = jax.random.split(key, 3)
        new_state, metrics = update(state, batch, k_loss, k_drop if dropout else None)
        return new_state._replace(rng=jax.random.key_data(key)), metrics

    return train_step


def jit_train_step(train_step: Callable, state_shardings=None, batch_sharding=None, *,
                   donate: bool = True):
    """``jax.jit(train_step, in_shardings, out_shardings, donate_argnums=0)``.

    ``state_shardings``: a `TrainState` of shardings (`jaxir.training.tree_shardings`);
    ``batch_sharding``: one `NamedSharding` for every leaf of the batch (`batch_sharding`).
    Metrics come back replicated. Without shardings it is a plain ``jax.jit``.
    """
    donate_argnums = (0,) if donate else ()
    if state_shardings is None and batch_sharding is None:
        return jax.jit(train_step, donate_argnums=donate_argnums)
    if state_shardings is None or batch_sharding is None:
        raise ValueError("give both state_shardings and batch_sharding, or neither")
    replicated = NamedSharding(batch_sharding.mesh, P())
    return jax.jit(train_step, in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, replicated), donate_argnums=donate_argnums)
