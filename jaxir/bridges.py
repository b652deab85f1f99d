"""Diffusion bridges through Doob's h-transform, for any linear SDE (layer 3).

For a linear SDE (see :mod:`jaxir.sdes`) the transition ``x_T | x_t`` is Gaussian with scale
``a = α(T)/α(t)``, mean ``a (x_t − m_t) + m_T`` and variance ``v = σ(T)² − a² σ(t)²``, so
Doob's h-function is closed form::

    h(x_t, t, y, T) = ∇_{x_t} log p(x_T = y | x_t) = a (y − a (x_t − m_t) − m_T) / v.

Conditioning the SDE on ``x_T = y`` adds ``g² h`` to its drift (the forward bridge,
:meth:`Bridge.drift`), and the bridge marginal ``x_t | x_0, x_T = y`` is the Gaussian product
of ``x_t | x_0`` and ``y | x_t`` (:meth:`Bridge.marginal`)::

    var  = (1/σ_t² + a²/v)⁻¹,   mean = var · ((α_t x_0 + m_t)/σ_t² + a (y − m_T + a m_t)/v).

The reverse bridge with a learned conditional score ``s(x_t, t) ≈ ∇ log q(x_t | x_T = y)``
(DDBM, Zhou et al. 2024, Eq. 10; GOUB, Yue et al. 2024) is
``dx = [f − g² (s − h)] dt + g dŵ`` and its probability-flow ODE
``dx = [f + g² h − ½ g² s] dt`` (:func:`reverse_bridge`).

**A new bridge is a new linear SDE**: :class:`Bridge` wraps any :class:`~jaxir.sdes.LinearSDE`.
GOUB is the bridge of the IR-SDE (:func:`goub`), I2SB's the bridge of a Brownian motion with
its symmetric β schedule (:func:`i2sb`), DDBM's those of VP and VE SDEs (:func:`ddbm_vp`,
:func:`ddbm_ve`). For example, a bridge of a constant-rate Ornstein–Uhlenbeck process::

    class OU(LinearSDE):
        def marginal_coeffs(self, t):
            return jnp.exp(-t), jnp.sqrt(1 - jnp.exp(-2 * t))

    bridge = Bridge(OU(), y)        # drift, marginals, h — all follow
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from . import schedules
from ._utils import bcast, safe_sqrt
from .sdes import VPSDE, LinearSDE, MeanRevertingSDE, interp_uniform

__all__ = [
    "h_transform",
    "h_transform_autodiff",
    "Bridge",
    "ReverseBridge",
    "reverse_bridge",
    "BrownianSDE",
    "EDMVESDE",
    "goub",
    "i2sb",
    "ddbm_vp",
    "ddbm_ve",
    "preconditioning",
    "posterior",
    "bridge_coeffs",
    "bridge_score_from_x0",
    "bridge_preconditioning",
]


def _to_end(sde, t, T):
    """Scale and variance of ``x_T | x_t``."""
    a_t, s_t = sde.marginal_coeffs(t)
    a_T, s_T = sde.marginal_coeffs(jnp.asarray(T, jnp.result_type(float)))
    a = a_T / a_t
    return a, jnp.maximum(s_T**2 - a**2 * s_t**2, 0.0)


def h_transform(sde: LinearSDE, x, t, y, T=None):
    """Doob's ``h = ∇_x log p(x_T = y | x_t = x)`` in closed form (any linear SDE).

    ``x``, ``y``: same shape (batched or not); ``t`` scalar or per-example. Diverges as
    ``t → T`` (the bridge is pinned there); callers stop short of ``T``.
    """
    T = sde.T if T is None else T
    a, v = _to_end(sde, t, T)
    m_t = sde.marginal_offset(t, x)
    m_T = sde.marginal_offset(jnp.asarray(T, jnp.result_type(float)), x)
    mean = bcast(a, x) * (x - m_t) + m_T
    return bcast(a / v, x) * (y - mean)


def h_transform_autodiff(sde: LinearSDE, x, t, y, T=None):
    """The same ``h`` as ``jax.grad`` of the Gaussian log-transition (a check of the closed form)."""
    T = sde.T if T is None else T

    def log_p(xx):
        mean, std = sde.transition(xx, t, T)
        return -0.5 * jnp.sum((y - mean) ** 2 / bcast(std**2, xx))

    return jax.grad(log_p)(x)


class Bridge(eqx.Module):
    """The SDE ``sde`` conditioned to hit ``y`` at time ``T`` (default ``sde.T``).

    ``y`` is a field, so a batch of bridges is a Bridge with a batched ``y``.
    """

    sde: LinearSDE
    y: jax.Array
    T: float = eqx.field(static=True, default=None)

    def __init__(self, sde: LinearSDE, y, T: float | None = None):
        self.sde = sde
        self.y = jnp.asarray(y)
        self.T = float(sde.T if T is None else T)

    def h(self, x, t):
        return h_transform(self.sde, x, t, self.y, self.T)

    def drift(self, x, t):
        """Forward bridge drift ``f(x, t) + g(t)² h(x, t)``."""
        g = self.sde.diffusion(t)
        return self.sde.drift(x, t) + bcast(g**2, x) * self.h(x, t)

    def diffusion(self, t):
        return self.sde.diffusion(t)

    def _weights(self, t):
        """Weights of the Gaussian product: ``(α_t w0, wy, w0, a, std)``, see the module doc."""
        a_t, s_t = self.sde.marginal_coeffs(t)
        a, v = _to_end(self.sde, t, self.T)
        # precision-weighted combination; at t = 0 (s_t = 0) the marginal is x_0.
        denom = v + a**2 * s_t**2
        w0 = v / denom  # weight on the x_t | x_0 mean
        wy = a * s_t**2 / denom  # weight on (y − offsets)/… through a
        var = s_t**2 * v / denom
        return a_t * w0, wy, w0, a, safe_sqrt(var)

    def marginal(self, x0, t):
        """Mean and std of ``x_t | x_0, x_T = y`` (Gaussian bridge marginal)."""
        c0, wy, w0, a, std = self._weights(t)
        m_t = self.sde.marginal_offset(t, x0)
        m_T = self.sde.marginal_offset(jnp.asarray(self.T, jnp.result_type(float)), x0)
        mean = bcast(c0, x0) * x0 + bcast(w0, x0) * m_t + bcast(wy, x0) * (self.y - m_T + bcast(a, x0) * m_t)
        return mean, std

    def sample_marginal(self, key, x0, t):
        """Draw ``x_t | x_0, x_T = y``."""
        mean, std = self.marginal(x0, t)
        return mean + bcast(std, x0) * jax.random.normal(key, x0.shape, x0.dtype)


class ReverseBridge(eqx.Module):
    """Reverse-time bridge driven by ``score_fn(x, t, cond) ≈ ∇ log q(x_t | x_T = y)``.

    ``drift = f + g² h − c g² s`` with ``c = 1`` (SDE, ``dx = [f − g²(s − h)]dt + g dŵ``) or
    ``c = ½`` and no noise (probability-flow ODE); integrate backwards in ``t``.
    """

    bridge: Bridge
    score_fn: callable = eqx.field(static=True)
    probability_flow: bool = eqx.field(static=True, default=False)

    def drift(self, x, t, cond=None):
        g2 = bcast(self.bridge.sde.diffusion(t) ** 2, x)
        c = 0.5 if self.probability_flow else 1.0
        return self.bridge.drift(x, t) - c * g2 * self.score_fn(x, t, cond)

    def diffusion(self, t):
        g = self.bridge.sde.diffusion(t)
        return jnp.zeros_like(g) if self.probability_flow else g


def reverse_bridge(bridge: Bridge, score_fn, probability_flow: bool = False) -> ReverseBridge:
    """Reverse-time drift/diffusion of a bridge for a conditional ``score_fn``."""
    return ReverseBridge(bridge, score_fn, probability_flow)


# ---------------------------------------------------------------------------------
class BrownianSDE(LinearSDE):
    """``dx = √β(t) dW`` with piecewise-constant β from a discrete schedule (I2SB's forward).

    ``σ(t)² = Σ_{j ≤ i} β_j`` at ``t_i = (i+1)/N`` (I2SB's ``std_fwd²``), interpolated
    linearly in between; α = 1.
    """

    betas: jax.Array

    def __init__(self, betas, *, T: float = 1.0, t_min: float = 0.0):
        self.betas = jnp.asarray(betas, jnp.float32)
        if self.betas.ndim != 1:
            raise ValueError(f"betas must be 1-D (N,), got {self.betas.shape}")
        self.T, self.t_min = float(T), float(t_min)

    def marginal_coeffs(self, t):
        cum = jnp.concatenate([jnp.zeros((1,)), jnp.cumsum(self.betas)])
        var = interp_uniform(t, self.T, cum)
        return jnp.ones_like(var), safe_sqrt(var)

    def drift_coeff(self, t):
        return jnp.zeros_like(jnp.asarray(t, jnp.result_type(float)))

    def diffusion(self, t):
        n = self.betas.shape[0]
        i = jnp.clip(jnp.ceil(jnp.asarray(t) * n / self.T).astype(jnp.int32) - 1, 0, n - 1)
        return jnp.sqrt(self.betas[i] * n / self.T)


class EDMVESDE(LinearSDE):
    """EDM's VE process ``x_t = x_0 + t ε`` (σ(t) = t), ``t ∈ [σ_min, σ_max]`` (DDBM-VE)."""

    T: float = eqx.field(static=True, default=80.0, kw_only=True)
    t_min: float = eqx.field(static=True, default=0.002, kw_only=True)

    def marginal_coeffs(self, t):
        t = jnp.asarray(t, jnp.result_type(float))
        return jnp.ones_like(t), t

    def drift_coeff(self, t):
        return jnp.zeros_like(jnp.asarray(t, jnp.result_type(float)))

    def diffusion(self, t):
        return jnp.sqrt(2.0 * jnp.asarray(t, jnp.result_type(float)))


def goub(y, lam: float = 10.0 / 255.0, T: int = 100, eps: float = 0.005) -> Bridge:
    """GOUB (Yue et al. 2024): the IR-SDE with ``μ = y`` bridged to ``x_T = y``.

    Drift ``θ_t (y − x) + σ_t² e^{−2θ̄_{t:T}}/σ̄²_{t:T} (y − x)`` — the h-term of this module
    specialised to the OU process. ``T`` is a parameter (the official code hard-codes 100).
    """
    return Bridge(MeanRevertingSDE(y, lam, T=T, eps=eps), y)


def i2sb(y, beta_max: float = 0.3, num_steps: int = 1000) -> Bridge:
    """I2SB (Liu et al. 2023): Brownian bridge with the symmetric sqrt-linear β (``beta_max``
    0.3 for JPEG/SR, 1.0 for blur/inpainting), from x_0 (clean) to x_1 = y (degraded)."""
    return Bridge(BrownianSDE(schedules.i2sb_beta_schedule(num_steps, beta_max)), y)


def ddbm_vp(y, beta_d: float = 2.0, beta_min: float = 0.1, sigma_min: float = 1e-4) -> Bridge:
    """DDBM-VP: the VP SDE with ``β(t) = β_min + β_d t`` bridged to ``y`` at T = 1.

    ``sigma_min`` is the SDE's ``t_min``, where `jaxir.samplers.ddbm_sample`'s grid ends and
    the DDBM loss's times start: 1e-4, the official VP setting (``args.sh``: ``SIGMA_MIN=0.0001``
    with ``SIGMA_MAX=1``); the generic VP default 1e-3 gave another sampler law (4.6 s.e. apart
    at 40,000 draws and 10 steps, ``tests/test_oracle_bridges.py``)."""
    return Bridge(VPSDE(beta_min=beta_min, beta_max=beta_min + beta_d, t_min=sigma_min), y)


def ddbm_ve(y, sigma_max: float = 80.0, sigma_min: float = 0.002) -> Bridge:
    """DDBM-VE: EDM's VE process (σ(t) = t) bridged to ``y`` at ``T = σ_max``."""
    return Bridge(EDMVESDE(T=sigma_max, t_min=sigma_min), y)


def preconditioning(sigma, sigma_data: float = 0.5):
    """EDM/k-diffusion preconditioning ``(c_skip, c_out, c_in)`` for noise level σ."""
    s2, d2 = sigma**2, sigma_data**2
    return d2 / (s2 + d2), sigma * sigma_data / jnp.sqrt(s2 + d2), 1.0 / jnp.sqrt(s2 + d2)



# ---------------------------------------------------------------------------------
# Pieces the bridge samplers and losses share (jaxir.samplers, jaxir.training).
def posterior(sde: LinearSDE, x0, x_t, s, t):
    """Mean and std of ``x_s | x_0, x_t`` for ``s < t`` (any linear SDE; traced ``s``, ``t``).

    The Gaussian product of ``x_s | x_0 ~ N(α_s x_0 + m_s, σ_s²)`` and
    ``x_t | x_s ~ N(a (x_s − m_s) + m_t, v)``, ``a = α_t/α_s``, ``v = σ_t² − a² σ_s²``::

        var  = σ_s² v / (v + a² σ_s²),
        mean = [v (α_s x_0 + m_s) + a σ_s² (x_t − m_t + a m_s)] / (v + a² σ_s²).

    This is DDPM's q(x_{t−1} | x_t, x_0) (Ho et al. 2020, Eq. 7) for a general linear SDE,
    I2SB's ``p_posterior`` (Liu et al. 2023, Eq. 4 with a Brownian SDE) and IR-SDE's optimal
    reverse state (Luo et al. 2023, Prop. 3.1) for the mean-reverting SDE. At ``s = 0`` it
    returns ``(x_0, 0)``.
    """
    a_s, sig_s = sde.marginal_coeffs(s)
    a, std = sde.transition_coeffs(s, t)
    v, vs = std**2, sig_s**2
    denom = jnp.maximum(v + a**2 * vs, jnp.finfo(jnp.result_type(float)).tiny)
    m_s, m_t = sde.marginal_offset(s, x0), sde.marginal_offset(t, x0)
    mean = (bcast(v / denom, x0) * (bcast(a_s, x0) * x0 + m_s)
            + bcast(a * vs / denom, x0) * (x_t - m_t + bcast(a, x0) * m_s))
    return mean, safe_sqrt(vs * v / denom)


def bridge_coeffs(bridge: Bridge, t):
    """``(b_t, a_t, std_t)`` with ``x_t | x_0, x_T = y  =  b_t x_0 + a_t y + c_t + std_t ε``.

    ``c_t`` collects the SDE's offsets: zero for VP / VE / Brownian SDEs, which are what this
    is for (DDBM, I2SB); for the mean-reverting SDE use :meth:`Bridge.marginal`. DDBM
    (Zhou et al. 2024) writes the same marginal as ``a_t x_T + b_t x_0 + √c_t ε``; note the
    swapped letters (here ``b`` multiplies x_0 as in DDBM's code).
    """
    c0, wy, *_rest, std = bridge._weights(t)
    return c0, wy, std


def bridge_score_from_x0(bridge: Bridge, x, t, x0_hat):
    """Conditional score ``∇ log q(x_t | x_T = y)`` from a denoiser ``x̂_0 = E[x_0 | x_t, y]``.

    The bridge marginal is Gaussian and affine in x_0, so the score of ``q(x_t | y)`` is the
    conditional score at the posterior mean: ``−(x_t − mean(x̂_0, t))/std_t²`` (DDBM,
    Zhou et al. 2024, Eq. 12 / their ``get_d_vp``; Tweedie's formula read backwards).
    """
    mean, std = bridge.marginal(x0_hat, t)
    return -(x - mean) / bcast(std**2, x)


def bridge_preconditioning(bridge: Bridge, t, sigma_data: float = 0.5,
                           sigma_data_end: float | None = None, cov_xy: float = 0.0):
    """DDBM's bridge preconditioning ``(c_skip, c_out, c_in)`` (Zhou et al. 2024, Thm. 2 /
    App. A; ``get_bridge_scalings`` in the official code) for the denoiser
    ``D(x_t) = c_skip x_t + c_out F(c_in x_t, t, y)``.

    With ``x_t = b x_0 + a y + std ε`` (:func:`bridge_coeffs`), data std ``σ_0 = sigma_data``,
    end std ``σ_T = sigma_data_end`` (default σ_0) and covariance ``cov_xy``::

        A = a² σ_T² + b² σ_0² + 2ab cov_xy + std²,          c_in = A^{−1/2},
        c_skip = (b σ_0² + a cov_xy)/A,   c_out = √(a² (σ_T² σ_0² − cov_xy²) + σ_0² std²) · c_in.

    These make the network's input and its regression target unit-variance. At ``t → 0``
    they tend to EDM's (``c_skip → 1``, ``c_out → 0``), see :func:`preconditioning`.
    """
    sd_end = sigma_data if sigma_data_end is None else sigma_data_end
    b, a, std = bridge_coeffs(bridge, t)
    A = a**2 * sd_end**2 + b**2 * sigma_data**2 + 2 * a * b * cov_xy + std**2
    c_in = 1.0 / jnp.sqrt(A)
    c_skip = (b * sigma_data**2 + a * cov_xy) / A
    c_out = safe_sqrt(a**2 * (sd_end**2 * sigma_data**2 - cov_xy**2) + sigma_data**2 * std**2) * c_in
    return c_skip, c_out, c_in
