"""Nonlinear training-free samplers, draw for draw against a float64 NumPy transcription.

DPS (its step normalised by ``‖y − A(x̂_0)‖``, with a linear and a nonlinear operator, clipped
x̂_0, DDPM and DDIM base steps), MCG with the official (unsquared) norm, GDP with the optimisable
degradation ``y ≈ f·x + M``, and DiffPIR with its default clipped x̂_0 are not linear in the
state, so they have no closed-form law. Each is written here once more, in float64 NumPy, from
the paper and the official code (see each function), with the exact denoiser of a Gaussian
prior as the network, and fed the *same* standard normal draws as jaxir: they are regenerated
with ``jax.random`` from the sampler's key (:func:`step_keys` is the one place that knows how
jaxir's discrete samplers split their key) — only the noise is shared, never the update.

Tolerances are float32 rounding, propagated, not measured slack. jaxir's model predicts ε̂
(the exact denoiser projects on the prior's eigenbasis: d-term dot products) and the sampler
recovers ``x̂_0 = (x_t − σ_t ε̂)/α_t``, so x̂_0 carries ``δx̂_0 = K·u·((|x_t| + σ_t|ε̂|)/α_t +
|x̂_0|)`` with ``u = 2⁻²⁴`` and ``K = 2d + 20`` roundings; each step adds ``K·u·S`` (S the
largest term it sums) plus ``δx̂_0`` times the step's sensitivity to x̂_0 — its coefficient on
x̂_0, and for a normalised gradient ``‖J‖ L_A (K u + 2 L_A δx̂_0/‖r‖)`` (a unit vector
``r/‖r‖`` moves by ``2‖δr‖/‖r‖``) plus the VJP through the ε-model, ``(v − σ_t J_εᵀ v)/α_t``,
whose two O(|v|) terms cancel: ``2 K u |v|/α_t``. An example whose x̂_0 lies within ``10 δx̂_0`` of a clip
boundary is not compared at that step (float32 may take the other branch); at most 2 % may be.
Steps are compared one at a time, from jaxir's own trajectory (``save_every=1``), so errors do
not compound; GDP's (f, M), which the trajectory does not hold, are carried in float64 along
jaxir's trajectory and compared at the end within the sum of their per-step rounding bounds.
Each test also shows that a nearby wrong update (squared norm, unclipped residual, a frozen
mask, ...) misses jaxir's step by more than 100 tolerances. Measured: the largest error is
4–25 % of its bound; the wrong updates miss by 10⁴–10⁵ bounds.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import oracle
import pytest

from jaxir import exact, operators, schedules, sdes
from jaxir.inverse import diffpir_sample, dps_sample, gdp_sample, mcg_sample
from jaxir.operators import Operator

N_TRAIN = 1000
SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(N_TRAIN))
U32 = 2.0**-24  # float32 unit roundoff
B = 64  # chains per test


@functools.lru_cache(maxsize=None)
def ac(i):
    """(α, σ) of DDPM index i (−1: the data) as the SDE gives them. The schedule is an input of
    the sampler like the model: its float32 values (ᾱ from a float32 cumulative sum is off by
    ~1e-5 relative at large t) are used here in float64, so only the update is compared."""
    a, s = SDE.marginal_coeffs(jnp.float32((i + 1) / N_TRAIN))
    return float(a), float(s)


def abar(i):
    return ac(i)[0] ** 2


def pairs(indices):
    ts = [int(i) for i in indices]
    return list(zip(ts, ts[1:] + [-1]))


def step_keys(key, n_steps, parts=2):
    """jaxir's discrete samplers: ``key → (k_init, [k_extra,] k_steps)``; step k draws from
    ``split(k_steps, n)[k]``. The only statement here about jaxir's key layout."""
    ks = jax.random.split(key, parts)
    return ks[:-1], jax.random.split(ks[-1], n_steps)


def normal(key, shape):
    return np.asarray(jax.random.normal(key, shape, jnp.float32), np.float64)


