"""Exact references checked against independent computations (autodiff, numpy, quadrature)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir import exact, predictions, sdes

SDE_LIST = [sdes.VPSDE(), sdes.VESDE(), sdes.MeanRevertingSDE(jnp.array([0.3, -0.1, 0.2]), 0.5)]


def _gauss(d=3, seed=0):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(d, d))
    return exact.Gaussian(rng.normal(size=d), L @ L.T + 0.2 * np.eye(d))


@pytest.mark.parametrize("sde", SDE_LIST, ids=lambda s: type(s).__name__)
def test_gaussian_score_is_grad_of_marginal_log_prob(sde):
    g = _gauss()
    t = 0.37 * sde.T
    x = jax.random.normal(jax.random.key(0), (5, 3))
    marg = g.marginal(sde, t)
    ref = jax.vmap(jax.grad(marg.log_prob))(x)
    np.testing.assert_allclose(g.score(x, t, sde), ref, rtol=2e-4, atol=1e-4)
    # Tweedie: x0 = (x - m + σ² score)/α
    a, s = sde.marginal_coeffs(t)
    m = sde.marginal_offset(t, x)
    np.testing.assert_allclose(g.x0_mean(x, t, sde), (x - m + s**2 * ref) / a, rtol=1e-3, atol=1e-3)


def test_gaussian_sample_and_log_prob():
    g = _gauss()
    x = g.sample(jax.random.key(1), 50_000)
    z = exact.moment_zscores(x, g.mean, g.cov)
    assert z["z_mean"] < 5 and z["z_cov"] < 5
    from scipy.stats import multivariate_normal

    pts = np.asarray(x[:5])
    np.testing.assert_allclose(g.log_prob(x[:5]), multivariate_normal(g.mean, g.cov).logpdf(pts), rtol=1e-4)


def test_gaussian_posterior_against_information_form():
    g = _gauss(d=4)
    rng = np.random.default_rng(1)
    A = rng.normal(size=(2, 4))
    y = rng.normal(size=2)
    sy = 0.3
    post = g.posterior(A, sy, y)
    C = np.asarray(g.cov, np.float64)
    P = np.linalg.inv(np.linalg.inv(C) + A.T @ A / sy**2)
    mu = P @ (np.linalg.solve(C, np.asarray(g.mean, np.float64)) + A.T @ y / sy**2)
    np.testing.assert_allclose(post.cov, P, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(post.mean, mu, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="A must"):
        g.posterior(np.ones((2, 3)), sy, y)


@pytest.mark.parametrize("diag", [False, True])
def test_gmm_score_and_denoiser(diag):
    rng = np.random.default_rng(2)
    K, d = 4, 3
    means = rng.normal(size=(K, d)) * 3
    if diag:
        covs = rng.uniform(0.2, 1.0, size=(K, d))
    else:
        L = rng.normal(size=(K, d, d)) * 0.5
        covs = L @ np.swapaxes(L, 1, 2) + 0.2 * np.eye(d)
    gmm = exact.GaussianMixture(rng.uniform(0.5, 1, K), means, covs)
    sde = sdes.VPSDE()
    t = 0.3
    x = jax.random.normal(jax.random.key(0), (6, d))
    ref = jax.vmap(jax.grad(lambda xx: gmm.noised_log_prob(xx, t, sde)))(x)
    np.testing.assert_allclose(gmm.score(x, t, sde), ref, rtol=1e-3, atol=1e-4)
    x0, eps = gmm.denoise(x, t, sde)
    a, s = sde.marginal_coeffs(t)
    np.testing.assert_allclose(a * x0 + s * eps, x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(eps, -s * ref, rtol=1e-3, atol=1e-4)
    # at t → 0 the noised density is the prior density
    np.testing.assert_allclose(gmm.noised_log_prob(x, 0.0, sde), gmm.log_prob(x), rtol=1e-5)


def test_gmm_posterior_against_quadrature_1d():
    gmm = exact.GaussianMixture(jnp.array([0.3, 0.7]), jnp.array([[-2.0], [1.5]]), jnp.array([[0.5], [0.8]]))
    A, sy, y = np.array([[1.0]]), 0.7, np.array([0.4])
    post = gmm.posterior(A, sy, y)
    grid = np.linspace(-10, 10, 200_001)
    dens = np.exp(np.asarray(gmm.log_prob(jnp.asarray(grid[:, None], jnp.float32)), np.float64))
    dens *= np.exp(-0.5 * (y[0] - grid) ** 2 / sy**2)
    dens /= np.trapezoid(dens, grid)
    mean = np.trapezoid(grid * dens, grid)
    var = np.trapezoid((grid - mean) ** 2 * dens, grid)
    pm = float(jnp.sum(post.weights[:, None] * post.means))
    pv = float(jnp.sum(post.weights * (post.covs[:, 0, 0] + post.means[:, 0] ** 2))) - pm**2
    np.testing.assert_allclose([pm, pv], [mean, var], rtol=1e-3)


PREDS = predictions.PREDICTIONS


@pytest.mark.parametrize("sde", SDE_LIST, ids=lambda s: type(s).__name__)
def test_prediction_conversions_round_trip(sde):
    g = _gauss()
    x = jax.random.normal(jax.random.key(3), (4, 3))
    t = jnp.full((4,), 0.41 * sde.T)  # per-example t
    ref = {p: g.model_fn(sde, p)(x, t, None) for p in PREDS}
    for src, dst in itertools.permutations(PREDS, 2):
        out = predictions.convert(ref[src], x, t, sde, src, dst)
        np.testing.assert_allclose(out, ref[dst], rtol=2e-3, atol=2e-3, err_msg=f"{src}->{dst}")
    with pytest.raises(ValueError, match="prediction"):
        predictions.convert(ref["eps"], x, t, sde, "eps", "noise")


def test_moment_zscores_flags_wrong_samples():
    g = _gauss()
    x = g.sample(jax.random.key(0), 20_000)
    assert exact.moment_zscores(x * 1.05, g.mean, g.cov)["z_cov"] > 5
    assert exact.moment_zscores(x + 0.05, g.mean, g.cov)["z_mean"] > 5
