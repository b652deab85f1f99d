"""SDEs: closed forms agree with autodiff, and forward marginals agree with simulation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir import schedules, sdes
from jaxir.sdes import LinearSDE


class CosineVPSDE(LinearSDE):
    """A new SDE in one small class: only the marginal coefficients."""

    def marginal_coeffs(self, t):
        c0 = math.cos(0.008 / 1.008 * math.pi / 2)
        a = jnp.cos((t * 0.98 + 0.008) / 1.008 * jnp.pi / 2) / c0
        return a, jnp.sqrt(1.0 - a**2)


MU = jnp.array([0.5, -0.3])
ALL = {
    "vp": sdes.VPSDE(),
    "subvp": sdes.SubVPSDE(),
    "ve": sdes.VESDE(sigma_max=10.0),
    "ddpm": sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000)),
    "cosine_ddpm": sdes.DiscreteVPSDE(schedules.cosine_beta_schedule(1000)),
    "irsde": sdes.MeanRevertingSDE(MU, lam=0.2),
    "user": CosineVPSDE(),
}
# off-grid times (piecewise SDEs have kinks on their grids)
TS = np.array([0.1234, 0.4567, 0.8765])


@pytest.mark.parametrize("name", list(ALL))
def test_closed_forms_match_autodiff(name):
    sde = ALL[name]
    t = jnp.asarray(TS * sde.T)
    np.testing.assert_allclose(sde.drift_coeff(t), LinearSDE.drift_coeff(sde, t), rtol=2e-3, atol=1e-5)
    np.testing.assert_allclose(sde.diffusion(t), LinearSDE.diffusion(sde, t), rtol=2e-3, atol=1e-5)
    a, s = sde.marginal_coeffs(jnp.asarray(0.0))
    np.testing.assert_allclose([a, s], [1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("name", list(ALL))
def test_forward_marginal_matches_simulation(name):
    """Euler–Maruyama simulation of dx = f dt + g dW from a fixed x0 vs the closed form.

    20,000 paths, 1,000 steps; mean and std within 5 standard errors + the O(dt) EM bias.
    """
    sde = ALL[name]
    n, steps = 20_000, 1000
    x0 = jnp.broadcast_to(jnp.array([1.0, -1.0]), (n, 2))
    t_end = 0.6 * sde.T
    dt = t_end / steps

    def step(x, inp):
        t, k = inp
        return x + sde.drift(x, t) * dt + sde.diffusion(t) * math.sqrt(dt) * jax.random.normal(k, x.shape), None

    ts = (jnp.arange(steps) + 0.5) * dt  # midpoint times avoid the grid kinks
    x, _ = jax.lax.scan(step, x0, (ts, jax.random.split(jax.random.key(0), steps)))
    mean, std = sde.marginal(x0[0], jnp.asarray(t_end))
    m, s = np.asarray(x.mean(0)), np.asarray(x.std(0))
    se_m = float(std) / math.sqrt(n)
    se_s = float(std) / math.sqrt(2 * n)
    np.testing.assert_allclose(m, mean, atol=5 * se_m + 2e-3 * float(np.abs(mean).max()))
    np.testing.assert_allclose(s, float(std) * np.ones(2), atol=5 * se_s + 2e-3 * float(std))


@pytest.mark.parametrize("name", ["vp", "ve", "irsde", "ddpm"])
def test_transition_composes(name):
    """x_t | x_0 equals x_s | x_0 pushed through x_t | x_s (means and variances)."""
    sde = ALL[name]
    s, t = 0.3 * sde.T, 0.7 * sde.T
    x0 = jnp.array([0.7, -0.2])
    m_s, sd_s = sde.marginal(x0, s)
    a, sd_st = sde.transition_coeffs(s, t)
    m_t_via, _ = sde.transition(m_s, s, t)
    m_t, sd_t = sde.marginal(x0, t)
    np.testing.assert_allclose(m_t_via, m_t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a**2 * sd_s**2 + sd_st**2, sd_t**2, rtol=1e-4)


def test_ddpm_mapping_both_ways():
    vp = sdes.VPSDE()
    disc = vp.to_discrete(1000)
    np.testing.assert_allclose(disc.betas, schedules.linear_beta_schedule(1000), rtol=1e-5)
    back = sdes.VPSDE.from_ddpm_linear(1e-4, 0.02, 1000)
    assert back.beta_min == pytest.approx(0.1) and back.beta_max == pytest.approx(20.0)
    # DiscreteVPSDE hits ᾱ_i exactly at t_i = (i + 1)/N, and is close to the continuous VP
    i = jnp.array([0, 10, 499, 999])
    a, _ = disc.marginal_coeffs(disc.index_to_time(i))
    np.testing.assert_allclose(a**2, disc.alphas_cumprod[i], rtol=1e-5)
    np.testing.assert_array_equal(disc.time_to_index(disc.index_to_time(i)), i)
    ac, _ = vp.marginal_coeffs(disc.index_to_time(i))
    np.testing.assert_allclose(a, ac, rtol=2e-2, atol=1e-4)


def test_irsde_defaults_and_prior():
    sde = sdes.MeanRevertingSDE(jnp.zeros((4, 4, 3)), lam=30 / 255)
    a_T, s_T = sde.marginal_coeffs(jnp.asarray(sde.T))
    np.testing.assert_allclose(a_T, 0.005, rtol=1e-3)  # e^{−θ̄_T Δ} = ε
    np.testing.assert_allclose(s_T, 30 / 255 * math.sqrt(1 - 0.005**2), rtol=1e-4)
    x = sde.prior_sample(jax.random.key(0), (2, 4, 4, 3))
    assert x.shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="thetas"):
        sdes.MeanRevertingSDE(jnp.zeros(3), thetas=jnp.ones(5), T=10)


def test_vmap_over_batched_mean_reverting_sde():
    mus = jnp.arange(6.0).reshape(3, 2)
    f = jax.vmap(lambda mu: sdes.MeanRevertingSDE(mu, 0.1).marginal(jnp.zeros(2), 50.0)[0])
    out = f(mus)
    a, _ = sdes.MeanRevertingSDE(mus[0], 0.1).marginal_coeffs(50.0)
    np.testing.assert_allclose(out, (1 - a) * mus, rtol=1e-5)


def test_reverse_sde_and_pf_ode_drifts():
    sde = sdes.VPSDE()
    score = lambda x, t, c: -x  # noqa: E731
    x, t = jnp.ones((2, 3)), 0.4
    g2 = sde.diffusion(t) ** 2
    np.testing.assert_allclose(sdes.reverse(sde, score).drift(x, t), sde.drift(x, t) + g2 * x, rtol=1e-6)
    pf = sdes.reverse(sde, score, probability_flow=True)
    np.testing.assert_allclose(pf.drift(x, t), sde.drift(x, t) + 0.5 * g2 * x, rtol=1e-6)
    assert float(pf.diffusion(t)) == 0.0


def test_sdes_are_pytrees_under_jit_and_grad():
    def abar_end(beta_max):
        a, _ = sdes.VPSDE(beta_max=beta_max).marginal_coeffs(1.0)
        return a

    g = jax.jit(jax.grad(abar_end))(20.0)
    np.testing.assert_allclose(g, -0.25 * abar_end(20.0), rtol=1e-5)
    with pytest.raises(ValueError, match="betas"):
        sdes.DiscreteVPSDE(jnp.ones((2, 2)))


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "ddpm", "irsde"])
def test_transition_std_is_the_gaussian_composition(name):
    """The std that ``transition`` returns (not only ``transition_coeffs``): for a linear SDE
    ``x_t | x_s`` has variance ``σ_t² − (α_t/α_s)² σ_s²``, so that ``x_t | x_0`` composes from
    ``x_s | x_0`` (issue 18 item 4: mutant sdes-2, ``(α_t/α_s) σ_s²``, passed
    test_transition_composes, which reads only the mean of ``transition``)."""
    sde = ALL[name]
    s, t = 0.3 * sde.T, 0.7 * sde.T
    a_s, sd_s = (np.float64(v) for v in sde.marginal_coeffs(jnp.asarray(s)))
    a_t, sd_t = (np.float64(v) for v in sde.marginal_coeffs(jnp.asarray(t)))
    _, std = sde.transition(jnp.array([0.7, -0.2]), s, t)
    want = math.sqrt(sd_t**2 - (a_t / a_s) ** 2 * sd_s**2)
    # float32: the difference of two O(σ_t²) numbers, relative error ≲ 8 u σ_t²/want²
    tol = 8 * 2.0**-24 * sd_t**2 / want**2 + 1e-6
    np.testing.assert_allclose(np.float64(std), want, rtol=tol)
