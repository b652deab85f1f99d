"""Sampler behaviour that the exact-law tests of ``tests/test_oracle_samplers.py`` do not cover:
prediction types, adaptive solvers, likelihoods, a Gaussian mixture, gradients, vmap/jit
purity, NaN reporting and argument errors.

Every bound is a standard error, a float32 noise floor or a property of the problem (each says
which): the laws of the fixed-step samplers themselves are pinned by the oracle tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import oracle as O
from jaxir import exact, samplers, schedules, sdes

N = 20_000
EPS32 = float(np.finfo(np.float32).eps)


def _prior(d=3, seed=0):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(d, d)) * 0.6
    return exact.Gaussian(rng.normal(size=d) * 0.8, L @ L.T + 0.3 * np.eye(d))


PRIOR = _prior()
SDES = {
    "vp": sdes.VPSDE(),
    "ve": sdes.VESDE(sigma_max=20.0),
    "ddpm": sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000)),
}


def _x_T(sde, key=jax.random.key(7)):
    return PRIOR.marginal(sde, sde.T).sample(key, N)


def _marginal_law(sde, t):
    """The exact marginal ``N(α μ, α² Σ + σ² I)`` at ``t`` as an oracle law (float64)."""
    a, s = (float(v) for v in sde.marginal_coeffs(jnp.float32(t)))
    mu, cov = np.asarray(PRIOR.mean, np.float64), np.asarray(PRIOR.cov, np.float64)
    return O.Law.of(a * mu, a * a * cov + s * s * np.eye(3))


@pytest.mark.parametrize("sde_name,solver", [("vp", "tsit5"), ("ve", "tsit5"), ("vp", "dopri5")])
def test_adaptive_ode_solvers_push_the_marginal_at_T_to_the_marginal_at_t_min(sde_name, solver):
    """The exact probability-flow ODE maps the marginal at T onto the marginal at t_min; an
    adaptive solve at rtol = atol = 1e-5 moves each sample by O(1e-4) at most, far below the
    standard error (≥ 3e-3) of 20,000 draws: z-tests at the Bonferroni threshold."""
    sde = SDES[sde_name]
    mf = PRIOR.model_fn(sde, "eps")
    out = jax.jit(lambda x: samplers.ode_sample(None, mf, sde, x_init=x, num_steps=None,
                                                solver=solver))(_x_T(sde))
    assert bool(out.finite)
    O.assert_law(np.asarray(out.x, np.float64), _marginal_law(sde, sde.t_min), f"{solver}/{sde_name}")


@pytest.mark.parametrize("prediction", ["x0", "score", "v", "velocity"])
def test_prediction_types_give_same_sampler(prediction):
    """The same exact model written as x̂_0 / score / v / velocity gives DDIM's ε-model samples."""
    sde = SDES["vp"]
    x = _x_T(sde)[:256]
    ref = samplers.ddim_sample(jax.random.key(0), PRIOR.model_fn(sde, "eps"), sde, x_init=x, num_steps=50)
    out = samplers.ddim_sample(
        jax.random.key(0), PRIOR.model_fn(sde, prediction), sde, x_init=x, num_steps=50,
        prediction=prediction,
    )
    # float32 floor: each step converts once between ε, x̂_0, score, v (a few ulp of |x|),
    # and the DDIM update scales a conversion error by at most α_s/α_t ≤ 1.25 on this grid:
    # ≤ 50 steps × 10 ulp × max|x|
    np.testing.assert_allclose(out.x, ref.x, rtol=0,
                               atol=50 * 10 * EPS32 * float(jnp.abs(ref.x).max()))


def test_log_likelihood_dequantization_and_bpd():
    sde = SDES["vp"]
    x = jnp.round(PRIOR.sample(jax.random.key(4), 4) * 127.5) / 127.5
    ll = samplers.log_likelihood(jax.random.key(0), PRIOR.model_fn(sde), sde, x, num_steps=50,
                                 solver="heun", dequantize=True)
    assert bool(jnp.all(jnp.isfinite(ll.log_prob)))
    d = 3
    np.testing.assert_allclose(ll.bpd, -ll.log_prob / (d * np.log(2)) + 7.0, rtol=1e-5)
    assert float(samplers.bits_per_dim(jnp.asarray(0.0), 1, (0.0, 1.0))) == pytest.approx(8.0)


def test_pf_ode_is_a_deterministic_map():
    """The key only draws x_T: with ``x_init`` two keys give the same output, bit for bit (the
    law of the fixed-step ODE is pinned in tests/test_oracle_samplers.py)."""
    sde = SDES["vp"]
    mf = PRIOR.model_fn(sde)
    z = jax.random.normal(jax.random.key(0), (256, 3))
    a = samplers.ode_sample(jax.random.key(1), mf, sde, x_init=z, num_steps=20)
    b = samplers.ode_sample(jax.random.key(2), mf, sde, x_init=z, num_steps=20)
    np.testing.assert_array_equal(a.x, b.x)


