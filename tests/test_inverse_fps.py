"""FPS / FPS-SMC (Dou & Song, ICLR 2024) against exact answers, tolerances derived.

* FPS (one particle): with a Gaussian prior ``N(μ, Σ)`` and the exact affine denoiser, every
  step — the measurement bridge, the chain's Gaussian move, the Gaussian conditioning on the
  bridge measurement — is affine in ``[x, u]`` (``u = y_t − α_t y``) and fresh noise, so the
  output law is Gaussian. It is pushed through the paper's equations in float64 NumPy
  (:mod:`oracle`, importing nothing from jaxir) and jaxir's draws are z-tested against it
  (Bonferroni, family-wise false alarm 1e-5). Nearby wrong updates — the official code's
  one-index lag (``x_{t−1}`` conditioned on ``y_t``), no bridge noise (``y_t = α_t y``), a
  fresh bridge every step — are shown ≥ ``FAR`` thresholds away at the same draw count.
* FPS-SMC: as ``N → ∞`` a run's weighted cloud tends to the Kalman filter of the hidden Markov
  model it assumes, for the run's own synthetic measurement sequence (a particle-filter CLT:
  error variance O(1/N), bias O(1/N)). The test replays each run's bridge draws from its key,
  computes that filter in float64, and (a) Student-t tests the run-average of the cloud's
  mean/covariance errors at N = 1024 over R = 128 runs (N ≥ 8R, so the O(1/N) bias is a
  fraction ≤ √(R/N) ≈ 0.35 of a standard error), (b) F-tests that the between-run spread of
  the cloud mean shrinks by the 1/N law from N = 64 to 1024 (variance ratio 16, inside the
  Bonferroni F band).
* What the limit is: a float64 check of the numbers the docstring states — the filter limit is
  not the posterior (variance ratios down to 0.46 at σ_y = 0.5, 1000 DDPM steps), and the
  official ``c_rate`` chain is not a consistent prior sampler (0.61× the prior variance).
* A float64 NumPy transcription of the whole run, fed jaxir's replayed normals and uniforms,
  reproduces particles, log-weights and the pick to float32 rounding.

Time: ~12 s of CPU for the file (mostly compilation).
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
from jaxir.inverse._fps import fps_sample

SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
ALPHA = 1e-5
FAR = 3.0


def _coeffs(n):
    """``(α_j, σ_j)``, ``j = 0 … n``, on the "leading" grid of the 1000-step linear chain, then
    the data (α = 1, σ = 0), float64."""
    grid = oracle.leading_timesteps(1000, n)
    abar = np.concatenate([oracle.alphas_cumprod(oracle.linear_betas())[grid], [1.0]])
    return np.sqrt(abar), np.sqrt(1.0 - abar)


def _chain(mu, Sig, al, sg, j, c_rate, eta):
    """Step ``j`` of the chain: ``μ = P x + q``, its noise variance ``c²`` and ``k``."""
    d = len(mu)
    if eta is None:
        c2 = c_rate * sg[j + 1] ** 2
    else:
        c2 = eta**2 * sg[j + 1] ** 2 / sg[j] ** 2 * (1 - al[j] ** 2 / al[j + 1] ** 2)
    k = math.sqrt(max(sg[j + 1] ** 2 - c2, 0.0)) / sg[j]
    J, b = oracle.gaussian_denoiser(mu, Sig, al[j], sg[j])
    P = al[j + 1] * J + k * (np.eye(d) - al[j] * J)
    return P, al[j + 1] * b - k * al[j] * b, c2, k


def _gain(v, A, r):
    """Gain of ``N(m, v I) × N(y; A x, r I)`` (covariance form; ``v = 0`` gives 0)."""
    return v * A.T @ np.linalg.inv(v * A @ A.T + r * np.eye(A.shape[0])) if v > 0 else 0 * A.T


def fps_law(mu, Sig, A, y, sy, n, *, c_rate=0.95, eta=None, bug=None):
    """Exact law of one-particle FPS (float64), state ``[x, u]`` with ``u_j = y_{t_j} − α_j y``.

    ``u_0 = σ_0 A z``, ``u_{j+1} = k_j u_j + c_j A z``; ``x_{j+1} = (I − KA) μ_j +
    K (α_{j+1} y + u_{j+1}) + L z'`` with ``K`` the gain of ``N(μ, c² I)`` given
    ``α² σ_y²``-noisy ``A x``, ``L Lᵀ = c² (I − KA)``; start from ``N(0, I)`` given ``y_{t_0}``.
    ``bug``: ``"lag"`` conditions on the level the step starts from, ``"no_bridge"`` sets
    ``u = 0``, ``"fresh"`` draws ``u_j = σ_j A z`` afresh every step.
    """
    d, dy = len(mu), len(y)
    al, sg = _coeffs(n)
    I, Z = np.eye(d), np.zeros((dy, d))
    ub = 0.0 if bug == "no_bridge" else 1.0
    K = _gain(1.0, A, al[0] ** 2 * sy**2)
    L = np.linalg.cholesky(I - K @ A)
    R = np.block([[ub * sg[0] * K @ A, L], [ub * sg[0] * A, Z]])
    law = oracle.Law.of(np.concatenate([al[0] * K @ y, np.zeros(dy)]), R @ R.T)
    for j in range(n):
        P, q, c2, k = _chain(mu, Sig, al, sg, j, c_rate, eta)
        ku, cu = (0.0, sg[j + 1]) if bug == "fresh" else (k, math.sqrt(c2))
        ku, cu = ku * ub, cu * ub
        lvl = j if bug == "lag" else j + 1
        K = _gain(c2, A, al[lvl] ** 2 * sy**2)
        L = np.linalg.cholesky(c2 * (I - K @ A) + 1e-300 * I) if c2 > 0 else np.zeros((d, d))
        G = I - K @ A
        if bug == "lag":  # condition on the current u, then move it
            T = np.block([[G @ P, K], [Z, ku * np.eye(dy)]])
            R = np.block([[np.zeros((d, d)), L], [cu * A, Z]])
        else:
            T = np.block([[G @ P, ku * K], [Z, ku * np.eye(dy)]])
            R = np.block([[cu * K @ A, L], [cu * A, Z]])
        law = law.push(T, np.concatenate([G @ q + al[lvl] * K @ y, np.zeros(dy)]), R)
    return oracle.Law.of(law.mean[:d], law.cov[:d, :d])


def filter_limit(mu, Sig, A, y, sy, n, *, c_rate=0.95, eta=None):
    """The particle limit of FPS-SMC averaged over the bridge: ``N(E m_n, P_n + Cov m_n)`` with
    ``(m, P)`` the Kalman filter of the chain observed through ``y_{t_j} = α_j y + u_j``."""
    d, dy = len(mu), len(y)
    al, sg = _coeffs(n)
    I, Z = np.eye(d), np.zeros((dy, d))
    K = _gain(1.0, A, al[0] ** 2 * sy**2)
    Pf = I - K @ A
    R = np.vstack([sg[0] * K @ A, sg[0] * A])
    law = oracle.Law.of(np.concatenate([al[0] * K @ y, np.zeros(dy)]), R @ R.T)
    for j in range(n):
        P, q, c2, k = _chain(mu, Sig, al, sg, j, c_rate, eta)
        Pm = P @ Pf @ P.T + c2 * I
        K = Pm @ A.T @ np.linalg.inv(A @ Pm @ A.T + al[j + 1] ** 2 * sy**2 * np.eye(dy))
        G = I - K @ A
        Pf = G @ Pm
        T = np.block([[G @ P, k * K], [Z, k * np.eye(dy)]])
        R = np.vstack([math.sqrt(c2) * K @ A, math.sqrt(c2) * A])
        law = law.push(T, np.concatenate([G @ q + al[j + 1] * K @ y, np.zeros(dy)]), R)
    return oracle.Law.of(law.mean[:d], law.cov[:d, :d] + Pf)


def _setup(sigma_y):
    mu, Sig, A, y = oracle.dense_problem(0, 6, 3, sigma_y)
    g = exact.Gaussian(jnp.asarray(mu, jnp.float32), jnp.asarray(Sig, jnp.float32))
    op = operators.DenseMatrix(jnp.asarray(A, jnp.float32))
    return mu, Sig, A, y, g.model_fn(SDE), op


# ---- FPS: the exact law of one particle ------------------------------------------------------

# the official c_rate rule at 0.5 (at 0.95 the bridge keeps only √0.05 of itself per step, so
# a fresh bridge is a near miss: 8.6 s.e.) and DDPM (η = 1); 10 steps, σ_y = 0.3: distances of
# the wrong updates 21–51 s.e. at 40,000 draws (threshold 5.1)
CASES = {"c_rate": dict(c_rate=0.5), "ddpm": dict(eta=1.0)}


@pytest.mark.parametrize("name", list(CASES))
def test_fps_one_particle_matches_its_exact_law(name):
    kw, n, sy, draws = CASES[name], 10, 0.3, 40_000
    mu, Sig, A, y, model_fn, op = _setup(sy)
    law = fps_law(mu, Sig, A, y, sy, n, **kw)
    oracle.assert_discriminates(law, {b: fps_law(mu, Sig, A, y, sy, n, bug=b, **kw)
                                      for b in ("lag", "no_bridge", "fresh")}, draws, factor=FAR)
    f = jax.jit(lambda k: fps_sample(k, model_fn, SDE, op, jnp.asarray(y, jnp.float32), sy,
                                     (draws, 6), num_particles=1, num_steps=n, clip_x0=False,
                                     **kw).x)
    oracle.assert_law(np.asarray(f(jax.random.key(1)), np.float64), law, f"FPS {name}")


# ---- FPS-SMC: each run's cloud against its own filter ------------------------------------------


def _run_filters(op, mu, Sig, y, sy, n, key, runs, eta):
    """Per run: the Kalman filter ``(m_r (R, d), P (d, d))`` of the chain observed, in the SVD
    basis of ``op``, through the run's bridge (replayed from ``key``: ``fps_sample``'s
    documented draws), float64."""
    vt = np.asarray(op.vt, np.float64)
    s = np.asarray(op.singular_values, np.float64)
    dy = len(y)
    ybar = (np.asarray(op.u, np.float64).T @ y) / s[:dy]
    H = vt[:dy]
    al, sg = _coeffs(n)
    zb = np.asarray(jax.random.normal(jax.random.split(key, 4)[0], (n + 1, runs, len(s))), np.float64)
    w = sg[0] * zb[0, :, :dy]
    r = lambda j: np.diag(al[j] ** 2 * sy**2 / s[:dy] ** 2)
    K = np.eye(6) @ H.T @ np.linalg.inv(H @ H.T + r(0))
    Pf = (np.eye(6) - K @ H)
    m = (al[0] * ybar + w) @ K.T
    for j in range(n):
        P, q, c2, k = _chain(mu, Sig, al, sg, j, None, eta)
        w = k * w + math.sqrt(c2) * zb[j + 1, :, :dy]
        Pm = P @ Pf @ P.T + c2 * np.eye(6)
        K = Pm @ H.T @ np.linalg.inv(H @ Pm @ H.T + r(j + 1))
        m = m @ P.T + q
        m = m + (al[j + 1] * ybar + w - m @ H.T) @ K.T
        Pf = (np.eye(6) - K @ H) @ Pm
    return m, Pf


def _cloud_errors(op, model_fn, mu, Sig, y, sy, n, key, runs, particles, eta):
    out = jax.jit(lambda k: fps_sample(k, model_fn, SDE, op, jnp.asarray(y, jnp.float32), sy,
                                       (runs, 6), num_particles=particles, num_steps=n,
                                       eta=eta, clip_x0=False, return_particles=True))(key)
    xs = np.asarray(out.extras["particles"], np.float64)
    w = np.asarray(jax.nn.softmax(out.extras["log_weights"], -1), np.float64)
    m, Pf = _run_filters(op, mu, Sig, y, sy, n, key, runs, eta)
    mean = np.einsum("rn,rnd->rd", w, xs)
    dev = xs - m[:, None]
    cov = np.einsum("rn,rnd,rne->rde", w, dev, dev)
    iu = np.triu_indices(6)
    return mean - m, (cov - Pf)[:, iu[0], iu[1]]


@pytest.mark.parametrize("sy", [0.5, 1.0])
def test_fps_smc_cloud_converges_to_its_filter(sy):
    """At σ_y ≥ 0.5 the filter is in its CLT regime (measured sd·√N of the cloud-mean error
    constant, 2.6 ± 0.3, from N = 64 to 4096; kurtosis ≈ 3 at σ_y = 1, up to 7 at 0.5, so the
    normal-theory F band is used at σ_y = 1 only). At σ_y = 0.1 some runs' ESS falls below 1 %
    at the first synthetic measurement near t = 0 and the error is heavy-tailed: not tested."""
    n, runs, eta = 10, 128, 1.0
    mu, Sig, A, y, model_fn, op = _setup(sy)
    em, ec = _cloud_errors(op, model_fn, mu, Sig, y, sy, n, jax.random.key(7), runs, 1024, eta)
    e = np.concatenate([em, ec], 1)
    t = e.mean(0) / (e.std(0, ddof=1) / math.sqrt(runs))
    thr = float(stats.t.isf(ALPHA / (2 * e.shape[1]), runs - 1))
    assert np.abs(t).max() < thr, f"max |t| {np.abs(t).max():.2f} >= {thr:.2f}"
    if sy < 1.0:
        return
    # the spread of the cloud mean around the filter shrinks as 1/N: ratio 16 from 64 to 1024
    em64, _ = _cloud_errors(op, model_fn, mu, Sig, y, sy, n, jax.random.key(8), runs, 64, eta)
    ratio = em64.var(0, ddof=1) / em.var(0, ddof=1)
    f_hi = float(stats.f.isf(ALPHA / (2 * 6), runs - 1, runs - 1))
    assert np.all(ratio > 16 / f_hi) and np.all(ratio < 16 * f_hi), (ratio, f_hi)


def test_fps_smc_limit_is_not_the_posterior():
    """The numbers stated in ``fps_sample``'s docstring (float64, no jaxir)."""
    for sy, (lo, hi, dm) in {0.1: (0.93, 0.99, 0.03), 0.5: (0.46, 0.97, 0.42)}.items():
        mu, Sig, A, y = oracle.dense_problem(0, 6, 3, sy)
        post = oracle.gaussian_posterior(mu, Sig, A, sy, y)
        lim = filter_limit(mu, Sig, A, y, sy, 1000, eta=1.0)
        ratio = np.diag(lim.cov) / np.diag(post.cov)
        off = np.abs(lim.mean - post.mean) / np.sqrt(np.diag(post.cov))
        assert abs(ratio.min() - lo) < 0.005 and abs(ratio.max() - hi) < 0.005, ratio
        assert abs(off.max() - dm) < 0.005, off
    mu, Sig, A, y = oracle.dense_problem(0, 6, 3, 0.1)
    for kw, want in ((dict(c_rate=0.95), 0.61), (dict(eta=1.0), 0.99)):
        prior = fps_law(mu, Sig, 1e-9 * A, y, 0.1, 1000, **kw)
        assert np.allclose(np.diag(prior.cov) / np.diag(Sig), want, atol=0.006), kw


