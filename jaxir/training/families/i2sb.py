"""I2SB (Liu et al. 2023): a Brownian bridge from the clean image to the LQ, the network
regressing the bridge's noise, sampled by the bridge's posterior chain (or its OT-ODE)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ... import bridges, schedules
from ..._utils import bcast
from ...sdes import LinearSDE
from ._pieces import lq_of, mean_per_example, x0_of
from .._registry import Family, FamilyOptions, register_family


@dataclasses.dataclass(frozen=True)
class I2SBOptions(FamilyOptions):
    """The symmetric sqrt-linear β's maximum (0.3 JPEG/SR, 1.0 blur/inpainting; official)
    over ``num_steps`` (1000); ``ot_ode``: the deterministic (OT-ODE) bridge; ``condition``:
    the network also sees the LQ (official ``cond_x1``, off by default)."""

    beta_max: float = 0.3
    num_steps: int = 1000
    ot_ode: bool = False
    condition: bool = False


def i2sb_loss(sde: LinearSDE | None = None, *, beta_max: float = 0.3, num_steps: int = 1000,
              ot_ode: bool = False, condition: bool = False, cond_key: str = "lq",
              degrade_fn: Callable | None = None) -> Callable:
    """I2SB's loss (Liu et al. 2023, Eq. 12): ``‖ε̂(x_t, t) − (x_t − x_0)/σ_t‖²``.

    ``sde``: a :class:`jaxir.bridges.BrownianSDE` (default: I2SB's symmetric sqrt-linear β
    with ``beta_max``, 0.3 JPEG/SR, 1.0 blur/inpainting, over ``num_steps``). ``t`` is a
    uniform step ``n ∈ {0..N−1}`` at ``t = (n + 1)/N`` (continuous U(t_min, T) for an SDE
    without ``betas``); ``x_t ~ q(x_t | x_0, x_1 = LQ)`` (its mean only with ``ot_ode``);
    σ_t = ``std_fwd``. ``condition``: also pass the LQ as the image condition (``cond_x1``).
    """
    if sde is None:
        sde = bridges.BrownianSDE(schedules.i2sb_beta_schedule(num_steps, beta_max))

    def loss_fn(model_fn, batch, key):
        x0 = x0_of(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        x1 = lq_of(batch, x0, k_lq, cond_key, degrade_fn)
        b = bridges.Bridge(sde, x1)
        betas = getattr(sde, "betas", None)
        if betas is not None:
            nb = betas.shape[0]
            t = (jax.random.randint(k_t, (x0.shape[0],), 0, nb) + 1).astype(jnp.float32) * (b.T / nb)
        else:
            t = jax.random.uniform(k_t, (x0.shape[0],), jnp.float32, sde.t_min, b.T)
        mean, std = b.marginal(x0, t)
        x_t = mean if ot_ode else mean + bcast(std, x0) * jax.random.normal(k_e, x0.shape, x0.dtype)
        sigma = sde.marginal_coeffs(t)[1]
        target = (x_t - x0) / bcast(sigma, x0)
        pred = model_fn(x_t, t, x1 if condition else None)
        mse = jnp.mean(mean_per_example((pred.astype(jnp.float32) - target) ** 2))
        return mse, {"mse": mse}

    return loss_fn


def _process(o: I2SBOptions, lq) -> bridges.Bridge:
    return bridges.i2sb(lq, o.beta_max, o.num_steps)


def _sample(model, lq, key, steps, o: I2SBOptions, known):
    from ...samplers import i2sb_sample

    return i2sb_sample(key, model.model_fn, _process(o, lq), num_steps=steps, ot_ode=o.ot_ode,
                       cond=lq if o.condition else None)


register_family(Family(
    name="i2sb", options=I2SBOptions,
    factory=i2sb_loss,
    sample=_sample, process=_process, default_steps=100, conditioned=lambda o: o.condition))
