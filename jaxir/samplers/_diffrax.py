"""Reverse SDE and probability-flow ODE samplers on diffrax.

Both integrate in the *reversed* time ``u = T − t`` from ``u = 0`` to ``u = T − t_min``,
so diffrax always steps forward (the backward-in-time SDE path of diffrax has had
reported bugs with some solvers, diffrax issue 598). In ``u`` the reverse SDE
(Song et al. 2021, Eq. 6) reads::

    dx = [g(t)² ∇log p_t(x) − f(x, t)] du + g(t) dW_u,        t = T − u,

and the probability-flow ODE (Eq. 13) is ``dx/du = ½ g² ∇log p_t − f``.

Only solvers that pass the exact Gaussian tests in ``tests/test_samplers.py`` are offered
(:data:`SDE_SOLVERS`, :data:`ODE_SOLVERS`).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from .. import predictions
from ..sdes import reverse
from ._common import Samples, all_finite, check_shape

# name -> (solver factory, network evaluations per step)
SDE_SOLVERS = {
    "euler": (diffrax.Euler, 1),  # Euler–Maruyama
    "heun": (diffrax.Heun, 2),  # Stratonovich Heun == Itô for additive noise (g depends on t only)
}
ODE_SOLVERS = {
    "euler": (diffrax.Euler, 1),
    "heun": (diffrax.Heun, 2),
    "tsit5": (diffrax.Tsit5, 6),  # FSAL: 6 new evaluations per step (+1 at the start)
    "dopri5": (diffrax.Dopri5, 6),
}
BROWNIAN = ("unsafe", "virtual")


def _solver(table, name, kind):
    if name not in table:
        raise ValueError(f"{kind} solver must be one of {tuple(table)}, got {name!r}")
    return table[name]


def _saveat(span, save_every, num_steps):
    if save_every is None:
        return diffrax.SaveAt(t1=True), None
    if num_steps is None:
        raise ValueError("save_every needs a fixed-step solver (num_steps)")
    idx = np.unique(np.concatenate([np.arange(0, num_steps + 1, save_every), [num_steps]]))
    us = idx * (span / num_steps)
    return diffrax.SaveAt(ts=jnp.asarray(us, jnp.float32)), us


def _finish(sde, x_end, denoise_fn, denoise, cond):
    if not denoise:
        return x_end
    return denoise_fn(x_end, jnp.asarray(sde.t_min, jnp.float32), cond)[0]


def sde_sample(
    key,
    model_fn,
    sde,
    shape=None,
    *,
    prediction: str = "eps",
    num_steps: int = 1000,
    solver: str = "euler",
    brownian: str = "unsafe",
    denoise: bool = True,
    cond=None,
    x_init=None,
    save_every: int | None = None,
) -> Samples:
    """Sample the reverse-time SDE with diffrax (fixed step ``(T − t_min)/num_steps``).

    Args:
        brownian: ``"unsafe"`` — diffrax's ``UnsafeBrownianPath``, fastest, forward-mode
            autodiff only (uses ``ForwardMode`` adjoint); ``"virtual"`` — a
            ``VirtualBrownianTree`` that supports ``jax.grad`` (reverse mode through the
            default ``RecursiveCheckpointAdjoint``), several times slower.
        denoise: replace the final state by Tweedie's ``x̂_0(x, t_min)`` (Score-SDE's
            ``noise_removal``, on by default there). With ``False`` the output follows the
            marginal ``p_{t_min}``.
        solver: one of :data:`SDE_SOLVERS` (Euler–Maruyama by default, as the official code).

    Other arguments as :func:`~jaxir.samplers.ddpm_sample`. Returns :class:`Samples` with
    ``nfe`` the network evaluations.
    """
    shape = check_shape(shape, x_init)
    factory, per_step = _solver(SDE_SOLVERS, solver, "SDE")
    if brownian not in BROWNIAN:
        raise ValueError(f"brownian must be one of {BROWNIAN}, got {brownian!r}")
    k_init, k_bm = jax.random.split(key)
    x0 = sde.prior_sample(k_init, shape) if x_init is None else x_init
    score = predictions.score_fn_from_model(model_fn, sde, prediction)
    rev = reverse(sde, score)
    T, span = sde.T, sde.T - sde.t_min

    def drift(u, x, args):
        return -rev.drift(x, T - u, cond)

    def diffusion(u, x, args):
        return lx.DiagonalLinearOperator(jnp.broadcast_to(sde.diffusion(T - u), x.shape))

    dt = span / num_steps
    if brownian == "unsafe":
        bm = diffrax.UnsafeBrownianPath(shape=shape, key=k_bm)
        adjoint = diffrax.ForwardMode()
    else:
        bm = diffrax.VirtualBrownianTree(0.0, span, tol=dt / 2, shape=shape, key=k_bm)
        adjoint = diffrax.RecursiveCheckpointAdjoint()
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
    saveat, _ = _saveat(span, save_every, num_steps)
    sol = diffrax.diffeqsolve(
        terms, factory(), 0.0, span, dt, x0, saveat=saveat, max_steps=num_steps,
        adjoint=adjoint,
    )
    x_end = sol.ys[-1]
    out = _finish(sde, x_end, predictions.denoiser_from_model(model_fn, sde, prediction),
                  denoise, cond)
    traj = sol.ys if save_every is not None else None
    nfe = per_step * num_steps + int(denoise)
    return Samples(out, traj, nfe, all_finite(out))


def ode_sample(
    key,
    model_fn,
    sde,
    shape=None,
    *,
    prediction: str = "eps",
    solver: str = "heun",
    num_steps: int | None = 100,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    denoise: bool = False,
    cond=None,
    x_init=None,
    save_every: int | None = None,
    adjoint=None,
) -> Samples:
    """Integrate the probability-flow ODE from ``T`` to ``t_min`` with diffrax.

    ``key`` is used only to draw ``x_T`` (pass ``x_init`` for a deterministic map).
    Fixed step (``num_steps`` steps of Euler/Heun/…) or, with ``num_steps=None``, adaptive
    with a PID controller at ``rtol``/``atol`` (Score-SDE uses RK45 with 1e-5/1e-5; here
    ``"tsit5"`` or ``"dopri5"``).

    Returns :class:`Samples`; ``nfe`` counts network evaluations: stages × steps (+1 for
    FSAL solvers' first stage, + rejected steps for adaptive solves) as a traced integer.
    ``adjoint`` is passed to diffrax (default ``RecursiveCheckpointAdjoint``; e.g.
    ``diffrax.BacksolveAdjoint()`` for O(1) memory gradients).
    """
    shape = check_shape(shape, x_init)
    factory, per_step = _solver(ODE_SOLVERS, solver, "ODE")
    x0 = sde.prior_sample(key, shape) if x_init is None else x_init
    score = predictions.score_fn_from_model(model_fn, sde, prediction)
    rev = reverse(sde, score, probability_flow=True)
    T, span = sde.T, sde.T - sde.t_min

    def drift(u, x, args):
        return -rev.drift(x, T - u, cond)

    if num_steps is None:
        if solver == "euler":
            raise ValueError("adaptive stepping needs a solver with an error estimate")
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        dt0 = None
        saveat = diffrax.SaveAt(t1=True)
        if save_every is not None:
            raise ValueError("save_every needs a fixed-step solve (num_steps)")
    else:
        controller = diffrax.ConstantStepSize()
        dt0 = span / num_steps
        max_steps = num_steps
        saveat, _ = _saveat(span, save_every, num_steps)
    kw = {} if adjoint is None else {"adjoint": adjoint}
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(drift), factory(), 0.0, span, dt0, x0, saveat=saveat,
        stepsize_controller=controller, max_steps=max_steps, **kw,
    )
    x_end = sol.ys[-1]
    out = _finish(sde, x_end, predictions.denoiser_from_model(model_fn, sde, prediction),
                  denoise, cond)
    fsal = 1 if solver in ("tsit5", "dopri5") else 0
    nfe = per_step * sol.stats["num_steps"] + fsal + int(denoise)
    traj = sol.ys if save_every is not None else None
    return Samples(out, traj, nfe, all_finite(out))