# ---- transcription --------------------------------------------------------------------------


def _transcribe(op, mu, Sig, y, sy, n, key, B, N, c_rate, threshold):
    """float64 NumPy FPS-SMC in the SVD basis of ``op`` on jaxir's replayed draws (its documented
    key schedule); multinomial resampling when ESS < threshold · N, inverse CDF."""
    f64 = lambda a: np.asarray(a, np.float64)
    vt, s = f64(op.vt), f64(op.singular_values)
    D, dy = len(s), len(y)
    ybar = np.concatenate([(f64(op.u).T @ y) / s[:dy], np.zeros(D - dy)])
    obs = np.arange(D) < dy
    al, sg = _coeffs(n)
    kb, ki, ks, kf = jax.random.split(key, 4)
    zb = f64(jax.random.normal(kb, (n + 1, B, D)))
    w = sg[0] * zb[0]
    b = [al[0] * ybar + w]
    for j in range(n):
        c2 = c_rate * sg[j + 1] ** 2
        w = math.sqrt(sg[j + 1] ** 2 - c2) / sg[j] * w + math.sqrt(c2) * zb[j + 1]
        b.append(al[j + 1] * ybar + w)
    rho2 = lambda j: al[j] ** 2 * sy**2 / np.where(obs, s, 1.0) ** 2

    def cond(m, v, bb, r):
        den = v + r
        mean = np.where(obs, m + v * (bb - m) / den, m)
        var = np.where(obs, v * r / den, v)
        logp = np.where(obs, -0.5 * ((bb - m) ** 2 / den + np.log(2 * np.pi * den)), 0).sum(-1)
        return mean, var, logp

    m0, v0, _ = cond(np.zeros((B, N, D)), 1.0, b[0][:, None], rho2(0))
    xb = m0 + np.sqrt(v0) * f64(jax.random.normal(ki, (B, N, D)))
    logw = np.zeros((B, N))
    margin = np.inf
    for j, k in enumerate(jax.random.split(ks, n)):
        k_res, k_noise = jax.random.split(k)
        x = xb @ vt
        J, bj = oracle.gaussian_denoiser(mu, Sig, al[j], sg[j])
        x0 = x @ J.T + bj
        c2 = c_rate * sg[j + 1] ** 2
        mu_ = al[j + 1] * x0 + math.sqrt(sg[j + 1] ** 2 - c2) * (x - al[j] * x0) / sg[j]
        mean, var, logp = cond(mu_ @ vt.T, c2, b[j + 1][:, None], rho2(j + 1))
        logw = logw + logp
        u = f64(jax.random.uniform(k_res, (B, N)))
        wn = np.exp(logw - logw.max(-1, keepdims=True))
        wn /= wn.sum(-1, keepdims=True)
        for i in range(B):
            if 1.0 / np.sum(wn[i] ** 2) < threshold * N:
                cdf = np.cumsum(wn[i])
                anc = np.minimum(np.searchsorted(cdf, u[i] * cdf[-1]), N - 1)
                margin = min(margin, np.abs(u[i][:, None] - cdf[None]).min())
                mean[i], logw[i] = mean[i][anc], 0.0
        xb = mean + np.sqrt(var) * f64(jax.random.normal(k_noise, (B, N, D)))
    wn = np.exp(logw - logw.max(-1, keepdims=True))
    cdf = np.cumsum(wn / wn.sum(-1, keepdims=True), -1)
    uf = f64(jax.random.uniform(kf, (B, 1)))
    pick = [min(int(np.searchsorted(cdf[i], uf[i, 0] * cdf[i, -1])), N - 1) for i in range(B)]
    margin = min(margin, np.abs(uf - cdf).min())
    return xb @ vt, logw, np.stack([xb[i, pick[i]] @ vt for i in range(B)]), margin


