"""Linear SDEs as immutable pytrees (layer 2).

Every SDE here is *linear*: ``dx = [f(t) x + u(t)] dt + g(t) dW`` with scalar ``f`` and
``g``, so its marginals are Gaussian in closed form::

    x_t = α(t) x_0 + m(t) + σ(t) ε,        ε ~ N(0, I),

with ``α(0) = 1``, ``σ(0) = 0`` and an offset ``m(t)`` that is zero except for the
mean-reverting SDE (``m(t) = (1 − α(t)) μ``). The transition ``x_t | x_s`` (``s < t``)
has scale ``a = α(t)/α(s)``, mean ``a (x_s − m(s)) + m(t)`` and variance
``σ(t)² − a² σ(s)²``.

**Adding an SDE is one small class**: subclass :class:`LinearSDE` and write
``marginal_coeffs(t) -> (α(t), σ(t))``. Drift and diffusion then follow by automatic
differentiation (``f = d log α/dt``, ``g² = dσ²/dt − 2 f σ²``); override them when a
closed form is cheaper. For example a cosine-schedule VP SDE::

    class CosineVPSDE(LinearSDE):
        def marginal_coeffs(self, t):
            a = jnp.cos((t + 0.008) / 1.008 * jnp.pi / 2) / math.cos(0.008 / 1.008 * math.pi / 2)
            return a, jnp.sqrt(1.0 - a**2)

Every sampler, the Doob h-transform and the exact references then work with it.

Time: continuous ``t ∈ [0, T]``. Samplers integrate from ``T`` down to ``t_min`` (Score-SDE's
ε). For discrete chains (:class:`DiscreteVPSDE`) the DDPM index ``i`` lives at
``t_i = (i + 1)/N``; :meth:`DiscreteVPSDE.index_to_time` / ``time_to_index`` are the only
place that conversion is made.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import schedules
from ._utils import bcast, safe_sqrt

__all__ = [
    "LinearSDE",
    "VPSDE",
    "SubVPSDE",
    "VESDE",
    "DiscreteVPSDE",
    "MeanRevertingSDE",
    "ReverseSDE",
    "reverse",
]


class LinearSDE(eqx.Module):
    """Base class: a linear SDE given by its marginal coefficients ``α(t)``, ``σ(t)``.

    Subclasses must implement :meth:`marginal_coeffs`; everything else has a default.
    Fields ``T`` (end time) and ``t_min`` (where samplers stop) are static.
    """

    T: float = eqx.field(static=True, default=1.0, kw_only=True)
    t_min: float = eqx.field(static=True, default=1e-3, kw_only=True)

    # ---- the one required method -------------------------------------------------
    def marginal_coeffs(self, t):
        """Return ``(α(t), σ(t))`` with the shape of ``t``."""
        raise TypeError(f"{type(self).__name__} must implement marginal_coeffs(t)")

    # ---- offset (mean-reverting SDEs) -------------------------------------------
    def marginal_offset(self, t, like):
        """Deterministic part ``m(t)`` of the marginal, broadcast against ``like``. Zero here."""
        del t
        return jnp.zeros((), jnp.asarray(like).dtype)

    # ---- derived quantities ------------------------------------------------------
    def _log_alpha_and_var(self, t):
        a, s = self.marginal_coeffs(t)
        return jnp.log(a), s**2

    def drift_coeff(self, t):
        """``f(t) = d log α/dt`` (by forward-mode autodiff unless overridden)."""
        t = jnp.asarray(t, jnp.result_type(float))
        return jax.jvp(lambda u: self._log_alpha_and_var(u)[0], (t,), (jnp.ones_like(t),))[1]

    def diffusion(self, t):
        """``g(t)`` with ``g² = dσ²/dt − 2 f σ²`` (autodiff unless overridden). Where
        ``σ(t) = 0`` a user's ``σ = √v`` has an infinite slope (autodiff: ``0 · ∞``): there
        ``g`` is its right limit, taken at ``t + 1e-6 · max(T, 1)``."""
        t = jnp.asarray(t, jnp.result_type(float))
        at_zero = self.marginal_coeffs(t)[1] == 0
        u = jnp.where(at_zero, t + 1e-6 * max(float(self.T), 1.0), t)
        (la, var), (dla, dvar) = jax.jvp(self._log_alpha_and_var, (u,), (jnp.ones_like(u),))
        return safe_sqrt(dvar - 2.0 * dla * var)

    def drift(self, x, t):
        """Drift ``f(t) x`` (SDEs with a nonzero offset override this)."""
        return bcast(self.drift_coeff(t), x) * x

    def marginal(self, x0, t):
        """Mean and std of ``x_t | x_0``: ``(α x0 + m(t), σ)``; ``σ`` has the shape of ``t``."""
        a, s = self.marginal_coeffs(t)
        return bcast(a, x0) * x0 + self.marginal_offset(t, x0), s

    def transition(self, x_s, s, t):
        """Mean and std of ``x_t | x_s`` for ``s <= t``."""
        a_s, sig_s = self.marginal_coeffs(s)
        a_t, sig_t = self.marginal_coeffs(t)
        scale = a_t / a_s
        std = safe_sqrt(sig_t**2 - scale**2 * sig_s**2)
        mean = bcast(scale, x_s) * (x_s - self.marginal_offset(s, x_s)) + self.marginal_offset(
            t, x_s
        )
        return mean, std

    def transition_coeffs(self, s, t):
        """Scale ``a = α(t)/α(s)`` and std of the transition ``x_t | x_s`` (``s <= t``)."""
        a_s, sig_s = self.marginal_coeffs(s)
        a_t, sig_t = self.marginal_coeffs(t)
        scale = a_t / a_s
        return scale, safe_sqrt(sig_t**2 - scale**2 * sig_s**2)

    def prior_std(self):
        """Std of the reference distribution that samplers start from at ``T``."""
        return self.marginal_coeffs(jnp.asarray(self.T))[1]

    def prior_sample(self, key, shape):
        """Draw ``x_T`` from the reference distribution ``N(m(T), prior_std² I)``."""
        z = jax.random.normal(key, shape)
        return self.prior_std() * z + self.marginal_offset(jnp.asarray(self.T), z)

    def prior_log_prob(self, x):
        """Log-density of the reference distribution, summed over all but the batch axis."""
        s = self.prior_std()
        z = (x - self.marginal_offset(jnp.asarray(self.T), x)) / s
        d = np.prod(x.shape[1:])
        flat = z.reshape(z.shape[0], -1)
        return -0.5 * jnp.sum(flat**2, -1) - d * (jnp.log(s) + 0.5 * math.log(2 * math.pi))


# ---------------------------------------------------------------------------------
class _VarPreserving(LinearSDE):
    """The variance-preserving drift and diffusion from a subclass's ``beta(t)``:
    ``f(t) = −½β(t)``, ``g(t) = √β(t)``, and the N(0, I) prior (VPSDE, DiscreteVPSDE)."""

    def drift_coeff(self, t):
        return -0.5 * self.beta(t)

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t))

    def prior_std(self):
        return jnp.asarray(1.0)


class VPSDE(_VarPreserving):
    """Variance-preserving SDE (Song et al. 2021, Eq. 11): ``dx = −½β(t) x dt + √β(t) dW``.

    ``β(t) = β_min + t(β_max − β_min)``; defaults are the Score-SDE ones (0.1, 20, ε = 1e-3).
    ``to_discrete(N)`` gives the DDPM chain it discretises (β_i = β(t)/N on a uniform grid,
    i.e. 1e-4 … 0.02 for N = 1000); :meth:`from_ddpm_linear` goes the other way.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def _B(self, t):
        return schedules.vp_beta_integral(t, self.beta_min, self.beta_max)

    def marginal_coeffs(self, t):
        B = self._B(t)
        return jnp.exp(-0.5 * B), safe_sqrt(-jnp.expm1(-B))

    def beta(self, t):
        return schedules.vp_beta(t, self.beta_min, self.beta_max)

    def to_discrete(self, N: int = 1000) -> "DiscreteVPSDE":
        """Score-SDE's discretisation: ``β_i = linspace(β_min/N, β_max/N, N)`` (DDPM for N=1000)."""
        return DiscreteVPSDE(jnp.linspace(self.beta_min / N, self.beta_max / N, N))

    @classmethod
    def from_ddpm_linear(cls, beta_start=1e-4, beta_end=0.02, N=1000, **kw) -> "VPSDE":
        """The VP SDE whose discretisation is the linear DDPM chain: β_min = N β_1, β_max = N β_N."""
        return cls(beta_min=beta_start * N, beta_max=beta_end * N, **kw)


