import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxir import schedules


def test_linear_endpoints_and_alphas_cumprod():
    b = schedules.linear_beta_schedule(1000)
    assert b.shape == (1000,)
    np.testing.assert_allclose([b[0], b[-1]], [1e-4, 0.02], rtol=1e-6)
    abar = schedules.alphas_cumprod(b)
    np.testing.assert_allclose(abar, np.cumprod(1 - np.asarray(b, np.float64)), rtol=1e-4)


def test_cosine_matches_formula_and_clip():
    n, s = 1000, 0.008
    f = np.cos((np.arange(n + 1) / n + s) / (1 + s) * np.pi / 2) ** 2
    ref = np.minimum(1 - f[1:] / f[:-1], 0.999)
    np.testing.assert_allclose(schedules.cosine_beta_schedule(n), ref, rtol=2e-4, atol=1e-6)
    assert float(schedules.cosine_beta_schedule(n)[-1]) == pytest.approx(0.999)


def test_other_discrete_schedules():
    q = schedules.quadratic_beta_schedule(10, 1e-4, 0.02)
    np.testing.assert_allclose(np.sqrt(q), np.linspace(0.01, np.sqrt(0.02), 10), rtol=1e-5)
    sg = schedules.sigmoid_beta_schedule(100)
    assert np.all(np.diff(sg) > 0) and 1e-4 < sg[0] < sg[-1] < 0.02
    i2 = schedules.i2sb_beta_schedule(1000, beta_max=0.3)
    np.testing.assert_allclose(i2, i2[::-1])  # symmetric
    assert float(i2.max()) <= 0.3 / 1000 + 1e-9


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_respacing_previous_steps_are_read_off_the_grid(spacing):
    ts, prev = schedules.respace_timesteps(1000, 50, spacing)
    assert ts.shape == prev.shape == (50,)
    assert np.all(np.diff(ts) < 0)
    np.testing.assert_array_equal(prev[:-1], ts[1:])
    assert prev[-1] == -1
    first = {"leading": 980, "trailing": 999, "linspace": 999}[spacing]
    assert ts[0] == first
    last = {"leading": 0, "trailing": 19, "linspace": 0}[spacing]
    assert ts[-1] == last


def test_respacing_errors():
    with pytest.raises(ValueError, match="spacing"):
        schedules.respace_timesteps(1000, 10, "uniform-ish")
    with pytest.raises(ValueError, match="exceeds"):
        schedules.respace_timesteps(10, 20)


def test_continuous_schedules():
    t = jnp.linspace(0, 1, 11)
    B = schedules.vp_beta_integral(t)
    dB = jax.vmap(jax.grad(schedules.vp_beta_integral))(t)
    np.testing.assert_allclose(dB, schedules.vp_beta(t), rtol=1e-5)
    np.testing.assert_allclose(B[-1], 0.1 + 0.5 * 19.9, rtol=1e-6)
    s = schedules.ve_sigma(t, 0.01, 50.0)
    np.testing.assert_allclose([s[0], s[-1]], [0.01, 50.0], rtol=1e-5)


def test_karras_grid():
    s = schedules.karras_sigmas(10, 0.002, 80.0, 7.0)
    assert s.shape == (11,) and float(s[-1]) == 0.0
    np.testing.assert_allclose([s[0], s[-2]], [80.0, 0.002], rtol=1e-5)
    assert np.all(np.diff(s) < 0)
    # rho-spacing: s^(1/rho) is linear
    np.testing.assert_allclose(np.diff(np.asarray(s[:-1]) ** (1 / 7)).std(), 0, atol=1e-5)


def test_irsde_theta_schedule():
    th = schedules.irsde_theta_schedule(100)
    assert th.shape == (101,)
    steps = 102
    x = np.linspace(0, steps, steps + 1)
    f = np.cos((x / steps + 0.008) / 1.008 * math.pi / 2) ** 2
    f = f / f[0]
    np.testing.assert_allclose(th, 1 - f[1:-1], rtol=1e-4, atol=1e-6)
    assert np.all(np.diff(th) > 0)
