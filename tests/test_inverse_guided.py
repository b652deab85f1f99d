"""Replacement / guided / plug-and-play samplers and guidance: contracts and one exact answer.

Whether each of projection, ILVR, MCG, RePaint, GDP, DiffPIR, classifier and classifier-free
guidance *is* its published algorithm is tested against its own exact output law
(``tests/test_oracle_inverse.py``) and, for the nonlinear updates, a float64 transcription fed
the same noise (``tests/test_transcriptions.py``). Here: classifier guidance with the exact
classifier of a two-component mixture samples the component (z-tests with the Bonferroni
threshold of ``oracle.z_threshold``), agreement across prediction types (float32 rounding),
GDP's official scales and learned-degradation outputs, RePaint's schedule, jit / vmap /
batched y, and argument errors.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import oracle
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

SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
N = 4000


def _flat_model(prior):
    """The exact ``model_fn`` of a vector prior, applied to image batches ``(B, H, W, C)``."""
    base = prior.model_fn(SDE)
    return lambda x, t, c=None: base(x.reshape(x.shape[0], -1), t).reshape(x.shape)


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


# ------------------------------------------------------------------------------ GDP
def test_gdp_task_scales_and_learned_degradation():
    """The official scales; the learned degradation returns one (f, M) per example (its update
    is pinned in test_transcriptions.py); a task name selects its scale."""
    assert GDP_SCALES["sr4"] == 2000 and GDP_SCALES["low_light"] == 80000
    prior = exact.Gaussian(jnp.zeros(12), 0.3 * jnp.eye(12))
    mf = _flat_model(prior)
    y = 0.5 * jax.random.normal(jax.random.key(0), (2, 2, 3))
    out = _run(lambda k: gdp_sample(k, mf, SDE, None, y, None, (3, 2, 2, 3), scale=5.0, num_steps=3,
                                    learn_degradation=True, optimizer=optax.sgd(1.0)))
    assert out.extras["f"].shape == (3,) and out.extras["M"].shape == (3, 2, 2, 1)
    named = jax.jit(lambda k: gdp_sample(k, mf, SDE, operators.Identity((2, 2, 3)), y, 0.0,
                                         (1, 2, 2, 3), scale="sr4", num_steps=3))(jax.random.key(1))
    assert named.x.shape == (1, 2, 2, 3)


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


def test_classifier_guidance_with_exact_classifier_samples_the_component():
    """Scale 1 and the exact ``log p(c | x_t)`` make the guided score the exact score of the
    component: 1000 DDPM steps then sample it (its discretisation error is far below the
    resolution of n = 4000)."""
    gmm, _, gauss = _mixture()
    guided = classifier_guidance(gmm.model_fn(SDE), SDE, _log_responsibility, scale=1.0)
    out = _run(lambda k: samplers.ddpm_sample(k, guided, SDE, (N, 2), clip_x0=False,
                                              cond=jnp.zeros((N,), jnp.int32)), key=0)
    oracle.assert_law(np.asarray(out.x), oracle.Law.of(gauss[0].mean, gauss[0].cov), "component 0")


def test_classifier_guidance_other_prediction_types_agree():
    gmm, _, _ = _mixture()
    x = jax.random.normal(jax.random.key(0), (5, 2))
    c = jnp.array([0, 1, 0, 1, 1])
    ref = jax.jit(classifier_guidance(gmm.model_fn(SDE), SDE, _log_responsibility, 2.0))(x, 0.3, c)
    for p in ("x0", "score", "v", "velocity"):
        g = classifier_guidance(gmm.model_fn(SDE, p), SDE, _log_responsibility, 2.0, prediction=p)
        out = jax.jit(lambda x, g=g, p=p: predictions.convert(g(x, 0.3, c), x, 0.3, SDE, p, "eps"))(x)
        np.testing.assert_allclose(out, ref, atol=1e-4, err_msg=p)


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
    fn = lambda k: projection_sample(k, mf, SDE, op, y, 0.0, (3, 6), num_steps=5, clip_x0=False).x
    keys = jax.random.split(jax.random.key(0), 4)
    batched, one = jax.jit(jax.vmap(fn))(keys), jax.jit(fn)
    # vmap may reorder float32 reductions: 5 steps × K u |x| (K = 2d + 20, u = 2⁻²⁴)
    atol = 5 * (2 * 6 + 20) * 2.0**-24 * float(jnp.abs(batched).max())
    np.testing.assert_allclose(batched[1], one(keys[1]), rtol=0, atol=atol)
    np.testing.assert_array_equal(one(keys[0]), one(keys[0]))  # same key, same samples
    ys = jnp.stack([y, 2 * y, -y])  # one measurement per example
    for sampler in (projection_sample, repaint_sample, mcg_sample):
        kw = {"num_steps": 6, "jump_length": 2} if sampler is repaint_sample else {"num_steps": 5}
        out = _run(lambda k, f=sampler, kw=kw: f(k, mf, SDE, op, ys, 0.0, (3, 6), clip_x0=False, **kw))
        # the last replacement is at α = 1, σ = 0: the observed pixels are y to float32 rounding
        np.testing.assert_allclose(out.x[:, 0::2], ys[:, 0::2], rtol=2.0**-23, atol=0)
    out = _run(lambda k: projection_sample(k, mf, SDE, op, y, 0.0, (3, 6), num_steps=8,
                                           clip_x0=False, save_every=2))
    assert out.trajectory.shape == (5, 3, 6) and out.nfe == 8


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