# ---------------------------------------------------------------------------- the problem
@functools.lru_cache(maxsize=None)
def prior():
    """A non-diagonal Gaussian on R^6 whose mean and spread put x̂_0 outside [-1, 1] often
    (so the clipped paths are exercised)."""
    rng = np.random.default_rng(10)
    L = rng.normal(size=(6, 6)) * 0.5
    return np.array([1.2, -0.9, 0.3, 0.8, -1.1, 0.0]), L @ L.T + 0.3 * np.eye(6)


@functools.lru_cache(maxsize=None)
def centred_prior():
    """A non-diagonal Gaussian on R^6 well inside [-1, 1] (GDP's unit gradient step on (f, M)
    is stable only while (x̂_0 + 1)/2 stays near [0, 1], as for clipped images)."""
    rng = np.random.default_rng(12)
    L = rng.normal(size=(6, 6)) * 0.15
    return 0.2 * rng.normal(size=6), L @ L.T + 0.02 * np.eye(6)


def model_fn(shape=(6,), pr=prior):
    mu, Sig = pr()
    g = exact.Gaussian(jnp.asarray(mu, jnp.float32), jnp.asarray(Sig, jnp.float32))
    base = g.model_fn(SDE)
    if len(shape) == 1:
        return base
    return lambda x, t, c=None: base(x.reshape(x.shape[0], -1), t).reshape(x.shape)


def denoise(i, x, pr=prior):
    """Exact x̂_0 (batch) and its Jacobian ``J = ∂x̂_0/∂x_t`` (constant for a Gaussian)."""
    mu, Sig = pr()
    a, s = ac(i)
    J, b = oracle.gaussian_denoiser(mu, Sig, a, s)
    return x @ J.T + b, J


def ddpm(i, j, x0, x, z):
    """Ho et al. (2020) Eq. 7 with β̃ on the respaced chain (mean + τ z), in (α, σ) form:
    ``a = α_t/α_s``, ``v = σ_t² − a² σ_s²`` (= β' ᾱ-free), ``mean = (α_s v x̂_0 + a σ_s² x_t)/σ_t²``,
    ``τ² = σ_s² v/σ_t²``. Returns the step and the magnitudes of its terms."""
    a_t, s_t = ac(i)
    a_s, s_s = ac(j)
    a = a_t / a_s
    v = max(s_t**2 - a**2 * s_s**2, 0.0)
    c0, ct, tau = a_s * v / s_t**2, a * s_s**2 / s_t**2, np.sqrt(s_s**2 * v / s_t**2)
    return c0 * x0 + ct * x + tau * z, (np.abs(c0 * x0) + np.abs(ct * x) + np.abs(tau * z))


def ddim(i, j, x0, x, z, eta):
    """DDIM (Song et al. 2021, Eq. 12) with ε̂ re-derived from (the clipped) x̂_0:
    ``x_s = α_s x̂_0 + √(σ_s² − c²) ε̂ + c z``, ``c = η σ_s √(v)/σ_t``."""
    a_t, s_t = ac(i)
    a_s, s_s = ac(j)
    eps = (x - a_t * x0) / s_t
    v = max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0)
    c1 = eta * s_s * np.sqrt(v) / s_t
    c2 = np.sqrt(max(s_s**2 - c1**2, 0.0))
    return a_s * x0 + c2 * eps + c1 * z, np.abs(a_s * x0) + np.abs(c2 * eps) + np.abs(c1 * z)


def K(d):
    return 2 * d + 20


def x0_error(i, x, x0):
    """Bound on the float32 error of jaxir's x̂_0 = (x − σ ε̂)/α (per example, (B, 1))."""
    a, s = ac(i)
    eps = (x - a * x0) / s
    big = lambda v: np.abs(v).max(-1, keepdims=True)  # noqa: E731
    return K(x.shape[-1]) * U32 * ((big(x) + s * big(eps)) / a + big(x0))


def near_clip(x0, dx0):
    """Examples with an x̂_0 entry so close to ±1 that float32 may clip it the other way."""
    return np.any(np.abs(np.abs(x0) - 1.0) < 10.0 * dx0, axis=-1, keepdims=True)


