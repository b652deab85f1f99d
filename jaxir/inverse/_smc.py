"""MCGdiff: sequential Monte Carlo for linear Gaussian inverse problems (Cardoso et al., ICLR 2024)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from .._utils import safe_sqrt
from ..samplers import Samples
from ._common import require_svd, spectral_y
from ._driver import Method, Piece, Sampler, chain, sample

RESAMPLING = ("multinomial", "systematic")
NOISELESS_KAPPA = 1e-4  # the official code's default `gaussian_var`


def _log_normal(x, mean, var):
    var = jnp.maximum(var, 1e-30)
    return -0.5 * ((x - mean) ** 2 / var + jnp.log(2 * math.pi * var))


def _inverse_cdf(logw, u):
    """Indices ``(B, M)``: for each uniform ``u`` ``(B, M)`` in [0, 1) the first particle whose
    normalised cumulative weight (``logw`` ``(B, N)``) exceeds it."""
    n = logw.shape[-1]
    cdf = jnp.cumsum(jax.nn.softmax(logw, axis=-1), -1)
    idx = jax.vmap(jnp.searchsorted)(cdf, u * cdf[:, -1:])
    return jnp.minimum(idx, n - 1)


def _resampling_uniforms(key, b, n, method):
    """The uniforms of one resampling step: ``(B, N)`` i.i.d. (multinomial) or the stratified
    grid ``(u + i)/N`` of one ``u ~ U[0, 1)`` per run (systematic)."""
    if method == "multinomial":
        return jax.random.uniform(key, (b, n))
    return (jax.random.uniform(key, (b, 1)) + jnp.arange(n)) / n


def check_particle_filter(op, resampling: str, num_particles, who: str) -> None:
    """The checks a particle filter in the SVD basis shares: ``op`` has an SVD, a known
    ``resampling`` (:data:`RESAMPLING`), ``num_particles >= 1``; `ValueError` naming ``who``."""
    require_svd(op, who)
    if resampling not in RESAMPLING:
        raise ValueError(f"{who}: resampling must be one of {RESAMPLING}, got {resampling!r}")
    if int(num_particles) < 1:
        raise ValueError(f"{who}: num_particles must be >= 1, got {num_particles}")


def mcgdiff_sample(key, model_fn, sde, op, y, sigma_y, shape=None, *, num_particles: int = 128,
                   eta: float = 1.0, kappa=None, resample_threshold: float = 0.5,
                   resampling: str = "systematic", return_particles: bool = False,
                   **options) -> Samples:
    """MCGdiff: a particle filter on the diffusion's backward chain, in the SVD basis of ``op``.

    With ``A = U S Vᵀ`` and ``x̄ = Vᵀx``, observed coordinate ``i`` (``s_i > 0``) has the
    likelihood ``ℓ_i(x̄_0) = N(ȳ_i; x̄_{0,i}, ρ_i²)``, ``ȳ_i = (Uᵀy)_i/s_i``,
    ``ρ_i² = σ_y²/s_i² (+ κ)``. The chain is DDIM with η on the grid ``t_0 = T > … > t_n = 0``
    (``α_j, σ_j`` its marginal coefficients), ``p(x_{j+1} | x_j) = N(m_j(x_j), c_j² I)`` with
    ``m_j = α_{j+1} x̂_0 + √(σ_{j+1}² − c_j²) ε̂`` and
    ``c_j = η σ_{j+1}/σ_j √(1 − α_j²/α_{j+1}²)`` (Song et al. 2021, Eq. 12 and 16). The target
    is the chain's own posterior ``p_chain(x_{0:n}) Π_i ℓ_i(x̄_{0,i})``: its law of ``x_0`` is
    exactly ``p_chain(x_0) ℓ(x_0)/Z`` for any grid, so draws are exact in the limit of many
    particles for the prior the chain samples (with an exact score and enough steps, the data
    prior).

    Each observed coordinate carries MCGdiff's Gaussian potential, here
    ``ψ_{j,i}(x̄_j) = N(ȳ_i; x̄_{j,i}/α_j, ρ_i² + V_j)`` with ``V_j = Σ_{l ≥ j} c_l²/α_{l+1}²``
    (``V_n = 0``): the variance of ``x̄_0`` given ``x̄_j`` under the same chain for a flat prior,
    so that ``ψ_n = ℓ`` and ``ψ_j = E_chain[ℓ(x_0) | x_j]`` when the prior is flat on the
    observed subspace. In the fine-step limit ``α_j² V_j → σ_j²`` and ``ψ_j`` becomes the
    potential of the paper's noiseless case, ``N(√ᾱ_t y; x_t, 1 − (1 − κ) ᾱ_t)``, with its
    smoothing variance κ set to the observation noise ρ_i². Each step (fully adapted particle
    filter): weight every particle by ``∫ p(x_{j+1} | x_j) ψ_{j+1} dx_{j+1} / ψ_j(x_j)``
    (closed form: the kernel is Gaussian and isotropic), resample when the effective sample
    size ``ESS = 1/Σ w²`` falls below ``resample_threshold · N``, then draw from the locally
    optimal proposal ``p(x_{j+1} | x_j) ψ_{j+1}(x_{j+1})``; unobserved coordinates move by the
    DDIM kernel. The start is the same move from ``N(0, prior_std²)`` (weight
    ``∫ N(x; 0, prior_std²) ψ_0(x) dx``, equal for all particles). At ``t = 0`` one particle
    per run is drawn ∝ its weight (one uniform, inverse CDF).

    Deviations from the paper and the official code (``gabrielvc/mcg_diff``,
    ``particle_filter.mcg_diff``), each to make the default exact on the chain it runs:

    * potentials. The noisy case there picks, per coordinate, the grid time ``τ_i`` nearest to
      ``σ(τ)/α(τ) = ρ_i``, pins ``x̄_{τ_i,i}`` at ``α(τ_i) ȳ_i`` with variance κ (potential
      ``N(x̄_t; α_t ȳ, 1 − (1 − κ) ᾱ_t/ᾱ_τ)`` for ``t ≥ τ_i``), and leaves the coordinate free
      below ``τ_i``. The paper takes the result as the posterior, which holds only if the chain
      from ``τ_i`` to 0 is the exact time reversal: on 100 DDPM steps with an exact score this
      gave 0.54× the posterior variance of the observed coordinates at σ_y = 0.1 at 16, 64 and
      256 particles alike (16 of 64 coordinates observed), and the τ-pinning plus κ gave
      4.1–4.4× at σ_y = 0.01. The official code then reweights the final particles by
      ``ℓ(x_0)/g_τ(x_τ)`` (when ``min τ_i > 0``; with ``min τ_i = 0`` it returns ``−log g_0`` as the weights),
      and its first step divides by the potential at ``T`` that the initial particles were
      never weighted by. Here the potentials end at ``ℓ`` itself and the start is weighted, so
      no final correction is needed.
    * κ (``gaussian_var`` there, default 1e-4; the benchmark repository uses 1e-6) is the
      variance added to every pinned potential. Here it is the noiseless case's smoothing only:
      ``kappa=None`` means 0 when ``sigma_y > 0`` (exact likelihood) and 1e-4 when
      ``sigma_y = 0``; an explicit value is added to ρ_i² (the target then has observation
      variance ``ρ_i² + κ``).
    * resampling is systematic and adaptive (when ESS < 0.5 N, the usual SMC rule); the official
      code resamples multinomially at every step (``resampling="multinomial",
      resample_threshold=1.0`` restores that).

    Random draws (documented so a test can replay them): ``k_init, k_steps, k_final =
    split(key, 3)``; ``z_0 = normal(k_init, (B, N, D))`` gives ``x̄_T`` (observed coordinates
    through the start move); step ``j`` uses ``k_res, k_noise = split(split(k_steps, n)[j])``
    with the uniforms of :func:`_resampling_uniforms` from ``k_res`` and
    ``z = normal(k_noise, (B, N, D))`` (in the SVD basis); the final pick uses
    ``uniform(k_final, (B, 1))``.

    So each row of the output is ONE draw from an independent run with ``num_particles``
    particles; ``jax.vmap`` over keys or a larger ``B`` gives more. The law of a draw is the
    run-average of the weighted particle cloud: it converges to the chain's posterior as
    ``num_particles → ∞`` with a bias ``O(1/N)``, while the cloud weighted by the evidence
    estimate (``extras["log_evidence"]``) is unbiased at every ``N``
    (``E[Ẑ Σ_k w_k f(x_k)] = Z E_post[f]``). The potentials assume nothing about the prior;
    where it contracts (``x̂_0`` pulls towards a prior of unit scale at high noise) ``Ẑ`` is
    heavy-tailed (measured sd of ``log Ẑ``: 0.9 at 64 particles, 0.5 at 1024, 4 of 16
    coordinates observed), while the draws stay accurate.

    Args:
        key: PRNG key.
        model_fn: ``model_fn(x, t, cond)``; it is called on ``(B·N, *op.x_shape)``.
        sde: a VP-type :class:`~jaxir.sdes.LinearSDE` (zero offset).
        op: a linear operator with an SVD (``op.has_svd``).
        y: ``op.y_shape`` (shared) or ``(B, *op.y_shape)``.
        sigma_y: noise std of ``y`` (units of ``y``); 0 is the noiseless case (see κ).
        shape: ``(B, *op.x_shape)``: B independent runs; or ``x_init`` ``(B, N, *op.x_shape)``
            initial particles (``N`` then sets ``num_particles``).
        num_particles: N. eta: DDIM η of the chain (> 0: with η = 0 the kernel is
            deterministic and the proposal cannot move the particles).
        kappa: extra observation variance in ``x̄`` units (None: 0 if ``sigma_y > 0``, else 1e-4).
        resample_threshold: resample when ESS < threshold · N (0 never, 1 every step).
        resampling: ``"systematic"`` (default) or ``"multinomial"`` (official).
        return_particles: also return the final weighted cloud in ``extras``.
        **options: :data:`~jaxir.inverse.OPTIONS` (``num_steps``: DDIM steps, default 100;
            ``x_init`` the particles above; ``save_every`` is not supported: the state is a
            weighted cloud, ``return_particles`` gives the final one).

    Returns:
        :class:`~jaxir.samplers.Samples` with ``x`` ``(B, *op.x_shape)`` and ``extras`` with
        ``"ess"`` ``(B, num_steps)`` (ESS after each reweighting) and ``"log_evidence"`` ``(B,)``,
        the log of the run's unbiased estimate ``Ẑ`` of the chain's evidence
        ``Z = ∫ p_chain(x_0) Π_i ℓ_i(x̄_{0,i}) dx_0`` (a density of the observed ``ȳ_i``); with
        ``return_particles`` also ``"particles"`` ``(B, N, *op.x_shape)`` and
        ``"log_weights"`` ``(B, N)``.
    """
    who = "mcgdiff_sample"
    require_svd(op, who)
    if resampling not in RESAMPLING:
        raise ValueError(f"{who}: resampling must be one of {RESAMPLING}, got {resampling!r}")
    if options.get("save_every") is not None:
        raise ValueError(f"{who}: save_every is not supported (the state is a weighted particle "
                         "cloud; return_particles=True returns the final one)")
    x_shape, x_init = tuple(op.x_shape), options.pop("x_init", None)
    if x_init is not None:
        x_init = jnp.asarray(x_init)
        if x_init.ndim != len(x_shape) + 2 or tuple(x_init.shape[2:]) != x_shape:
            raise ValueError(f"{who}: x_init must have shape (B, N, *op.x_shape) = (B, N, {x_shape}), got {x_init.shape}")
        num_particles = x_init.shape[1]
        shape = (x_init.shape[0], *x_shape)
    N = int(num_particles)
    log_n = math.log(N)
    V, V_T = jax.vmap(jax.vmap(op.V)), jax.vmap(jax.vmap(op.V_T))

    def build(p):
        B = p.shape[0]
        uty, s, ybar = spectral_y(op, p.y)  # ybar (B, D)
        D, dy = s.shape[0], uty.shape[-1]
        obs = ((jnp.arange(D) < dy) & (s > 0))[:dy]  # potentials live on the first dy coordinates
        sig_y = jnp.asarray(sigma_y, jnp.float32)
        kap = jnp.where(sig_y > 0, 0.0, NOISELESS_KAPPA) if kappa is None else kappa
        rho2 = (sig_y / jnp.where(obs, s[:dy], 1.0)) ** 2 + jnp.asarray(kap, jnp.float32)  # (dy,)
        times = jnp.concatenate([p.ts, p.ts_next[-1:]])  # t_0 = T … t_n = 0
        alphas, sigmas = (jnp.asarray(v) for v in p.sde.marginal_coeffs(times))
        a_t, s_t, a_s, s_s = alphas[:-1], sigmas[:-1], alphas[1:], sigmas[1:]
        var_ts = jnp.maximum(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0)  # forward t_{j+1} → t_j
        cs = eta * safe_sqrt(s_s**2 * var_ts / s_t**2)  # (n,) DDIM noise std c_j
        # x̄_0 | x̄_j under the chain for a flat prior: N(x̄_j/α_j, V_j), V_j = Σ_{l≥j} c_l²/α_{l+1}²
        v_acc = jnp.concatenate([jnp.cumsum(((cs / a_s) ** 2)[::-1])[::-1], jnp.zeros((1,))])
        gain_k = 1.0 / alphas  # K_j, (n+1,)
        r_var = rho2[None, :] + v_acc[:, None]  # (n+1, dy): ψ_j = N(ȳ; K_j x̄_j, r_j)
        yb = ybar[:, None, :dy]  # (B, 1, dy)

        def log_psi(xo, j, c2=0.0):
            """Σ_i log ∫ N(x̄'; xo, c²) ψ_{j,i}(x̄') dx̄' (c = 0: log ψ_j(xo)), a density of ȳ."""
            k = gain_k[j]
            lp = _log_normal(yb, k * xo, r_var[j] + k**2 * c2)
            return jnp.sum(jnp.where(obs, lp, 0.0), -1)

        def propose(m, c2, j, z):
            """A draw of N(x̄; m, c²) × ψ_j(x̄) on observed coordinates (precision form)."""
            k, r = gain_k[j], r_var[j]
            den = c2 * k**2 + r
            ok = den > 0
            den = jnp.where(ok, den, 1.0)
            mean = jnp.where(ok, (c2 * k * yb + r * m) / den, m)
            return mean + safe_sqrt(jnp.where(ok, c2 * r / den, 0.0)) * z

        s0 = p.sde.prior_std() ** 2

        def init(k):  # x̄_T from p(x_T) ψ_0(x_T): N(0, s²) × N(α_0 ȳ, P_0) on observed coordinates
            if x_init is not None:
                return V_T(x_init)
            z0 = jax.random.normal(k, (B, N, D))
            xbar = jnp.sqrt(s0) * z0
            xo = propose(jnp.zeros_like(xbar[..., :dy]), s0, 0, z0[..., :dy])
            return xbar.at[..., :dy].set(jnp.where(obs, xo, xbar[..., :dy]))

        def state(k, xbar):  # (log-weights, log-evidence, ESS per step); the start weighs ∫ p ψ_0
            logw = (log_psi(jnp.zeros_like(xbar[..., :dy]), 0, s0) if x_init is None
                    else log_psi(xbar[..., :dy], 0))
            return logw, jnp.zeros((B,)), jnp.zeros((len(p.ts), B))

        def reweight(st, k_res):  # DDIM means, weights ∫ p ψ_{j+1} / ψ_j, adaptive resampling
            (logw, logz, ess_all), j, c = st.state, st.index, cs[st.index]
            x0, eps = p.denoise(V(st.x).reshape(B * N, *x_shape), st.t)
            a_s, sig_s = p.sde.marginal_coeffs(st.s)
            mean = a_s * x0 + safe_sqrt(sig_s**2 - c**2) * eps
            mbar = V_T(mean.reshape(B, N, *x_shape))
            logw = logw + log_psi(mbar[..., :dy], j + 1, c**2) - log_psi(st.x[..., :dy], j)
            w = jax.nn.softmax(logw, -1)
            ess = 1.0 / jnp.sum(w**2, -1)
            do = ess < resample_threshold * N
            logz = jnp.where(do, logz + logsumexp(logw, -1) - log_n, logz)
            anc = _inverse_cdf(logw, _resampling_uniforms(k_res, B, N, resampling))
            anc = jnp.where(do[:, None], anc, jnp.arange(N))
            mbar = jnp.take_along_axis(mbar, anc[..., None], axis=1)
            logw = jnp.where(do[:, None], 0.0, logw)
            return st._replace(x_next=mbar, state=(logw, logz, ess_all.at[j].set(ess)))

        def move(st, k_noise):  # the locally optimal proposal N(m, c²) × ψ_{j+1} (observed part)
            mbar, j, c = st.x_next, st.index, cs[st.index]
            z = jax.random.normal(k_noise, mbar.shape)
            twisted = propose(mbar[..., :dy], c**2, j + 1, z[..., :dy])
            xbar = mbar + c * z
            return st._replace(x_next=xbar.at[..., :dy].set(jnp.where(obs, twisted, xbar[..., :dy])))

        def finish(xbar, state, k_final):  # one particle per run, drawn ∝ its weight
            logw, logz, ess = state
            logz = logz + logsumexp(logw, -1) - log_n
            pick = _inverse_cdf(logw, jax.random.uniform(k_final, (B, 1)))  # (B, 1)
            x = jax.vmap(op.V)(jnp.take_along_axis(xbar, pick[:, :, None], axis=1)[:, 0])
            extras = {"ess": ess.T, "log_evidence": logz}
            if return_particles:
                extras["particles"] = V(xbar)
                extras["log_weights"] = logw
            return x, extras

        return Sampler(chain(Piece(reweight, True), Piece(move, True)), init=init, state=state,
                       finish=finish)

    method = Method(who, build, num_steps=100, keys=("init", "steps", "finish"))
    return sample(method, key, model_fn, sde, op, y, sigma_y, shape, **options)
