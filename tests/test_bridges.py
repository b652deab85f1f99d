"""Bridges: closed-form h equals autodiff h; the Euler–Maruyama simulation of each bridge
(jaxir's ``Bridge.drift`` / ``diffusion``) follows its own exact law — computed in float64 from
the SDE's coefficients written out by hand (`tests/oracle.py`) — and is pinned at ``y``; the
closed-form bridge marginals equal the Gaussian product computed independently.

The reverse bridge (``reverse_bridge``) is pinned by the DDBM and GOUB sampler laws of
tests/test_oracle_bridges.py.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import oracle as O
from jaxir import bridges
from jaxir.bridges import Bridge
from jaxir.sdes import LinearSDE


class OU(LinearSDE):
    """A user-defined SDE; its bridge needs nothing else."""

    def marginal_coeffs(self, t):
        return jnp.exp(-t), jnp.sqrt(-jnp.expm1(-2 * t))


Y = jnp.array([0.4, -0.6])
BRIDGES = {
    "goub": bridges.goub(Y, lam=0.3, T=100),
    "i2sb": bridges.i2sb(Y, beta_max=1.0),
    "ddbm_vp": bridges.ddbm_vp(Y),
    "ddbm_ve": bridges.ddbm_ve(Y, sigma_max=2.0),
    "user_ou": Bridge(OU(T=1.0), Y),
}


@pytest.mark.parametrize("name", list(BRIDGES))
def test_h_closed_form_equals_autodiff(name):
    b = BRIDGES[name]
    x = jnp.array([0.1, 0.3])
    for frac in (0.2, 0.55, 0.9):
        t = jnp.asarray(frac * b.T + 0.0123 * b.T * (1 - frac))
        np.testing.assert_allclose(
            bridges.h_transform(b.sde, x, t, b.y, b.T),
            bridges.h_transform_autodiff(b.sde, x, t, b.y, b.T), rtol=1e-5, atol=0)
    # float32 floor: ~10 operations on both sides, the cancellation in v = σ_T² − a²σ_t²
    # amplifying rounding by σ_T²/v ≤ 10 at t ≤ 0.9 T: ≤ 100 ulp (1.2e-5) relative


# ---- each bridge's SDE written out by hand (float64): (α, σ², offset m, f, u, g²) ----------
_TH, _CUM, _DT = O.irsde_schedule(100, 0.005)
_B_I2SB = O.i2sb_betas(1000, 1.0)
_V_I2SB = np.concatenate([[0.0], np.cumsum(_B_I2SB)])
_Y = np.array([0.4, -0.6])
EPS32 = float(np.finfo(np.float32).eps)


def _coeffs(name, t):
    """``x_t = α x_0 + m + σ ε`` and ``dx = (f x + u) dt + g dW`` at time t:

    * goub: IR-SDE with μ = y, θ_i Δ on step i (t ∈ (i − 1, i]), ``α = e^{−θ̄(t)Δ}``,
      ``σ² = λ²(1 − α²)``, ``m = (1 − α) μ``, ``f = −θ``, ``u = θ μ``, ``g² = 2λ²θ``;
    * i2sb: Brownian, ``σ²(t)`` the cumulative β interpolated on ``t = i/N``, ``g² = N β_i``;
    * ddbm_vp: VP with β(t) = 0.1 + 2 t; ddbm_ve: σ = t, g² = 2t; user_ou: α = e^{−t}, g² = 2."""
    if name == "goub":
        th = _TH[int(np.clip(np.ceil(t), 1, 100))] * _DT
        a = np.exp(-np.interp(t, np.arange(101), _CUM * _DT))
        return a, 0.09 * (1 - a * a), (1 - a) * _Y, -th, th * _Y, 2 * 0.09 * th
    if name == "i2sb":
        i = int(np.clip(np.ceil(t * 1000) - 1, 0, 999))
        return 1.0, np.interp(t * 1000, np.arange(1001), _V_I2SB), 0.0, 0.0, 0.0, 1000 * _B_I2SB[i]
    if name == "ddbm_vp":
        a, s = O.vp_alpha_sigma(t, 0.1, 2.1)
        return a, s * s, 0.0, -0.5 * O.vp_beta(t, 0.1, 2.1), 0.0, O.vp_beta(t, 0.1, 2.1)
    if name == "ddbm_ve":
        return 1.0, t * t, 0.0, 0.0, 0.0, 2 * t
    return np.exp(-t), -np.expm1(-2 * t), 0.0, -1.0, 0.0, 2.0


def _h_affine(name, t, T):
    """Doob's ``h = ∇ log p(x_T = y | x_t) = (a/v)(y − m_T + a m_t) − (a²/v) x`` with
    ``a = α_T/α_t`` and ``v = σ_T² − a² σ_t²``: returns ``(−a²/v, (a/v)(y − m_T + a m_t))``."""
    a_t, v_t, m_t, *_ = _coeffs(name, t)
    a_T, v_T, m_T, *_ = _coeffs(name, T)
    a = a_T / a_t
    v = v_T - a * a * v_t
    return -a * a / v, a / v * (_Y - m_T + a * m_t)


def forward_em_law(name, x0, t0, T, steps, stop, h_scale=1.0) -> O.Law:
    """Left-point Euler–Maruyama of the forward bridge ``dx = (f x + u + g² h) dt + g dW`` from
    ``x_0``, ``stop`` steps of ``dt = (T − t0)/steps``: the law of the state (affine recursion)."""
    dt = (T - t0) / steps
    law, eye = O.Law.of(x0, np.zeros((2, 2))), np.eye(2)
    for k in range(stop):
        t = t0 + k * dt
        _, _, _, f, u, g2 = _coeffs(name, t)
        hp, hq = _h_affine(name, t, T)
        law = law.push((1 + (f + h_scale * g2 * hp) * dt) * eye, (u + h_scale * g2 * hq) * dt,
                       np.sqrt(g2 * dt) * eye)
    return law


def _t0(b):
    return max(b.sde.t_min, 0.0) if isinstance(b.sde, bridges.EDMVESDE) else 0.0


@pytest.mark.parametrize("name", list(BRIDGES))
def test_bridge_simulation_follows_its_law_and_is_pinned_at_y(name):
    """20,000 left-point Euler–Maruyama paths of the forward bridge (jaxir's drift with its
    h-term and diffusion), 97 steps (no grid time sits on a kink of the piecewise schedules):
    the law at the middle step and at T equal the exact laws of that recursion (z-tests). At T
    the law is pinned: mean ≈ y, covariance ≈ g² dt of the last step, so dropping or halving
    the h-term is > 40 standard errors away (asserted)."""
    b = BRIDGES[name]
    x0 = np.array([-0.8, 0.9])
    t0, steps, n = _t0(b), 97, 20_000
    dt = (b.T - t0) / steps
    ts = t0 + jnp.arange(steps) * dt

    def step(x, inp):
        t, k = inp
        x = x + b.drift(x, t) * dt + b.diffusion(t) * math.sqrt(dt) * jax.random.normal(k, x.shape)
        return x, x

    x = jnp.broadcast_to(jnp.asarray(x0, jnp.float32), (n, 2))
    _, path = jax.jit(lambda x: jax.lax.scan(step, x, (ts, jax.random.split(jax.random.key(1),
                                                                            steps))))(x)
    mid = steps // 2
    for stop, xs in ((mid, path[mid - 1]), (steps, path[-1])):
        law = forward_em_law(name, x0, t0, b.T, steps, stop)
        if stop == steps:  # (GOUB's h acts only near T: at mid-bridge it is ~e^{−5} small)
            wrong = {"h-term dropped": forward_em_law(name, x0, t0, b.T, steps, stop, 0.0),
                     "h-term halved": forward_em_law(name, x0, t0, b.T, steps, stop, 0.5)}
            O.assert_discriminates(law, wrong, n)
        O.assert_law(np.asarray(xs, np.float64), law, f"{name} after {stop} steps")
    end = forward_em_law(name, x0, t0, b.T, steps, steps)
    assert np.abs(end.mean - _Y).max() < 3 * np.sqrt(np.diag(end.cov).max())


@pytest.mark.parametrize("name", list(BRIDGES))
def test_bridge_sdes_have_the_hand_written_coefficients(name):
    """Each bridge's SDE, at the 97 simulation times: ``α``, ``σ²``, the drift ``f x + u`` and
    ``g²`` equal the hand-written ones exactly up to a float32 floor (1e-5 relative) — the
    piecewise schedules' segment index included, which a law test cannot resolve (neighbouring
    β differ by < 1 %)."""
    b = BRIDGES[name]
    t0 = _t0(b)
    x = jnp.array([-0.8, 0.9])
    for t in t0 + np.arange(97) * (b.T - t0) / 97:
        a, v, m, f, u, g2 = _coeffs(name, t)
        tt = jnp.float32(t)
        # float32 floor; GOUB's θ_i = 1 − ᾱ_{i+1}/ᾱ_0 (official) loses ε/θ_i to cancellation
        rtol = 1e-5 + (4 * EPS32 / _TH[int(np.clip(np.ceil(t), 1, 100))] if name == "goub" else 0)
        got_a, got_s = b.sde.marginal_coeffs(tt)
        np.testing.assert_allclose([float(got_a), float(got_s) ** 2], [a, v], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(float(b.sde.diffusion(tt)) ** 2, g2, rtol=rtol)
        np.testing.assert_allclose(b.sde.drift(x, tt), f * np.asarray(x) + u, rtol=rtol, atol=1e-6)


def test_user_sde_diffusion_at_t0():
    """The generic ``g² = dσ²/dt − 2fσ²`` differentiates σ² through the user's σ = √(…),
    infinite-slope at t = 0 (0 · ∞); ``LinearSDE.diffusion`` takes the right limit there, at
    t = δ = 1e-6: OU's g² = 2 e^{−2t} is then 2(1 − 2δ), within 2e-6 + float32 rounding of
    g(0)² = 2 (without the limit it was 0: a forward simulation from t = 0 drew no noise on its
    first step). The gradient of g at t = 0 is finite."""
    sde = BRIDGES["user_ou"].sde
    g = float(sde.diffusion(jnp.float32(0.0)))
    np.testing.assert_allclose(g**2, 2.0, rtol=2e-6 + 8 * EPS32)
    assert np.isfinite(float(jax.grad(sde.diffusion)(jnp.float32(0.0))))


@pytest.mark.parametrize("name", list(BRIDGES))
def test_bridge_marginal_is_the_gaussian_product(name):
    """``Bridge.marginal(x_0, t)`` equals the Gaussian product of ``x_t | x_0`` and
    ``y | x_t`` computed from the hand-written coefficients: variance ``(1/σ_t² + a²/v)⁻¹``,
    mean ``var ((α_t x_0 + m_t)/σ_t² + a (y − m_T + a m_t)/v)``, at t = 0.3 T and 0.7 T, to a
    float32 floor (a few ulp, ×σ_T²/v ≤ 10 for the cancellation in v: 1e-5 relative)."""
    b = BRIDGES[name]
    x0 = np.array([-0.8, 0.9])
    for frac in (0.3, 0.7):
        t = _t0(b) + frac * (b.T - _t0(b))
        a_t, v_t, m_t, *_ = _coeffs(name, t)
        a_T, v_T, m_T, *_ = _coeffs(name, b.T)
        a = a_T / a_t
        v = v_T - a * a * v_t
        var = 1 / (1 / v_t + a * a / v)
        mean = var * ((a_t * x0 + m_t) / v_t + a * (_Y - m_T + a * m_t) / v)
        got_m, got_s = b.marginal(jnp.asarray(x0, jnp.float32), jnp.float32(t))
        np.testing.assert_allclose(got_m, mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(got_s) ** 2, var, rtol=1e-5)


def test_bridge_marginal_endpoints_and_batching():
    """At t = 0 the marginal is x_0 with std exactly 0; at t = T it is y, its std the float32
    floor of ``v = σ_T² − a²σ_T²`` (rounding of σ_T² ≤ 1: v ≤ few·1.2e-7, std ≤ √v·σ_T < 1e-3);
    a vmapped batch of bridges equals the single ones to a few ulp."""
    b = BRIDGES["ddbm_vp"]
    x0 = jnp.array([1.0, 2.0])
    m0, s0 = b.marginal(x0, 0.0)
    np.testing.assert_allclose(m0, x0, atol=1e-6)
    mT, sT = b.marginal(x0, b.T)
    np.testing.assert_allclose(mT, b.y, atol=1e-5)
    assert float(s0) == 0.0 and float(sT) < 1e-3
    ys = jnp.stack([Y, -Y, 2 * Y])
    batched = jax.vmap(lambda y: Bridge(b.sde, y).marginal(x0, 0.5)[0])(ys)
    np.testing.assert_allclose(batched[1], Bridge(b.sde, -Y).marginal(x0, 0.5)[0], rtol=1e-6)


def test_goub_h_term_is_the_papers_formula():
    """GOUB (Yue et al. 2024, Eq. 9): g² h = σ_t² e^{−2θ̄_{t:T}} / σ̄²_{t:T} · (y − x)
    with σ̄²_{t:T} = λ² (1 − e^{−2θ̄_{t:T}})."""
    b = BRIDGES["goub"]
    sde = b.sde
    x, t = jnp.array([0.9, 0.1]), jnp.asarray(37.3)
    a_t, _ = sde.marginal_coeffs(t)
    a_T, _ = sde.marginal_coeffs(jnp.asarray(b.T))
    e2 = (a_T / a_t) ** 2  # e^{−2θ̄_{t:T}}
    paper = sde.diffusion(t) ** 2 * e2 / (sde.lam**2 * (1 - e2)) * (b.y - x)
    np.testing.assert_allclose(sde.diffusion(t) ** 2 * b.h(x, t), paper, rtol=1e-4)
