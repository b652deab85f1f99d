"""Replacement, guided and plug-and-play posterior samplers, and guidance, against exact answers.

Exact answers (z-tests, ``exact.moment_zscores``, max |z| over all mean and covariance
entries < 5 with n = 4,000; a correct sampler fails by chance with probability < 1e-4):

* replacement samplers (projection, ILVR, MCG, RePaint) are exact posterior samplers when
  the prior makes the observed spectral coefficients of ``A`` independent of the unobserved
  ones (then the unobserved part never needs the measurement): a Gaussian prior built
  block-diagonal in the SVD basis of a 2× block-average SR operator on 4×4×1 images, whose
  pixels are still strongly correlated (|corr| up to 0.77);
* classifier guidance with the exact classifier ``log p(c | x_t)`` (the log responsibility
  of a 2-component mixture under the SDE) at scale 1 samples the component exactly;
  classifier-free guidance with w = 0 and an exact conditional model does too.

Approximate methods (documented tolerances, measured on CPU with the keys below):

* with a correlated prior (|corr| up to 0.95) plain replacement is biased: measured
  mean error 0.46 at posterior std 0.6–1.0 (test: > 0.3). RePaint's resampling removes most
  of it (0.11 with 10 resamplings on a 100-step chain; tolerance 0.2 and at most half the
  replacement error); MCG (paper's squared norm, α = 0.01, 250 steps) also reduces it
  (0.31; tolerance: below replacement's error).
* GDP-x0 (s = 2 for D = 6, i.e. s/(2D) ≈ 0.17 per step): sample mean within 0.5 posterior
  std of the exact posterior mean (measured 0.03), RMS data residual < 0.05 (0.016); a
  larger s fits the data better for GDP-x0 and GDP-x_t (GDP-x_t, acting on x_t only, stays
  0.3 std off in the mean).
* DiffPIR (defaults ζ = 0.1, λ = 7, σ_y = 0.05, dense 2×6 operator): mean within 0.6
  posterior std (measured 0.16), RMS residual < 3 σ_y (measured 0.057 ≈ 1.1 σ_y).

RePaint's covariance is slightly shrunk by its down/up cycles (the DDPM "fixed small"
variance misses part of the true reverse variance and each cycle loses a little): with the
official 250/10/10 schedule z_cov ≈ 4.4 at n = 4,000, so the exact test uses 3 resamplings.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxir import exact, operators, predictions, samplers, schedules, sdes
from jaxir.inverse import (
    GDP_SCALES,
    classifier_free_guidance,
    classifier_guidance,
    diffpir_sample,
    gdp_sample,
    ilvr_sample,
    mcg_sample,
    projection_sample,
    repaint_sample,
    repaint_schedule,
)
from jaxir.inverse._diffpir import _fourier_prox

SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
N = 4000
Z_TOL = 5.0


def _flat_model(prior):
    """The exact ``model_fn`` of a vector prior, applied to image batches ``(B, H, W, C)``."""
    base = prior.model_fn(SDE)
    return lambda x, t, c=None: base(x.reshape(x.shape[0], -1), t).reshape(x.shape)


def _matrix(fn, in_shape):
    """Dense matrix of a linear single-example map (columns = images of basis vectors)."""
    d = int(np.prod(in_shape))
    cols = jax.vmap(lambda e: fn(e.reshape(in_shape)).reshape(-1))(jnp.eye(d))
    return np.asarray(cols).T


@functools.cache
def _spectral_problem():
    """SR×2 on 4×4×1 with a prior independent across observed / unobserved SVD coefficients."""
    op = operators.SuperResolution((4, 4, 1), 2)
    d = 16
    V = _matrix(op.V, (d,))  # columns V e_i
    rng = np.random.default_rng(1)

    def spd(n, s):
        L = rng.normal(size=(n, n)) * s
        return L @ L.T + 0.1 * np.eye(n)

    spec = np.zeros((d, d))
    spec[:4, :4], spec[4:, 4:] = spd(4, 0.6), spd(12, 0.3)
    prior = exact.Gaussian(rng.normal(size=d) * 0.3, V @ spec @ V.T)
    y = op.A(prior.sample(jax.random.key(5), 1)[0].reshape(4, 4, 1))
    post = prior.posterior(_matrix(op.A, (4, 4, 1)), 0.0, y.reshape(-1))
    return op, prior, y, post


@functools.cache
def _correlated_problem():
    """Inpainting of 3 of 6 coordinates under a strongly correlated Gaussian prior."""
    d = 6
    rng = np.random.default_rng(0)
    L = rng.normal(size=(d, d)) * 0.5
    prior = exact.Gaussian(rng.normal(size=d) * 0.5, L @ L.T + 0.2 * np.eye(d))
    op = operators.Inpainting(jnp.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    y = op.A(prior.sample(jax.random.key(11), 1)[0])
    post = prior.posterior(np.eye(d)[0::2], 0.0, y[0::2])
    return op, prior, y, post


def _run(fn, key=2):
    out = jax.jit(fn)(jax.random.key(key))
    assert bool(out.finite)
    return out


# ------------------------------------------------------------------------------ exact cases
EXACT = {
    "projection": lambda k, mf, op, y: projection_sample(k, mf, SDE, op, y, 0.0, (N, 4, 4, 1), num_steps=250, clip_x0=False),
    "ilvr": lambda k, mf, op, y: ilvr_sample(k, mf, SDE, op, y, 0.0, (N, 4, 4, 1), num_steps=250, clip_x0=False),
    "mcg": lambda k, mf, op, y: mcg_sample(k, mf, SDE, op, y, 0.0, (N, 4, 4, 1), num_steps=250, clip_x0=False),
    "repaint": lambda k, mf, op, y: repaint_sample(k, mf, SDE, op, y, 0.0, (N, 4, 4, 1), jump_n_sample=3, clip_x0=False),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_replacement_samplers_exact_when_observed_part_is_independent(name):
    op, prior, y, post = _spectral_problem()
    mf = _flat_model(prior)
    out = _run(lambda k: EXACT[name](k, mf, op, y))
    np.testing.assert_allclose(jax.vmap(op.A)(out.x), jnp.broadcast_to(y, (N, 2, 2, 1)), atol=1e-5)
    z = exact.moment_zscores(np.asarray(out.x).reshape(N, -1), post.mean, post.cov)
    assert z["z_mean"] < Z_TOL and z["z_cov"] < Z_TOL, (name, z)


def test_replacement_is_biased_and_resampling_or_mcg_reduce_it():
    op, prior, y, post = _correlated_problem()
    mf = prior.model_fn(SDE)
    sh = (N, 6)

    def mean_err(out):
        np.testing.assert_allclose(out.x[:, 0::2], jnp.broadcast_to(y[0::2], (N, 3)), atol=1e-6)
        return float(np.max(np.abs(np.asarray(out.x).mean(0) - np.asarray(post.mean))))

    proj = mean_err(_run(lambda k: projection_sample(k, mf, SDE, op, y, 0.0, sh, num_steps=250, clip_x0=False)))
    rp1 = mean_err(_run(lambda k: repaint_sample(k, mf, SDE, op, y, 0.0, sh, num_steps=100, jump_n_sample=1, clip_x0=False)))
    rp10 = mean_err(_run(lambda k: repaint_sample(k, mf, SDE, op, y, 0.0, sh, num_steps=100, jump_n_sample=10, clip_x0=False)))
    mcg = mean_err(_run(lambda k: mcg_sample(k, mf, SDE, op, y, 0.0, sh, num_steps=250, scale=0.01, norm="squared", clip_x0=False)))
    assert proj > 0.3 and rp1 > 0.3, (proj, rp1)  # replacement alone: biased (measured 0.43)
    assert rp10 < 0.2 and rp10 < 0.5 * proj, (rp10, proj)
    assert mcg < proj, (mcg, proj)


# ------------------------------------------------------------------------------ GDP
def test_gdp_x0_approaches_posterior_mean_and_data():
    op, prior, y, post = _correlated_problem()
    mf = prior.model_fn(SDE)
    n = 1000
    sd = np.sqrt(np.maximum(np.diag(np.asarray(post.cov)), 1e-6))
    stats = {}
    for guidance in ("x0", "xt"):
        for s in (0.5, 2.0):
            out = _run(lambda k, s=s, g=guidance: gdp_sample(k, mf, SDE, op, y, 0.0, (n, 6), scale=s,
                                                             guidance=g, clip_x0=False))
            resid = float(jnp.sqrt(jnp.mean((out.x[:, 0::2] - y[0::2]) ** 2)))
            rel = np.abs(np.asarray(out.x).mean(0) - np.asarray(post.mean))[1::2] / sd[1::2]
            stats[guidance, s] = (resid, float(rel.max()))
    assert stats["x0", 2.0][0] < 0.05 and stats["x0", 2.0][1] < 0.5, stats
    for g in ("x0", "xt"):  # a larger scale fits the data better
        assert stats[g, 2.0][0] < stats[g, 0.5][0], stats


def test_gdp_task_scales_and_learned_degradation():
    assert GDP_SCALES["sr4"] == 2000 and GDP_SCALES["low_light"] == 80000
    prior = exact.Gaussian(jnp.zeros(12), 0.3 * jnp.eye(12))
    mf = _flat_model(prior)
    x_true = 0.5 * jax.random.normal(jax.random.key(0), (2, 2, 3))
    y = 2.0 * (0.3 * (x_true + 1.0) / 2.0 + 0.05) - 1.0  # (y+1)/2 = f (x+1)/2 + M, f = 0.3
    out = _run(lambda k: gdp_sample(k, mf, SDE, None, y, None, (3, 2, 2, 3), scale=5.0,
                                    learn_degradation=True, optimizer=optax.sgd(1.0)))
    f, M = out.extras["f"], out.extras["M"]
    assert f.shape == (3,) and M.shape == (3, 2, 2, 1)
    fit = f[:, None, None, None] * (out.x + 1.0) / 2.0 + M - (y + 1.0) / 2.0
    assert float(jnp.sqrt(jnp.mean(fit**2))) < 0.05
    # a task name picks the official scale (3 steps: only the code path is checked)
    named = jax.jit(lambda k: gdp_sample(k, mf, SDE, operators.Identity((2, 2, 3)), y, 0.0,
                                         (1, 2, 2, 3), scale="sr4", num_steps=3))(jax.random.key(1))
    assert named.x.shape == (1, 2, 2, 3)


# ------------------------------------------------------------------------------ DiffPIR
def test_diffpir_close_to_posterior_and_solvers_agree():
    _, prior, _, _ = _correlated_problem()
    mf = prior.model_fn(SDE)
    rng = np.random.default_rng(3)
    A = jnp.asarray(rng.normal(size=(2, 6)) / np.sqrt(6), jnp.float32)
    op = operators.DenseMatrix(A)
    sigma_y = 0.05
    x_star = prior.sample(jax.random.key(11), 1)[0]
    y = A @ x_star + sigma_y * jax.random.normal(jax.random.key(3), (2,))
    post = prior.posterior(A, sigma_y, y)
    n = 2000
    out = _run(lambda k: diffpir_sample(k, mf, SDE, op, y, sigma_y, (n, 6), clip_x0=False))
    sd = np.sqrt(np.diag(np.asarray(post.cov)))
    rel = np.abs(np.asarray(out.x).mean(0) - np.asarray(post.mean)) / sd
    resid = float(jnp.sqrt(jnp.mean((out.x @ A.T - y) ** 2)))
    assert rel.max() < 0.6 and resid < 3 * sigma_y, (rel, resid)
    # the gradient solver of the data step converges to the closed form (same noise)
    small = lambda solver, **kw: _run(lambda k: diffpir_sample(
        k, mf, SDE, op, y, sigma_y, (8, 6), num_steps=20, clip_x0=False, solver=solver, **kw), key=4)
    np.testing.assert_allclose(small("grad", num_grad_steps=300).x, small("svd").x, atol=2e-3)


def test_diffpir_fourier_closed_form_for_circular_blur():
    k1 = operators.gaussian_kernel(3, 1.0)
    op = operators.CircularBlur((4, 4, 1), jnp.outer(k1, k1))
    B = _matrix(op.A, (4, 4, 1))
    y = op.A(0.3 * jax.random.normal(jax.random.key(0), (4, 4, 1)))
    z0 = jax.random.normal(jax.random.key(1), (2, 4, 4, 1))
    for rho in (1e-3, 0.5):  # argmin ‖y − Bz‖² + ρ‖z − z0‖² = (BᵀB + ρI)⁻¹(Bᵀy + ρ z0)
        dense = np.linalg.solve(B.T @ B + rho * np.eye(16),
                                (B.T @ np.asarray(y).reshape(-1))[:, None] + rho * np.asarray(z0).reshape(2, 16).T)
        got = _fourier_prox(op, z0, jnp.broadcast_to(y, (2, 4, 4, 1)), rho)
        np.testing.assert_allclose(np.asarray(got).reshape(2, 16), dense.T, atol=2e-4)
    prior = exact.Gaussian(jnp.zeros(16), 0.5 * jnp.eye(16))
    out = _run(lambda k: diffpir_sample(k, _flat_model(prior), SDE, op, y, 0.05, (4, 4, 4, 1),
                                        num_steps=20, clip_x0=False))
    assert out.x.shape == (4, 4, 4, 1)


# ------------------------------------------------------------------------------ ILVR options
def test_ilvr_conditioning_range_and_bicubic():
    op, prior, y, _ = _spectral_problem()
    mf = _flat_model(prior)
    sh = (64, 4, 4, 1)
    late = _run(lambda k: ilvr_sample(k, mf, SDE, op, y, 0.0, sh, num_steps=100, clip_x0=False,
                                      t_stop=0.5))
    err = jnp.abs(jax.vmap(op.A)(late.x) - y)
    assert float(err.max()) > 1e-3  # the last half of the chain is unconditioned
    bic = _run(lambda k: ilvr_sample(k, mf, SDE, op, y, 0.0, sh, num_steps=100, clip_x0=False,
                                     upsample="bicubic"))
    # bicubic up is not a projection: the low-pass of the result is close to, not equal to, y
    assert float(jnp.abs(jax.vmap(op.A)(bic.x) - y).mean()) < float(err.mean())


# ------------------------------------------------------------------------------ guidance
@functools.cache
def _mixture():
    w = jnp.array([0.6, 0.4])
    means = jnp.array([[-1.5, 0.5], [1.5, -0.5]])
    covs = jnp.array([[[0.6, 0.3], [0.3, 0.5]], [[0.4, -0.1], [-0.1, 0.7]]])
    comps = [exact.GaussianMixture(jnp.ones(1), means[k : k + 1], covs[k : k + 1]) for k in range(2)]
    return exact.GaussianMixture(w, means, covs), comps, [exact.Gaussian(means[k], covs[k]) for k in range(2)]


def _log_responsibility(x, t, c):
    """Exact ``log p(c | x_t)`` of the mixture: log w_c + log N_c(x_t) − log p_t(x_t)."""
    gmm, comps, _ = _mixture()
    logn = jnp.stack([comp.noised_log_prob(x, t, SDE) for comp in comps])
    return jax.nn.log_softmax(jnp.log(gmm.weights) + logn)[c]


@pytest.mark.parametrize("label", [0, 1])
def test_classifier_guidance_with_exact_classifier_samples_the_component(label):
    gmm, _, gauss = _mixture()
    guided = classifier_guidance(gmm.model_fn(SDE), SDE, _log_responsibility, scale=1.0)
    out = _run(lambda k: samplers.ddpm_sample(k, guided, SDE, (N, 2), clip_x0=False,
                                              cond=jnp.full((N,), label)), key=label)
    z = exact.moment_zscores(out.x, gauss[label].mean, gauss[label].cov)
    assert z["z_mean"] < Z_TOL and z["z_cov"] < Z_TOL, z


def test_classifier_guidance_other_prediction_types_agree():
    gmm, _, _ = _mixture()
    x = jax.random.normal(jax.random.key(0), (5, 2))
    c = jnp.array([0, 1, 0, 1, 1])
    ref = jax.jit(classifier_guidance(gmm.model_fn(SDE), SDE, _log_responsibility, 2.0))(x, 0.3, c)
    for p in ("x0", "score", "v", "velocity"):
        g = classifier_guidance(gmm.model_fn(SDE, p), SDE, _log_responsibility, 2.0, prediction=p)
        out = jax.jit(lambda x, g=g, p=p: predictions.convert(g(x, 0.3, c), x, 0.3, SDE, p, "eps"))(x)
        np.testing.assert_allclose(out, ref, atol=1e-4, err_msg=p)


def test_classifier_free_guidance_w0_exact_and_w_positive_sharpens():
    gmm, _, gauss = _mixture()
    mix, c0, c1 = gmm.model_fn(SDE), gauss[0].model_fn(SDE), gauss[1].model_fn(SDE)

    def model(x, t, c):  # exact conditional eps for c in {0, 1}, unconditional for c = -1
        cond_eps = jnp.where((c == 0)[:, None], c0(x, t), c1(x, t))
        return jnp.where((c < 0)[:, None], mix(x, t), cond_eps)

    stats = {}
    for w in (0.0, 2.0):
        guided = classifier_free_guidance(model, w, null_label=-1)
        out = _run(lambda k, g=guided: samplers.ddpm_sample(k, g, SDE, (N, 2), clip_x0=False,
                                                            cond=jnp.zeros((N,), jnp.int32)), key=3)
        resp = float(gmm.responsibilities(out.x, 0.0, SDE)[:, 0].mean())
        push = float(((out.x - gmm.means[0]) @ (gmm.means[0] - gmm.means[1])).mean())
        stats[w] = (resp, push, out.x)
    z = exact.moment_zscores(stats[0.0][2], gauss[0].mean, gauss[0].cov)
    assert z["z_mean"] < Z_TOL and z["z_cov"] < Z_TOL, z
    # w > 0 sharpens p(x|c)^{1+w} / p(x)^w: more confidently class 0, pushed away from class 1
    assert stats[2.0][0] > stats[0.0][0] and stats[2.0][1] > stats[0.0][1] + 0.2, stats


# ------------------------------------------------------------------------------ contracts
def test_repaint_schedule_walk():
    walk = repaint_schedule()  # the paper's 250 / 10 / 10
    assert walk[0] == 249 and walk[-1] == -1
    assert set(np.abs(np.diff(walk)).tolist()) == {1}
    assert len(walk) - 1 == 4570 and int(np.sum(np.diff(walk) < 0)) == 2410
    assert repaint_schedule(5, 10, 10).tolist() == [4, 3, 2, 1, 0, -1]  # no room to jump
    with pytest.raises(ValueError, match="positive"):
        repaint_schedule(10, 0, 3)


def test_jit_vmap_batched_y_and_determinism():
    op, prior, y, _ = _correlated_problem()
    mf = prior.model_fn(SDE)
    fn = lambda k: projection_sample(k, mf, SDE, op, y, 0.0, (3, 6), num_steps=30, clip_x0=False).x
    keys = jax.random.split(jax.random.key(0), 4)
    batched, one = jax.jit(jax.vmap(fn))(keys), jax.jit(fn)
    np.testing.assert_allclose(batched[1], one(keys[1]), atol=1e-5)
    np.testing.assert_array_equal(one(keys[0]), one(keys[0]))  # same key, same samples
    ys = jnp.stack([y, 2 * y, -y])  # one measurement per example
    for sampler in (projection_sample, repaint_sample, mcg_sample):
        kw = {"num_steps": 20, "jump_length": 5} if sampler is repaint_sample else {"num_steps": 20}
        out = _run(lambda k, f=sampler, kw=kw: f(k, mf, SDE, op, ys, 0.0, (3, 6), clip_x0=False, **kw))
        np.testing.assert_allclose(out.x[:, 0::2], ys[:, 0::2], atol=1e-6)
    out = _run(lambda k: projection_sample(k, mf, SDE, op, y, 0.0, (3, 6), num_steps=20,
                                           clip_x0=False, save_every=5))
    assert out.trajectory.shape == (5, 3, 6) and out.nfe == 20


def test_bad_arguments_raise_value_errors():
    op, prior, y, _ = _correlated_problem()
    mf = prior.model_fn(SDE)
    k = jax.random.key(0)
    blur = operators.CircularBlur((4, 4, 1), jnp.ones((3, 3)) / 9)
    for sampler in (projection_sample, repaint_sample, mcg_sample, ilvr_sample, diffpir_sample):
        with pytest.raises(ValueError, match="shape"):
            sampler(k, mf, SDE, op, y, 0.0, (3, 5))
        with pytest.raises(ValueError, match="y must have shape"):
            sampler(k, mf, SDE, op, y[:4], 0.0, (3, 6))
    for sampler in (projection_sample, repaint_sample, mcg_sample):
        with pytest.raises(ValueError, match="SVD"):
            sampler(k, mf, SDE, blur, jnp.zeros((4, 4, 1)), 0.0, (2, 4, 4, 1))
    with pytest.raises(ValueError, match="norm"):
        mcg_sample(k, mf, SDE, op, y, 0.0, (3, 6), norm="l1")
    with pytest.raises(ValueError, match="upsample"):
        ilvr_sample(k, mf, SDE, op, y, 0.0, (3, 6), upsample="lanczos")
    with pytest.raises(ValueError, match="image shapes"):
        ilvr_sample(k, mf, SDE, op, y, 0.0, (3, 6), upsample="bicubic")
    with pytest.raises(ValueError, match="guidance"):
        gdp_sample(k, mf, SDE, op, y, 0.0, (3, 6), scale=1.0, guidance="eps")
    with pytest.raises(ValueError, match="scale"):
        gdp_sample(k, mf, SDE, op, y, 0.0, (3, 6), scale="denoise")
    with pytest.raises(ValueError, match="op is required"):
        gdp_sample(k, mf, SDE, None, y, 0.0, (3, 6), scale=1.0)
    with pytest.raises(ValueError, match="learn_degradation"):
        gdp_sample(k, mf, SDE, None, y[:4], 0.0, (3, 6), scale=1.0, learn_degradation=True)
    with pytest.raises(ValueError, match="skip_type"):
        diffpir_sample(k, mf, SDE, op, y, 0.0, (3, 6), skip_type="log")
    with pytest.raises(ValueError, match="solver"):
        diffpir_sample(k, mf, SDE, op, y, 0.0, (3, 6), solver="fft")
    gmm, _, _ = _mixture()
    with pytest.raises(ValueError, match="cond"):
        classifier_guidance(gmm.model_fn(SDE), SDE, _log_responsibility)(jnp.zeros((2, 2)), 0.5)
    with pytest.raises(ValueError, match="cond"):
        classifier_free_guidance(gmm.model_fn(SDE), 1.0, -1)(jnp.zeros((2, 2)), 0.5)
