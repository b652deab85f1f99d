"""CDDB (Chung et al. 2023): I2SB plus a data-consistency step. On a Gaussian pair problem
(x_1 = x_0 + noise, the exact E[x_0 | x_t]) with a linear measurement y = A x_0: with step 0
CDDB and CDDB-deep are I2SB exactly; ``extras``; vmap and grad. Their laws with the correction
are pinned by tests/test_oracle_bridges.py (official ``dds_sampling`` / ``ddpm_dps_sampling``)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxir import bridges, exact
from jaxir.operators import DenseMatrix
from jaxir.samplers import cddb_sample, i2sb_sample, measurement_residual

M = jnp.array([0.2, -0.1])
_L = np.array([[0.3, 0.0], [0.1, 0.2]])
S = jnp.asarray(_L @ _L.T + 0.01 * np.eye(2))
SN = 0.2
N = 2_000
STEPS = 20
OP = DenseMatrix(jnp.array([[0.6, 0.3]]))  # one singular value, s² = 0.45


def _model(b):
    def model(x, t, cond):
        """The MSE-optimal (x_t − E[x_0 | x_t])/σ_t for the Gaussian pair (x_0, x_1)."""
        bb, a, std = bridges.bridge_coeffs(b, t)
        bb, a, std = bb[:, None, None], a[:, None, None], std[:, None, None]
        v = (bb + a) ** 2 * S + (a**2 * SN**2 + std**2) * jnp.eye(2)
        r = (x - (bb + a)[..., 0] * M)[..., None]
        x0_hat = M + jnp.einsum("bij,bj->bi", (bb + a) * S, jnp.linalg.solve(v, r)[..., 0], precision="highest")
        return (x - x0_hat) / b.sde.marginal_coeffs(t)[1][:, None]

    return model


def _data(n=N):
    """x_0 ~ N(M, S), x_1 = x_0 + SN·n, y = A x_0 (noiseless measurement of the true x_0)."""
    x0 = exact.Gaussian(M, S).sample(jax.random.key(1), n)
    x1 = x0 + SN * jax.random.normal(jax.random.key(2), x0.shape)
    return x1, jax.vmap(OP.A)(x0)


@jax.jit
def _i2sb(key, x1):
    b = bridges.i2sb(x1, beta_max=1.0)
    return i2sb_sample(key, _model(b), b, num_steps=STEPS).x


@functools.partial(jax.jit, static_argnames="deep")
def _cddb(key, x1, y, step, deep):
    b = bridges.i2sb(x1, beta_max=1.0)
    return cddb_sample(key, _model(b), b, OP, y, num_steps=STEPS, step_size=step, deep=deep)


def test_step_zero_is_i2sb():
    """step_size = 0, same key: CDDB returns the I2SB samples bitwise; CDDB-deep to 1e-6
    (its x̂_0 is the primal output of ``jax.vjp``, which XLA may fuse differently: ≤ 2 ulp)."""
    x1, y = _data()
    key = jax.random.key(0)
    ref = _i2sb(key, x1)
    np.testing.assert_array_equal(_cddb(key, x1, y, 0.0, deep=False).x, ref)
    np.testing.assert_allclose(_cddb(key, x1, y, 0.0, deep=True).x, ref, rtol=0, atol=1e-6)


def test_extras_is_the_final_measurement_residual():
    """``extras`` holds the per-example ``‖A x − y‖`` of the output (the laws of CDDB and
    CDDB-deep, with and without the correction, are pinned by tests/test_oracle_bridges.py)."""
    x1, y = _data(64)
    out = _cddb(jax.random.key(3), x1, y, 1.0, deep=False)
    np.testing.assert_allclose(out.extras, measurement_residual(OP, out.x, y), rtol=1e-6)
    assert bool(out.finite) and out.nfe == STEPS


def test_cddb_vmap_and_grad():
    """CDDB vmaps over keys (deterministic per key, different across keys); CDDB-deep is
    differentiable with respect to the measurement (finite, nonzero gradient)."""
    x1, y = _data(8)
    b = bridges.i2sb(x1, beta_max=1.0)
    keys = jax.random.split(jax.random.key(5), 2)

    def f(k, yy, deep):
        return cddb_sample(k, _model(b), b, OP, yy, num_steps=5, deep=deep, step_size=0.5).x

    vf = jax.jit(jax.vmap(lambda k, yy: f(k, yy, False), in_axes=(0, None)))
    a = vf(keys, y)
    np.testing.assert_array_equal(a, vf(keys, y))
    assert not np.allclose(a[0], a[1])
    g = jax.jit(jax.grad(lambda yy: jnp.sum(f(keys[0], yy, True) ** 2)))(y)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
