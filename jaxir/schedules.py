"""Noise schedules: pure functions of arrays (layer 1).

Discrete schedules return ``betas`` of shape ``(N,)`` (index ``i = 0 .. N-1``, where
``i`` is the DDPM timestep ``i + 1`` of Ho et al. 2020); ``alphas_cumprod`` turns them
into ``ᾱ_i = prod_{j<=i} (1 - β_j)``. Continuous schedules are functions of ``t``.

Everything here is ``jnp`` and differentiable with respect to its float arguments,
so a schedule parameter can be optimised through a sampler.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxir import schedules
    >>> betas = schedules.linear_beta_schedule(1000)
    >>> abar = schedules.alphas_cumprod(betas)
    >>> bool(abar[-1] < 1e-4)
    True
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "linear_beta_schedule",
    "cosine_beta_schedule",
    "sigmoid_beta_schedule",
    "quadratic_beta_schedule",
    "sqrt_linear_beta_schedule",
    "i2sb_beta_schedule",
    "alphas_cumprod",
    "respace_timesteps",
    "vp_beta",
    "vp_beta_integral",
    "ve_sigma",
    "karras_sigmas",
    "irsde_theta_schedule",
    "SPACINGS",
]

SPACINGS = ("leading", "trailing", "linspace")


def _check_n(n: int, name: str = "num_steps") -> int:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return int(n)


def linear_beta_schedule(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
    """DDPM linear schedule (Ho et al. 2020, Sec. 4): β linear from ``beta_start`` to ``beta_end``.

    Returns: ``(n,)`` float32.
    """
    n = _check_n(n)
    return jnp.linspace(beta_start, beta_end, n, dtype=jnp.float32)


def cosine_beta_schedule(n: int = 1000, s: float = 0.008, max_beta: float = 0.999):
    """Improved-DDPM cosine schedule (Nichol & Dhariwal 2021, Eq. 17).

    ``ᾱ(t) = cos²((t/n + s)/(1 + s)·π/2)``, ``β_i = min(1 - ᾱ(i+1)/ᾱ(i), max_beta)``
    (the official code clips at 0.999).
    """
    n = _check_n(n)
    t = jnp.arange(n + 1, dtype=jnp.float32) / n
    f = jnp.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return jnp.minimum(1.0 - f[1:] / f[:-1], max_beta)


def sigmoid_beta_schedule(
    n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, width: float = 6.0
):
    """Sigmoid schedule (GeoDiff): ``β = sigmoid(linspace(-width, width)) (end - start) + start``."""
    n = _check_n(n)
    z = jnp.linspace(-width, width, n, dtype=jnp.float32)
    return jax.nn.sigmoid(z) * (beta_end - beta_start) + beta_start


def quadratic_beta_schedule(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
    """Quadratic schedule: β linear in √β, i.e. ``linspace(√start, √end)²`` (DDIM's "quad")."""
    n = _check_n(n)
    return jnp.linspace(beta_start**0.5, beta_end**0.5, n, dtype=jnp.float32) ** 2


def sqrt_linear_beta_schedule(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
    """I2SB's base schedule: ``linspace(√start, √end, n)²`` (the same curve as ``quadratic``).

    I2SB then mirrors the first half, see :func:`i2sb_beta_schedule`.
    """
    return quadratic_beta_schedule(n, beta_start, beta_end)


def i2sb_beta_schedule(n: int = 1000, beta_max: float = 0.3, beta_start: float = 1e-4):
    """I2SB's symmetric schedule (Liu et al. 2023, official code).

    ``β = sqrt_linear(n, 1e-4, beta_max / n)``, then the first half is kept and mirrored,
    so β rises to the middle of the bridge and falls back. ``beta_max`` is 0.3 for JPEG
    and SR, 1.0 for blur and inpainting in the official configs.
    """
    n = _check_n(n)
    b = sqrt_linear_beta_schedule(n, beta_start, beta_max / n)
    half = b[: n // 2]
    tail = jnp.flip(half) if n % 2 == 0 else jnp.concatenate([b[n // 2 : n // 2 + 1], jnp.flip(half)])
    return jnp.concatenate([half, tail])


def alphas_cumprod(betas):
    """``ᾱ_i = prod_{j<=i} (1 - β_j)``, shape ``(N,)``. Computed in log space for stability."""
    betas = jnp.asarray(betas)
    if betas.ndim != 1:
        raise ValueError(f"betas must be 1-D (N,), got shape {betas.shape}")
    return jnp.exp(jnp.cumsum(jnp.log1p(-betas)))


def respace_timesteps(num_train_steps: int, num_steps: int, spacing: str = "leading"):
    """Pick ``num_steps`` of ``num_train_steps`` discrete indices for a shortened sampler.

    Returns ``(timesteps, prev_timesteps)``, both ``int32`` numpy arrays of shape
    ``(num_steps,)`` in *descending* order (the order a sampler visits them).
    ``prev_timesteps[k]`` is the next index the sampler moves to, taken from the
    respaced grid itself, and ``-1`` for the last step (meaning ``ᾱ = 1``, i.e. data).

    Spacings (as in the diffusers/DDIM conventions):
      * ``"leading"``: ``0, c, 2c, ...`` with ``c = N // n`` (DDIM's "uniform").
      * ``"trailing"``: ``round(N - k·N/n) - 1``, so the first step is at ``N - 1``.
      * ``"linspace"``: ``round(linspace(0, N - 1, n))``.

    A popular library computed the previous step as ``t - N // n`` for every spacing,
    which is wrong for "trailing" and "linspace"; here it is always read off the grid.
    """
    num_train_steps = _check_n(num_train_steps, "num_train_steps")
    num_steps = _check_n(num_steps)
    if num_steps > num_train_steps:
        raise ValueError(f"num_steps={num_steps} exceeds num_train_steps={num_train_steps}")
    if spacing == "leading":
        c = num_train_steps // num_steps
        ts = np.arange(num_steps) * c
    elif spacing == "trailing":
        ts = np.round(np.arange(num_train_steps, 0, -num_train_steps / num_steps)).astype(int) - 1
        ts = np.sort(ts)
    elif spacing == "linspace":
        ts = np.round(np.linspace(0, num_train_steps - 1, num_steps)).astype(int)
    else:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    ts = np.unique(ts)
    if len(ts) != num_steps:  # pragma: no cover - only for pathological rounding
        raise ValueError(f"spacing {spacing!r} produced duplicate timesteps")
    desc = ts[::-1].astype(np.int32)
    prev = np.concatenate([desc[1:], [-1]]).astype(np.int32)
    return desc, prev


def vp_beta(t, beta_min: float = 0.1, beta_max: float = 20.0):
    """Continuous VP β(t) = β_min + t (β_max − β_min), t ∈ [0, 1] (Song et al. 2021, Eq. 11)."""
    return beta_min + t * (beta_max - beta_min)


def vp_beta_integral(t, beta_min: float = 0.1, beta_max: float = 20.0):
    """∫_0^t β(s) ds = β_min t + ½ t² (β_max − β_min); ᾱ(t) = exp(−∫β)."""
    return beta_min * t + 0.5 * t**2 * (beta_max - beta_min)


def ve_sigma(t, sigma_min: float = 0.01, sigma_max: float = 50.0):
    """Geometric VE noise level σ(t) = σ_min (σ_max/σ_min)^t (Song et al. 2021, Eq. 9)."""
    return sigma_min * (sigma_max / sigma_min) ** t


def karras_sigmas(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    append_zero: bool = True,
):
    """Karras et al. 2022 (EDM, Eq. 5) σ grid, descending, with a final 0 appended (as k-diffusion).

    ``σ_i = (σ_max^{1/ρ} + i/(n-1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``. Returns ``(n + 1,)``
    when ``append_zero`` else ``(n,)``.
    """
    n = _check_n(n)
    ramp = jnp.linspace(0.0, 1.0, n) if n > 1 else jnp.zeros((1,))
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    return jnp.concatenate([sig, jnp.zeros((1,), sig.dtype)]) if append_zero else sig


def irsde_theta_schedule(T: int = 100, s: float = 0.008):
    """IR-SDE θ schedule (Luo et al. 2023, official ``cosine_theta_schedule``).

    A cosine ᾱ is evaluated on ``T + 3`` points of ``[0, T + 2]`` and ``θ_i = 1 − ᾱ_{i+1}``
    for ``i = 0..T``: returns ``(T + 1,)`` values; index 0 is never used as a rate (the
    cumulative θ̄ subtracts it). Note the official code uses ``1 − ᾱ`` (not a ratio).
    """
    T = _check_n(T, "T")
    steps = T + 2
    x = jnp.linspace(0.0, steps, steps + 1, dtype=jnp.float32)
    f = jnp.cos(((x / steps) + s) / (1 + s) * math.pi * 0.5) ** 2
    f = f / f[0]
    return 1.0 - f[1:-1]
