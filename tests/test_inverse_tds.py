"""TDS (Wu et al., NeurIPS 2023) against exact answers, tolerances derived.

TDS targets ``p_chain(x_{0:n}) p(y | x_0)``, so a run's weighted cloud converges, as the number
of particles N grows, to the posterior of the chain's own prior ``p_chain(x_0 | y)`` (particle
CLT: error variance O(1/N), bias O(1/N)).

* Gaussian prior: the chain (DDPM, exact affine denoiser) maps ``N(0, I)`` to a Gaussian
  ``p_chain(x_0)`` (float64 moment propagation, :mod:`oracle`), and conditioning it on
  ``y = A x + σ_y ε`` is closed form. Over R = 128 runs at N = 1024 (N ≥ 8R: the O(1/N) bias
  is a fraction ≤ √(R/N) of a standard error) the run-average of each cloud mean/covariance
  entry is Student-t tested (Bonferroni, 1e-5), and the between-run spread is F-tested to
  shrink by the 1/N law from N = 64 (ratio 16).
* Gaussian mixture with a well-separated mode the prior nearly ignores (weight 0.1) and the
  measurement favours: the chain posterior is estimated by self-normalised importance
  sampling of a float64 NumPy run of the same chain (400,000 prior draws weighted by the
  likelihood; its own standard error enters the test). TDS's run-averaged estimates of the
  mode's mass and of the posterior mean match it; the twisted proposal alone (N = 1, no
  weights: guidance) is shown many standard errors off, so the test can fail.
* A float64 NumPy transcription of the whole run (twist, its gradient through the affine
  denoiser, clipped twisted proposal, weights, systematic resampling, evidence, pick), fed
  jaxir's replayed draws, reproduces it to float32 rounding.

Time: ~35 s of CPU for the file (100-step runs of 131,072 particles with a VJP per step).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import oracle
import pytest
from scipy import stats

from jaxir import exact, operators, schedules, sdes
from jaxir.inverse._tds import tds_sample

SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
ALPHA = 1e-5


def _coeffs(n):
    grid = oracle.leading_timesteps(1000, n)
    abar = np.concatenate([oracle.alphas_cumprod(oracle.linear_betas())[grid], [1.0]])
    return np.sqrt(abar), np.sqrt(1.0 - abar)


def _ddpm(al, sg, j, eta=1.0):
    """``(c², k)`` of DDIM move ``j`` (η = 1: DDPM's β̃)."""
    c2 = eta**2 * sg[j + 1] ** 2 / sg[j] ** 2 * (1 - al[j] ** 2 / al[j + 1] ** 2)
    return c2, math.sqrt(max(sg[j + 1] ** 2 - c2, 0.0)) / sg[j]


def chain_posterior(mu, Sig, A, y, sy, n):
    """``p_chain(x_0 | y)``: the DDPM chain's Gaussian output law conditioned on y (float64)."""
    d = len(mu)
    al, sg = _coeffs(n)
    law = oracle.Law.of(np.zeros(d), np.eye(d))
    for j in range(n):
        c2, k = _ddpm(al, sg, j)
        J, b = oracle.gaussian_denoiser(mu, Sig, al[j], sg[j])
        P = al[j + 1] * J + k * (np.eye(d) - al[j] * J)
        law = law.push(P, al[j + 1] * b - k * al[j] * b, math.sqrt(c2) * np.eye(d) if c2 > 0 else None)
    return oracle.gaussian_posterior(law.mean, law.cov, A, sy, y)


def _run(model_fn, op, y, sy, key, runs, particles, n, **kw):
    d = op.x_shape[0]
    out = jax.jit(lambda k: tds_sample(k, model_fn, SDE, op, jnp.asarray(y, jnp.float32), sy,
                                       (runs, d), num_particles=particles, num_steps=n,
                                       clip_x0=False, return_particles=True, **kw))(key)
    xs = np.asarray(out.extras["particles"], np.float64)
    w = np.asarray(jax.nn.softmax(out.extras["log_weights"], -1), np.float64)
    return xs, w, out


# ---- Gaussian: the cloud against the chain posterior ------------------------------------------


def _cloud_stats(xs, w, post):
    mean = np.einsum("rn,rnd->rd", w, xs)
    dev = xs - post.mean
    cov = np.einsum("rn,rnd,rne->rde", w, dev, dev)
    iu = np.triu_indices(xs.shape[-1])
    return mean - post.mean, (cov - post.cov)[:, iu[0], iu[1]]


@pytest.mark.parametrize("sy", [0.3, 1.0])
def test_tds_cloud_converges_to_the_chain_posterior(sy):
    """100 DDPM steps and the paper's twist (``tausq=None``): in the CLT regime (measured
    sd·√N of the cloud-mean error 2.3 → 2.7 at σ_y = 0.3 and 1.7 → 1.9 at σ_y = 1 from N = 64
    to 1024). The F band assumes normal errors; it is applied at σ_y = 1."""
    n, runs = 100, 128
    mu, Sig, A, y = oracle.dense_problem(0, 6, 3, sy)
    post = chain_posterior(mu, Sig, A, y, sy, n)
    model_fn = exact.Gaussian(jnp.asarray(mu, jnp.float32), jnp.asarray(Sig, jnp.float32)).model_fn(SDE)
    op = operators.DenseMatrix(jnp.asarray(A, jnp.float32))
    xs, w, _ = _run(model_fn, op, y, sy, jax.random.key(0), runs, 1024, n, tausq=None)
    em, ec = _cloud_stats(xs, w, post)
    e = np.concatenate([em, ec], 1)
    t = e.mean(0) / (e.std(0, ddof=1) / math.sqrt(runs))
    thr = float(stats.t.isf(ALPHA / (2 * e.shape[1]), runs - 1))
    assert np.abs(t).max() < thr, f"max |t| {np.abs(t).max():.2f} >= {thr:.2f}"
    if sy < 1.0:
        return
    xs, w, _ = _run(model_fn, op, y, sy, jax.random.key(1), runs, 64, n, tausq=None)
    ratio = _cloud_stats(xs, w, post)[0].var(0, ddof=1) / em.var(0, ddof=1)
    f_hi = float(stats.f.isf(ALPHA / (2 * 6), runs - 1, runs - 1))
    assert np.all(ratio > 16 / f_hi) and np.all(ratio < 16 * f_hi), (ratio, f_hi)


# ---- a Gaussian mixture with a separated mode -------------------------------------------------

MEANS = np.array([[-4.0, 0.0], [4.0, 0.0]])
WEIGHTS = np.array([0.9, 0.1])
A_GMM, Y_GMM, SY_GMM = np.array([[1.0, 0.5]]), np.array([1.5]), 1.0


def _gmm_denoiser(x, a, s):
    """``E[x_0 | a x_0 + s ε = x]`` for the identity-covariance mixture (float64, ``x`` (M, 2))."""
    c = a * a + s * s
    logits = np.log(WEIGHTS) - ((x[:, None] - a * MEANS) ** 2).sum(-1) / (2 * c)
    r = np.exp(logits - logits.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    return (a * x + s * s * (r @ MEANS)) / c


def _is_reference(n, m, seed=0):
    """Chain posterior moments of ``f = (1[x_1 > 0], x_1, x_2)`` by self-normalised importance
    sampling of ``m`` float64 chain draws, with their delta-method standard errors."""
    rng = np.random.default_rng(seed)
    al, sg = _coeffs(n)
    x = rng.standard_normal((m, 2))
    for j in range(n):
        c2, k = _ddpm(al, sg, j)
        x0 = _gmm_denoiser(x, al[j], sg[j])
        x = al[j + 1] * x0 + k * (x - al[j] * x0) + math.sqrt(c2) * rng.standard_normal((m, 2))
    logw = -0.5 * ((Y_GMM - x @ A_GMM.T) ** 2).sum(-1) / SY_GMM**2
    w = np.exp(logw - logw.max())
    w /= w.sum()
    f = np.stack([(x[:, 0] > 0).astype(float), x[:, 0], x[:, 1]], 1)
    est = w @ f
    se = np.sqrt(((w[:, None] * (f - est)) ** 2).sum(0))
    return est, se


def test_tds_gmm_recovers_the_separated_mode():
    n, runs, particles = 100, 64, 512
    ref, ref_se = _is_reference(n, 400_000)
    assert 0.9 < ref[0] < 0.99, ref  # the measurement favours the mode of prior weight 0.1
    gm = exact.GaussianMixture(WEIGHTS, MEANS, np.ones((2, 2)))
    op = operators.DenseMatrix(jnp.asarray(A_GMM, jnp.float32))

    def estimates(particles, key):
        xs, w, _ = _run(gm.model_fn(SDE), op, Y_GMM, SY_GMM, key, runs, particles, n, tausq=None)
        f = np.stack([(xs[..., 0] > 0).astype(float), xs[..., 0], xs[..., 1]], -1)
        return np.einsum("rn,rnk->rk", w, f)

    thr = float(stats.t.isf(ALPHA / (2 * 3), runs - 1))
    e = estimates(particles, jax.random.key(2))
    se = np.sqrt(e.var(0, ddof=1) / runs + ref_se**2)
    z = (e.mean(0) - ref) / se
    assert np.abs(z).max() < thr, (e.mean(0), ref, z)
    # the twisted proposal alone (N = 1, no weights: guidance) would fail this test by far
    g = estimates(1, jax.random.key(3))
    assert np.abs((g.mean(0) - ref) / se).max() > 3 * thr, (g.mean(0), ref, se)


# ---- transcription --------------------------------------------------------------------------


def _transcribe(op, mu, Sig, y, sy, n, key, B, N, tausq, clip):
    """float64 NumPy TDS on jaxir's replayed draws (its documented key schedule)."""
    f64 = lambda a: np.asarray(a, np.float64)
    vt, s = f64(op.vt), f64(op.singular_values)
    D, dy = len(s), len(y)
    obs = np.arange(D) < dy
    ybar = np.concatenate([(f64(op.u).T @ y) / s[:dy], np.zeros(D - dy)])
    vy = sy**2 / np.where(obs, s, 1.0) ** 2
    al, sg = _coeffs(n)
    vs2 = (sg / al) ** 2
    r2 = vs2 * tausq / (vs2 + tausq)

    def twist(x, j):  # log p̃_j, ∇_x log p̃_j, x̂_0 at x (M, D)
        J, b = oracle.gaussian_denoiser(mu, Sig, al[j], sg[j])
        x0 = x @ J.T + b
        v = vy + r2[j]
        e = (ybar - x0 @ vt.T)
        lt = np.where(obs, -0.5 * (e**2 / v + np.log(2 * np.pi * v)), 0).sum(-1)
        return lt, (np.where(obs, e / v, 0) @ vt) @ J, x0

    def resample(k, logw, *arrs):
        w = np.exp(logw - logw.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        u = (f64(jax.random.uniform(k, (B, 1))) + np.arange(N)) / N
        cdf = np.cumsum(w, 1)
        anc = np.stack([np.minimum(np.searchsorted(cdf[i], u[i] * cdf[i, -1]), N - 1) for i in range(B)])
        marg = np.abs(u[:, :, None] - cdf[:, None, :]).min()
        inc = np.log(np.exp(logw - logw.max(1, keepdims=True)).mean(1)) + logw.max(1)
        return [np.take_along_axis(a, anc.reshape(B, N, *(1,) * (a.ndim - 2)), 1) for a in arrs], inc, marg

    ki, ks, kf = jax.random.split(key, 3)
    x = f64(jax.random.normal(ki, (B, N, D)))
    lt, g, x0 = (v.reshape(B, N, *v.shape[1:]) for v in twist(x.reshape(-1, D), 0))
    logw, logz, margin = lt.copy(), np.zeros(B), np.inf
    keys = jax.random.split(ks, n)
    for j in range(n - 1):
        k_res, k_noise = jax.random.split(keys[j])
        (x, x0, lt, g), inc, mg = resample(k_res, logw, x, x0, lt, g)
        logw, logz, margin = np.zeros((B, N)), logz + inc, min(margin, mg)
        c2, k = _ddpm(al, sg, j)
        m = al[j + 1] * x0 + k * (x - al[j] * x0)
        x0t = np.clip(x0 + vs2[j] * al[j] * g, *clip)
        mt = al[j + 1] * x0t + k * (x - al[j] * x0t)
        xn = mt + math.sqrt(c2) * f64(jax.random.normal(k_noise, (B, N, D)))
        ltn, g, x0 = (v.reshape(B, N, *v.shape[1:]) for v in twist(xn.reshape(-1, D), j + 1))
        logw = logw + (((xn - mt) ** 2).sum(-1) - ((xn - m) ** 2).sum(-1)) / (2 * c2) + ltn - lt
        x, lt = xn, ltn
    (x, x0, lt), inc, mg = resample(jax.random.split(keys[-1])[0], logw, x, x0, lt)
    logz, margin = logz + inc, min(margin, mg)
    e = ybar - x0 @ vt.T
    logw = np.where(obs, -0.5 * (e**2 / vy + np.log(2 * np.pi * vy)), 0).sum(-1) - lt
    logz = logz + np.log(np.exp(logw - logw.max(1, keepdims=True)).mean(1)) + logw.max(1)
    return x0, logw, logz, margin


def test_tds_transcription():
    """Budget: O(10²) float32 operations per step on O(1) values over 5 steps (affine maps of
    norm ≤ 2, the twist's 1/v ≤ 1/σ_y² · s² ≈ 30 on the log-weights): particles ≲ 1e-4,
    log-weights ≲ 30 · 1e-4; tolerances 5e-4 and 5e-3. The log-evidence sums terms of size
    |log p̃| ~ 10³ (≈ −7000 here): relative tolerance 1e-5 (≈ 170 float32 unit roundoffs).
    Resampling margins asserted > 1e-4."""
    n, B, N, sy, tq = 5, 3, 8, 0.3, 0.12
    mu, Sig, A, y = oracle.dense_problem(1, 6, 3, sy)
    model_fn = exact.Gaussian(jnp.asarray(mu, jnp.float32), jnp.asarray(Sig, jnp.float32)).model_fn(SDE)
    op = operators.DenseMatrix(jnp.asarray(A, jnp.float32))
    key = jax.random.key(5)
    out = jax.jit(lambda k: tds_sample(k, model_fn, SDE, op, jnp.asarray(y, jnp.float32), sy,
                                       (B, 6), num_particles=N, num_steps=n, tausq=tq,
                                       return_particles=True))(key)
    x0, logw, logz, margin = _transcribe(op, mu, Sig, y, sy, n, key, B, N, tq, (-1.0, 1.0))
    assert margin > 1e-4, margin
    np.testing.assert_allclose(np.asarray(out.extras["particles"]), x0, atol=5e-4)
    np.testing.assert_allclose(np.asarray(out.extras["log_weights"]), logw, atol=5e-3)
    np.testing.assert_allclose(np.asarray(out.extras["log_evidence"]), logz, rtol=1e-5)


def test_tds_vmap_and_errors():
    mu, Sig, A, y = oracle.dense_problem(0, 6, 3, 0.3)
    model_fn = exact.Gaussian(jnp.asarray(mu, jnp.float32), jnp.asarray(Sig, jnp.float32)).model_fn(SDE)
    op = operators.DenseMatrix(jnp.asarray(A, jnp.float32))
    run = lambda k: tds_sample(k, model_fn, SDE, op, jnp.asarray(y, jnp.float32), 0.3, (2, 6),
                               num_particles=4, num_steps=3).x
    keys = jax.random.split(jax.random.key(0), 3)
    one = jax.jit(run)
    np.testing.assert_allclose(jax.jit(jax.vmap(run))(keys), np.stack([one(k) for k in keys]),
                               atol=1e-5)
    for kw, arg in ((dict(num_particles=0), "num_particles"), (dict(eta=0.0), "eta"),
                    (dict(tausq=-1.0), "tausq"), (dict(resampling="x"), "resampling"),
                    (dict(num_steps=1), "num_steps")):
        with pytest.raises(ValueError, match=f"tds_sample: {arg}"):
            tds_sample(jax.random.key(0), model_fn, SDE, op, y, 0.3, (2, 6), **kw)
    with pytest.raises(ValueError, match="tds_sample: sigma_y"):
        tds_sample(jax.random.key(0), model_fn, SDE, op, y, 0.0, (2, 6))
    blur = operators.CircularBlur((8, 8, 1), jnp.ones((3, 3)) / 9.0)
    with pytest.raises(ValueError, match="tds_sample: needs a linear operator with an SVD"):
        tds_sample(jax.random.key(0), model_fn, SDE, blur, jnp.zeros((8, 8, 1)), 0.3, (2, 8, 8, 1))
