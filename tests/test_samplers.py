"""Every sampler, driven by the exact score of a Gaussian, must reproduce the Gaussian.

Tolerance: the largest |z|-score over the 3 mean and 6 covariance entries must be < 5
standard errors (``exact.moment_zscores``) with n = 20,000 samples; step counts are chosen so
that the discretisation bias (measured at n = 200,000) is below about one standard error.
Samplers start from the exact marginal at ``T`` so the only error is the sampler's own.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir import exact, samplers, schedules, sdes
from jaxir.sdes import LinearSDE

N = 20_000
Z_TOL = 5.0


class CosineVPSDE(LinearSDE):
    """A user-defined SDE: only the marginal coefficients are written."""

    def marginal_coeffs(self, t):
        c0 = math.cos(0.008 / 1.008 * math.pi / 2)
        a = jnp.cos((t * 0.98 + 0.008) / 1.008 * jnp.pi / 2) / c0
        return a, jnp.sqrt(1.0 - a**2)


def _prior(d=3, seed=0):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(d, d)) * 0.6
    return exact.Gaussian(rng.normal(size=d) * 0.8, L @ L.T + 0.3 * np.eye(d))


PRIOR = _prior()
SDES = {
    "vp": sdes.VPSDE(),
    "subvp": sdes.SubVPSDE(),
    "ve": sdes.VESDE(sigma_max=20.0),
    "ddpm": sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000)),
    "cosine_user": CosineVPSDE(),
}


def _x_T(sde, key=jax.random.key(7)):
    return PRIOR.marginal(sde, sde.T).sample(key, N)


def _assert_matches(x, target, label):
    z = exact.moment_zscores(x, target.mean, target.cov)
    assert z["z_mean"] < Z_TOL and z["z_cov"] < Z_TOL, f"{label}: {z}"


# (name, sampler call, whether the target is the data or the marginal at t_min)
CASES = {
    "ddpm": (lambda k, mf, s, x: samplers.ddpm_sample(k, mf, s, x_init=x, num_steps=1000, clip_x0=False), "data"),
    "ddpm_large": (lambda k, mf, s, x: samplers.ddpm_sample(k, mf, s, x_init=x, num_steps=1000, clip_x0=False, variance="fixed_large"), "data"),
    "ddim_eta0": (lambda k, mf, s, x: samplers.ddim_sample(k, mf, s, x_init=x, num_steps=1000), "data"),
    "ddim_eta1": (lambda k, mf, s, x: samplers.ddim_sample(k, mf, s, x_init=x, num_steps=1000, eta=1.0), "data"),
    "dpm_solver": (lambda k, mf, s, x: samplers.dpm_solver_sample(k, mf, s, x_init=x, num_steps=50), "data"),
    "sde_euler": (lambda k, mf, s, x: samplers.sde_sample(k, mf, s, x_init=x, num_steps=1000, denoise=False), "t_min"),
    "sde_heun": (lambda k, mf, s, x: samplers.sde_sample(k, mf, s, x_init=x, num_steps=300, solver="heun", denoise=False), "t_min"),
    "ode_heun": (lambda k, mf, s, x: samplers.ode_sample(k, mf, s, x_init=x, num_steps=100), "t_min"),
    "ode_tsit5": (lambda k, mf, s, x: samplers.ode_sample(k, mf, s, x_init=x, num_steps=None, solver="tsit5"), "t_min"),
    "pc": (lambda k, mf, s, x: samplers.pc_sample(k, mf, s, x_init=x, num_steps=1000, snr=0.05), "data"),
    "pc_em": (lambda k, mf, s, x: samplers.pc_sample(k, mf, s, x_init=x, num_steps=1000, predictor="euler_maruyama", corrector="none"), "data"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("sde_name", ["vp", "ve", "ddpm"])
def test_sampler_reproduces_gaussian(case, sde_name):
    sde = SDES[sde_name]
    if case == "ode_tsit5" and sde_name == "ddpm":
        pytest.skip("piecewise-constant β: adaptive steps hit every kink; use fixed steps")
    fn, target = CASES[case]
    mf = PRIOR.model_fn(sde, "eps")
    out = jax.jit(lambda k: fn(k, mf, sde, _x_T(sde)))(jax.random.key(1))
    assert bool(out.finite)
    tgt = PRIOR if target == "data" else PRIOR.marginal(sde, sde.t_min)
    _assert_matches(out.x, tgt, f"{case}/{sde_name}")


@pytest.mark.parametrize("sde_name", ["subvp", "cosine_user"])
@pytest.mark.parametrize("case", ["ddim_eta0", "sde_euler", "ode_heun"])
def test_other_sdes(sde_name, case):
    sde = SDES[sde_name]
    fn, target = CASES[case]
    mf = PRIOR.model_fn(sde, "eps")
    out = jax.jit(lambda k: fn(k, mf, sde, _x_T(sde)))(jax.random.key(2))
    tgt = PRIOR if target == "data" else PRIOR.marginal(sde, sde.t_min)
    _assert_matches(out.x, tgt, f"{case}/{sde_name}")


@pytest.mark.parametrize("prediction", ["x0", "score", "v", "velocity"])
def test_prediction_types_give_same_sampler(prediction):
    sde = SDES["vp"]
    x = _x_T(sde)[:256]
    ref = samplers.ddim_sample(jax.random.key(0), PRIOR.model_fn(sde, "eps"), sde, x_init=x, num_steps=50)
    out = samplers.ddim_sample(
        jax.random.key(0), PRIOR.model_fn(sde, prediction), sde, x_init=x, num_steps=50,
        prediction=prediction,
    )
    np.testing.assert_allclose(out.x, ref.x, atol=2e-3, rtol=1e-3)


def test_langevin_corrector_bias_shrinks_with_snr():
    """The corrector's bias is set by snr, not N: it must fall as snr falls (same noise)."""
    sde = SDES["vp"]
    x = _x_T(sde)
    errs = []
    for snr in (0.32, 0.16, 0.04):
        out = samplers.pc_sample(jax.random.key(1), PRIOR.model_fn(sde), sde, x_init=x,
                                 num_steps=500, snr=snr)
        errs.append(exact.moment_zscores(out.x, PRIOR.mean, PRIOR.cov)["cov_err"])
    assert errs[0] > errs[1] > errs[2], errs