class TanhDense(Operator):
    """A nonlinear operator ``A(x) = tanh(W x)`` (W 3 × 6)."""

    w: jax.Array
    x_shape: tuple = eqx.field(static=True)
    y_shape: tuple = eqx.field(static=True)

    def __init__(self, w):
        self.w = jnp.asarray(w)
        self.y_shape, self.x_shape = (self.w.shape[0],), (self.w.shape[1],)

    def A(self, x):
        return jnp.tanh(jnp.matmul(self.w, x, precision="highest"))


@functools.lru_cache(maxsize=None)
def dense_op():
    rng = np.random.default_rng(11)
    return (rng.normal(size=(3, 6)) / np.sqrt(6)).astype(np.float32)


def _run(fn, key):
    out = jax.jit(fn)(key)
    assert bool(out.finite)
    return out


def _trajectory(out):
    return np.asarray(out.trajectory, np.float64).reshape(out.trajectory.shape[0], B, -1)


def assert_steps(traj, step_fn, label, wrong_fn=None):
    """Every step of jaxir's trajectory equals the transcription from the same state and
    noise within its float32 bound (``inf`` marks an example skipped at a clip boundary);
    ``wrong_fn`` (a nearby wrong update) must miss some step by more than 100 tolerances."""
    miss, skipped = 0.0, 0
    for k in range(traj.shape[0] - 1):
        want, tol = step_fn(k, traj[k])
        tol = np.broadcast_to(tol, want.shape)
        skipped += int(np.isinf(tol[:, 0]).sum())
        err = np.abs(traj[k + 1] - want)
        assert np.all(err <= tol), f"{label}: step {k}: max err/tol {np.max(err / tol):.2f}"
        if wrong_fn is not None:
            bad, _ = wrong_fn(k, traj[k])
            ok = np.isfinite(tol)
            miss = max(miss, float((np.abs(bad - traj[k + 1])[ok] / tol[ok]).max()))
    assert skipped <= 0.02 * traj.shape[1] * (traj.shape[0] - 1), f"{label}: {skipped} skipped"
    if wrong_fn is not None:
        assert miss > 100.0, f"{label}: the wrong update is only {miss:.1f} tolerances off"


# ---------------------------------------------------------------------------- DPS
def dps_step(i, j, x, z, y, A, jac, lip, zeta, clip, eta=None, variant=None):
    """DPS (Chung et al. 2023, Alg. 1; official ``PosteriorSampling``): the base step from the
    clipped x̂_0, then ``− ζ ∇_{x_t} ‖y − A(x̂_0)‖`` (norm not squared, through the clip and the
    network). ``lip`` bounds the Lipschitz constant of A. Returns the new state and its
    float32 tolerance."""
    x0, J = denoise(i, x)
    dx0 = x0_error(i, x, x0)
    x0c = np.clip(x0, -1.0, 1.0) if clip else x0
    inside = (np.abs(x0) < 1.0).astype(float) if clip else np.ones_like(x0)
    if variant == "unclipped_residual":
        x0c_r, inside = x0, np.ones_like(x0)
    else:
        x0c_r = x0c
    r = y - A(x0c_r)
    nr = np.linalg.norm(r, axis=-1, keepdims=True)
    scale_r = 0.5 * np.ones_like(nr) if variant == "squared" else nr  # ∇‖r‖² = 2‖r‖ ∇‖r‖
    v = -inside * np.einsum("bij,bi->bj", jac(x0c_r), r / scale_r)  # ∂‖r‖/∂x̂_0
    g = v @ J  # rows: Jᵀ v
    base, mag = ddpm(i, j, x0c, x, z) if eta is None else ddim(i, j, x0c, x, z, eta)
    out = base - zeta * g
    # sensitivity of the base step to x̂_0: c0 (DDPM) or √ᾱ_s + c2 √ᾱ_t/σ_t (DDIM via ε̂)
    at, as_ = abar(i), abar(j)
    if eta is None:
        sens = np.sqrt(as_) * (1.0 - at / as_) / (1.0 - at)
    else:
        sens = np.sqrt(as_) + np.sqrt(1.0 - as_) * np.sqrt(at / (1.0 - at))
    ynorm = np.linalg.norm(y, axis=-1, keepdims=True) + np.linalg.norm(A(x0c_r), axis=-1, keepdims=True)
    # the VJP (v − σ_t J_εᵀ v)/α_t through the ε-model cancels two O(|v|) terms: K u 2|v|/α_t
    vjp = K(6) * U32 * 2.0 * np.abs(v).max(-1, keepdims=True) / ac(i)[0]
    gsens = zeta * (np.linalg.norm(J, 2) * lip * (K(6) * U32 * (1.0 + ynorm / nr) + 2.0 * lip * dx0 / nr) + vjp)
    tol = K(6) * U32 * (mag.max(-1, keepdims=True) + np.abs(x).max(-1, keepdims=True)
                        + zeta * np.abs(g).max(-1, keepdims=True)) + sens * dx0 + gsens
    if clip:
        tol = np.where(near_clip(x0, dx0), np.inf, tol)
    return out, tol


