"""IR-SDE (Luo et al. 2023): the forward SDE's simulation against the exact law of its own
Euler–Maruyama recursion, the closed-form marginal, the optimal reverse state vs an
independent Gaussian conditioning, and the sampler's purity. The reverse SDE / ODE samplers'
laws are pinned by tests/test_oracle_bridges.py (official ``sde_utils.py``)."""

import math

import jax
import jax.numpy as jnp
import numpy as np

import oracle as O
from jaxir import bridges
from jaxir.samplers import irsde_optimal_prev, irsde_sample
from jaxir.sdes import MeanRevertingSDE

MU = jnp.array([0.5, 0.3])  # the LQ image (fixed)
LAM = 0.3
N = 20_000


def test_forward_simulation_follows_its_law_and_the_closed_form_marginal():
    """Euler–Maruyama of ``dx = θ_t(μ − x)dt + σ_t dW`` (jaxir's drift and diffusion), 10
    midpoint sub-steps per official step, 20,000 paths from a fixed x_0: the laws at t = 50 and
    t = 100 equal the exact laws of that recursion (float64, the official θ schedule written
    out: θ_i Δ on step i, σ_t² = 2λ²θ_t Δ), z-tests; and ``sde.marginal`` equals the official
    ``μ + (x_0 − μ) e^{−θ̄_t Δ}``, std ``λ √(1 − e^{−2θ̄_t Δ})`` to a float32 floor (1e-5)."""
    sde = MeanRevertingSDE(MU, LAM)
    th, cum, dt_unit = O.irsde_schedule(100, 0.005)
    mu, x0 = np.asarray(MU, np.float64), np.array([-0.6, 0.8])
    sub = 10
    dt = 1.0 / sub

    def step(x, inp):
        t, k = inp
        return x + sde.drift(x, t) * dt + sde.diffusion(t) * math.sqrt(dt) * jax.random.normal(
            k, x.shape), None

    seg = jax.jit(lambda x, ts, key: jax.lax.scan(step, x, (ts, jax.random.split(key, ts.shape[0])))[0])
    x = jnp.broadcast_to(jnp.asarray(x0, jnp.float32), (N, 2))
    law = O.Law.of(x0, np.zeros((2, 2)))
    n = 50 * sub
    for i, t_end in enumerate((50, 100)):
        ts = (t_end - 50) + (np.arange(n) + 0.5) * dt
        x = seg(x, jnp.asarray(ts, jnp.float32), jax.random.key(i + 1))
        for t in ts:
            theta = th[int(np.ceil(t))] * dt_unit
            law = law.push((1 - theta * dt) * np.eye(2), theta * dt * mu,
                           np.sqrt(2 * LAM**2 * theta * dt) * np.eye(2))
        O.assert_law(np.asarray(x, np.float64), law, f"forward EM at t = {t_end}")
        mean, std = sde.marginal(jnp.asarray(x0, jnp.float32), jnp.asarray(float(t_end)))
        w = np.exp(-cum[t_end] * dt_unit)
        np.testing.assert_allclose(mean, mu + (x0 - mu) * w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(std), LAM * np.sqrt(1 - w * w), rtol=1e-5)


def test_optimal_prev_equals_gaussian_posterior_mean():
    """x*_{t−1} (Luo Prop. 3.1, the A, B, C formula) equals E[x_{t−1} | x_t, x_0] computed by
    conditioning the joint Gaussian of (x_{t−1}, x_t) built from the SDE's own marginal
    x_{t−1} | x_0 and transition x_t | x_{t−1} (float64 numpy), for every t = 1..100;
    relative error < 1e-4 (float32). At t = 1 it returns x_0."""
    sde = MeanRevertingSDE(MU, LAM)
    x0 = jnp.array([-0.6, 0.8])
    x_t = jnp.array([0.1, 0.45])
    ts = jnp.arange(1, 101).astype(jnp.float32)
    got = jax.vmap(lambda t: irsde_optimal_prev(sde, x_t, x0, t))(ts)

    # x_{t−1} | x_0 ~ N(m1, v1); x_t | x_{t−1} ~ N(μ + a (x_{t−1} − μ), q²): joint Gaussian
    m1, s1 = jax.vmap(lambda t: sde.marginal(x0, t - 1.0))(ts)
    a, q = sde.transition_coeffs(ts - 1.0, ts)
    m1 = np.asarray(m1, np.float64)
    v1, a, q2 = (np.asarray(s1, np.float64) ** 2)[:, None], np.asarray(a, np.float64)[:, None], (
        np.asarray(q, np.float64) ** 2)[:, None]
    mu, xt = np.asarray(MU, np.float64), np.asarray(x_t, np.float64)
    mean = np.stack([m1, mu + a * (m1 - mu)], -1)  # (t, d, 2)
    cov = np.stack([np.stack([v1 + 0 * m1, a * v1 + 0 * m1], -1),
                    np.stack([a * v1 + 0 * m1, a * a * v1 + q2 + 0 * m1], -1)], -2)  # (t, d, 2, 2)
    # generic conditioning of component 0 on component 1 = x_t
    ref = mean[..., 0] + cov[..., 0, 1] / cov[..., 1, 1] * (xt - mean[..., 1])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[0], x0, atol=1e-6)
    # the generic linear-SDE posterior of jaxir.bridges agrees
    gen = jax.vmap(lambda t: bridges.posterior(sde, x0, x_t, t - 1.0, t)[0])(ts)
    np.testing.assert_allclose(got, gen, rtol=1e-4, atol=1e-6)


def test_sampler_is_pure_jittable_vmappable_differentiable():
    """Same key → same output; vmap over keys equals separate calls; grad w.r.t. μ is finite
    and nonzero; ``input_mode="residual"`` feeds x − μ (a network written for x − μ gives
    the same samples as its "plain" twin)."""
    sde = MeanRevertingSDE(jnp.broadcast_to(MU, (4, 2)), LAM, T=20)

    def plain(x, t, mu):
        return 0.1 * x + 0.01 * t[:, None] - 0.2 * mu

    def residual(r, t, mu):
        return plain(r + mu, t, mu)

    k = jax.random.key(3)
    keys = jax.random.split(k, 2)
    f = jax.jit(lambda k: (irsde_sample(k, plain, sde, input_mode="plain").x,
                           irsde_sample(k, residual, sde).x))
    a, b = f(k)
    np.testing.assert_array_equal(a, f(k)[0])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    batched = jax.vmap(f)(keys)[0]
    np.testing.assert_allclose(batched[1], f(keys[1])[0], rtol=1e-5, atol=1e-6)

    def total(mu):
        s = MeanRevertingSDE(mu, LAM, T=20)
        return jnp.sum(irsde_sample(k, residual, s, ode=True).x ** 2)

    g = jax.jit(jax.grad(total))(jnp.broadcast_to(MU, (4, 2)))
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0
