"""Tests for jaxir.metrics against analytic formulas, skimage and scipy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import skimage.data
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jaxir.metrics import (
    consistency,
    consistency_rmse,
    gaussian_w2,
    mean_ci,
    mmd,
    psnr,
    sliced_wasserstein,
    ssim,
)

# ----------------------------------------------------------------------------- images


def _crop(name):
    """A 96x128 crop of a real skimage test image, mapped to [-1, 1], float64, HWC."""
    img = {
        "astronaut": lambda: skimage.data.astronaut()[100:196, 150:278],
        "camera": lambda: skimage.data.camera()[200:296, 200:328, None],
        "coffee": lambda: skimage.data.coffee()[50:146, 100:228],
    }[name]()
    return img.astype(np.float64) / 127.5 - 1.0


def _degrade(a, kind, seed):
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return np.clip(a + 0.2 * rng.standard_normal(a.shape), -1.0, 1.0)
    return gaussian_filter(a, sigma=(2.0, 2.0, 0.0))


IMAGES = ["astronaut", "camera", "coffee"]  # camera is grayscale (C = 1)


@pytest.mark.parametrize("name", IMAGES)
def test_psnr_matches_numpy_and_skimage(name):
    a = _crop(name)
    b = _degrade(a, "noise", 0)
    expected = 10 * np.log10(4.0 / np.mean((a - b) ** 2))
    got = float(psnr(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))
    # float32 mean of ~4e4 squares: relative error ~1e-6, so 1e-3 dB is ample.
    assert abs(got - expected) < 1e-3
    # data_range=2 on [-1, 1] equals skimage on [0, 1] (range 1) and on [0, 255] (range 255).
    a01, b01 = (a + 1) / 2, (b + 1) / 2
    assert abs(got - peak_signal_noise_ratio(a01, b01, data_range=1.0)) < 1e-3
    assert abs(got - peak_signal_noise_ratio(255 * a01, 255 * b01, data_range=255.0)) < 1e-3


def test_psnr_identical_is_inf_with_zero_grad_and_batches():
    x = jax.random.uniform(jax.random.key(0), (3, 16, 16, 3), minval=-1, maxval=1)
    y = x.at[1].add(0.1)
    values = jax.jit(psnr)(x, y)
    assert values.shape == (3,)
    assert np.isinf(values[0]) and values[0] > 0 and np.isinf(values[2])
    np.testing.assert_allclose(values[1], 10 * np.log10(4 / 0.01), rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(psnr)(x, y), values, rtol=1e-6)
    g = jax.grad(lambda z: psnr(z, x[0]))(x[0])
    assert np.all(g == 0)


def test_psnr_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr(jnp.zeros((8, 8, 3)), jnp.zeros((8, 8, 1)))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        psnr(jnp.zeros((8, 8)), jnp.zeros((8, 8)))


@pytest.mark.parametrize("kind", ["noise", "blur"])
@pytest.mark.parametrize("name", IMAGES)
def test_ssim_matches_skimage(name, kind):
    a = _crop(name)
    b = _degrade(a, kind, 1)
    expected = structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=2.0,
        channel_axis=-1,
    )
    got = float(jax.jit(ssim)(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))
    assert abs(got - expected) < 1e-4  # measured ~1e-6


def test_ssim_batch_vmap_and_identity():
    a = np.stack([_crop("astronaut"), _crop("coffee")])
    b = np.stack([_degrade(a[0], "noise", 2), _degrade(a[1], "blur", 0)])
    a32, b32 = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    batch = jax.jit(ssim)(a32, b32)
    assert batch.shape == (2,)
    singles = [float(ssim(a32[i], b32[i])) for i in range(2)]
    np.testing.assert_allclose(batch, singles, atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(ssim))(a32, b32), singles, atol=1e-6)
    np.testing.assert_allclose(ssim(a32, a32), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(jnp.zeros((8, 32, 1)), jnp.zeros((8, 32, 1)))


def test_consistency_norm_and_rmse_at_noise_level():
    def op_A(x):  # 2x2 block average: (H, W, C) -> (H/2, W/2, C)
        h, w, c = x.shape
        return x.reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))

    kx, kn = jax.random.split(jax.random.key(1))
    x = jax.random.uniform(kx, (64, 64, 3), minval=-1, maxval=1)
    sigma_y = 0.05
    y = op_A(x) + sigma_y * jax.random.normal(kn, (32, 32, 3))
    x_hat = x + 0.1
    expected = np.linalg.norm(np.asarray(op_A(x_hat)) - np.asarray(y))
    got = jax.jit(consistency, static_argnums=0)(op_A, x_hat, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(
        consistency_rmse(op_A, x_hat, y), expected / np.sqrt(y.size), rtol=1e-5
    )
    # At the truth rmse estimates sigma_y: 3072 residuals, sd of rmse/sigma_y ~ 1.3%; allow 5%.
    np.testing.assert_allclose(consistency_rmse(op_A, x, y), sigma_y, rtol=0.05)
    # batched=True: op_A applied to the batch, one value per example; equals vmap.
    xs, ys = jnp.stack([x, x_hat]), jnp.stack([y, y])
    batched = consistency(jax.vmap(op_A), xs, ys, batched=True)
    np.testing.assert_allclose(batched, jax.vmap(lambda a, b: consistency(op_A, a, b))(xs, ys))
    np.testing.assert_allclose(batched[1], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="op_A"):
        consistency(op_A, x, x)


# ----------------------------------------------------------------------------- distances


def _w_pow_1d_reference(u, v, p):
    """Exact W_p^p between 1-D empirical laws, float64 numpy, by midpoint quantile lookup."""
    u, v = np.sort(u), np.sort(v)
    levels = np.union1d(np.arange(1, len(u) + 1) / len(u), np.arange(1, len(v) + 1) / len(v))
    levels = np.unique(np.round(levels, 12))
    lo = np.concatenate([[0.0], levels[:-1]])
    mid = 0.5 * (lo + levels)
    qu = u[np.minimum((mid * len(u)).astype(int), len(u) - 1)]
    qv = v[np.minimum((mid * len(v)).astype(int), len(v) - 1)]
    return np.sum((levels - lo) * np.abs(qu - qv) ** p)


def _directions(key, num, d):
    """The directions sliced_wasserstein documents: normalised jax.random.normal(key, (L, d))."""
    t = np.asarray(jax.random.normal(key, (num, d)), np.float64)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


SW = jax.jit(sliced_wasserstein, static_argnames=("num_projections", "p", "reduce"))


def test_sw_one_dimensional_exact_values():
    key = jax.random.key(2)
    x = np.asarray(jax.random.normal(jax.random.key(3), (2000, 1)), np.float64)
    # Shifted copy: the 1-D W1 (and W2) is exactly |m| (directions are ±1 in d = 1).
    for p in (1, 2):
        for reduce in ("mean", "max"):
            got = SW(key, x, x + 1.5, num_projections=8, p=p, reduce=reduce)
            np.testing.assert_allclose(got, 1.5, rtol=1e-5)
    # Independent samples N(0,1) vs N(1.5,1), n = 4000, m = 3000: W1 = 1.5 + O(n^-1/2) noise
    # (sd of the empirical W1 here is ~0.025); allow 0.1 (= 4 sd).
    a = jax.random.normal(jax.random.key(4), (4000, 1))
    b = 1.5 + jax.random.normal(jax.random.key(5), (3000, 1))
    got = float(SW(key, a, b, num_projections=4))
    assert abs(got - 1.5) < 0.1
    # n != m is exact: W1 equals scipy's CDF-based wasserstein_distance.
    np.testing.assert_allclose(
        got, scipy.stats.wasserstein_distance(np.ravel(a), np.ravel(b)), rtol=1e-5
    )


@pytest.mark.parametrize("n, m", [(300, 300), (257, 100)])
@pytest.mark.parametrize("p", [1, 2])
def test_sw_matches_direct_computation(n, m, p):
    d, num = 5, 50
    key = jax.random.key(6)
    x = np.asarray(jax.random.normal(jax.random.key(7), (n, d)))
    y = np.asarray(1.0 + 2.0 * jax.random.normal(jax.random.key(8), (m, d)))
    theta = _directions(key, num, d)
    w_pow = np.array([_w_pow_1d_reference(x @ t, y @ t, p) for t in theta])
    for reduce, expected in (("mean", w_pow.mean() ** (1 / p)), ("max", w_pow.max() ** (1 / p))):
        got = SW(key, x, y, num_projections=num, p=p, reduce=reduce)
        np.testing.assert_allclose(got, expected, rtol=1e-4)  # float32 vs float64


def test_sw_identity_permutation_max_ge_mean():
    key = jax.random.key(9)
    x = jax.random.normal(jax.random.key(10), (1000, 8))
    y = jax.random.normal(jax.random.key(11), (800, 8)) + 0.5
    assert float(SW(key, x, x)) == 0.0
    same = float(SW(key, x, jax.random.normal(jax.random.key(12), (1000, 8))))
    shifted = float(SW(key, x, y))
    assert same < 0.2 * shifted  # same law: only O(n^-1/2) sampling noise
    px = jax.random.permutation(jax.random.key(13), x)
    py = jax.random.permutation(jax.random.key(14), y)
    for p in (1, 2):
        mean = SW(key, x, y, p=p)
        np.testing.assert_allclose(SW(key, px, py, p=p), mean, rtol=1e-6)
        assert float(SW(key, x, y, p=p, reduce="max")) >= float(mean)
    with pytest.raises(ValueError, match="reduce"):
        sliced_wasserstein(key, x, y, reduce="median")
    with pytest.raises(ValueError, match="dimension"):
        sliced_wasserstein(key, x, y[:, :3])


def _mmd_reference(x, y, h):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def gram(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * h**2))

    n, m = len(x), len(y)
    kxx, kyy = gram(x, x), gram(y, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * gram(x, y).mean()
    )


def test_mmd_reference_and_median_heuristic():
    x = np.asarray(jax.random.normal(jax.random.key(15), (200, 3)))
    y = np.asarray(jax.random.normal(jax.random.key(16), (150, 3))) + 0.7
    f = jax.jit(mmd, static_argnames="kernel")
    np.testing.assert_allclose(f(x, y, bandwidth=1.3), _mmd_reference(x, y, 1.3), atol=1e-5)
    z = np.concatenate([x, y])
    dists = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))[np.triu_indices(len(z), 1)]
    np.testing.assert_allclose(f(x, y), _mmd_reference(x, y, np.median(dists)), atol=1e-5)


def test_mmd_same_vs_shifted():
    keys = jax.random.split(jax.random.key(17), 3)
    x = jax.random.normal(keys[0], (500, 2))
    y = jax.random.normal(keys[1], (500, 2))
    shifted = jax.random.normal(keys[2], (500, 2)) + jnp.array([1.0, 0.0])
    # Under equal laws MMD²_u has mean 0 and sd ~ 1e-3 at n = 500; allow 0.01.
    assert abs(float(mmd(x, y))) < 0.01
    assert float(mmd(x, shifted)) > 0.1
    with pytest.raises(ValueError, match="kernel"):
        mmd(x, y, kernel="laplace")


# ----------------------------------------------------------------------------- Gaussians


def test_gaussian_w2_one_dimensional():
    f = jax.jit(gaussian_w2)
    got = f(jnp.array([0.3]), jnp.array([[4.0]]), jnp.array([-1.0]), jnp.array([[0.25]]))
    np.testing.assert_allclose(got, np.hypot(1.3, 2.0 - 0.5), rtol=1e-5)
    # vmap over a batch of second Gaussians.
    m2 = jnp.array([[0.0], [1.0], [2.0]])
    c2 = jnp.array([[[1.0]], [[9.0]], [[0.0]]])
    got = jax.vmap(gaussian_w2, in_axes=(None, None, 0, 0))(jnp.zeros(1), jnp.eye(1), m2, c2)
    np.testing.assert_allclose(got, [0.0, np.hypot(1.0, 2.0), np.hypot(2.0, 1.0)], atol=1e-3)


def test_gaussian_w2_commuting_and_general():
    rng = np.random.default_rng(0)
    d = 6
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    c1, c2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sqrt(np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    np.testing.assert_allclose(jax.jit(gaussian_w2)(m1, c1, m2, c2), expected, rtol=1e-4)
    # Non-commuting covariances against scipy.linalg.sqrtm, in 64-bit floats.
    g1, g2 = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    c1, c2 = g1 @ g1.T + 0.1 * np.eye(d), g2 @ g2.T + 0.1 * np.eye(d)
    s1 = scipy.linalg.sqrtm(c1).real
    cross = np.trace(scipy.linalg.sqrtm(s1 @ c2 @ s1).real)
    expected = np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * cross)
    with jax.enable_x64(True):
        got = jax.jit(gaussian_w2)(m1, c1, m2, c2)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, expected, rtol=1e-10)
        assert float(gaussian_w2(m1, c1, m1, c1)) < 1e-6
    np.testing.assert_allclose(gaussian_w2(m1, c1, m2, c2), expected, rtol=1e-4)
    with pytest.raises(ValueError, match="cov2"):
        gaussian_w2(m1, c1, m2, c2[:3, :3])


# ----------------------------------------------------------------------------- tables


def test_mean_ci_matches_scipy():
    values = np.array([1.2, 0.7, 1.9, 1.4, 0.8, 1.1])
    for level in (0.9, 0.95):
        m, h = jax.jit(functools.partial(mean_ci, level=level))(values)
        lo, hi = scipy.stats.t.interval(
            level, len(values) - 1, loc=values.mean(), scale=scipy.stats.sem(values)
        )
        np.testing.assert_allclose(m, values.mean(), rtol=1e-6)
        np.testing.assert_allclose(h, (hi - lo) / 2, rtol=1e-5)
    m, h = mean_ci(np.stack([values, 2 * values], axis=1))
    assert m.shape == h.shape == (2,)
    np.testing.assert_allclose(h[1], 2 * h[0], rtol=1e-6)
    with pytest.raises(ValueError, match="n >= 2"):
        mean_ci([1.0])