def test_log_likelihood_matches_exact_density():
    """The instantaneous change of variables with the exact divergence gives
    ``log p_model(x) = log N(z; 0, I) + ∫ div``; replacing the model's prior N(0, I) by the exact
    marginal at T (``z = ll.z``) must leave the exact ``log p_{t_min}(x)`` up to the adaptive
    solver's error: each accepted step keeps its local error ≤ atol + rtol·|log p| (1e-5 each),
    and there are at most ``nfe`` steps. Hutchinson's estimator is unbiased: its mean over 256
    probes equals the exact-divergence value of the same fixed-step solve within 5 standard
    errors (the x-path, hence z, does not depend on the probe)."""
    sde = SDES["vp"]
    mf = PRIOR.model_fn(sde)
    x = PRIOR.sample(jax.random.key(4), 16)
    target = PRIOR.marginal(sde, sde.t_min).log_prob(x)
    p_T = PRIOR.marginal(sde, sde.T)

    def exact_prior(ll):
        return ll.log_prob - sde.prior_log_prob(ll.z) + p_T.log_prob(ll.z)

    ll = samplers.log_likelihood(jax.random.key(0), mf, sde, x, divergence="exact")
    tol = int(ll.nfe) * 1e-5 * (1 + float(jnp.abs(target).max()))
    np.testing.assert_allclose(exact_prior(ll), target, rtol=0, atol=tol)
    assert ll.bpd.shape == (16,)
    kw = dict(num_steps=100, solver="heun")
    ref = samplers.log_likelihood(jax.random.key(0), mf, sde, x[:2], divergence="exact", **kw)
    many = jax.vmap(lambda k: samplers.log_likelihood(k, mf, sde, x[:2], **kw).log_prob)(
        jax.random.split(jax.random.key(1), 256))
    se = many.std(0) / np.sqrt(256)
    assert np.all(np.abs(many.mean(0) - ref.log_prob) < 5 * se), (many.mean(0), ref.log_prob, se)


def test_gaussian_mixture_mode_weights():
    """2-D mixture, modes 8 apart with std 0.55: the fraction of samples per mode matches the
    weights within 5 binomial standard errors (Bonferroni over 9 fractions at α ≈ 5e-6)."""
    w = jnp.array([0.2, 0.5, 0.3])
    means = jnp.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    gmm = exact.GaussianMixture(w, means, jnp.tile(0.3 * jnp.eye(2), (3, 1, 1)))
    sde = SDES["vp"]
    n = 20_000
    for name, fn in {
        "ddpm": lambda k: samplers.ddpm_sample(k, gmm.model_fn(sde), sde, (n, 2), num_steps=500, clip_x0=False),
        "ode": lambda k: samplers.ode_sample(k, gmm.model_fn(sde), sde, (n, 2), num_steps=200),
        "dpm": lambda k: samplers.dpm_solver_sample(k, gmm.model_fn(sde), sde, (n, 2), num_steps=50),
    }.items():
        x = jax.jit(fn)(jax.random.key(0)).x
        comp = jnp.argmin(jnp.sum((x[:, None] - means) ** 2, -1), -1)
        frac = np.bincount(np.asarray(comp), minlength=3) / n
        se = np.sqrt(np.asarray(w) * (1 - np.asarray(w)) / n)
        assert np.all(np.abs(frac - np.asarray(w)) < 5 * se), (name, frac)


def _fd_check(loss, theta, eps=1e-2):
    """Reverse-mode gradient vs the central difference, within the difference's own error:
    its O(ε²) truncation, estimated by Richardson (|FD(ε) − FD(ε/2)|·4/3), plus float32
    cancellation (a few ulp of |loss| divided by ε)."""
    g = jax.jit(jax.grad(loss))(theta)
    loss = jax.jit(loss)
    fd = (loss(theta + eps) - loss(theta - eps)) / (2 * eps)
    fd2 = (loss(theta + eps / 2) - loss(theta - eps / 2)) / eps
    tol = 4 / 3 * abs(fd - fd2) + 8 * EPS32 * abs(float(loss(theta))) / (eps / 2)
    assert np.isfinite(g) and abs(g - fd2) <= tol, (g, fd, fd2, tol)