def _linear():
    W = dense_op().astype(np.float64)
    jac = lambda u: np.broadcast_to(W, (len(u), *W.shape))  # noqa: E731
    return operators.DenseMatrix(jnp.asarray(dense_op())), lambda u: u @ W.T, jac, np.linalg.norm(W, 2)


def _tanh():
    W = dense_op().astype(np.float64)

    def jac(u):
        s = 1.0 - np.tanh(u @ W.T) ** 2
        return s[:, :, None] * W[None]

    return TanhDense(jnp.asarray(dense_op())), lambda u: np.tanh(u @ W.T), jac, np.linalg.norm(W, 2)


DPS_CASES = {
    # name: (operator, steps, ζ, clip, η (None: DDPM), y, nearby wrong update)
    "linear-ddpm-s10-zeta.3": (_linear, 10, 0.3, False, None, "squared"),
    "linear-ddpm-s25-zeta1-clip": (_linear, 25, 1.0, True, None, "unclipped_residual"),
    "tanh-ddpm-s10-zeta1-clip": (_tanh, 10, 1.0, True, None, "squared"),
    "tanh-ddim-s25-eta.5-zeta.5-clip": (_tanh, 25, 0.5, True, 0.5, "unclipped_residual"),
}


@pytest.mark.parametrize("name", list(DPS_CASES))
def test_dps_matches_transcription(name):
    make, n, zeta, clip, eta, wrong = DPS_CASES[name]
    op, A, jac, lip = make()
    mu, Sig = prior()
    x_star = mu + np.linalg.cholesky(Sig) @ np.random.default_rng(3).normal(size=6)
    y = np.asarray(op.A(jnp.asarray(x_star, jnp.float32)), np.float64)
    key = jax.random.key(sum(map(ord, name)))
    out = _run(lambda k: dps_sample(k, model_fn(), SDE, op, jnp.asarray(y, jnp.float32), 0.0, (B, 6),
                                    num_steps=n, zeta=zeta, eta=eta, clip_x0=clip, save_every=1), key)
    traj = _trajectory(out)
    (k_init,), keys = step_keys(key, n)
    np.testing.assert_allclose(traj[0], normal(k_init, (B, 6)), atol=0)  # x_T = the same draw
    ps = pairs(oracle.leading_timesteps(N_TRAIN, n))
    ys = np.broadcast_to(y, (B, 3))

    def step(k, x, variant=None):
        i, j = ps[k]
        return dps_step(i, j, x, normal(keys[k], (B, 6)), ys, A, jac, lip, zeta, clip, eta, variant)

    assert_steps(traj, step, name, functools.partial(step, variant=wrong))


def test_dps_deterministic_ddim_needs_no_keys():
    """DPS on DDIM with η = 0 draws nothing: from ``x_init`` the whole run is a function of the
    start, so the end-to-end transcription needs no noise (bound: steps × per-step bound)."""
    op, A, jac, lip = _tanh()
    y = np.array([0.3, -0.5, 0.8])
    x_init = np.random.default_rng(5).normal(size=(B, 6))
    n, zeta = 25, 0.5
    out = _run(lambda k: dps_sample(k, model_fn(), SDE, op, jnp.asarray(y, jnp.float32), 0.0,
                                    num_steps=n, zeta=zeta, eta=0.0, clip_x0=False,
                                    x_init=jnp.asarray(x_init, jnp.float32)), jax.random.key(0))
    x, tol_sum = x_init.copy(), 0.0
    ys = np.broadcast_to(y, (B, 3))
    for i, j in pairs(oracle.leading_timesteps(N_TRAIN, n)):
        x, tol = dps_step(i, j, x, np.zeros_like(x), ys, A, jac, lip, zeta, False, eta=0.0)
        tol_sum = tol_sum + tol
    # the float32 start itself differs from x_init by ≤ u|x_init|
    err = np.abs(np.asarray(out.x, np.float64) - x)
    assert np.all(err <= tol_sum + U32 * np.abs(x_init).max()), err.max()