def test_prior_sample_path():
    """From the SDE's own prior (not the exact marginal) the error is the prior mismatch only."""
    sde = SDES["vp"]
    out = samplers.ddim_sample(jax.random.key(3), PRIOR.model_fn(sde), sde, (N, 3), num_steps=500)
    _assert_matches(out.x, PRIOR, "ddim from prior")


@pytest.mark.parametrize("solver,steps", [("euler", 1000), ("dopri5", None)])
def test_other_ode_solvers(solver, steps):
    sde = SDES["vp"]
    out = samplers.ode_sample(jax.random.key(0), PRIOR.model_fn(sde), sde, x_init=_x_T(sde),
                              num_steps=steps, solver=solver)
    _assert_matches(out.x, PRIOR.marginal(sde, sde.t_min), f"ode {solver}")


def test_log_likelihood_dequantization_and_bpd():
    sde = SDES["vp"]
    x = jnp.round(PRIOR.sample(jax.random.key(4), 4) * 127.5) / 127.5
    ll = samplers.log_likelihood(jax.random.key(0), PRIOR.model_fn(sde), sde, x, num_steps=50,
                                 solver="heun", dequantize=True)
    assert bool(jnp.all(jnp.isfinite(ll.log_prob)))
    d = 3
    np.testing.assert_allclose(ll.bpd, -ll.log_prob / (d * np.log(2)) + 7.0, rtol=1e-5)
    assert float(samplers.bits_per_dim(jnp.asarray(0.0), 1, (0.0, 1.0))) == pytest.approx(8.0)


