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