# ---------------------------------------------------------------------------- MCG
MASK = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])


def mcg_step(i, j, x, z, eps, y, alpha, variant=None):
    """MCG (Chung et al. 2022, Eqs. 14–16; official ``p_sample_loop_progressive``, "MCG"):
    ancestral step, ``− α ∇_{x_t} ‖y − A x̂_0‖`` (the official unsquared norm), then the observed
    pixels replaced by ``√ᾱ_s y + √(1 − ᾱ_s) ε`` (level of the step's end, jaxir's stated
    choice; official: the start)."""
    x0, J = denoise(i, x)
    dx0 = x0_error(i, x, x0)
    r = MASK * (y - x0)
    nr = np.linalg.norm(r, axis=-1, keepdims=True)
    scale_r = 0.5 * np.ones_like(nr) if variant == "squared" else nr
    g = (-r / scale_r) @ J
    base, mag = ddpm(i, j, x0, x, z)
    a, s = ac(j)
    out = np.where(MASK > 0, a * y + s * eps, base - alpha * g)
    at, as_ = abar(i), abar(j)
    sens = np.sqrt(as_) * (1.0 - at / as_) / (1.0 - at)
    ynorm = np.linalg.norm(MASK * y) + np.linalg.norm(MASK * x0, axis=-1, keepdims=True)
    vjp = K(6) * U32 * 2.0 / ac(i)[0]  # |r/‖r‖| ≤ 1: see dps_step
    gsens = alpha * (np.linalg.norm(J, 2) * (K(6) * U32 * (1.0 + ynorm / nr) + 2.0 * dx0 / nr) + vjp)
    tol = K(6) * U32 * (mag.max(-1, keepdims=True) + np.abs(x).max(-1, keepdims=True)
                        + alpha * np.abs(g).max(-1, keepdims=True) + np.abs(y).max()
                        + np.abs(eps).max(-1, keepdims=True)) + sens * dx0 + gsens
    return out, tol


@pytest.mark.parametrize("n,alpha", [(10, 1.0), (25, 0.3)])
def test_mcg_official_norm_matches_transcription(n, alpha):
    op = operators.Inpainting(jnp.asarray(MASK))
    mu, Sig = prior()
    y = MASK * (mu + np.linalg.cholesky(Sig) @ np.random.default_rng(4).normal(size=6))
    key = jax.random.key(n)
    out = _run(lambda k: mcg_sample(k, model_fn(), SDE, op, jnp.asarray(y, jnp.float32), 0.0, (B, 6),
                                    num_steps=n, scale=alpha, norm="l2", clip_x0=False, save_every=1), key)
    traj = _trajectory(out)
    _, keys = step_keys(key, n)
    ps = pairs(oracle.leading_timesteps(N_TRAIN, n))

    def step(k, x, variant=None):
        i, j = ps[k]
        k_step, k_known = jax.random.split(keys[k])
        return mcg_step(i, j, x, normal(k_step, (B, 6)), normal(k_known, (B, 6)), y, alpha, variant)

    assert_steps(traj, step, f"mcg-{n}", functools.partial(step, variant="squared"))


