"""The stored MCGdiff-benchmark instances (experiments/gmm_posterior/authors_instances.npz) and
the pieces of the script that scores jaxir on them.

Every check is against a definition recomputed here in float64 NumPy, not against a number
from a run: the generator's structure (the 8-spaced means, normalised weights, sorted singular
values in (0, 1), σ_y below max s, x* and y within chi-square bounds of their draws), the three
solver grids rebuilt from the authors' formulas, the exact posterior against Bayes' rule for a
Gaussian mixture, the 10,000 reference samples and the script's exact sampler against that
posterior (Bonferroni z-tests), the metric (POT's max-sliced W2) against a NumPy transcription
on the same directions, and the MKL stream that decided x* against values that Intel MKL's own
``vdRngExponential`` produced. The npz is read with ``allow_pickle=False``. About 10 s of CPU
(JAX start-up and one compilation included).
"""

import importlib.util
import os

import numpy as np
import pytest
from scipy import stats

from oracle import Law, assert_law, gaussian_posterior, z_threshold

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "experiments", "gmm_posterior", "authors_instances.py")
EPS32 = float(np.finfo(np.float32).eps)
D, K, N_REF, ALPHA = 8, 25, 10_000, 1e-5


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("authors_instances", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stored(script):
    return script.load_instances()


def _posterior64(inst):
    """Bayes' rule for the mixture in float64: weights, component means, shared covariance,
    the log-evidence terms and the condition number of the posterior precision."""
    A, y = inst["A"].astype(np.float64), inst["y"].astype(np.float64)
    s2 = float(inst["sigma_y"]) ** 2
    means = inst["means"].astype(np.float64)
    S = A @ A.T + s2 * np.eye(len(y))  # covariance of y given a component (prior cov I)
    r = y[None, :] - means @ A.T
    log_c = -0.5 * np.einsum("ki,ki->k", r, np.linalg.solve(S, r.T).T)
    logw = np.log(inst["weights"].astype(np.float64)) + log_c
    w = np.exp(logw - logw.max())
    w /= w.sum()
    laws = [gaussian_posterior(m, np.eye(D), A, np.sqrt(s2), y) for m in means]
    precision = np.eye(D) + A.T @ A / s2
    return w, np.stack([law.mean for law in laws]), laws[0].cov, log_c, np.linalg.cond(precision)


def _assert_mixture_mean(x, inst, label):
    """z-test of the sample mean of ``x`` against the float64 posterior's mean (mixture cov)."""
    w, m, C, _, _ = _posterior64(inst)
    mean = w @ m
    cov = C + (m - mean).T @ (w[:, None] * (m - mean))
    z = (np.asarray(x, np.float64).mean(0) - mean) / np.sqrt(np.diag(cov) / len(x))
    assert np.abs(z).max() <= z_threshold(D), (label, z)


def _authors_mcgdiff_grid(abar, s, var, n=100):
    """``get_optimal_timesteps_from_singular_values(mode='else')`` of gabrielvc/mcg_diff, in
    float32 NumPy: its "extra" index is an argmin over the flattened ``unique`` distances."""
    flat = np.unique(var * abar[None, :] - (1 - abar)[None, :] * s[:, None] ** 2)
    extra = [i for i in [int(np.argmin(np.abs(flat)))] if i != 0]
    root = np.sqrt(abar)
    end = int(np.argmax(root < np.float32(1e-2)))
    step = (root[0] - root[end]) / np.float32(n - 1 - len(extra))
    grid, last = [0], root[0]
    for i in range(1, end):
        if last - root[i] >= step or i in extra:
            grid.append(i)
            last = root[i]
    tail = np.ceil(np.linspace(grid[-1], len(abar) - 1, n - len(grid) + 1))[1:].astype(int)
    return np.asarray(grid + tail.tolist())


def test_stored_instances_structure(stored):
    per_dy, shared = stored
    grid = np.array([[-8.0 * i, -8.0 * j] * (D // 2) for i in range(-2, 3) for j in range(-2, 3)])
    abar = shared["alphas_cumprod"]
    betas = np.linspace(0.02, 1e-4, 999, dtype=np.float32).astype(np.float64)  # decreasing, as theirs
    assert abar.shape == (1000,) and abar.dtype == np.float32 and abar[0] == 1.0
    # float32 cumulative product over 999 factors: relative error ≤ 999 eps32
    np.testing.assert_allclose(abar[1:], np.cumprod(1.0 - betas), rtol=1000 * EPS32)
    # DDRM visits ᾱ[seq + 1], seq = linspace(0, 1000, 100).long()[:-1]; DPS linspace(0, 999, 100)
    seq = np.floor(np.linspace(0, 1000, 100))[:-1].astype(int)
    np.testing.assert_array_equal(shared["ddrm_grid"], np.concatenate([[0], seq + 1]))
    np.testing.assert_array_equal(shared["dps_grid"], np.floor(np.linspace(0, 999, 100)).astype(int))
    chi2 = lambda dof: stats.chi2.isf(ALPHA, dof)  # noqa: E731
    for dy, inst in per_dy.items():
        assert inst["A"].shape == (dy, D) and inst["y"].shape == (dy,) and inst["x_star"].shape == (D,)
        assert inst["reference"].shape == (N_REF, D) and inst["reference"].dtype == np.float32
        assert inst["post_means"].shape == (K, D) and inst["post_cov"].shape == (D, D)
        np.testing.assert_array_equal(inst["means"], grid)
        # the weights are the first draw after the seed: the same for every dy
        np.testing.assert_array_equal(inst["weights"], per_dy[1]["weights"])
        # float32 sums of 25 terms: |Σ − 1| ≤ 25 eps32
        assert abs(inst["weights"].astype(np.float64).sum() - 1) <= K * EPS32
        assert abs(inst["post_weights"].astype(np.float64).sum() - 1) <= K * EPS32
        s = inst["singular_values"].astype(np.float64)
        assert np.all(s > 0) and np.all(s < 1) and np.all(np.diff(s) <= 0)
        # A = U diag(s) Vᵀ formed in float32: its singular values are s within D eps32 max(s)
        np.testing.assert_allclose(np.linalg.svd(inst["A"].astype(np.float64), compute_uv=False), s,
                                   atol=D * EPS32 * s[0])
        sigma = float(inst["sigma_y"])
        assert 0 < sigma < s[0]  # σ_y = U(0, 1) · max(s)
        # x* ~ N(μ_k, I) of its recorded component, y − A x* ~ N(0, σ_y² I)
        k = int(inst["x_star_component"])
        x, A = inst["x_star"].astype(np.float64), inst["A"].astype(np.float64)
        assert np.sum((x - grid[k]) ** 2) <= chi2(D)
        assert np.sum((inst["y"] - A @ x) ** 2) / sigma**2 <= chi2(dy)
        var = np.float32(sigma) * np.float32(sigma)
        np.testing.assert_array_equal(
            inst["mcgdiff_grid"], _authors_mcgdiff_grid(abar, inst["singular_values"], var), err_msg=f"dy={dy}")


def test_stored_posterior_is_bayes_rule(stored):
    per_dy, _ = stored
    for dy, inst in per_dy.items():
        w, m, C, log_c, cond = _posterior64(inst)
        # float32 solve with condition number κ: relative error ≤ D κ eps32 (scaled by the size
        # of what is solved for); the log-weights carry that error times their own size
        tol_m = D * cond * EPS32 * (1 + np.abs(m).max())
        np.testing.assert_allclose(inst["post_means"], m, atol=tol_m, err_msg=f"dy={dy}")
        np.testing.assert_allclose(inst["post_cov"], C, atol=D * cond * EPS32, err_msg=f"dy={dy}")
        tol_w = D * cond * EPS32 * (1 + np.abs(log_c).max())
        np.testing.assert_allclose(inst["post_weights"], w, atol=tol_w, err_msg=f"dy={dy}")
    # dy = 4: the posterior is one Gaussian (the next weight is below 1e-12 in float64)
    w4 = np.sort(_posterior64(per_dy[4])[0])[::-1]
    assert w4[0] > 1 - 1e-12 and w4[1] < 1e-12
    # dy = 1 and 2 are mixtures (the metric's floor is larger there)
    assert np.sort(_posterior64(per_dy[1])[0])[-2] > 0.1
    assert np.sort(_posterior64(per_dy[2])[0])[-2] > 1e-3


def test_reference_and_exact_draws_follow_the_posterior(script, stored):
    per_dy, _ = stored
    rng = np.random.default_rng(0)
    for dy, inst in per_dy.items():
        _assert_mixture_mean(inst["reference"], inst, f"reference dy={dy}")
        _assert_mixture_mean(script.exact_draws(inst, 20_000, rng), inst, f"exact_draws dy={dy}")
    # dy = 4: one Gaussian, so mean and covariance are tested entry by entry
    w, m, C, _, _ = _posterior64(per_dy[4])
    law = Law.of(m[np.argmax(w)], C)
    assert_law(per_dy[4]["reference"], law, label="dy=4 reference")
    assert_law(script.exact_draws(per_dy[4], 20_000, rng), law, label="dy=4 exact_draws")


def test_metric_is_pots_max_sliced_w2(script, stored):
    """jaxir's ``sliced_wasserstein(p=2, reduce="max")`` (the script's metric) on 1,000 draws vs
    the 10,000 reference samples equals POT's definition (max over the 100 directions of the exact
    1-D W2; 10,000 = 10 × 1,000, so sorted x_(k) meets a block of 10 sorted reference values)
    computed here in float64 on the same directions, within float32 rounding; the mean-reduced
    and p = 1 variants are further away than that bound."""
    import jax
    import jax.numpy as jnp

    from jaxir.metrics import sliced_wasserstein

    inst = stored[0][1]
    x = script.exact_draws(inst, 1000, np.random.default_rng(1)).astype(np.float32)
    ref = inst["reference"]
    key = jax.random.key(7)
    got = {(p, r): float(sliced_wasserstein(key, jnp.asarray(x), jnp.asarray(ref), 100, p=p, reduce=r))
           for p, r in ((2, "max"), (2, "mean"), (1, "max"))}
    theta = np.asarray(jax.random.normal(key, (100, D), jnp.float32), np.float64)
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    xs = np.repeat(np.sort(x.astype(np.float64) @ theta.T, axis=0), N_REF // len(x), axis=0)
    rs = np.sort(ref.astype(np.float64) @ theta.T, axis=0)
    want = float(np.sqrt(np.mean((xs - rs) ** 2, axis=0).max()))
    # float32 projections (D products, a normalised direction): each off by ≤ 2 D eps32 ‖x‖,
    # which moves a 1-D W2 by at most as much; the float32 mean of 11,000 squares adds ≤ 11,000
    # eps32 relative to W2², half that to W2
    big = max(np.linalg.norm(x, axis=1).max(), np.linalg.norm(ref, axis=1).max())
    tol = 2 * D * EPS32 * big + 0.5 * (N_REF + len(x)) * EPS32 * want
    assert abs(got[(2, "max")] - want) <= tol, (got, want, tol)
    assert abs(got[(2, "mean")] - want) > tol and abs(got[(1, "max")] - want) > tol


# Intel MKL's VSL_BRNG_MCG31 + vdRngExponential(VSL_RNG_METHOD_EXPONENTIAL_ICDF, a = 0, β = 1):
# the first four values per seed, produced by libmkl_rt (oneMKL 2026.2, the `mkl` wheel) through
# ctypes. Seed 2^32 − 7 exercises the reduction mod 2^31 − 1; 0 and 2^31 − 1 its zero state.
MKL_EXPONENTIALS = {
    12345: [12.066556195131257, 1.5245559462088099, 0.8581587565647463, 0.06969368472005572],
    4294967289: [2.3283064392492017e-09, 1.012755374376703, 2.582729515398943, 1.1231299426249122],
    2147483647: [21.487562596892644, 0.639878223553132, 0.9548067724053227, 2.002865988352318],
    0: [21.487562596892644, 0.639878223553132, 0.9548067724053227, 2.002865988352318],
}


def test_mcg31_exponentials_are_mkls(script):
    """The stream that picks x*'s component replays MKL's; the draw casts q to float32 and
    only compares ratios, so float32 rounding is the accuracy that matters."""
    for seed, want in MKL_EXPONENTIALS.items():
        np.testing.assert_allclose(script.mcg31_exponentials(seed, 4), want, rtol=EPS32, err_msg=str(seed))


def test_jaxir_chains_visit_the_authors_grids(script, stored):
    """The DDPM chain each jaxir solver runs on has ``ᾱ_i = ᾱ[grid_{i+1}]`` and the respaced
    ``leading`` grid of n of n steps takes every one of them: the sampler sees the authors' ᾱ
    (float32: the chain's cumulative product of n ratios is off by ≤ 2n eps32, relative)."""
    from jaxir.schedules import respace_timesteps

    per_dy, shared = stored
    abar = shared["alphas_cumprod"].astype(np.float64)
    for grid in (shared["ddrm_grid"], shared["dps_grid"], per_dy[1]["mcgdiff_grid"]):
        sde, n = script.chain_sde(abar, grid)
        assert n == len(grid) - 1
        ts, prev = respace_timesteps(n, n, "leading")
        np.testing.assert_array_equal(ts, np.arange(n)[::-1])
        np.testing.assert_array_equal(prev, np.arange(n)[::-1] - 1)
        np.testing.assert_allclose(np.asarray(sde.alphas_cumprod, np.float64), abar[grid[1:]],
                                   rtol=2 * n * EPS32)
        a, _ = sde.marginal_coeffs((np.arange(n) + 1.0) / n)
        np.testing.assert_allclose(np.asarray(a, np.float64) ** 2, abar[grid[1:]], rtol=2 * n * EPS32)
