"""Denoising diffusion restoration models (DDRM; Kawar, Elad, Ermon & Song, NeurIPS 2022)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import predictions
from .._utils import bcast, safe_sqrt
from ..samplers import Samples, scan_steps, time_grid
from ._common import batch_y, check_x_shape, require_svd, spectral_y, vmapped


def ddrm_sample(
    key,
    model_fn,
    sde,
    op,
    y,
    sigma_y=0.0,
    shape=None,
    *,
    prediction: str = "eps",
    num_steps: int = 20,
    eta: float = 0.85,
    eta_b: float = 1.0,
    spacing: str | None = None,
    cond=None,
    x_init=None,
    save_every: int | None = None,
) -> Samples:
    """DDRM in the spectral space of ``op`` (Kawar et al. 2022, Eqs. 7–8, "efficient" form).

    With ``A = U S Vᵀ``, ``x̄ = Vᵀ(x_t/α_t)`` (the variance-exploding view, noise level
    ``σ̄_t = σ_t/α_t``), ``ȳ_i = (Uᵀy)_i / s_i`` and ``x̄_0 = Vᵀ x̂_0``, each step ``t → s``
    draws every spectral coordinate by one of three rules (Eq. 8):

    * ``s_i = 0`` or ``i ≥ dy`` (unobserved): ``x̄_0 + √(1−η²) σ̄_s ε̄ + η σ̄_s z``
      (``ε̄ = Vᵀε̂``, as the official code);
    * ``s_i σ̄_s < σ_y`` (less noisy than y): ``x̄_0 + √(1−η²) σ̄_s (ȳ_i − x̄_0)/(σ_y/s_i)
      + η σ̄_s z``;
    * ``s_i σ̄_s > σ_y`` (noisier than y): ``η_b ȳ_i + (1 − η_b) x̄_0
      + √(σ̄_s² − η_b² σ_y²/s_i²) z``;

    then ``x_s = α_s V x̄``. ``x_T`` comes from the spectral posterior (Eq. 7):
    ``x̄_T = ȳ + √(σ̄_T² − σ_y²/s²) z`` where ``s σ̄_T > σ_y``, else ``σ̄_T z``; it is scaled
    by ``α_T`` (the official code divides by ``σ̄_T``, which differs from ``α_T`` by
    ``O(α_T³)``). Defaults are the official ones: 20 steps with uniform skip (the "leading"
    respacing of a :class:`~jaxir.sdes.DiscreteVPSDE`), η = 0.85, η_b = 1, no x̂_0 clipping.

    Units: ``sigma_y`` is the noise std of ``y`` in the units of the data. The official code
    doubles its ``--sigma_0`` because it is given for [0, 1] images while the model works in
    [-1, 1]; here pass the std in the data's own units (e.g. 0.1 for σ = 0.05 on [0, 1]
    images). Singular values are used as ``op`` gives them (the official blur truncation at
    3e-2 belongs to the operator).

    Args:
        op: a linear operator with an SVD (``op.has_svd``).
        others: as :func:`~jaxir.inverse.dps_sample`.

    Returns:
        :class:`~jaxir.samplers.Samples`.
    """
    who = "ddrm_sample"
    require_svd(op, who)
    shape = check_x_shape(op, shape, x_init, who)
    y_b = batch_y(op, y, shape[0], who)
    uty, s, ybar = spectral_y(op, y_b)
    dy = uty.shape[-1]
    V, V_T = vmapped(op, "V"), vmapped(op, "V_T")
    obs = (jnp.arange(s.shape[0]) < dy) & (s > 0)
    s_safe = jnp.where(obs, s, 1.0)
    sig_y = jnp.asarray(sigma_y, jnp.float32)
    rho = sig_y / s_safe  # noise std of ȳ_i
    # Uᵀy padded to the x-space spectral size (the "less noisy" residual uses Uᵀy − s x̄0)
    uty_pad = jnp.concatenate([uty, jnp.zeros((shape[0], s.shape[0] - dy), uty.dtype)], -1)
    denoise = predictions.denoiser_from_model(model_fn, sde, prediction)
    ts, ts_next = time_grid(sde, num_steps, spacing)
    k_init, k_steps = jax.random.split(key)
    flat = (shape[0], s.shape[0])

    def vbar(t):
        a, sig = sde.marginal_coeffs(t)
        return a, sig / a

    if x_init is None:
        a_T, sb_T = vbar(jnp.asarray(ts[0], jnp.float32))
        z = jax.random.normal(k_init, flat)
        big = obs & (s * sb_T > sig_y)
        xbar = jnp.where(big, ybar + safe_sqrt(sb_T**2 - rho**2) * z, sb_T * z)
        x = a_T * V(xbar)
    else:
        x = jnp.asarray(x_init)

    def step(carry, inp):
        (x,) = carry
        t, s_time, k = inp
        x0, eps = denoise(x, t, cond)
        a_s, sb_s = vbar(s_time)
        x0b, epsb = V_T(x0), V_T(eps)
        z = jax.random.normal(k, flat)
        resid = jnp.where(obs, (uty_pad - s * x0b) / jnp.where(sig_y > 0, sig_y, 1.0), 0.0)
        missing = x0b + safe_sqrt(1.0 - eta**2) * sb_s * epsb + eta * sb_s * z
        after = x0b + safe_sqrt(1.0 - eta**2) * sb_s * resid + eta * sb_s * z
        before = eta_b * ybar + (1.0 - eta_b) * x0b + safe_sqrt(sb_s**2 - (eta_b * rho) ** 2) * z
        is_before = obs & (s * sb_s > sig_y)
        is_after = obs & (s * sb_s < sig_y)
        xbar = jnp.where(is_before, before, jnp.where(is_after, after, missing))
        return (bcast(a_s, x) * V(xbar),)

    xs = (jnp.asarray(ts, jnp.float32), jnp.asarray(ts_next, jnp.float32),
          jax.random.split(k_steps, len(ts)))
    (x,), traj = scan_steps(step, (x,), xs, save_every=save_every)
    return Samples(x, traj, len(ts), jnp.all(jnp.isfinite(x)))
