"""DDBM's preconditioned denoiser and the bridge samplers' purity (jit, vmap over keys, grad).

The laws of GOUB (SDE and Mean-ODE), I2SB (posterior chain and OT-ODE, fixed and paired
degraded images), DDBM (Heun with churn, VE and VP) and their convergence to the true law are
pinned by tests/test_oracle_bridges.py against float64 propagations of the official code.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxir import bridges
from jaxir.samplers import ddbm_denoiser, ddbm_sample

Y = jnp.array([0.5, 0.3])


def test_ddbm_denoiser_preconditioning_and_purity():
    """The preconditioned denoiser is exact for the exact F = (x_0 − c_skip x_t)/c_out; the
    sampler is deterministic per key, vmaps over keys and is differentiable in y."""
    b = bridges.ddbm_vp(jnp.broadcast_to(Y, (3, 2)))
    x0 = jnp.array([[0.1, 0.2], [0.3, -0.4], [0.0, 0.5]])
    t = jnp.array([0.2, 0.5, 0.9])
    x_t = b.sample_marginal(jax.random.key(0), x0, t)
    c_skip, c_out, c_in = bridges.bridge_preconditioning(b, t)

    def F(x_in, tt, y):
        return (x0 - c_skip[:, None] * x_in / c_in[:, None]) / c_out[:, None]

    np.testing.assert_allclose(ddbm_denoiser(F, b)(x_t, t, b.y), x0, rtol=1e-5, atol=1e-5)

    def lin(x, tt, y):
        return 0.5 * x + 0.1 * y

    def f(k, y):
        return ddbm_sample(k, lin, bridges.ddbm_vp(y), num_steps=6).x

    k = jax.random.key(4)
    y = jnp.broadcast_to(Y, (3, 2))
    keys = jax.random.split(k, 2)
    vf = jax.jit(jax.vmap(f, in_axes=(0, None)))
    np.testing.assert_array_equal(vf(keys, y), vf(keys, y))
    assert not np.allclose(vf(keys, y)[0], vf(keys, y)[1])  # the churn noise differs per key
    g = jax.jit(jax.grad(lambda y: jnp.sum(f(k, y) ** 2)))(y)
    assert bool(jnp.all(jnp.isfinite(g)))


def _official_bridge_scalings(kind, t, sd0, sdT, cov):
    """DDBM's ``KarrasDenoiser.get_bridge_scalings`` (Zhou et al. 2024, official code, c = 1),
    in float64: VE with σ_max = 80, VP with β_d = 2, β_min = 0.1, T = 1 (``vp_logsnr`` /
    ``vp_logs``); ``a`` weighs x_T = y, ``b`` weighs x_0, ``c`` is the variance."""
    if kind == "ve":
        r = t**2 / 80.0**2
        a, b, c = r, 1.0 - r, t**2 * (1.0 - r)
    else:
        logsnr = lambda u: -np.log(np.expm1(0.5 * 2.0 * u**2 + 0.1 * u))  # noqa: E731
        logs = lambda u: -0.25 * u**2 * 2.0 - 0.5 * u * 0.1  # noqa: E731
        a = np.exp(logsnr(1.0) - logsnr(t) + logs(t) - logs(1.0))
        b = -np.expm1(logsnr(1.0) - logsnr(t)) * np.exp(logs(t))
        c = -np.expm1(logsnr(1.0) - logsnr(t)) * np.exp(2 * logs(t) - logsnr(t))
    A = a**2 * sdT**2 + b**2 * sd0**2 + 2 * a * b * cov + c
    c_in = 1.0 / np.sqrt(A)
    c_skip = (b * sd0**2 + a * cov) / A
    c_out = np.sqrt(a**2 * (sdT**2 * sd0**2 - cov**2) + sd0**2 * c) * c_in
    return np.array([c_skip, c_out, c_in])


def test_bridge_preconditioning_is_the_official_get_bridge_scalings():
    """``bridge_preconditioning`` equals DDBM's official scalings on both bridges, with the
    defaults (σ_0 = σ_T = 0.5, cov 0) and with σ_T = 0.7, cov_xy = 0.1. The other tests pass
    the same c_skip to the network and the denoiser, so a wrong c_skip cancels there (issue 18
    item 4: mutant bri-11, c_skip with the y-weight a in place of b, passed them all).
    Tolerance: the change of the float64 value when t moves by 4 float32 ulps (t is float32
    in jaxir), plus 64 roundings of u = 2⁻²⁴."""
    u = 2.0**-24
    for kind, ts in (("ve", [0.5, 10.0, 40.0, 79.0]), ("vp", [0.05, 0.3, 0.7, 0.95])):
        b = bridges.ddbm_ve(Y) if kind == "ve" else bridges.ddbm_vp(Y)
        for sd0, sdT, cov in ((0.5, None, 0.0), (0.5, 0.7, 0.1)):
            got = np.array(bridges.bridge_preconditioning(b, jnp.asarray(ts, jnp.float32), sd0, sdT, cov),
                           np.float64)
            for k, t in enumerate(ts):
                want = _official_bridge_scalings(kind, t, sd0, sd0 if sdT is None else sdT, cov)
                dt = 4 * np.spacing(np.float32(t))
                sens = np.maximum(np.abs(_official_bridge_scalings(kind, t + dt, sd0, sd0 if sdT is None else sdT, cov) - want),
                                  np.abs(_official_bridge_scalings(kind, t - dt, sd0, sd0 if sdT is None else sdT, cov) - want))
                tol = sens + 64 * u * np.abs(want)
                assert np.all(np.abs(got[:, k] - want) <= tol), (kind, t, sd0, sdT, cov, got[:, k], want)
