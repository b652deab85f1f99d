"""jaxir.images (value ranges, exact priors over image shapes) and jaxir.plot (figures)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from jaxir import exact, metrics, operators, plot, schedules, sdes  # noqa: E402
from jaxir.images import (  # noqa: E402
    ImagePrior,
    measurement_to_signed,
    measurement_to_unit,
    operator_matrix,
    to_signed,
    to_unit,
)

SHAPE = (4, 4, 2)
D = 32


def _ops():
    mask = (np.arange(16).reshape(4, 4, 1) % 3 != 0).astype(np.float32)
    return {
        "identity": (operators.Identity(SHAPE), False),
        "sr2": (operators.SuperResolution(SHAPE, 2), False),
        "blur": (operators.Blur(SHAPE, operators.gaussian_kernel(3, 1.0), boundary="edge"), False),
        "inpaint": (operators.Inpainting(jnp.asarray(mask), SHAPE), True),
    }


def test_image_ranges_are_inverse():
    x = jax.random.uniform(jax.random.key(0), SHAPE)
    np.testing.assert_allclose(to_unit(to_signed(x)), x, atol=1e-7)
    np.testing.assert_allclose(to_signed(x), 2 * x - 1, atol=1e-7)


@pytest.mark.parametrize("name", ["identity", "sr2", "blur", "inpaint"])
def test_measurement_ranges_follow_the_linear_model(name):
    """y = A x + σ ε with x in [0, 1] maps to y' = A (2x − 1) + 2σ ε exactly (same ε)."""
    op, needs_op = _ops()[name]
    x = jax.random.uniform(jax.random.key(1), SHAPE)
    eps = jax.random.normal(jax.random.key(2), op.y_shape)
    sigma = 0.03
    y = op.A(x) + sigma * eps
    y2, s2 = measurement_to_signed(y, sigma, op)
    np.testing.assert_allclose(y2, op.A(to_signed(x)) + s2 * eps, atol=2e-6)
    assert s2 == pytest.approx(2 * sigma)
    back, s_back = measurement_to_unit(y2, s2, op)
    np.testing.assert_allclose(back, y, atol=2e-6)
    assert s_back == pytest.approx(sigma)
    if not needs_op:  # A(1) = 1: op may be left out
        np.testing.assert_allclose(measurement_to_signed(y, sigma)[0], y2, atol=2e-6)


def _gaussian():
    k = jax.random.normal(jax.random.key(3), (D, D))
    cov = k @ k.T / D + 0.1 * jnp.eye(D)
    return exact.Gaussian(jnp.linspace(-0.5, 0.5, D), cov)


def test_operator_matrix_is_the_linear_map():
    op = _ops()["sr2"][0]
    A = operator_matrix(op)
    x = jax.random.normal(jax.random.key(4), SHAPE)
    np.testing.assert_allclose(A @ x.ravel(), op.A(x).ravel(), atol=1e-5)
    assert A.shape == (int(np.prod(op.y_shape)), D)


@pytest.mark.parametrize("name", ["identity", "sr2", "inpaint"])
def test_image_prior_posterior_is_the_closed_form(name):
    """Against the textbook posterior in float64 NumPy: μ + ΣAᵀ(AΣAᵀ + σ²I)⁻¹(y − Aμ)."""
    op, _ = _ops()[name]
    g = _gaussian()
    prior = ImagePrior(g, SHAPE)
    x = prior.sample(jax.random.key(5), 1)[0]
    assert x.shape == SHAPE
    sigma = 0.1
    y = op.A(x) + sigma * jax.random.normal(jax.random.key(6), op.y_shape)
    post = prior.posterior(op, sigma, y)
    A = np.asarray(operator_matrix(op), np.float64)
    S, mu = np.asarray(g.cov, np.float64), np.asarray(g.mean, np.float64)
    K = S @ A.T @ np.linalg.inv(A @ S @ A.T + sigma**2 * np.eye(A.shape[0]))
    want = mu + K @ (np.asarray(y, np.float64).ravel() - A @ mu)
    assert post.mean.shape == SHAPE
    np.testing.assert_allclose(np.asarray(post.mean).ravel(), want, atol=2e-4)


