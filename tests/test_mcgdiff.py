"""MCGdiff (Cardoso et al., ICLR 2024) against exact answers, with tolerances derived, not measured.

* Transcription: a float64 NumPy transcription of the algorithm (written from the equations in
  ``mcgdiff_sample``'s docstring and the papers, not from jaxir's code), fed the very normals and
  uniforms jaxir draws (replayed from the same keys), must reproduce particles, log-weights,
  ESS, evidence and the final draw to float32 rounding. The resampling indices are compared
  through the particles they select (a different ancestor moves a particle by O(1)); the test
  first asserts that no uniform lies within the float32 error budget of a CDF boundary and no
  ESS within it of the resampling threshold, so the indices cannot flip by rounding.
* Exactness: MCGdiff targets the posterior of the chain it runs, ``p_chain(x_0) ℓ(x_0)``. For a
  Gaussian prior the chain is linear, so that posterior is Gaussian in closed form (the chain's
  law pushed through the DDIM updates in float64, ``tests/oracle.py``, then conditioned on y).
  For a Gaussian mixture it is estimated by importance sampling of a float64 NumPy run of the
  same chain (the reference's own standard error enters the tolerance).
* Tolerances: a run's weighted particle cloud gives an estimate ``π̂_N(f)`` of each posterior
  moment with variance O(1/N) and bias O(1/N) (particle-filter CLT). Over R independent runs the
  spread gives the standard error of their mean, and the threshold is the Student-t quantile
  (R − 1 degrees of freedom) for a Bonferroni family at α = 1e-5. The bias, O(1/N) against a
  standard error O(1/√(N R)), is a fraction O(√(R/N)) of it: the tests take N ≥ 8 R.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import oracle
from jaxir import exact, schedules, sdes
from jaxir.inverse._smc import mcgdiff_sample
from jaxir.operators import DenseMatrix, Inpainting

SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
ALPHA = 1e-5
EPS32 = float(np.finfo(np.float32).eps) / 2  # float32 unit roundoff


def _t_threshold(n_stats, runs):
    """Bonferroni threshold for ``n_stats`` Student-t statistics with ``runs − 1`` d.o.f."""
    return float(stats.t.isf(ALPHA / (2 * n_stats), runs - 1))


def _abar_grid(num_steps):
    """ᾱ on the 1000-step linear DDPM chain at the "leading" grid t_0 > … > t_{n−1}, then 1."""
    grid = oracle.leading_timesteps(1000, num_steps)
    return np.concatenate([oracle.alphas_cumprod(oracle.linear_betas())[grid], [1.0]])


def _ddim_chain_law(mu, Sigma, num_steps, eta):
    """Law of x_0 from DDIM (Song et al. 2021, Eq. 12, c from Eq. 16) with the exact Gaussian
    denoiser, started from N(0, I) at ᾱ_{t_0}: each step is affine in x plus c z."""
    abar = _abar_grid(num_steps)
    d = len(mu)
    law = oracle.Law.of(np.zeros(d), np.eye(d))
    for j in range(num_steps):
        at, an = abar[j], abar[j + 1]
        c = eta * math.sqrt((1 - an) / (1 - at) * (1 - at / an))
        J, b = oracle.gaussian_denoiser(mu, Sigma, math.sqrt(at), math.sqrt(1 - at))
        k = math.sqrt(max(1 - an - c * c, 0.0)) / math.sqrt(1 - at)
        P = math.sqrt(an) * J + k * (np.eye(d) - math.sqrt(at) * J)
        law = law.push(P, math.sqrt(an) * b - k * math.sqrt(at) * b, c * np.eye(d))
    return law


# ---- a float64 NumPy transcription of the MCGdiff step, run on jaxir's own draws ------------


def _replay_draws(key, b, n_particles, d, n_steps, method):
    """The normals and uniforms ``mcgdiff_sample`` draws from ``key`` (its documented key
    schedule), as float64 arrays."""
    f64 = lambda a: np.asarray(a, np.float64)
    k_init, k_steps, k_final = jax.random.split(key, 3)
    us, zs = [], []
    for k in jax.random.split(k_steps, n_steps):
        k_res, k_noise = jax.random.split(k)
        us.append(f64(jax.random.uniform(k_res, (b, n_particles) if method == "multinomial" else (b, 1))))
        zs.append(f64(jax.random.normal(k_noise, (b, n_particles, d))))
    return (f64(jax.random.normal(k_init, (b, n_particles, d))), us, zs,
            f64(jax.random.uniform(k_final, (b, 1))))


def _log_gauss(v, mean, var):
    return -0.5 * (np.log(2 * np.pi * var) + (v - mean) ** 2 / var)


def _systematic_or_iid(u, n_particles, method):
    return u[0] if method == "multinomial" else (u[0] + np.arange(n_particles)) / n_particles


def mcgdiff_reference(mu, Sigma, vt, u_mat, s, y, sigma_y, kappa, abar, eta, draws, threshold, method):
    """MCGdiff on a Gaussian prior, float64, one run at a time, from the equations:

    DDIM kernel (Song et al. 2021, Eq. 12/16): ``x' = √ᾱ' x̂_0 + √(1 − ᾱ' − c²) ε̂ + c z``,
    ``c = η √((1 − ᾱ')/(1 − ᾱ)) √(1 − ᾱ/ᾱ')``; exact denoiser of ``N(μ, Σ)``; in the SVD basis
    ``x̄ = Vᵀx`` each observed coordinate has the potential ``N(ȳ_i; x̄_i/√ᾱ_j, ρ_i² + V_j)``,
    ``V_j = Σ_{l ≥ j} c_l²/ᾱ_{l+1}``; fully adapted weights (predictive of the next potential over
    the kernel, divided by the current one); resampling by inverse CDF when ESS < threshold·N;
    the proposal is the product of the kernel and the next potential (precision form).
    ``abar``: ᾱ at the grid ``t_0 > … > t_{n−1}``, then 1. Returns a dict of arrays and the
    smallest distance of a resampling uniform to a CDF boundary (``margin``).
    """
    x_init, us, zs, u_final = draws
    b, n_part, d = x_init.shape
    dy = u_mat.shape[0]
    obs = s[:dy] > 0
    ybar = (u_mat.T @ y)[obs] / s[:dy][obs]
    rho2 = sigma_y**2 / s[:dy][obs] ** 2 + kappa
    n = len(abar) - 1
    c = np.array([eta * np.sqrt((1 - abar[j + 1]) / (1 - abar[j]) * (1 - abar[j] / abar[j + 1])) for j in range(n)])
    v_rest = np.array([sum(c[l] ** 2 / abar[l + 1] for l in range(j, n)) for j in range(n + 1)])
    idx_obs = np.flatnonzero(obs)

    def log_pot(xo, j, extra=0.0):  # Σ_i log N(ȳ_i; xo_i/√ᾱ_j, ρ_i² + V_j + extra)
        return np.sum(_log_gauss(ybar, xo / np.sqrt(abar[j]), rho2 + v_rest[j] + extra), -1)

    out = {"particles": [], "log_weights": [], "log_evidence": [], "ess": [], "x": []}
    margin, ess_margin = np.inf, np.inf
    for r in range(b):
        xb = x_init[r].copy()  # (N, D), prior_std = 1
        # observed coordinates of x_T from N(0, 1) × potential_0, weighted by its integral
        prec = 1.0 + abar[0] ** -1 / (rho2 + v_rest[0])
        xb[:, idx_obs] = (ybar / np.sqrt(abar[0]) / (rho2 + v_rest[0])) / prec + x_init[r][:, idx_obs] / np.sqrt(prec)
        logw = np.full(n_part, np.sum(_log_gauss(ybar, 0.0, rho2 + v_rest[0] + 1.0 / abar[0])))
        logz, ess_r = 0.0, []
        for j in range(n):
            a_t, a_s = np.sqrt(abar[j]), np.sqrt(abar[j + 1])
            s_t, s_s = np.sqrt(1 - abar[j]), np.sqrt(1 - abar[j + 1])
            J, bb = oracle.gaussian_denoiser(mu, Sigma, a_t, s_t)
            x = xb @ vt
            x0 = x @ J.T + bb
            eps = (x - a_t * x0) / s_t
            mb = (a_s * x0 + np.sqrt(max(s_s**2 - c[j] ** 2, 0.0)) * eps) @ vt.T
            logw = logw + log_pot(mb[:, idx_obs], j + 1, c[j] ** 2 / abar[j + 1]) - log_pot(xb[:, idx_obs], j)
            w = np.exp(logw - logw.max())
            w /= w.sum()
            ess = 1.0 / np.sum(w**2)
            ess_r.append(ess)
            ess_margin = min(ess_margin, abs(ess - threshold * n_part))
            if ess < threshold * n_part:
                logz += np.log(np.mean(np.exp(logw - logw.max()))) + logw.max()
                cdf = np.cumsum(w)
                uu = _systematic_or_iid(us[j][r:r + 1], n_part, method)
                margin = min(margin, np.abs(uu[:, None] - cdf[None, :-1]).min())
                anc = np.searchsorted(cdf, uu, side="left")
                mb, logw = mb[anc], np.zeros(n_part)
            z = zs[j][r]
            new = mb + c[j] * z
            if c[j] > 0:  # N(m, c²) × N(√ᾱ' ȳ, ᾱ'(ρ² + V')) in precision form
                p_kernel, p_pot = 1.0 / c[j] ** 2, 1.0 / (abar[j + 1] * (rho2 + v_rest[j + 1]))
                var = 1.0 / (p_kernel + p_pot)
                mean = var * (p_kernel * mb[:, idx_obs] + p_pot * a_s * ybar)
                new[:, idx_obs] = mean + np.sqrt(var) * z[:, idx_obs]
            xb = new
        top = logw.max()
        logz += np.log(np.mean(np.exp(logw - top))) + top
        w = np.exp(logw - top)
        cdf = np.cumsum(w / w.sum())
        margin = min(margin, np.abs(u_final[r, 0] - cdf[:-1]).min())
        pick = np.searchsorted(cdf, u_final[r, 0], side="left")
        out["particles"].append(xb @ vt)
        out["log_weights"].append(logw)
        out["log_evidence"].append(logz)
        out["ess"].append(ess_r)
        out["x"].append(xb[pick] @ vt)
    res = {k: np.asarray(v) for k, v in out.items()}
    return res, margin, ess_margin


# ---- 1. transcription: the same draws, float64 vs jaxir's float32 ------------------------------

TRANSCRIPTION_CASES = [  # (sigma_y, resampling, resample_threshold, eta, seed)
    (0.3, "systematic", 0.5, 1.0, 0),  # the defaults, adaptive resampling
    (0.0, "multinomial", 1.0, 0.7, 1),  # noiseless (κ = 1e-4), the official resampling, η < 1
    (0.05, "systematic", 0.5, 1.0, 2),  # sharp likelihood
]


@pytest.mark.parametrize("sigma_y,method,threshold,eta,seed", TRANSCRIPTION_CASES)
def test_mcgdiff_matches_float64_transcription(sigma_y, method, threshold, eta, seed):
    """d = 5, dy = 3 dense A, 12 particles, 3 runs, 10 DDIM steps on the 1000-step DDPM chain.

    Tolerance: 100 float32 unit roundoffs per step over the 10 steps, relative to ``1 + |x|``
    (6e-5): each step's arithmetic is a few dozen operations per coordinate, and a wrong term in
    a weight, a potential or the proposal moves these numbers by 1e-3 or more."""
    d, dy, b, n_part, n = 5, 3, 3, 12, 10
    tol = 100 * n * EPS32
    rng = np.random.default_rng(11)
    L = rng.normal(size=(d, d)) * 0.5
    mu, Sigma = rng.normal(size=d) * 0.5, L @ L.T + 0.3 * np.eye(d)
    A = rng.normal(size=(dy, d)) / np.sqrt(d)
    y = (A @ mu + 0.3 * rng.normal(size=dy)).astype(np.float32)
    op = DenseMatrix(jnp.asarray(A, jnp.float32))
    key = jax.random.key(seed)
    out = mcgdiff_sample(key, exact.Gaussian(mu, Sigma).model_fn(SDE), SDE, op, jnp.asarray(y), sigma_y,
                         (b, d), num_particles=n_part, num_steps=n, eta=eta, resample_threshold=threshold,
                         resampling=method, return_particles=True)
    kappa = 0.0 if sigma_y > 0 else 1e-4
    ref, margin, ess_margin = mcgdiff_reference(
        mu, Sigma, np.asarray(op.vt, np.float64), np.asarray(op.u, np.float64),
        np.asarray(op.singular_values, np.float64), y.astype(np.float64), sigma_y, kappa, _abar_grid(n), eta,
        _replay_draws(key, b, n_part, d, n, method), threshold, method)
    assert margin > tol and ess_margin > tol * n_part, (margin, ess_margin)
    got = {"particles": out.extras["particles"], "log_weights": out.extras["log_weights"],
           "log_evidence": out.extras["log_evidence"], "ess": out.extras["ess"], "x": out.x}
    for name, value in got.items():
        value, want = np.asarray(value, np.float64), ref[name]
        err = float(np.max(np.abs(value - want) / (1.0 + np.abs(want))))
        assert err < tol, (name, err, tol)


# ---- 2. small observation noise: exact Gaussian posterior, 16 of 64 coordinates observed -------


def _cloud_moments(out, mean):
    """Per run: the weighted cloud's mean and variance about ``mean`` per coordinate, (R, D) each."""
    parts = np.asarray(out.extras["particles"], np.float64)
    w = np.asarray(jax.nn.softmax(out.extras["log_weights"], -1), np.float64)
    return np.einsum("rn,rni->ri", w, parts), np.einsum("rn,rni->ri", w, (parts - mean) ** 2)


def _t_stats(per_run, target):
    """t statistics of the run-mean of ``per_run`` (R, k) against ``target`` (k,), and the
    standard errors."""
    se = per_run.std(0, ddof=1) / math.sqrt(per_run.shape[0])
    return (per_run.mean(0) - target) / se, se


@pytest.mark.parametrize("sigma_y", [0.01, 0.1])
def test_mcgdiff_small_noise_matches_exact_posterior(sigma_y):
    """Inpainting 16 of 64 coordinates of a non-diagonal Gaussian prior, default settings (100
    DDIM steps, η = 1, systematic resampling at ESS < N/2), 32 runs of 512 particles.

    Before the fix the observed coordinates came out with 4.4× (σ_y = 0.01, κ = 1e-4 equal to
    ρ² and the τ-pinning) and 0.54× (σ_y = 0.1, the pinned chain from τ to 0) the posterior
    variance. The test asserts its own resolution: on every observed coordinate the tolerance is
    below 0.46 of the variance, so either failure would be rejected."""
    d, d_obs, runs, n_part = 64, 16, 32, 512
    rng = np.random.default_rng(0)
    L = rng.normal(size=(d, d)) / np.sqrt(d)
    mu, Sigma = np.zeros(d), L @ L.T + 0.5 * np.eye(d)
    mask = np.zeros(d)
    mask[rng.choice(d, d_obs, replace=False)] = 1
    o = mask > 0
    y = (mask * (rng.multivariate_normal(mu, Sigma) + sigma_y * rng.normal(size=d))).astype(np.float32)
    chain = _ddim_chain_law(mu, Sigma, 100, 1.0)
    post = oracle.gaussian_posterior(chain.mean, chain.cov, np.eye(d)[o], sigma_y, y[o].astype(np.float64))
    op = Inpainting(jnp.asarray(mask, jnp.float32), shape=(d,))
    out = jax.jit(lambda k: mcgdiff_sample(k, exact.Gaussian(mu, Sigma).model_fn(SDE), SDE, op, jnp.asarray(y),
                                           sigma_y, (runs, d), num_particles=n_part, return_particles=True)
                  )(jax.random.key(5))
    assert bool(out.finite)
    var = np.diag(post.cov)
    m1, m2 = _cloud_moments(out, post.mean)
    thr = _t_threshold(2 * d, runs)
    z_mean, _ = _t_stats(m1, post.mean)
    z_var, se_var = _t_stats(m2, var)
    for name, sel in (("observed", o), ("unobserved", ~o)):
        assert np.abs(z_mean[sel]).max() < thr, (name, "mean", np.abs(z_mean[sel]).max(), thr)
        assert np.abs(z_var[sel]).max() < thr, (name, "variance", np.abs(z_var[sel]).max(), thr)
    assert np.max(thr * se_var[o] / var[o]) < 0.46, np.max(thr * se_var[o] / var[o])
    # the draws themselves (one per run): same moments, R draws
    x = np.asarray(out.x, np.float64)
    z_x, _ = _t_stats(x, post.mean)
    z_x2, _ = _t_stats((x - post.mean) ** 2, var)
    assert max(np.abs(z_x).max(), np.abs(z_x2).max()) < thr, (np.abs(z_x).max(), np.abs(z_x2).max(), thr)


# ---- 3. a Gaussian-mixture posterior whose main mode has prior weight 0.05 ---------------------

GMM_W = np.array([0.5, 0.3, 0.15, 0.05])
GMM_MU = np.array([[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]])
GMM_VAR = 0.25  # isotropic component variance


def _gmm_denoise(x, a, s):
    """E[x_0 | x_t = x] for the mixture, float64: responsibilities of N(a μ_k, (a² v + s²) I)."""
    var_t = a * a * GMM_VAR + s * s
    logits = np.log(GMM_W) - np.sum((x[:, None, :] - a * GMM_MU) ** 2, -1) / (2 * var_t)
    r = np.exp(logits - logits.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    comp_mean = GMM_MU + (a * GMM_VAR / var_t) * (x[:, None, :] - a * GMM_MU)
    return np.einsum("mk,mkd->md", r, comp_mean)


def _gmm_features(x):
    """Means, second moments and the mass nearest each component mean: (…, 9)."""
    x = np.asarray(x, np.float64)
    near = np.argmin(np.sum((x[..., None, :] - GMM_MU) ** 2, -1), -1)
    return np.concatenate([x, x**2, x[..., :1] * x[..., 1:], np.eye(4)[near]], -1)


def test_mcgdiff_gmm_posterior_matches_importance_sampling_reference():
    """d = 2, four components, y = x_1 + 0.6 x_2 + N(0, 0.5²) observed at the mean of the
    component of prior weight 0.05, which carries ~0.95 of the posterior. 50 DDIM steps, η = 1.

    Reference: 200,000 float64 NumPy runs of the same chain (exact mixture denoiser) weighted by
    the likelihood; its delta-method standard error adds to MCGdiff's (32 runs of 256
    particles) in each t statistic."""
    n_steps, runs, n_part, m_ref = 50, 32, 256, 200_000
    A, sigma_y = np.array([[1.0, 0.6]]), 0.5
    y = A @ GMM_MU[3]
    abar = _abar_grid(n_steps)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((m_ref, 2))
    for j in range(n_steps):
        at, an = abar[j], abar[j + 1]
        c = math.sqrt((1 - an) / (1 - at) * (1 - at / an))
        x0 = _gmm_denoise(x, math.sqrt(at), math.sqrt(1 - at))
        eps = (x - math.sqrt(at) * x0) / math.sqrt(1 - at)
        x = math.sqrt(an) * x0 + math.sqrt(max(1 - an - c * c, 0.0)) * eps + c * rng.standard_normal(x.shape)
    logl = -0.5 * np.sum((x @ A.T - y) ** 2, -1) / sigma_y**2
    w = np.exp(logl - logl.max())
    w /= w.sum()
    f = _gmm_features(x)
    ref = w @ f
    ref_se = np.sqrt(np.sum(w[:, None] ** 2 * (f - ref) ** 2, 0))  # self-normalised IS, delta method

    prior = exact.GaussianMixture(GMM_W, GMM_MU, np.full((4, 2), GMM_VAR))
    out = jax.jit(lambda k: mcgdiff_sample(k, prior.model_fn(SDE), SDE, DenseMatrix(jnp.asarray(A, jnp.float32)),
                                           jnp.asarray(y, jnp.float32), sigma_y, (runs, 2), num_particles=n_part,
                                           num_steps=n_steps, return_particles=True))(jax.random.key(9))
    wp = np.asarray(jax.nn.softmax(out.extras["log_weights"], -1), np.float64)
    per_run = np.einsum("rn,rnk->rk", wp, _gmm_features(out.extras["particles"]))
    se = per_run.std(0, ddof=1) / math.sqrt(runs)
    t = (per_run.mean(0) - ref) / np.sqrt(se**2 + ref_se**2)
    assert ref[-1] > 0.9, ref  # the low-prior-weight mode dominates the posterior
    assert np.abs(t).max() < _t_threshold(len(t), runs), (t, ref, per_run.mean(0))


def test_mcgdiff_rejects_unknown_resampling():
    op = DenseMatrix(jnp.eye(2, 3))
    with pytest.raises(ValueError, match="resampling"):
        mcgdiff_sample(jax.random.key(0), lambda x, t, c: x, SDE, op, jnp.zeros(2), 0.1, (1, 3),
                       resampling="stratified")
