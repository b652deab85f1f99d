"""Bridge samplers against exact answers: GOUB (stochastic and Mean-ODE), I2SB (posterior chain
and OT-ODE), DDBM (Heun with churn, VP and VE), each with the exact x̂_0 / score of a Gaussian
HQ distribution. Moments are compared in standard errors (`exact.moment_zscores`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir import bridges, exact
from jaxir.samplers import ddbm_denoiser, ddbm_sample, goub_sample, i2sb_sample

M = jnp.array([0.2, -0.1])
_L = np.array([[0.3, 0.0], [0.1, 0.2]])
S = jnp.asarray(_L @ _L.T + 0.01 * np.eye(2))
Y = jnp.array([0.5, 0.3])
N = 20_000


def _posterior_x0(bridge, x, t):
    """E[x_0 | x_t, x_T = y] for x_0 ~ N(M, S) independent of y (batched t)."""
    mean, std = bridge.marginal(jnp.broadcast_to(M, x.shape), t)
    c0 = bridge._weights(t)[0][:, None, None]  # x_t = c0 x_0 + (y terms) + std ε
    cov = c0**2 * S + std[:, None, None] ** 2 * jnp.eye(2)
    return M + jnp.einsum("bij,bj->bi", c0 * S, jnp.linalg.solve(cov, (x - mean)[..., None])[..., 0])


def _bridge_score(bridge):
    def score(x, t, mu):
        return bridges.bridge_score_from_x0(bridge, x, t, _posterior_x0(bridge, x, t))

    return score


# ---- GOUB --------------------------------------------------------------------------------
def test_goub_stochastic_sampler_and_mean_ode():
    """GOUB bridge (λ = 0.3, T = 100) from x_T = μ with the exact bridge score.

    Stochastic sampler: 100 steps give N(M, S) within 5 standard errors (20,000 samples).
    Mean-ODE: with an affine (exact Gaussian) score its recursion is the mean of the
    stochastic chain, so it returns one deterministic point equal to the stochastic samples'
    mean within 5 standard errors, and ≈ E[x_0] = M within 0.02 (the 100-step discretisation).
    """
    b = bridges.goub(jnp.broadcast_to(Y, (N, 2)), lam=0.3)
    f = jax.jit(lambda k, mo: goub_sample(k, _bridge_score(b), b, mean_ode=mo,
                                          prediction="score", input_mode="plain"),
                static_argnums=1)
    out = f(jax.random.key(0), False)
    z = exact.moment_zscores(out.x, M, S)
    assert out.nfe == 100 and z["z_mean"] < 5 and z["z_cov"] < 5, z
    ode = np.asarray(f(jax.random.key(1), True).x)
    sto = np.asarray(out.x)
    assert np.ptp(ode, axis=0).max() < 1e-5  # deterministic: every sample the same
    se = sto.std(0) / np.sqrt(N)
    assert np.all(np.abs(ode[0] - sto.mean(0)) < 5 * se), (ode[0], sto.mean(0), se)
    np.testing.assert_allclose(ode[0], M, atol=0.02)


# ---- I2SB --------------------------------------------------------------------------------
SN = 0.2  # paired data: x_1 = x_0 + SN·n


def _i2sb_setup(beta_max=1.0, ot=False):
    x0 = exact.Gaussian(M, S).sample(jax.random.key(1), N)
    x1 = x0 + SN * jax.random.normal(jax.random.key(2), x0.shape)
    b = bridges.i2sb(x1, beta_max=beta_max)

    def model(x, t, cond):
        """The MSE-optimal (x_t − E[x_0 | x_t])/σ_t for the Gaussian pair (x_0, x_1)."""
        bb, a, std = bridges.bridge_coeffs(b, t)
        bb, a, std = bb[:, None, None], a[:, None, None], (0.0 if ot else 1.0) * std[:, None, None]
        c0t = (bb + a) * S
        vt = (bb + a) ** 2 * S + (a**2 * SN**2 + std**2) * jnp.eye(2)
        x0_hat = M + jnp.einsum("bij,bj->bi", c0t, jnp.linalg.solve(vt, (x - (bb + a)[..., 0] * M)[..., None])[..., 0])
        return (x - x0_hat) / b.sde.marginal_coeffs(t)[1][:, None]

    return b, model


def test_i2sb_ot_ode_transports_lq_to_hq():
    """OT-ODE (deterministic interpolant, exact E[x_0 | x_t]) from the paired LQ samples,
    100 steps: the outputs are N(M, S) within 5 standard errors."""
    b, model = _i2sb_setup(ot=True)
    out = jax.jit(lambda k: i2sb_sample(k, model, b, num_steps=100, ot_ode=True))(jax.random.key(0))
    z = exact.moment_zscores(out.x, M, S)
    assert z["z_mean"] < 5 and z["z_cov"] < 5, z


def test_i2sb_stochastic_covariance_deficit_shrinks_with_steps():
    """The posterior chain q(x_s | x̂_0, x_t) with the exact x̂_0 drops Var(x_0 | x_t) at each
    step (as DDPM's fixed-small variance): an O(1/steps) covariance deficit. The mean is
    within 5 standard errors at 20 and 100 steps, and the covariance error at 100 steps is
    below half that at 20 (500 steps: see the slow test)."""
    b, model = _i2sb_setup()
    f = jax.jit(lambda k, n: i2sb_sample(k, model, b, num_steps=n).x, static_argnums=1)
    z100 = exact.moment_zscores(f(jax.random.key(0), 100), M, S)
    z20 = exact.moment_zscores(f(jax.random.key(0), 20), M, S)
    assert z100["z_mean"] < 5 and z20["z_mean"] < 5, (z20, z100)
    assert z100["cov_err"] < z20["cov_err"] / 2, (z20, z100)


@pytest.mark.slow
def test_i2sb_stochastic_sampler_recovers_hq_with_many_steps():
    """At 500 steps the deficit is below the noise: mean and covariance within 5 SE."""
    b, model = _i2sb_setup()
    z = exact.moment_zscores(i2sb_sample(jax.random.key(0), model, b, num_steps=500).x, M, S)
    assert z["z_mean"] < 5 and z["z_cov"] < 5, z


# ---- DDBM --------------------------------------------------------------------------------
def _ddbm(kind, n=N):
    y = jnp.broadcast_to(Y, (n, 2))
    b = bridges.ddbm_vp(y) if kind == "vp" else bridges.ddbm_ve(y)
    return b, lambda x, t, yy: _posterior_x0(b, x, t)


@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_ddbm_heun_with_churn_default_steps(kind):
    """DDBM's Heun sampler with churn 0.33 from x_T = y and the exact x̂_0, default 40 steps
    (nfe 119): mean within 5 standard errors, covariance within 15% of max|S| (the 40-step
    discretisation bias, ~10%; it vanishes with more steps, see the slow test)."""
    b, den = _ddbm(kind)
    out = jax.jit(lambda k: ddbm_sample(k, den, b))(jax.random.key(0))
    assert out.nfe == 119
    z = exact.moment_zscores(out.x, M, S)
    assert z["z_mean"] < 5 and z["cov_err"] < 0.15 * float(jnp.abs(S).max()), z


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vp", "ve"])
def test_ddbm_heun_with_churn_converges(kind):
    """With 640 (VP) / 160 (VE) steps mean and covariance are within 5 standard errors."""
    b, den = _ddbm(kind)
    out = jax.jit(lambda k: ddbm_sample(k, den, b, num_steps=640 if kind == "vp" else 160))(
        jax.random.key(1))
    z = exact.moment_zscores(out.x, M, S)
    assert z["z_mean"] < 5 and z["z_cov"] < 5, z


def test_ddbm_denoiser_preconditioning_and_purity():
    """The preconditioned denoiser is exact for the exact F = (x_0 − c_skip x_t)/c_out; the
    sampler is deterministic per key, vmaps over keys and is differentiable in y."""
    b = bridges.ddbm_vp(jnp.broadcast_to(Y, (3, 2)))
    x0 = jnp.array([[0.1, 0.2], [0.3, -0.4], [0.0, 0.5]])
    t = jnp.array([0.2, 0.5, 0.9])
    x_t = b.sample_marginal(jax.random.key(0), x0, t)
    c_skip, c_out, c_in = bridges.bridge_preconditioning(b, t)

    def F(x_in, tt, y):
        return (x0 - c_skip[:, None] * x_in / c_in[:, None]) / c_out[:, None]

    np.testing.assert_allclose(ddbm_denoiser(F, b)(x_t, t, b.y), x0, rtol=1e-5, atol=1e-5)

    def lin(x, tt, y):
        return 0.5 * x + 0.1 * y

    def f(k, y):
        return ddbm_sample(k, lin, bridges.ddbm_vp(y), num_steps=6).x

    k = jax.random.key(4)
    y = jnp.broadcast_to(Y, (3, 2))
    keys = jax.random.split(k, 2)
    vf = jax.jit(jax.vmap(f, in_axes=(0, None)))
    np.testing.assert_array_equal(vf(keys, y), vf(keys, y))
    assert not np.allclose(vf(keys, y)[0], vf(keys, y)[1])  # the churn noise differs per key
    g = jax.jit(jax.grad(lambda y: jnp.sum(f(k, y) ** 2)))(y)
    assert bool(jnp.all(jnp.isfinite(g)))