def test_pf_ode_is_deterministic_pushforward():
    sde = SDES["vp"]
    mf = PRIOR.model_fn(sde)
    z = jax.random.normal(jax.random.key(0), (N, 3))
    a = samplers.ode_sample(jax.random.key(1), mf, sde, x_init=z, num_steps=100)
    b = samplers.ode_sample(jax.random.key(2), mf, sde, x_init=z, num_steps=100)
    np.testing.assert_array_equal(a.x, b.x)
    # N(0, I) is (up to α_T² Σ ≈ 4e-5 Σ) the marginal at T: it is pushed to p_{t_min}
    _assert_matches(a.x, PRIOR.marginal(sde, sde.t_min), "pf-ode pushforward")


def test_log_likelihood_matches_exact_density():
    sde = SDES["vp"]
    mf = PRIOR.model_fn(sde)
    x = PRIOR.sample(jax.random.key(4), 16)
    target = PRIOR.marginal(sde, sde.t_min).log_prob(x)
    ll = samplers.log_likelihood(jax.random.key(0), mf, sde, x, divergence="exact")
    # prior mismatch at T: the model's p_T is N(0, I) not N(α_T μ, α_T²Σ + σ_T²I) → ~1e-3 nats
    np.testing.assert_allclose(ll.log_prob, target, atol=2e-2)
    # Hutchinson is unbiased: its mean over many probes matches
    many = jax.vmap(lambda k: samplers.log_likelihood(k, mf, sde, x[:2], num_steps=100,
                                                      solver="heun").log_prob)(
        jax.random.split(jax.random.key(1), 256))
    se = many.std(0) / np.sqrt(256)
    assert np.all(np.abs(many.mean(0) - target[:2]) < 5 * se + 2e-2)
    assert ll.bpd.shape == (16,)


def test_gaussian_mixture_mode_weights():
    """2-D mixture, well-separated modes: the fraction of samples per mode matches the weights."""
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
        assert np.all(np.abs(frac - np.asarray(w)) < Z_TOL * se + 0.005), (name, frac)


def _fd_check(loss, theta, eps=1e-2, rtol=2e-2):
    g = jax.grad(loss)(theta)
    fd = (loss(theta + eps) - loss(theta - eps)) / (2 * eps)
    assert np.isfinite(g) and abs(g - fd) <= rtol * abs(fd) + 1e-4, (g, fd)


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


@pytest.mark.parametrize("sampler", ["ddpm", "ddim_eta1"])
def test_known_pixels_are_pasted_and_independent_coordinates_keep_the_prior(sampler):
    """Palette's inference (``known=``): the output equals the known values where the mask is 1;
    with an independent (diagonal) Gaussian prior the unknown coordinates never see the known
    ones, so their law is exactly the prior marginal = the posterior given the known ones."""
    sde = SDES["ddpm"]
    var = np.array([0.5, 1.2, 0.3, 2.0])
    prior = exact.Gaussian(np.array([0.4, -0.7, 1.1, 0.0]), np.diag(var))
    mask = jnp.array([1.0, 0.0, 1.0, 0.0])
    values = jnp.array([2.5, 99.0, -3.0, 99.0])  # what the unknown slots hold must not matter
    kw = dict(x_init=prior.marginal(sde, sde.T).sample(jax.random.key(7), N), num_steps=1000,
              known=(values, mask))
    if sampler == "ddpm":
        out = samplers.ddpm_sample(jax.random.key(1), prior.model_fn(sde), sde, clip_x0=False, **kw)
    else:
        out = samplers.ddim_sample(jax.random.key(1), prior.model_fn(sde), sde, eta=1.0, **kw)
    x = np.asarray(out.x)
    np.testing.assert_array_equal(x[:, [0, 2]], np.broadcast_to([2.5, -3.0], (N, 2)))
    free = [1, 3]
    _assert_matches(x[:, free], exact.Gaussian(np.asarray(prior.mean)[free], np.diag(var[free])),
                    f"{sampler} with known pixels")
    with pytest.raises(ValueError, match="broadcast"):
        samplers.ddpm_sample(jax.random.key(0), prior.model_fn(sde), sde, (2, 4),
                             known=(jnp.zeros(3), mask))
    with pytest.raises(ValueError, match="pair"):
        samplers.ddim_sample(jax.random.key(0), prior.model_fn(sde), sde, (2, 4), known=mask)
