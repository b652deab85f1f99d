"""MCGdiff: sequential Monte Carlo for linear Gaussian inverse problems (Cardoso et al., ICLR 2024)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import predictions
from .._utils import safe_sqrt
from ..samplers import Samples, time_grid
from ._common import batch_y, check_x_shape, require_svd, spectral_y

RESAMPLING = ("multinomial", "systematic")


def _log_normal(x, mean, var):
    var = jnp.maximum(var, 1e-30)
    return -0.5 * ((x - mean) ** 2 / var + jnp.log(2 * math.pi * var))


def _ancestors(key, logw, method):
    """Indices ``(B, N)`` drawn ∝ ``exp(logw)`` per run, by inverse CDF in O(N log N).

    ``"multinomial"``: N i.i.d. uniforms; ``"systematic"``: one uniform, ``(u + i)/N``.
    """
    b, n = logw.shape
    cdf = jnp.cumsum(jax.nn.softmax(logw, axis=-1), -1)
    if method == "multinomial":
        u = jax.random.uniform(key, (b, n))
    else:
        u = (jax.random.uniform(key, (b, 1)) + jnp.arange(n)) / n
    idx = jax.vmap(jnp.searchsorted)(cdf, u * cdf[:, -1:])
    return jnp.minimum(idx, n - 1)


def mcgdiff_sample(
    key,
    model_fn,
    sde,
    op,
    y,
    sigma_y,
    shape=None,
    *,
    prediction: str = "eps",
    num_particles: int = 128,
    num_steps: int = 100,
    eta: float = 1.0,
    kappa: float = 1e-4,
    resample_threshold: float = 1.0,
    resampling: str = "systematic",
    spacing: str | None = None,
    cond=None,
    x_init=None,
    return_particles: bool = False,
) -> Samples:
    """MCGdiff: a particle filter on the diffusion's backward chain, in the SVD basis of ``op``.

    With ``A = U S Vᵀ`` and ``x̄ = Vᵀx``, the likelihood of observed coordinate ``i``
    (``s_i > 0``) is ``ȳ_i = x̄_{0,i} + ρ_i ε``, ``ȳ_i = (Uᵀy)_i/s_i``, ``ρ_i = σ_y/s_i``.
    MCGdiff's observation (Sec. 3.2, noisy case) is that this is the forward marginal of
    coordinate ``i`` at the time ``τ_i`` with ``σ(τ_i)/α(τ_i) = ρ_i``, so conditioning on
    ``y`` is conditioning the backward chain on ``x̄_{τ_i, i} = α(τ_i) ȳ_i``. Here ``τ_i`` is
    replaced by the grid time ``t_{k_i}`` just below it and the remaining mismatch is kept
    exactly as a Gaussian potential ``L_i = N(α_k ȳ_i; x̄_{k,i}, v_i)`` with
    ``v_i = α_k² ρ_i² − σ_k² ≥ 0`` (``E[L_i | x_0] ∝ p(ȳ_i | x_0)``), so any grid is exact
    in the limit of many particles (the official code instead moves the grid onto τ_i).
    For ``t_j ≥ t_{k_i}`` coordinate ``i`` is twisted by the forward kernel from ``t_k``,
    ``g_{j,i} = N(x̄_{j,i}; α_j ȳ_i, σ_j² − a²σ_k² + a²(v_i + κ))``, ``a = α_j/α_k``
    (the official potential with its regulariser κ); after ``t_k`` it is free. Unobserved
    coordinates move by the prior's DDIM kernel. Each step: weight every particle by the
    predictive ``∫ p(x_s | x_t) g_s dx_s / g_t(x_t)`` (closed form: the DDIM kernel is
    Gaussian and isotropic), resample when ESS < ``resample_threshold · N`` (1.0, the
    official choice, resamples every step), then draw from the locally optimal proposal
    ``p(x_s | x_t) g_s(x_s)``. At ``t = 0`` one particle per run is drawn ∝ its weight.

    Deviation from the official code: resampling is *systematic* by default (the official
    code draws multinomial ancestors; ``resampling="multinomial"`` restores it). Both are
    unbiased resampling steps of the same algorithm, but multinomial resampling at every
    step adds much more noise: measured on the GMM benchmark (d = 8, 128 particles, 5
    problems per dy) max-sliced W2 7.4 / 4.7 / 2.8 (multinomial) vs 4.1 / 0.96 / 0.40
    (systematic) for dy = 1 / 2 / 4, and a visible bias in the unobserved coordinates of a
    Gaussian posterior at 64 particles.

    So each row of the output is ONE draw from an independent run with ``num_particles``
    particles; ``jax.vmap`` over keys or a larger ``B`` gives more. Its law converges to the
    posterior of the model's backward chain as ``num_particles → ∞`` (the remaining bias is
    the chain's discretisation: use η = 1 and enough steps to make it small).

    Args:
        key: PRNG key.
        model_fn: ``model_fn(x, t, cond)``; it is called on ``(B·N, *op.x_shape)``.
        sde: a VP-type :class:`~jaxir.sdes.LinearSDE` (zero offset).
        op: a linear operator with an SVD (``op.has_svd``).
        y: ``op.y_shape`` (shared) or ``(B, *op.y_shape)``.
        sigma_y: noise std of ``y`` (units of ``y``); 0 pins observed coordinates at t = 0.
        shape: ``(B, *op.x_shape)``: B independent runs; or ``x_init`` ``(B, N, *op.x_shape)``
            initial particles (``N`` then sets ``num_particles``).
        num_particles: N. num_steps: DDIM steps. eta: DDIM η of the prior kernel.
        kappa: κ, the potentials' variance floor (official default 1e-4).
        resample_threshold: resample when ESS < threshold · N (0 never, 1 every step).
        resampling: ``"systematic"`` (default) or ``"multinomial"`` (official).
        return_particles: also return the final weighted cloud in ``extras``.

    Returns:
        :class:`~jaxir.samplers.Samples` with ``x`` ``(B, *op.x_shape)`` and
        ``extras = {"ess": (B, num_steps)`` ESS after each reweighting, and with
        ``return_particles`` ``"particles": (B, N, *op.x_shape), "log_weights": (B, N)}``.
    """
    who = "mcgdiff_sample"
    require_svd(op, who)
    if resampling not in RESAMPLING:
        raise ValueError(f"{who}: resampling must be one of {RESAMPLING}, got {resampling!r}")
    x_shape = tuple(op.x_shape)
    if x_init is not None:
        x_init = jnp.asarray(x_init)
        if x_init.ndim != len(x_shape) + 2 or tuple(x_init.shape[2:]) != x_shape:
            raise ValueError(f"{who}: x_init must have shape (B, N, *op.x_shape) = (B, N, {x_shape}), got {x_init.shape}")
        num_particles = x_init.shape[1]
        shape = (x_init.shape[0], *x_shape)
    B = check_x_shape(op, shape, None, who)[0]
    N = int(num_particles)
    y_b = batch_y(op, y, B, who)
    uty, s, ybar = spectral_y(op, y_b)  # ybar (B, D)
    D, dy = s.shape[0], uty.shape[-1]
    obs = (jnp.arange(D) < dy) & (s > 0)
    rho = jnp.asarray(sigma_y, jnp.float32) / jnp.where(obs, s, 1.0)

    ts, ts_next = time_grid(sde, num_steps, spacing)
    times = jnp.asarray(np.concatenate([ts, [0.0]]), jnp.float32)  # t_0 = T … t_n = 0
    alphas, sigmas = sde.marginal_coeffs(times)
    alphas, sigmas = jnp.asarray(alphas), jnp.asarray(sigmas)
    ratio = sigmas / alphas  # decreasing along the grid, 0 at t = 0
    k = jnp.where(obs, jnp.sum(ratio[None, :] > rho[:, None], axis=1), -1)  # (D,)
    kc = jnp.maximum(k, 0)
    a_k, s_k = alphas[kc], sigmas[kc]
    v = jnp.maximum(a_k**2 * rho**2 - s_k**2, 0.0)

    # only the first dy spectral coordinates can be observed: potentials live on those
    k, a_k, s_k, v, obs = k[:dy], a_k[:dy], s_k[:dy], v[:dy], obs[:dy]

    def potential(j):
        """Mean scale, variance and activity of the potentials at grid index j: (dy,) each."""
        a = alphas[j] / a_k
        var = jnp.maximum(sigmas[j] ** 2 - a**2 * s_k**2, 0.0) + a**2 * (v + kappa)
        return alphas[j], var, obs & (j <= k)

    V = jax.vmap(jax.vmap(op.V))
    V_T = jax.vmap(jax.vmap(op.V_T))
    denoise = predictions.denoiser_from_model(model_fn, sde, prediction)
    yb = ybar[:, None, :dy]  # (B, 1, dy)

    k_init, k_steps, k_final = jax.random.split(key, 3)
    if x_init is None:
        xbar = sde.prior_std() * jax.random.normal(k_init, (B, N, D))
    else:
        xbar = V_T(x_init)
    mu0, var0, act0 = potential(0)
    logw = jnp.sum(jnp.where(act0, _log_normal(xbar[..., :dy], mu0 * yb, var0), 0.0), -1)

    def step(carry, inp):
        xbar, logw = carry
        j, t, s_time, key = inp
        k_res, k_noise = jax.random.split(key)
        x = V(xbar).reshape(B * N, *x_shape)
        x0, eps = denoise(x, t, cond)
        a_t, sig_t = sde.marginal_coeffs(t)
        a_s, sig_s = sde.marginal_coeffs(s_time)
        var_ts = jnp.maximum(sig_t**2 - (a_t / a_s) ** 2 * sig_s**2, 0.0)
        c = eta * safe_sqrt(sig_s**2 * var_ts / sig_t**2)  # DDIM noise std
        mean = a_s * x0 + safe_sqrt(sig_s**2 - c**2) * eps
        mbar = V_T(mean.reshape(B, N, *x_shape))
        mu1, var1, act1 = potential(j + 1)
        mu_j, var_j, _ = potential(j)
        # incremental weight: ∫ p(x_s | x_t) g_s(x_s) dx_s / g_t(x_t) over coordinates active at s
        inc = (_log_normal(mbar[..., :dy], mu1 * yb, c**2 + var1)
               - _log_normal(xbar[..., :dy], mu_j * yb, var_j))
        logw = logw + jnp.sum(jnp.where(act1, inc, 0.0), -1)
        w = jax.nn.softmax(logw, -1)
        ess = 1.0 / jnp.sum(w**2, -1)
        do = ess < resample_threshold * N
        anc = jnp.where(do[:, None], _ancestors(k_res, logw, resampling), jnp.arange(N))
        mbar = jnp.take_along_axis(mbar, anc[..., None], axis=1)
        logw = jnp.where(do[:, None], 0.0, logw)
        # locally optimal proposal: N(m, c²) × N(μ, var1) on active coordinates
        z = jax.random.normal(k_noise, mbar.shape)
        free = mbar + c * z
        tot = c**2 + var1
        gain = jnp.where(tot > 0, c**2 / jnp.where(tot > 0, tot, 1.0), 1.0)
        m_o, z_o = mbar[..., :dy], z[..., :dy]
        twisted = gain * mu1 * yb + (1.0 - gain) * m_o + safe_sqrt(gain * var1) * z_o
        xbar = free.at[..., :dy].set(jnp.where(act1, twisted, free[..., :dy]))
        return (xbar, logw), ess

    n = len(ts)
    xs = (jnp.arange(n), times[:-1], times[1:], jax.random.split(k_steps, n))
    (xbar, logw), ess = jax.lax.scan(step, (xbar, logw), xs)
    pick = jax.random.categorical(k_final, logw, axis=-1)  # (B,)
    x = jax.vmap(op.V)(jnp.take_along_axis(xbar, pick[:, None, None], axis=1)[:, 0])
    extras = {"ess": ess.T}
    if return_particles:
        extras["particles"] = V(xbar)
        extras["log_weights"] = logw
    return Samples(x, None, n, jnp.all(jnp.isfinite(x)), extras)