def test_fps_smc_transcription():
    """Without resampling (threshold 0: log-weights accumulate) and with multinomial
    resampling at every step (threshold 1), one compiled run each (the threshold is traced).

    Budget: O(10²) float32 operations per step on O(1) values through 4 steps whose linear
    maps have norm ≤ 2: ≲ 4 · 2 · 100 · 6e-8 ≈ 5e-5; tolerance 2e-4 absolute. A resampling
    index can only flip if a uniform lies within ~1e-5 of a CDF boundary: asserted > 1e-4."""
    n, B, N, sy, c = 4, 3, 16, 0.3, 0.95
    mu, Sig, A, y, model_fn, op = _setup(sy)
    key = jax.random.key(4)
    run = jax.jit(lambda k, th: fps_sample(k, model_fn, SDE, op, jnp.asarray(y, jnp.float32), sy,
                                           (B, 6), num_particles=N, num_steps=n, c_rate=c,
                                           clip_x0=False, resample_threshold=th,
                                           return_particles=True))
    for threshold in (0.0, 1.0):
        out = run(key, threshold)
        xs, logw, pick, margin = _transcribe(op, mu, Sig, y, sy, n, key, B, N, c, threshold)
        assert margin > 1e-4, margin
        np.testing.assert_allclose(np.asarray(out.extras["particles"]), xs, atol=2e-4)
        lw = np.asarray(out.extras["log_weights"], np.float64)
        np.testing.assert_allclose(lw - lw.max(-1, keepdims=True),
                                   logw - logw.max(-1, keepdims=True), atol=2e-4)
        np.testing.assert_allclose(np.asarray(out.x), pick, atol=2e-4)


