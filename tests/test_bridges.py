"""Bridges: closed-form h equals autodiff h; simulated bridges hit y and match the marginals;
the reverse bridge with the exact conditional score recovers the clean distribution."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir import bridges, exact
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
            bridges.h_transform_autodiff(b.sde, x, t, b.y, b.T), rtol=1e-3, atol=1e-4)


def _simulate(b, x0, n_paths, steps, key, t_stop=None, midpoint=True):
    t0 = max(b.sde.t_min, 0.0) if isinstance(b.sde, bridges.EDMVESDE) else 0.0
    t_stop = b.T if t_stop is None else t_stop
    dt = (t_stop - t0) / steps
    x = jnp.broadcast_to(x0, (n_paths,) + x0.shape)

    def step(x, inp):
        t, k = inp
        noise = jax.random.normal(k, x.shape)
        return x + b.drift(x, t) * dt + b.diffusion(t) * math.sqrt(dt) * noise, None

    # midpoints avoid the kinks of piecewise schedules; left points make the last step
    # evaluate h at T − dt (the standard Euler–Maruyama for a pinned process)
    ts = t0 + (jnp.arange(steps) + (0.5 if midpoint else 0.0)) * dt
    x, _ = jax.lax.scan(step, x, (ts, jax.random.split(key, steps)))
    return x


@pytest.mark.parametrize("name", list(BRIDGES))
def test_bridge_hits_y_and_error_shrinks_with_step(name):
    b = BRIDGES[name]
    x0 = jnp.array([-0.8, 0.9])
    errs = [float(jnp.abs(_simulate(b, x0, 2000, n, jax.random.key(0), midpoint=False) - b.y).mean())
            for n in (100, 1600)]
    # the residual is the last step's noise g √dt: it falls like √dt (×4 here); allow ×2.5
    g_T = max(1.0, float(b.diffusion(jnp.asarray(b.T))))
    assert errs[1] < errs[0] / 2.5 and errs[1] < 0.05 * g_T, errs


@pytest.mark.parametrize("name", list(BRIDGES))
def test_bridge_marginal_matches_simulation(name):
    """Mean and std of 20,000 Euler–Maruyama paths at mid-bridge vs the closed form:
    within 5 standard errors plus 2% (the O(dt) Euler bias, 1,000 steps)."""
    b = BRIDGES[name]
    x0 = jnp.array([-0.8, 0.9])
    t0 = b.sde.t_min if isinstance(b.sde, bridges.EDMVESDE) else 0.0
    t_mid = t0 + 0.5 * (b.T - t0)
    x = _simulate(b, x0, 20_000, 1000, jax.random.key(1), t_stop=t_mid)
    x0_eff = x0
    if isinstance(b.sde, bridges.EDMVESDE):  # the simulation starts at t_min, not 0
        x0_eff = x0  # σ_min = 0.002: negligible start noise
    mean, std = b.marginal(x0_eff, t_mid)
    n = x.shape[0]
    np.testing.assert_allclose(x.mean(0), mean, atol=5 * float(std) / math.sqrt(n) + 0.02 * float(jnp.abs(mean).max()))
    np.testing.assert_allclose(x.std(0), float(std) * np.ones(2), rtol=0.02, atol=5 * float(std) / math.sqrt(2 * n))


def test_bridge_marginal_endpoints_and_batching():
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


@pytest.mark.parametrize("name", ["ddbm_vp", "i2sb", "goub"])
def test_reverse_bridge_with_exact_score_recovers_clean_distribution(name):
    """x_0 ~ N(μ, Σ) independent of y: q(x_t | y) is Gaussian with mean c0 μ + (y terms) and
    covariance c0² Σ + std² I, so its score is exact. Integrating the reverse bridge SDE
    from t = T − δ (started from the exact q) back to 0 must give N(μ, Σ) within 5 SE."""
    b = BRIDGES[name]
    rng = np.random.default_rng(0)
    L = rng.normal(size=(2, 2)) * 0.3
    prior = exact.Gaussian(jnp.array([0.2, -0.1]), L @ L.T + 0.05 * jnp.eye(2))

    def q_stats(t):
        mean, std = b.marginal(prior.mean, t)
        c0 = b._weights(t)[0]
        return mean, c0**2 * prior.cov + std**2 * jnp.eye(2)

    def score(x, t, cond=None):
        mean, cov = q_stats(t)
        return -jnp.linalg.solve(cov, (x - mean).T).T

    rev = bridges.reverse_bridge(b, score)
    n, steps = 20_000, 1000
    t_start = 0.98 * b.T
    mean_s, cov_s = q_stats(t_start)
    x = exact.Gaussian(mean_s, cov_s).sample(jax.random.key(3), n)
    dt = t_start / steps

    def step(x, inp):
        t, k = inp
        return x - rev.drift(x, t) * dt + rev.diffusion(t) * math.sqrt(dt) * jax.random.normal(k, x.shape), None

    ts = t_start - (jnp.arange(steps) + 0.5) * dt
    x, _ = jax.lax.scan(step, x, (ts, jax.random.split(jax.random.key(4), steps)))
    z = exact.moment_zscores(x, prior.mean, prior.cov)
    assert z["z_mean"] < 5 and z["z_cov"] < 5, z


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