class SubVPSDE(VPSDE):
    """Sub-VP SDE (Song et al. 2021, Eq. 17): ``g² = β(t)(1 − e^{−2∫β})``, σ(t) = 1 − e^{−∫β}."""

    def marginal_coeffs(self, t):
        B = self._B(t)
        return jnp.exp(-0.5 * B), -jnp.expm1(-B)

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t) * -jnp.expm1(-2.0 * self._B(t)))


class VESDE(LinearSDE):
    """Variance-exploding SDE (Song et al. 2021, Eq. 9): ``dx = σ(t) √(2 ln(σ_max/σ_min)) dW``.

    ``σ(t) = σ_min (σ_max/σ_min)^t``. The marginal std here is the exact one implied by the
    SDE started at ``t = 0``, ``√(σ(t)² − σ_min²)``; the Score-SDE code uses ``σ(t)`` (the
    data taken as already perturbed by σ_min) — the two differ by σ_min² in the variance.
    Defaults: σ_min 0.01, σ_max 50 (CIFAR-10; 348 / 1348 for larger images), ε = 1e-5.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t_min: float = eqx.field(static=True, default=1e-5, kw_only=True)

    def sigma(self, t):
        return schedules.ve_sigma(t, self.sigma_min, self.sigma_max)

    def marginal_coeffs(self, t):
        s = self.sigma(t)
        return jnp.ones_like(s), safe_sqrt(s**2 - self.sigma_min**2)

    def drift_coeff(self, t):
        return jnp.zeros_like(jnp.asarray(t, jnp.result_type(float)))

    def diffusion(self, t):
        return self.sigma(t) * math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))

    def prior_std(self):
        return jnp.asarray(self.sigma_max)


def interp_uniform(t, T, values):
    """Piecewise-linear interpolation of ``values`` (n + 1 of them) given on the uniform grid
    ``linspace(0, T, n + 1)``, clamped to the end values outside ``[0, T]``.

    Equal to ``jnp.interp(t, linspace(0, T, n + 1), values)`` but found by arithmetic, not
    by a binary search: a gather instead of a ``while`` loop inside every sampler step
    (cheaper, and it avoids an XLA GPU compile error seen with jax 0.11.2 when the search
    loop sits inside a ``lax.scan``).
    """
    values = jnp.asarray(values)
    n = values.shape[0] - 1
    u = jnp.clip(jnp.asarray(t, values.dtype) * (n / T), 0.0, float(n))
    i = jnp.clip(jnp.floor(u), 0.0, float(n - 1))
    frac = u - i
    i = i.astype(jnp.int32)
    return values[i] + frac * (values[i + 1] - values[i])


class DiscreteVPSDE(_VarPreserving):
    """A discrete DDPM chain ``β_0..β_{N-1}`` as a continuous VP SDE.

    ``log ᾱ(t)`` is the piecewise-linear interpolation of ``[0, log ᾱ_0, …, log ᾱ_{N-1}]``
    on ``t = [0, 1/N, …, 1]``, so ``ᾱ(t_i) = ᾱ_i`` exactly at ``t_i = (i+1)/N`` and β(t) is
    piecewise constant, ``β(t) = −N log(1 − β_i)``. This is the mapping from the discrete
    chain to the SDE; :meth:`VPSDE.to_discrete` is the other direction. DDPM/DDIM samplers
    on this SDE use the respaced integer grid (``leading`` / ``trailing`` / ``linspace``).
    """

    betas: jax.Array

    def __init__(self, betas, *, T: float = 1.0, t_min: float | None = None):
        betas = jnp.asarray(betas, jnp.float32)
        if betas.ndim != 1:
            raise ValueError(f"betas must be 1-D (N,), got shape {betas.shape}")
        self.betas = betas
        self.T = float(T)
        # continuous samplers stop at the first DDPM index (t_0 = T/N), where σ > 0
        self.t_min = float(T) / betas.shape[0] if t_min is None else float(t_min)

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def alphas_cumprod(self):
        return schedules.alphas_cumprod(self.betas)

    def _grid(self):
        n = self.num_steps
        grid = jnp.linspace(0.0, self.T, n + 1)
        log_abar = jnp.concatenate([jnp.zeros((1,)), jnp.cumsum(jnp.log1p(-self.betas))])
        return grid, log_abar

    def marginal_coeffs(self, t):
        _, log_abar = self._grid()
        la = interp_uniform(t, self.T, log_abar)
        return jnp.exp(0.5 * la), safe_sqrt(-jnp.expm1(la))

    def _segment(self, t):
        n = self.num_steps
        return jnp.clip(jnp.ceil(jnp.asarray(t) * n / self.T).astype(jnp.int32) - 1, 0, n - 1)

    def beta(self, t):
        """Continuous β(t), piecewise constant: ``−N log(1 − β_i)/T`` on segment i."""
        return -jnp.log1p(-self.betas[self._segment(t)]) * self.num_steps / self.T

    def index_to_time(self, i):
        """DDPM index ``i ∈ {-1, 0, …, N−1}`` → ``t = (i + 1) T / N`` (``-1`` → 0, the data)."""
        return (jnp.asarray(i) + 1) * (self.T / self.num_steps)

    def time_to_index(self, t):
        """Inverse of :meth:`index_to_time`, rounded to the nearest index."""
        return jnp.round(jnp.asarray(t) * self.num_steps / self.T).astype(jnp.int32) - 1


class MeanRevertingSDE(LinearSDE):
    """IR-SDE (Luo et al. 2023, Eq. 2): ``dx = θ_t (μ − x) dt + σ_t dW``, ``σ_t² = 2 λ² θ_t``.

    ``μ`` (the degraded image, one per sample) is a field, so the SDE is batched by
    building it with a batched ``mu`` (or by ``vmap`` over SDE instances). Time runs over
    ``t ∈ [0, T]`` in units of the official steps (T = 100); on step ``i`` (``t ∈ (i−1, i]``)
    the rate is ``θ_i Δ`` with ``Δ = −ln(ε)/θ̄_T`` (ε = 0.005 in the paper; the official
    code's default argument is 0.01). Marginal: ``μ + (x0 − μ) e^{−Δθ̄_t}``, variance
    ``λ² (1 − e^{−2Δθ̄_t})`` with ``θ̄_t = Σ_{j=1}^{t} θ_j`` (cumsum minus θ_0, as the code).
    The sampler starts from ``x_T = μ + λ ε``. ``t_min`` (default 0.01 of a step) is where
    the generic continuous samplers stop: at ``t = 0`` the std is 0 and an ε-model's score
    ``−ε/σ`` is undefined (the discrete ``irsde_sample`` takes whole steps and never evaluates
    there).
    """

    mu: jax.Array
    thetas: jax.Array
    lam: float = 10.0 / 255.0
    eps: float = eqx.field(static=True, default=0.005, kw_only=True)
    t_min: float = eqx.field(static=True, default=0.01, kw_only=True)

    def __init__(self, mu, lam=10.0 / 255.0, *, T: int = 100, thetas=None, eps=0.005,
                 t_min: float = 0.01):
        self.mu = jnp.asarray(mu)
        self.lam = lam
        self.thetas = schedules.irsde_theta_schedule(T) if thetas is None else jnp.asarray(thetas)
        if self.thetas.ndim != 1 or self.thetas.shape[0] != T + 1:
            raise ValueError(f"thetas must have shape (T + 1,) = ({T + 1},), got {self.thetas.shape}")
        self.T = float(T)
        if not 0.0 <= t_min < T:
            raise ValueError(f"t_min must be in [0, T), got {t_min}")
        self.t_min = float(t_min)
        self.eps = eps

    def _cum(self):
        n = self.thetas.shape[0] - 1
        cum = jnp.cumsum(self.thetas) - self.thetas[0]  # θ̄_0 = 0, θ̄_i = Σ_{1..i} θ_j
        dt = -math.log(self.eps) / cum[-1]
        return jnp.arange(n + 1, dtype=cum.dtype), cum * dt, dt

    def marginal_coeffs(self, t):
        _, cum, _ = self._cum()
        c = interp_uniform(t, float(cum.shape[0] - 1), cum)
        return jnp.exp(-c), self.lam * safe_sqrt(-jnp.expm1(-2.0 * c))

    def marginal_offset(self, t, like):
        a, _ = self.marginal_coeffs(t)
        like = jnp.asarray(like)
        ref = like if like.ndim >= self.mu.ndim else self.mu
        return bcast(1.0 - a, ref) * self.mu

    def theta(self, t):
        """Rate per unit time on the step containing ``t``: ``θ_i Δ``."""
        n = self.thetas.shape[0] - 1
        _, _, dt = self._cum()
        i = jnp.clip(jnp.ceil(jnp.asarray(t)).astype(jnp.int32), 1, n)
        return self.thetas[i] * dt

    def drift_coeff(self, t):
        return -self.theta(t)

    def drift(self, x, t):
        return bcast(self.theta(t), x) * (self.mu - x)

    def diffusion(self, t):
        return self.lam * jnp.sqrt(2.0 * self.theta(t))

    def prior_std(self):
        return jnp.asarray(self.lam)


# ---------------------------------------------------------------------------------
class ReverseSDE(eqx.Module):
    """The reverse-time SDE of ``sde`` driven by ``score_fn`` (Anderson 1982; Song et al. Eq. 6).

    ``drift(x, t, cond) = f(x, t) − c · g(t)² score(x, t, cond)`` with ``c = 1`` (reverse
    SDE) or ``c = ½`` and zero diffusion (probability-flow ODE, Eq. 13). The drift is to be
    integrated *backwards* in ``t`` (``dt < 0``), as in the Score-SDE code.
    """

    sde: LinearSDE
    score_fn: callable = eqx.field(static=True)
    probability_flow: bool = eqx.field(static=True, default=False)

    def drift(self, x, t, cond=None):
        g = self.sde.diffusion(t)
        c = 0.5 if self.probability_flow else 1.0
        return self.sde.drift(x, t) - c * bcast(g**2, x) * self.score_fn(x, t, cond)

    def diffusion(self, t):
        g = self.sde.diffusion(t)
        return jnp.zeros_like(g) if self.probability_flow else g


def reverse(sde: LinearSDE, score_fn, probability_flow: bool = False) -> ReverseSDE:
    """Reverse-time drift/diffusion of ``sde`` for a ``score_fn(x, t, cond)``."""
    return ReverseSDE(sde, score_fn, probability_flow)
