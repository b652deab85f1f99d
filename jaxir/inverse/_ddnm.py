"""Denoising diffusion null-space models (DDNM / DDNM+; Wang, Yu & Zhang, ICLR 2023)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import predictions
from .._utils import bcast, safe_sqrt
from ..samplers import Samples, scan_steps, time_grid
from ._common import batch_y, check_x_shape, spectral_y, vmapped


def time_travel_schedule(num_steps: int, travel_length: int = 1, travel_repeat: int = 1):
    """The grid-index path of DDNM's time travel (RePaint's jump schedule).

    Starts at ``num_steps − 1`` and ends at ``−1`` (the data); each move changes the index
    by one. Descending every index once, at every ``travel_length``-th index ``j`` below
    ``num_steps − travel_length`` the path climbs back up ``travel_length`` indices and
    descends again, ``travel_repeat − 1`` times in all. With ``travel_repeat = 1`` (the
    official default, with ``travel_length = 1``) there is no travel.

    Returns:
        ``int`` numpy array of grid indices, length ``num_steps + 1 + 2·l·(r−1)·#jumps``.
    """
    if travel_length < 1 or travel_repeat < 1:
        raise ValueError(f"travel_length and travel_repeat must be >= 1, got {travel_length}, {travel_repeat}")
    left = {j: travel_repeat - 1 for j in range(0, num_steps - travel_length, travel_length)}
    path, t = [], num_steps
    while t >= 1:
        t -= 1
        path.append(t)
        if left.get(t, 0) > 0:
            left[t] -= 1
            for _ in range(travel_length):
                t += 1
                path.append(t)
    path.append(-1)
    return np.asarray(path, np.int64)


def ddnm_sample(
    key,
    model_fn,
    sde,
    op,
    y,
    sigma_y=0.0,
    shape=None,
    *,
    prediction: str = "eps",
    num_steps: int = 100,
    eta: float = 0.85,
    travel_length: int = 1,
    travel_repeat: int = 1,
    spacing: str | None = None,
    cond=None,
    x_init=None,
    save_every: int | None = None,
) -> Samples:
    """DDNM (noiseless) and DDNM+ (noisy ``y``) with time travel, as one ``lax.scan``.

    DDNM (Wang et al. 2023, Eqs. 12–13) corrects the range-space part of the prediction,
    ``x̂_0 ← x̂_0 − A⁺(A x̂_0 − y)``, then steps as the official code (DDIM with DDNM's η:
    ``x_s = √ᾱ_s x̂_0 + √(1−ᾱ_s)(η z + √(1−η²) ε̂)``). This form, selected by a Python
    ``sigma_y == 0``, needs only ``op.A`` and ``op.A_pinv``.

    DDNM+ (``sigma_y > 0``; Eqs. 17–19 in the per-singular-value form of the official SVD
    code, ``Lambda`` / ``Lambda_noise``) works in the SVD basis with ``ρ_i = σ_y/s_i``,
    ``a = √ᾱ_s`` and ``σ_s = √(1−ᾱ_s)``: the correction of coordinate ``i`` is scaled by
    ``λ_i = 1`` if ``σ_s ≥ a ρ_i``, else ``λ_i = √(1−η²) σ_s/(a ρ_i)``; the fresh noise is
    ``σ_s(η z + √(1−η²) ε̂)`` on unobserved coordinates, ``√(σ_s² − a²ρ_i²) z`` where
    ``σ_s > a ρ_i`` and ``η σ_s z`` where ``σ_s < a ρ_i`` (γ_t of the paper), so every
    coordinate of ``x_s`` carries total noise variance ``σ_s²``. It needs ``op.has_svd``.

    Time travel (Sec. 3.4) is a precomputed path over the respaced grid
    (:func:`time_travel_schedule`): a downward move is a DDNM step; an upward move re-noises
    the last (uncorrected) ``x̂_0`` to the new time, ``x = √ᾱ x̂_0 + √(1−ᾱ) z``, as the
    official code. Defaults: 100 steps (uniform skip), η = 0.85, l = r = 1 (no travel).

    Args:
        sigma_y: measurement noise std in the units of ``y``.
        others: as :func:`~jaxir.inverse.dps_sample`.

    Returns:
        :class:`~jaxir.samplers.Samples` (``nfe`` = number of downward moves).
    """
    who = "ddnm_sample"
    shape = check_x_shape(op, shape, x_init, who)
    plus = not (isinstance(sigma_y, (int, float)) and sigma_y == 0)
    if plus and not getattr(op, "has_svd", False):
        raise ValueError(
            f"{who}: DDNM+ (sigma_y > 0) needs an operator with an SVD (op.has_svd); "
            f"{type(op).__name__} has none. Use sigma_y=0 for plain DDNM."
        )
    y_b = batch_y(op, y, shape[0], who)
    A, A_pinv = vmapped(op, "A"), vmapped(op, "A_pinv")
    denoise = predictions.denoiser_from_model(model_fn, sde, prediction)
    ts, _ = time_grid(sde, num_steps, spacing)
    grid = np.concatenate([[0.0], ts[::-1]])  # grid[k + 1] = time of respaced index k; −1 → 0
    path = time_travel_schedule(num_steps, travel_length, travel_repeat)
    t_from, t_to = grid[path[:-1] + 1], grid[path[1:] + 1]
    up = path[1:] > path[:-1]
    k_init, k_steps = jax.random.split(key)
    x = sde.prior_sample(k_init, shape) if x_init is None else jnp.asarray(x_init)
    if plus:
        uty, s, ybar = spectral_y(op, y_b)
        obs = (jnp.arange(s.shape[0]) < uty.shape[-1]) & (s > 0)
        rho = jnp.asarray(sigma_y, jnp.float32) / jnp.where(obs, s, 1.0)
        V, V_T = vmapped(op, "V"), vmapped(op, "V_T")
    c_eta = float(np.sqrt(1.0 - eta**2))

    def down(x, x0_last, t, s_time, k):
        x0, eps = denoise(x, t, cond)
        a_s, sig_s = sde.marginal_coeffs(s_time)
        z = jax.random.normal(k, x.shape, x.dtype)
        if not plus:
            x0h = x0 - A_pinv(A(x0) - y_b)
            noise = bcast(sig_s, x) * (eta * z + c_eta * eps)
            return bcast(a_s, x) * x0h + noise, x0
        x0b, epsb, zb = V_T(x0), V_T(eps), V_T(z)
        noisy = obs & (sig_s < a_s * rho)  # y noisier than the step's budget
        quiet = obs & (sig_s > a_s * rho)
        lam = jnp.where(noisy, c_eta * sig_s / (a_s * rho), 1.0)
        x0hb = x0b - jnp.where(obs, lam * (x0b - ybar), 0.0)
        nz = jnp.where(quiet, safe_sqrt(sig_s**2 - (a_s * rho) ** 2) * zb, sig_s * eta * zb)
        nz = nz + jnp.where(noisy | quiet, 0.0, sig_s * c_eta * epsb)
        return V(a_s * x0hb + nz), x0

    def travel(x, x0_last, t, s_time, k):
        a, sig = sde.marginal_coeffs(s_time)
        return bcast(a, x) * x0_last + bcast(sig, x) * jax.random.normal(k, x.shape, x.dtype), x0_last

    def step(carry, inp):
        x, x0_last = carry
        t, s_time, is_up, k = inp
        return jax.lax.cond(is_up, travel, down, x, x0_last, t, s_time, k)

    xs = (jnp.asarray(t_from, jnp.float32), jnp.asarray(t_to, jnp.float32), jnp.asarray(up),
          jax.random.split(k_steps, len(t_from)))
    (x, _), traj = scan_steps(step, (x, jnp.zeros_like(x)), xs, save_every=save_every)
    return Samples(x, traj, int(np.sum(~up)), jnp.all(jnp.isfinite(x)))