# ---------------------------------------------------------------------------- DiffPIR (clipped)
def diffpir_step(i, j, x, z1, z2, y, A, sigma_y, zeta, lam, variant=None):
    """DiffPIR (Zhu et al. 2023, Alg. 1) with the official ``clip_denoised=True``: x̂_0 clipped,
    the closed-form data step with ``ρ = λ σ² ᾱ_t/(1 − ᾱ_t)``, ``σ = max(σ_y/2, 10⁻³)``, ε̂ from
    the data-step x̂_0, ``x_s = √ᾱ_s x̂_0 + √(1−ζ) √(1−ᾱ_s) ε̂ + √ζ √(1−ᾱ_s) z'`` (η = 0)."""
    x0, _ = denoise(i, x)
    dx0 = x0_error(i, x, x0)
    x0c = np.clip(x0, -1.0, 1.0) if variant != "unclipped" else x0
    a_t, s_t = ac(i)
    a_s, s_s = ac(j)
    rho = lam * max(sigma_y / 2, 1e-3) ** 2 * a_t**2 / s_t**2
    M = A.T @ A + rho * np.eye(6)
    x0p = np.linalg.solve(M, (A.T @ y)[:, None] + rho * x0c.T).T
    eps = (x - a_t * x0p) / s_t
    out = a_s * x0p + np.sqrt(1 - zeta) * s_s * eps + np.sqrt(zeta) * s_s * z2
    # the data step (solved per singular value, (s Uᵀy + ρ z)/(s² + ρ)) passes δx̂_0 scaled by
    # ρ‖M⁻¹‖ and adds K ulps of its inputs; the output carries the x̂_0 error with weight
    # √ᾱ_s + √(1−ζ) σ_s √ᾱ_t/σ_t, and ε̂ adds |x|/σ_t
    big = lambda v: np.abs(v).max(-1, keepdims=True)  # noqa: E731
    dxp = rho * np.linalg.norm(np.linalg.inv(M), 2) * dx0 + K(6) * U32 * (big(x0p) + big(x0c)
                                                                            + np.abs(y).max())
    w = a_s + np.sqrt(1 - zeta) * s_s * a_t / s_t
    tol = w * dxp + K(6) * U32 * (big(out) + s_s / s_t * big(x) + big(z2))
    tol = np.where(near_clip(x0, dx0), np.inf, tol)
    return out, tol


@pytest.mark.parametrize("n,zeta", [(10, 0.1), (25, 0.3)])
def test_diffpir_clipped_matches_transcription(n, zeta):
    op = operators.DenseMatrix(jnp.asarray(dense_op()))
    A = dense_op().astype(np.float64)
    mu, Sig = prior()
    sigma_y, lam = 0.2, 7.0
    y = A @ (mu + np.linalg.cholesky(Sig) @ np.random.default_rng(6).normal(size=6)) + 0.1
    y32 = np.asarray(y, np.float32)
    key = jax.random.key(100 + n)
    out = _run(lambda k: diffpir_sample(k, model_fn(), SDE, op, jnp.asarray(y32), sigma_y, (B, 6), num_steps=n,
                                        zeta=zeta, lam=lam, save_every=1), key)
    traj = _trajectory(out)
    _, keys = step_keys(key, n)
    seq = np.floor(np.sqrt(np.linspace(0.0, float(N_TRAIN) ** 2, n))).astype(int)
    seq[-1] = N_TRAIN - 1
    ps = pairs(N_TRAIN - 1 - seq)

    def step(k, x, variant=None):
        i, j = ps[k]
        k1, k2 = jax.random.split(keys[k])
        return diffpir_step(i, j, x, normal(k1, (B, 6)), normal(k2, (B, 6)), y32.astype(np.float64), A,
                            sigma_y, zeta, lam, variant)

    assert_steps(traj, step, f"diffpir-{n}", functools.partial(step, variant="unclipped"))