def test_image_prior_model_fn_and_shapes():
    g = _gaussian()
    prior = ImagePrior(g, SHAPE)
    sde = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(100))
    x = jax.random.normal(jax.random.key(7), (3, *SHAPE))
    t = jnp.asarray(40.0)
    out = prior.model_fn(sde)(x, t)
    flat = g.model_fn(sde)(x.reshape(3, D), t)
    np.testing.assert_allclose(out, flat.reshape(3, *SHAPE), atol=1e-6)
    np.testing.assert_allclose(prior.log_prob(x), g.log_prob(x.reshape(3, D)), rtol=1e-6)
    mix = ImagePrior(exact.GaussianMixture(jnp.array([0.25, 0.75]), jnp.stack([g.mean, -g.mean]),
                                           jnp.stack([g.cov, g.cov])), SHAPE)
    np.testing.assert_allclose(mix.mean.ravel(), -0.5 * g.mean, atol=1e-6)
    with pytest.raises(ValueError, match="dimension"):
        ImagePrior(g, (4, 4, 3))
    with pytest.raises(ValueError, match="expected images"):
        prior.log_prob(jnp.zeros((3, D)))
    with pytest.raises(ValueError, match="x_shape"):
        prior.posterior(operators.Identity((8, 4, 1)), 0.1, jnp.zeros((8, 4, 1)))


# ---- plot ----

def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_compare_captions_are_the_metrics():
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    noisy = np.clip(ref + 0.2 * rng.standard_normal(ref.shape), -1, 1).astype(np.float32)
    lr = ref[:, ::4, ::4]
    fig = plot.compare({"LR": lr, "noisy": noisy}, reference=ref)
    titles = _titles(fig)
    assert len(fig.axes) == 6 and titles[0] == "LR" and titles[-1] == ""
    p, s = float(metrics.psnr(noisy[1], ref[1])), float(metrics.ssim(noisy[1], ref[1]))
    assert titles[4] == f"{p:.2f} dB / {s:.3f}"  # row 2 of the "noisy" column
    assert titles[2] == "reference" and titles[3] == ""  # the LR image has no caption
    with pytest.raises(ValueError, match="same number"):
        plot.compare({"a": ref[:1], "b": ref})


def test_posterior_maps_show_mean_and_std():
    rng = np.random.default_rng(1)
    samples = rng.uniform(-1, 1, (5, 12, 10, 3)).astype(np.float32)
    ref = samples[0]
    fig = plot.posterior_maps(samples, reference=ref, measurement=ref[::2, ::2])
    images = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    std = samples.std(0, ddof=1).mean(-1)
    same = [np.asarray(a) for a in images if np.shape(a) == std.shape]
    assert any(np.allclose(a, std, atol=1e-6) for a in same)
    mean = (samples.mean(0) + 1) / 2
    assert any(np.allclose(np.asarray(a), mean, atol=1e-6) for a in images
               if np.shape(a) == mean.shape)
    assert "posterior mean (K=5)" in " ".join(_titles(fig))
    with pytest.raises(ValueError, match="at least 2"):
        plot.posterior_maps(samples[:1])


def test_sample_grid_and_ranges():
    x = np.linspace(0, 1, 7 * 8 * 8).reshape(7, 8, 8, 1)
    fig = plot.sample_grid(x, value_range=(0, 1), title="samples")
    assert len([ax for ax in fig.axes if ax.get_images()]) == 7
    np.testing.assert_allclose(plot.to_display(np.array([-1.0, 0.0, 2.0])), [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plot.sample_grid(np.zeros((2, 4, 4, 2)))
