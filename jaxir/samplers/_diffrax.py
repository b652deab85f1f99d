"""Reverse SDE and probability-flow ODE samplers on diffrax.

Both integrate in the *reversed* time ``u = T − t`` from ``u = 0`` to ``u = T − t_min``,
so diffrax always steps forward (the backward-in-time SDE path of diffrax has had
reported bugs with some solvers, diffrax issue 598). In ``u`` the reverse SDE
(Song et al. 2021, Eq. 6) reads::

    dx = [g(t)² ∇log p_t(x) − f(x, t)] du + g(t) dW_u,        t = T − u,

and the probability-flow ODE (Eq. 13) is ``dx/du = ½ g² ∇log p_t − f``.

Only solvers that pass the exact Gaussian tests in ``tests/test_samplers.py`` are offered
(:data:`SDE_SOLVERS`, :data:`ODE_SOLVERS`).

The Brownian motion of a fixed-step SDE solve (:data:`BROWNIAN`): ``"step"`` (default) draws
the increment of step ``k`` from ``fold_in(key, k)`` (:class:`_StepBrownianPath`): about as
cheap as a hand-written ``lax.scan`` loop, deterministic, and reverse-differentiable.
``"virtual"`` is diffrax's ``VirtualBrownianTree`` (a true Brownian path at any resolution,
several times slower); ``"unsafe"`` is ``UnsafeBrownianPath`` (forward-mode autodiff only).

The vector fields are closure-converted (``eqx.filter_closure_convert``): arrays that
``model_fn`` or the SDE close over become leaves of the diffrax term, so every adjoint,
``BacksolveAdjoint`` included, differentiates with respect to them.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
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
BROWNIAN = ("step", "unsafe", "virtual")


class _StepBrownianPath(diffrax.AbstractBrownianPath):
    """Brownian increments for a fixed-step solve, keyed by the step index.

    The solve runs on ``[0, num_steps · dt]`` in steps of ``dt``; the increment over the
    step ``[t0, t1]`` that starts at ``t0 ≈ k·dt`` is ``√(t1 − t0) · N(0, I)`` drawn from
    ``jax.random.fold_in(key, k)``, ``k = round(t0 / dt)``: independent ``N(0, t1 − t0)``
    increments, the same ones at every evaluation (so ``RecursiveCheckpointAdjoint``'s
    recomputation replays them), and one ``fold_in`` + ``normal`` per step (no tree).
    Times are under ``stop_gradient`` (the step grid is fixed).

    Only whole steps are increments of this path. A solver that evaluates the control on a
    sub-interval (``HalfSolver``), over two steps (``LeapfrogMidpoint``) or as a point
    value gets a run-time error (``eqx.error_if``, under jit and vmap) or, for a point
    value, a trace-time ``ValueError``. Lévy area is not generated (``levy_area`` is
    ``BrownianIncrement``): solvers that need space-time Lévy area are refused by diffrax
    at trace time.
    """

    shape: jax.ShapeDtypeStruct = eqx.field(static=True)
    key: jax.Array
    dt: float = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)
    levy_area: type = eqx.field(static=True, default=diffrax.BrownianIncrement)

    # Largest accepted |t0/dt − k| and |(t1 − t0)/dt − 1|. Grid times are span·k/N in the
    # time dtype, a few ulp off k·dt: ~1e-7·N in these units, far below this.
    _TOL = 0.1

    @property
    def t0(self):
        return 0.0

    @property
    def t1(self):
        return self.dt * self.num_steps

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        del left
        if t1 is None:
            raise ValueError("_StepBrownianPath gives increments over whole steps only "
                             "(evaluate(t0, t1)), not point values W(t)")
        t0 = jax.lax.stop_gradient(jnp.asarray(t0))
        t1 = jax.lax.stop_gradient(jnp.asarray(t1))
        s = t0 / self.dt
        k = jnp.round(s)
        h = t1 - t0
        bad = ((jnp.abs(s - k) > self._TOL) | (jnp.abs(h / self.dt - 1.0) > self._TOL)
               | (k < 0) | (k >= self.num_steps))
        z = jax.random.normal(jax.random.fold_in(self.key, k.astype(jnp.int32)),
                              self.shape.shape, self.shape.dtype)
        w = jnp.sqrt(h).astype(self.shape.dtype) * z
        w = eqx.error_if(w, bad, "brownian='step' was evaluated on an interval that is not "
                         "one step of the fixed grid (a solver that evaluates sub-steps or "
                         "several steps, e.g. HalfSolver or LeapfrogMidpoint, needs "
                         "brownian='virtual')")
        if use_levy:
            return diffrax.BrownianIncrement(dt=h, W=w)
        return w


def _closure_convert(fn, t, x):
    """``fn(u, x, args)`` with the arrays it closes over hoisted into pytree leaves."""
    return eqx.filter_closure_convert(fn, jnp.asarray(t, jnp.result_type(float)), x, None)


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
    brownian: str = "step",
    denoise: bool = True,
    cond=None,
    x_init=None,
    save_every: int | None = None,
    adjoint=None,
) -> Samples:
    """Sample the reverse-time SDE with diffrax (fixed step ``(T − t_min)/num_steps``).

    Args:
        brownian: the Brownian motion (:data:`BROWNIAN`).
            ``"step"`` (default) — increment ``k`` is ``√Δu · N(0, I)`` from
            ``jax.random.fold_in(k_bm, k)`` (``k_bm`` the second half of
            ``jax.random.split(key)``): about as fast as a hand-written ``lax.scan`` loop
            (1–1.3× on the CPU, ``experiments/benchmarks/NOTES.md`` §3), deterministic, and supports ``jax.grad`` (reverse mode through the default
            ``RecursiveCheckpointAdjoint``; ``jax.jvp`` needs ``adjoint=ForwardMode()``).
            ``"virtual"`` — diffrax's ``VirtualBrownianTree`` (tolerance ``Δu/2``): also
            reverse-differentiable, 5–25× slower per step; a true Brownian path, for
            solvers that evaluate sub-steps.
            ``"unsafe"`` — diffrax's ``UnsafeBrownianPath`` with ``ForwardMode`` adjoint:
            as fast as ``"step"``, forward-mode autodiff only, and its increments depend
            on the bit patterns of the step times.
            The three give the same law of samples, not the same numbers for one key.
        adjoint: diffrax adjoint; default ``ForwardMode()`` for ``"unsafe"`` and
            ``RecursiveCheckpointAdjoint()`` otherwise (e.g.
            ``RecursiveCheckpointAdjoint(checkpoints=num_steps)`` stores every step and
            skips recomputation when memory allows).
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
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
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
    # Euler and Heun (every entry of SDE_SOLVERS) evaluate the control once per whole step,
    # [u_k, u_{k+1}], as _StepBrownianPath requires.
    if brownian == "step":
        bm = _StepBrownianPath(jax.ShapeDtypeStruct(shape, x0.dtype), k_bm, dt, num_steps)
    elif brownian == "unsafe":
        bm = diffrax.UnsafeBrownianPath(shape=shape, key=k_bm)
    else:
        bm = diffrax.VirtualBrownianTree(0.0, span, tol=dt / 2, shape=shape, key=k_bm)
    if adjoint is None:
        adjoint = (diffrax.ForwardMode() if brownian == "unsafe"
                   else diffrax.RecursiveCheckpointAdjoint())
    terms = diffrax.MultiTerm(diffrax.ODETerm(_closure_convert(drift, 0.0, x0)),
                              diffrax.ControlTerm(_closure_convert(diffusion, 0.0, x0), bm))
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
    ``diffrax.BacksolveAdjoint()`` for O(1) memory gradients, which also works for
    parameters that ``model_fn`` closes over: the drift is closure-converted).
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
        diffrax.ODETerm(_closure_convert(drift, 0.0, x0)), factory(), 0.0, span, dt0, x0,
        saveat=saveat,
        stepsize_controller=controller, max_steps=max_steps, **kw,
    )
    x_end = sol.ys[-1]
    out = _finish(sde, x_end, predictions.denoiser_from_model(model_fn, sde, prediction),
                  denoise, cond)
    fsal = 1 if solver in ("tsit5", "dopri5") else 0
    nfe = per_step * sol.stats["num_steps"] + fsal + int(denoise)
    traj = sol.ys if save_every is not None else None
    return Samples(out, traj, nfe, all_finite(out))
