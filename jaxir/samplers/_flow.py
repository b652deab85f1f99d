"""Flow-matching / rectified-flow sampling between two distributions (e.g. LQ → HQ).

The straight interpolant ``x_t = (1 − t) x_0 + t x_1`` (Liu et al. 2023; Lipman et al. 2023)
has velocity ``dx_t/dt = x_1 − x_0``; a network ``velocity_fn(x, t, cond) ≈ E[x_1 − x_0 | x_t]``
transports the distribution of ``x_1`` (the degraded image, plus optional small noise) to
that of ``x_0`` (the clean image) by integrating ``dx/dt = v`` from ``t = 1`` down to 0.
The solve runs in ``u = 1 − t`` forward with diffrax, as the other continuous samplers.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ._common import Samples, all_finite
from ._diffrax import ODE_SOLVERS, _solver


def flow_sample(
    key,
    velocity_fn,
    x1,
    *,
    num_steps: int | None = 10,
    solver: str = "euler",
    source_noise: float = 0.0,
    t_end: float = 0.0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    cond=None,
    save_every: int | None = None,
) -> Samples:
    """Integrate ``dx/dt = velocity_fn(x, t, cond)`` from ``t = 1`` (``x = x1``) to ``t_end``.

    Args:
        key: only used for ``source_noise`` (``x1 + source_noise · ε``, the small Gaussian
            noise added to the LQ image in restoration flows).
        x1: ``(B, ...)`` starting points (e.g. the degraded images).
        num_steps: fixed steps (few-step sampling is the point of rectified flows), or
            ``None`` for adaptive ``tsit5``/``dopri5``.
    """
    factory, per_step = _solver(ODE_SOLVERS, solver, "ODE")
    x = jnp.asarray(x1)
    if source_noise:
        x = x + source_noise * jax.random.normal(key, x.shape, x.dtype)
    span = 1.0 - t_end

    def vf(u, y, args):
        return -velocity_fn(y, 1.0 - u, cond)

    if num_steps is None:
        if solver == "euler":
            raise ValueError("adaptive stepping needs a solver with an error estimate")
        ctrl, dt0, saveat = diffrax.PIDController(rtol=rtol, atol=atol), None, diffrax.SaveAt(t1=True)
    else:
        ctrl, dt0, max_steps = diffrax.ConstantStepSize(), span / num_steps, num_steps
        if save_every is None:
            saveat = diffrax.SaveAt(t1=True)
        else:
            idx = np.unique(np.concatenate([np.arange(0, num_steps + 1, save_every), [num_steps]]))
            saveat = diffrax.SaveAt(ts=jnp.asarray(idx * span / num_steps, jnp.float32))
    sol = diffrax.diffeqsolve(diffrax.ODETerm(vf), factory(), 0.0, span, dt0, x, saveat=saveat,
                              stepsize_controller=ctrl, max_steps=max_steps)
    out = sol.ys[-1]
    fsal = 1 if solver in ("tsit5", "dopri5") else 0
    traj = sol.ys if save_every is not None else None
    return Samples(out, traj, per_step * sol.stats["num_steps"] + fsal, all_finite(out))