# ---- composition and arguments --------------------------------------------------------------


def test_fps_vmap_over_keys_and_errors():
    mu, Sig, A, y, model_fn, op = _setup(0.1)
    run = lambda k: fps_sample(k, model_fn, SDE, op, jnp.asarray(y, jnp.float32), 0.1, (2, 6),
                               num_particles=4, num_steps=3).x
    keys = jax.random.split(jax.random.key(0), 3)
    one = jax.jit(run)
    np.testing.assert_allclose(jax.jit(jax.vmap(run))(keys), np.stack([one(k) for k in keys]),
                               atol=1e-5)
    blur = operators.CircularBlur((8, 8, 1), jnp.ones((3, 3)) / 9.0)  # Fourier only: no SVD
    bad = [dict(num_particles=0), dict(c_rate=1.5), dict(eta=0.0), dict(resampling="stratified")]
    for kw in bad:
        with pytest.raises(ValueError, match=f"fps_sample: {next(iter(kw))}"):
            fps_sample(jax.random.key(0), model_fn, SDE, op, y, 0.1, (2, 6), **kw)
    with pytest.raises(ValueError, match="fps_sample: needs a linear operator with an SVD"):
        fps_sample(jax.random.key(0), model_fn, SDE, blur, jnp.zeros((8, 8, 1)), 0.1, (2, 8, 8, 1))
