"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2), for any linear SDE.

A multistep second-order solver of the probability-flow ODE in the log-SNR variable
``λ = log(α/σ)`` with data prediction: on a step ``t_{i−1} → t_i`` with ``h = λ_i − λ_{i−1}``,
``r = h_{i−1}/h``::

    D   = (1 + 1/(2r)) x̂_0(t_{i−1}) − 1/(2r) x̂_0(t_{i−2})      (first step: D = x̂_0)
    x_i = (σ_i/σ_{i−1}) x_{i−1} − α_i (e^{−h} − 1) D

(on the centred variable ``x − m`` for mean-reverting SDEs). The last step lands on
``t = 0`` (σ = 0), where the update is ``x̂_0`` itself, as in k-diffusion.
"""

from __future__ import annotations

import jax.numpy as jnp

from .. import predictions
from .._utils import bcast
from ..sdes import DiscreteVPSDE
from ._common import Samples, all_finite, check_shape, scan_steps, time_grid

SPACINGS = ("logsnr", "karras", "uniform", "leading", "trailing", "linspace", "quadratic")


def _log_snr(sde, t):
    a, s = sde.marginal_coeffs(t)
    return jnp.log(a) - jnp.log(s)


def solver_time_grid(sde, num_steps: int, spacing: str = "logsnr", rho: float = 7.0):
    """Descending times ``(ts, ts_next)`` (jnp, ``(num_steps,)``), ``ts_next[-1] = 0``.

    ``"logsnr"``: uniform in λ between ``λ(T)`` and ``λ(t_min)`` (DPM-Solver's default
    for pixel models); ``"karras"``: EDM's ρ-spacing (ρ = 7) of ``σ/α``; other names as
    :func:`~jaxir.samplers.time_grid`. λ is inverted by interpolation on a dense grid, in
    ``jnp`` so that the grid follows the SDE's (possibly traced) parameters.
    """
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if spacing not in ("logsnr", "karras"):
        ts, nxt = time_grid(sde, num_steps, spacing)
        return jnp.asarray(ts, jnp.float32), jnp.asarray(nxt, jnp.float32)
    lo = sde.t_min if sde.t_min > 0 else (sde.T / sde.num_steps if isinstance(sde, DiscreteVPSDE) else 1e-3 * sde.T)
    dense = jnp.linspace(lo, sde.T, 4097)
    lam = _log_snr(sde, dense)  # decreasing in t
    u = jnp.linspace(0.0, 1.0, num_steps)
    if spacing == "logsnr":
        target = lam[-1] + u * (lam[0] - lam[-1])  # from λ(T) up to λ(t_min)
    else:
        smax, smin = jnp.exp(-lam[-1]), jnp.exp(-lam[0])
        target = -jnp.log((smax ** (1 / rho) + u * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho)
    ts = jnp.interp(target, lam[::-1], dense[::-1])
    ts = ts.at[0].set(sde.T).at[-1].set(lo)
    return ts, jnp.concatenate([ts[1:], jnp.zeros((1,), ts.dtype)])


def dpm_solver_sample(
    key,
    model_fn,
    sde,
    shape=None,
    *,
    prediction: str = "eps",
    num_steps: int | None = None,
    spacing: str | None = None,
    clip_x0=False,
    cond=None,
    x_init=None,
    save_every: int | None = None,
    checkpoint: bool | str = False,
    timesteps=None,
) -> Samples:
    """DPM-Solver++(2M) sampling: ``num_steps`` network evaluations, deterministic given ``x_T``.

    ``key`` only draws ``x_T``. Defaults: 20 steps, ``spacing="logsnr"``
    (:func:`solver_time_grid`). ``timesteps``: an explicit descending grid ``(K,)`` instead
    (:func:`~jaxir.samplers.time_grid`; the output is differentiable w.r.t. it), the last
    step going to ``t = 0``. Other arguments as :func:`~jaxir.samplers.ddim_sample`.
    """
    shape = check_shape(shape, x_init)
    denoise = predictions.denoiser_from_model(model_fn, sde, prediction)
    if timesteps is not None:
        ts, ts_next = time_grid(sde, num_steps, spacing, timesteps=timesteps)
        num_steps = int(ts.shape[0])
    else:
        num_steps = 20 if num_steps is None else num_steps
        ts, ts_next = solver_time_grid(sde, num_steps, spacing or "logsnr")
    x = sde.prior_sample(key, shape) if x_init is None else x_init

    def step(carry, inp):
        x, x0_prev, h_prev = carry
        i, t, s = inp
        x0 = denoise(x, t, cond)[0]
        if clip_x0 is not False and clip_x0 is not None:
            lo, hi = (-1.0, 1.0) if clip_x0 is True else clip_x0
            x0 = jnp.clip(x0, lo, hi)
        a_t, sig_t = sde.marginal_coeffs(t)
        a_s, sig_s = sde.marginal_coeffs(s)
        last = sig_s <= 0
        safe_sig_s = jnp.where(last, 1.0, sig_s)
        h = jnp.log(a_s / safe_sig_s) - jnp.log(a_t / sig_t)
        r = h_prev / h
        second = (i > 0) & ~last
        d = jnp.where(second, 1.0 + 0.5 / r, 1.0)
        D = d * x0 + jnp.where(second, -0.5 / r, 0.0) * x0_prev
        xc = x - sde.marginal_offset(t, x)
        new = bcast(safe_sig_s / sig_t, x) * xc - bcast(a_s * jnp.expm1(-h), x) * D
        new = jnp.where(last, bcast(a_s, x) * x0, new) + sde.marginal_offset(s, x)
        return new, x0, h

    carry = (x, jnp.zeros_like(x), jnp.ones((), jnp.float32))
    xs = (jnp.arange(num_steps), ts, ts_next)
    (x, _, _), traj = scan_steps(step, carry, xs, save_every=save_every, checkpoint=checkpoint)
    return Samples(x, traj, num_steps, all_finite(x))