# ---------------------------------------------------------------------------- GDP, learned degradation
def gdp_learned_step(i, j, x, f, M, y, z, scale, variant=None):
    """GDP-x0 with the optimisable degradation (Fei et al. 2023, Alg. 2; official
    ``sample_x0_enhancement_low_light.py``): with ``r = f (x̂_0 + 1)/2 + M − (y + 1)/2`` and
    ``L = mean r²`` per image, ``x_s = μ(x_t, x̂_0) − s ∂L/∂x̂_0 + τ z`` (no variance factor) and,
    from the same (f, M), one plain gradient step ``f ← f − ∂L/∂f``, ``M ← M − ∂L/∂M`` (M per
    pixel, shared by the channels). Images (B, H, W, C); returns x, f, M and x's tolerance."""
    D = np.prod(x.shape[1:])
    flat = x.reshape(len(x), -1)
    x0f, _ = denoise(i, flat, centred_prior)
    dx0 = x0_error(i, flat, x0f).reshape(-1, 1, 1, 1)
    x0 = x0f.reshape(x.shape)
    r = f * (x0 + 1.0) / 2.0 + M - (y + 1.0) / 2.0
    g_x = r * f / D  # ∂ mean(r²)/∂x̂_0 = 2 r (f/2)/D
    g_f = np.sum(r * (x0 + 1.0), axis=(1, 2, 3), keepdims=True) / D
    g_M = 2.0 * np.sum(r, axis=-1, keepdims=True) / D
    base, mag = ddpm(i, j, x0, x, z)
    out = base - scale * g_x
    if variant == "frozen_mask":
        g_M = 0.0 * g_M
    at, as_ = abar(i), abar(j)
    sens = np.sqrt(as_) * (1.0 - at / as_) / (1.0 - at) + scale * f**2 / (2 * D)
    big = lambda v: np.abs(v).max(axis=(1, 2, 3), keepdims=True)  # noqa: E731
    tol = K(6) * U32 * (big(mag) + big(x) + scale * big(g_x) * 4) + np.abs(sens) * dx0
    return out, f - g_f, M - g_M, tol


def test_gdp_learned_degradation_matches_transcription():
    shape = (B, 1, 2, 3)  # images 1 × 2 with 3 channels: f shared, M per pixel
    n, scale = 25, 5.0
    rng = np.random.default_rng(8)
    y = np.clip(0.3 * rng.normal(size=(1, 2, 3)) - 0.4, -1, 1)
    key = jax.random.key(3)
    out = _run(lambda k: gdp_sample(k, model_fn(shape[1:], centred_prior), SDE, None, jnp.asarray(y, jnp.float32), None,
                                    shape, scale=scale, num_steps=n, learn_degradation=True, clip_x0=False,
                                    save_every=1), key)
    traj = np.asarray(out.trajectory, np.float64)
    (k_init, k_deg), keys = step_keys(key, n, parts=3)
    kf, km = jax.random.split(k_deg)
    np.testing.assert_allclose(traj[0], normal(k_init, shape), atol=0)
    f = normal(kf, (B, 1, 1, 1)) / 100.0
    M = np.asarray(jax.random.uniform(km, (B, 1, 2, 1)), np.float64) / 1e4
    f_bad, M_bad, dfM, miss = f, M, 0.0, 0.0
    for k, (i, j) in enumerate(pairs(oracle.leading_timesteps(N_TRAIN, n))):
        z = normal(keys[k], shape)
        want, f_new, M_new, tol = gdp_learned_step(i, j, traj[k], f, M, y, z, scale)
        # (f, M) carried in float64 here vs float32 in jaxir: their rounding, K u per step
        # on |f|, |M| and their gradients, enters x through s (x̂_0 + 1)/2 f/D and s f/D
        dfM = dfM + K(6) * U32 * (np.abs(f).max() + np.abs(M).max() + 1.0)
        tol = tol + scale * 2.0 * (1.0 + np.abs(f).max()) * dfM / np.prod(shape[1:]) * 4
        err = np.abs(traj[k + 1] - want)
        assert np.all(err <= tol), f"gdp step {k}: max err/tol {np.max(err / tol):.2f}"
        bad, f_bad, M_bad, _ = gdp_learned_step(i, j, traj[k], f_bad, M_bad, y, z, scale, "frozen_mask")
        miss = max(miss, float(np.max(np.abs(bad - traj[k + 1]) / tol)))
        f, M = f_new, M_new
    np.testing.assert_array_less(np.abs(np.asarray(out.extras["f"], np.float64) - f.reshape(B)), dfM)
    np.testing.assert_array_less(np.abs(np.asarray(out.extras["M"], np.float64) - M), dfM)
    # a nearby wrong update: the mask left out of the optimisation
    assert miss > 100.0 and np.abs(np.asarray(out.extras["M"]) - M_bad).max() > 100 * dfM, miss