def test_grad_through_ddim_wrt_schedule_and_model():
    x = jax.random.normal(jax.random.key(0), (64, 3))

    def loss_beta(beta_max):
        sde = sdes.VPSDE(beta_max=beta_max)
        out = samplers.ddim_sample(jax.random.key(1), PRIOR.model_fn(sde), sde, x_init=x, num_steps=20)
        return jnp.mean(out.x**2)

    _fd_check(loss_beta, jnp.float32(15.0))

    def loss_scale(s):
        sde = sdes.VPSDE()
        base = PRIOR.model_fn(sde)
        out = samplers.ddim_sample(jax.random.key(1), lambda x, t, c: s * base(x, t, c), sde,
                                   x_init=x, num_steps=20, checkpoint=True)
        return jnp.mean(out.x**2)

    _fd_check(loss_scale, jnp.float32(0.9))


def test_grad_through_sde_and_ode():
    x = jax.random.normal(jax.random.key(0), (64, 3))

    def loss_sde(s):
        sde = sdes.VPSDE()
        base = PRIOR.model_fn(sde)
        out = samplers.sde_sample(jax.random.key(1), lambda x, t, c: s * base(x, t, c), sde,
                                  x_init=x, num_steps=50, brownian="virtual")
        return jnp.mean(out.x**2)

    _fd_check(loss_sde, jnp.float32(0.9))

    def loss_ode(beta_min):
        sde = sdes.VPSDE(beta_min=beta_min)
        out = samplers.ode_sample(jax.random.key(1), PRIOR.model_fn(sde), sde, x_init=x, num_steps=30)
        return jnp.mean(out.x**2)

    _fd_check(loss_ode, jnp.float32(0.3))


def test_vmap_over_keys_and_trajectory():
    sde = SDES["ddpm"]
    mf = PRIOR.model_fn(sde)

    def one(k):
        return samplers.ddim_sample(k, mf, sde, (4, 3), num_steps=20, eta=0.5, save_every=5)

    out = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), 3))
    assert out.x.shape == (3, 4, 3)
    assert out.trajectory.shape == (3, 5, 4, 3)  # initial + steps 5, 10, 15, 20
    np.testing.assert_allclose(out.trajectory[:, -1], out.x)
    single = one(jax.random.split(jax.random.key(0), 3)[1])
    np.testing.assert_allclose(out.x[1], single.x, atol=1e-5)
    ode = samplers.ode_sample(jax.random.key(0), mf, sde, (4, 3), num_steps=20, save_every=10)
    assert ode.trajectory.shape == (3, 4, 3)


def test_same_key_same_result_and_nfe():
    sde = SDES["vp"]
    mf = PRIOR.model_fn(sde)
    a = samplers.pc_sample(jax.random.key(0), mf, sde, (8, 3), num_steps=10)
    b = samplers.pc_sample(jax.random.key(0), mf, sde, (8, 3), num_steps=10)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.nfe == 20
    assert samplers.ddim_sample(jax.random.key(0), mf, sde, (8, 3), num_steps=7).nfe == 7
    ode = samplers.ode_sample(jax.random.key(0), mf, sde, (8, 3), num_steps=None, solver="tsit5")
    assert int(ode.nfe) > 6


def test_nan_is_reported_not_hidden():
    sde = SDES["vp"]
    out = samplers.ddim_sample(jax.random.key(0), lambda x, t, c: x * jnp.nan, sde, (2, 3), num_steps=3)
    assert not bool(out.finite)


def test_bad_arguments():
    sde = SDES["vp"]
    mf = PRIOR.model_fn(sde)
    with pytest.raises(ValueError, match="prediction"):
        samplers.ddim_sample(jax.random.key(0), mf, sde, (2, 3), prediction="noise")
    with pytest.raises(ValueError, match="shape"):
        samplers.ddim_sample(jax.random.key(0), mf, sde)
    with pytest.raises(ValueError, match="solver"):
        samplers.sde_sample(jax.random.key(0), mf, sde, (2, 3), solver="milstein")
    with pytest.raises(ValueError, match="spacing"):
        samplers.ddim_sample(jax.random.key(0), mf, sde, (2, 3), spacing="trailing")
    with pytest.raises(ValueError, match="variance"):
        samplers.ddpm_sample(jax.random.key(0), mf, sde, (2, 3), variance="learned")
    with pytest.raises(ValueError, match="num_steps"):
        samplers.ddim_sample(jax.random.key(0), mf, sde, (2, 3), num_steps=0)


def test_known_pixels_bad_arguments():
    """``known=`` must be a (values, mask) pair broadcastable to the samples (its law is pinned in
    tests/test_oracle_samplers.py)."""
    sde = SDES["ddpm"]
    prior = exact.Gaussian(np.zeros(4), np.eye(4))
    mask = jnp.array([1.0, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="broadcast"):
        samplers.ddpm_sample(jax.random.key(0), prior.model_fn(sde), sde, (2, 4),
                             known=(jnp.zeros(3), mask))
    with pytest.raises(ValueError, match="pair"):
        samplers.ddim_sample(jax.random.key(0), prior.model_fn(sde), sde, (2, 4), known=mask)
