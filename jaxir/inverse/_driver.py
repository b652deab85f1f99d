"""The posterior-sampler driver: one loop, a base reverse step, corrections.

Every training-free sampler of :mod:`jaxir.inverse` walks a time grid ``T = t_0 > … > t_{n−1}``
(last successor 0) and moves ``x_t → x_s`` by a *base reverse step* (DDPM ancestral, DDIM with
η, DDNM's, DiffPIR's, DDRM's spectral update, …) composed with *corrections* (a likelihood
gradient through the denoiser, a replacement of the observed part, a proximal data step, …).
Each is a :class:`Piece`: a function of the step's context :class:`Step` that returns it
updated — the way an optax ``GradientTransformation`` is a function of the updates — and
:func:`chain` runs pieces in order. A method (:class:`Method`) is a ``build(problem) -> Sampler``
function and its loop settings; :func:`sample` is the one loop that runs it:

* checks ``shape`` / ``x_init`` against ``op.x_shape`` and batches ``y`` (:class:`Problem`);
* builds the time grid with :func:`jaxir.samplers.time_grid` (or the method's own), and for a
  method with a *walk* (time travel, RePaint's jumps) the path of moves over it;
* splits the key — ``k_init, k_steps = split(key)`` (a method may name a third key) and step
  ``k`` uses ``split(k_steps, n)[k]``, shared by the pieces that draw (:func:`chain`);
* runs one ``lax.scan`` through :func:`jaxir.samplers.scan_steps` (``save_every``,
  ``checkpoint``) and returns :class:`~jaxir.samplers.Samples` with the NFE and the finite flag.

Everything is a pure function of its arrays: ``jax.jit`` (close over ``model_fn`` and the
options), ``jax.vmap`` over keys and ``jax.grad`` w.r.t. ``y``, ``x_init`` or what ``model_fn``
closes over compose with every sampler built this way.

Example — DDPM whose x̂_0 takes one Landweber step towards ``A x = y`` before every step::

    >>> import jax, jax.numpy as jnp
    >>> from jaxir import exact, inverse, operators, schedules, sdes
    >>> def build(p):
    ...     A, A_T = p.batched("A"), p.batched("A_T")
    ...     def landweber(step):
    ...         return step._replace(x0=step.x0 - 0.5 * A_T(A(step.x0) - p.y))
    ...     return inverse.Sampler(inverse.chain(inverse.denoise(p), inverse.correct(landweber),
    ...                                          inverse.ddpm(p)))
    >>> sde = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
    >>> prior = exact.Gaussian(jnp.zeros(3), jnp.eye(3))
    >>> op = operators.DenseMatrix(jnp.array([[1.0, 0.0, 0.0]]))
    >>> out = inverse.sample(inverse.Method("landweber", build), jax.random.key(0),
    ...                      prior.model_fn(sde), sde, op, jnp.ones(1), None, (4, 3), num_steps=20)
    >>> out.x.shape, out.nfe
    ((4, 3), 20)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import predictions
from .._utils import bcast
from ..samplers import Samples, ddim_step, ddpm_step, scan_steps, time_grid
from ._common import check_shapes, clip_x0, replace_observed, spectral_y, x0_and_vjp


class Problem(NamedTuple):
    """The inverse problem a sampler is asked, checked and batched by :func:`sample`.

    Attributes:
        name: the public sampler's name (for error messages).
        model_fn, sde, prediction, cond: the prior (see :mod:`jaxir.predictions`).
        op: the degradation (single-example methods; :meth:`batched` maps them over ``B``),
            or None for a method that brings its own (GDP's learned degradation).
        y: the measurement, ``(B, *op.y_shape)`` (one per chain; a shared ``y`` is broadcast).
        sigma_y: its noise std as given (a Python ``0`` selects noiseless forms).
        shape: ``(B, *op.x_shape)``.
        ts, ts_next: the time grid, float32 ``(n,)`` each: ``T ≈ ts[0] > … > ts[n−1]`` and
            the times they step to (``ts_next[−1] = 0``); a walk moves over these levels.
    """

    name: str
    model_fn: Callable
    sde: Any
    op: Any
    y: jax.Array
    sigma_y: Any
    shape: tuple
    ts: jax.Array
    ts_next: jax.Array
    prediction: str = "eps"
    cond: Any = None

    def batched(self, method: str) -> Callable:
        """``jax.vmap`` of the single-example ``op.<method>`` (``"A"``, ``"A_T"``, ``"V"``, …)."""
        return jax.vmap(getattr(self.op, method))

    def denoise(self, x, t):
        """Tweedie ``(x̂_0, ε̂)`` of the model at ``(x_t, t)`` (:mod:`jaxir.predictions`)."""
        return predictions.denoiser_from_model(self.model_fn, self.sde, self.prediction)(
            x, t, self.cond)


class Step(NamedTuple):
    """What one move ``x_t → x_s`` hands from piece to piece (see :func:`chain`).

    Attributes:
        x: ``x_t``, ``(B, *x_shape)``; a correction may replace it before the denoiser runs.
        t, s: the times the move starts from and goes to (scalars; ``s < t`` for a reverse
            step, ``s > t`` for a move up a walk).
        index: the move's position in the loop (0, 1, …; an int32 scalar).
        state: what the method carries from step to step (None unless it has a ``state``).
        x0, eps: the ``(x̂_0, ε̂)`` the base step uses (after clipping and corrections).
        denoised: the network's own ``x̂_0(x_t)`` (before clipping or corrections).
        vjp: ``v ↦ (∂x̂_0/∂x_t)ᵀ v`` at ``x_t`` (``denoise(p, vjp=True)``), for guidance.
        x_next: ``x_s`` once the base step has run; corrections after it change this.
    """

    x: jax.Array
    t: jax.Array
    s: jax.Array
    index: jax.Array
    state: Any = None
    x0: jax.Array | None = None
    eps: jax.Array | None = None
    denoised: jax.Array | None = None
    vjp: Callable | None = None
    x_next: jax.Array | None = None


class Piece(NamedTuple):
    """One part of a move: ``update(step, key) -> step`` (``key`` is None unless ``draws``)."""

    update: Callable[[Step, Any], Step]
    draws: bool = False


class Sampler(NamedTuple):
    """What a method's ``build(problem)`` returns: its moves, start, state and finish.

    Attributes:
        step: the reverse move ``x_t → x_s``; must set ``x_next``.
        init: ``key -> x_T`` when no ``x_init`` is given; default the SDE's prior.
        state: ``(key, x_T) -> state``, carried through the loop in :attr:`Step.state`;
            ``key`` is the ``"state"`` key of :attr:`Method.keys` (None without one).
        up: the move up a walk (``s > t``: re-noising), for a :attr:`Method.walk`.
        finish: ``(x, state, key) -> (x, extras)`` after the loop (``key``: the ``"finish"``
            key); a changed ``x`` also replaces the trajectory's last entry.
    """

    step: Piece
    init: Callable | None = None
    state: Callable | None = None
    up: Piece | None = None
    finish: Callable | None = None


class Method(NamedTuple):
    """A posterior sampler for :func:`sample`: its name, ``build`` and loop settings.

    Attributes:
        name: the public function's name (error messages).
        build: ``Problem -> Sampler``, called once at trace time with the checked problem.
        num_steps: the default number of steps (None: all ``N`` of a discrete SDE, else 1000).
        spacing: the default grid spacing (None: :func:`~jaxir.samplers.time_grid`'s).
        grid: ``(sde, num_steps) -> (ts, ts_next)`` instead of ``time_grid`` (when no
            ``timesteps`` are given).
        walk: ``num_steps -> level path`` over the grid (``n−1`` = ``ts[0]``, ``−1`` = the
            data; consecutive levels differ by one; a rise is an ``up`` move). Default:
            straight down, one reverse move per grid time.
        keys: the order ``key`` is split in, from ``"init"``, ``"steps"``, ``"state"`` and
            ``"finish"`` — fixed per method so that its fixed-key draws never move.
    """

    name: str
    build: Callable[[Problem], Sampler]
    num_steps: int | None = None
    spacing: str | None = None
    grid: Callable | None = None
    walk: Callable | None = None
    keys: tuple = ("init", "steps")


# ---- composing pieces --------------------------------------------------------------------


def chain(*pieces: Piece) -> Piece:
    """Run ``pieces`` in order; the pieces that draw share the step's key.

    With one drawing piece it gets the key itself, with ``m > 1`` they get
    ``jax.random.split(key, m)`` in order (a chain draws as one piece when nested).
    """
    m = sum(p.draws for p in pieces)

    def update(step, key):
        keys = iter(() if m == 0 else (key,) if m == 1 else tuple(jax.random.split(key, m)))
        for p in pieces:
            step = p.update(step, next(keys) if p.draws else None)
        return step

    return Piece(update, m > 0)


def correct(fn: Callable, draws: bool = False) -> Piece:
    """A piece from a plain function: ``fn(step) -> step``, or ``fn(step, key)`` if ``draws``."""
    return Piece((lambda step, key: fn(step, key)) if draws else (lambda step, key: fn(step)),
                 draws)


# ---- base pieces -------------------------------------------------------------------------


def denoise(p: Problem, clip=False, vjp: bool = False) -> Piece:
    """Set ``x0, eps, denoised`` (and ``vjp``) from the model at ``(step.x, step.t)``.

    ``clip``: ``True`` clips ``x0`` to [-1, 1], a pair to ``(lo, hi)``, False/None not at all;
    ``eps`` is then recomputed from the clipped ``x0`` (so a DDIM step stays consistent).
    ``vjp=True`` also returns the VJP of ``x̂_0`` w.r.t. ``x_t`` (one backward pass per step;
    :func:`~jaxir.inverse.x0_and_vjp`).
    """
    def update(step, key):
        x, t = step.x, step.t
        if vjp:
            x0, eps, back = x0_and_vjp(p.model_fn, p.sde, p.prediction, x, t, p.cond)
        else:
            (x0, eps), back = p.denoise(x, t), None
        x0c = clip_x0(x0, clip)
        if x0c is not x0:  # keep (x̂0, ε̂) consistent after clipping
            eps = predictions.convert(x0c, x, t, p.sde, "x0", "eps")
        return step._replace(x0=x0c, eps=eps, denoised=x0, vjp=back)

    return Piece(update)


def ddpm(p: Problem, variance: str = "fixed_small") -> Piece:
    """The ancestral step ``x_t → x_s`` given ``x0`` (:func:`jaxir.samplers.ddpm_step`)."""
    return Piece(lambda st, key: st._replace(
        x_next=ddpm_step(p.sde, key, st.x, st.t, st.s, st.x0, variance)), True)


def ddim(p: Problem, eta: float = 0.0) -> Piece:
    """The DDIM step with η given ``(x0, eps)`` (:func:`jaxir.samplers.ddim_step`; η = 0 draws
    nothing but still takes its key, so the key layout does not depend on η)."""
    return Piece(lambda st, key: st._replace(
        x_next=ddim_step(p.sde, key, st.x, st.t, st.s, st.x0, st.eps, eta)), True)


# ---- corrections -------------------------------------------------------------------------


def guide(direction: Callable, scale=1.0) -> Piece:
    """Likelihood guidance through the denoiser: ``x_s ← x_s + c · (∂x̂_0/∂x_t)ᵀ v``.

    ``v = direction(step)`` lives in x̂_0-space (e.g. ``∇_{x̂_0} loss`` at ``step.denoised``
    for DPS / MCG, ΠGDM's ``A⁺(y − A x̂_0)``); ``c = scale`` or ``scale(step)`` (a scalar or
    per example). Needs ``denoise(p, vjp=True)`` earlier in the chain and the base step before.
    """
    def update(step, key):
        g = step.vjp(direction(step))
        c = scale(step) if callable(scale) else scale
        return step._replace(x_next=step.x_next + bcast(c, g) * g)

    return Piece(update)


def observed_replacer(p: Problem) -> Callable:
    """``fn(key, x, t)``: the observed spectral part of ``x`` replaced by ``y`` noised to ``t``.

    With ``A = U diag(s) Vᵀ`` every coefficient of ``Vᵀ(x − m_t)`` with ``s_i > 0`` becomes
    ``α_t (Uᵀy)_i/s_i + σ_t ε_i`` (:func:`~jaxir.inverse._common.replace_observed`; for
    :class:`~jaxir.operators.Inpainting` the pixel blend). Needs ``op.has_svd``.
    """
    _, s_all, ybar = spectral_y(p.op, p.y)

    def fn(key, x, t):
        a, sig = p.sde.marginal_coeffs(t)
        return replace_observed(p.op, key, x, ybar, s_all, a, sig, p.sde.marginal_offset(t, x))

    return fn


def replace(p: Problem, before: bool = False) -> Piece:
    """Replacement of the observed part (:func:`observed_replacer`): of ``x_next`` at the
    level ``s`` the step arrives at (Score-SDE projection, MCG), or with ``before=True`` of
    ``x`` at its own level ``t`` before the denoiser runs (RePaint)."""
    fn = observed_replacer(p)
    if before:
        return Piece(lambda st, key: st._replace(x=fn(key, st.x, st.t)), True)
    return Piece(lambda st, key: st._replace(x_next=fn(key, st.x_next, st.s)), True)


# ---- the loop ----------------------------------------------------------------------------


class _Options(NamedTuple):
    prediction: str = "eps"
    num_steps: int | None = None
    spacing: str | None = None
    timesteps: Any = None
    cond: Any = None
    x_init: Any = None
    save_every: int | None = None
    checkpoint: Any = False


#: The keyword options every sampler built on :func:`sample` takes.
OPTIONS = _Options._fields


def _grid(m, sde, o):
    """The time grid: ``timesteps`` as given, else the method's grid or ``time_grid``."""
    if o.timesteps is not None:
        return time_grid(sde, o.num_steps, o.spacing, timesteps=o.timesteps)
    n = o.num_steps if o.num_steps is not None else m.num_steps
    n = getattr(sde, "num_steps", 1000) if n is None else n
    if m.grid is not None:
        return m.grid(sde, n)
    return time_grid(sde, n, o.spacing or m.spacing)


def sample(method: Method, key, model_fn, sde, op, y, sigma_y=None, shape=None,
           **options) -> Samples:
    """Run the posterior sampler ``method`` (see the module docstring).

    Args:
        method: the :class:`Method` (its ``build`` and loop settings).
        key: PRNG key. model_fn: ``model_fn(x, t, cond)`` on batches ``(B, *x_shape)``.
        sde: a :class:`~jaxir.sdes.LinearSDE`. op: the degradation. y: ``op.y_shape``
            (shared by the batch: ``B`` posterior samples) or ``(B, *op.y_shape)``.
        sigma_y: the noise std of ``y``, handed to ``build`` as given.
        shape: ``(B, *op.x_shape)``, or give ``x_init``.

    Keyword options (:data:`OPTIONS`; every sampler built on this takes them):
        prediction: what ``model_fn`` predicts (``"eps"``, ``"x0"``, ``"v"``, …).
        num_steps: the number of grid times (default: the method's).
        spacing: the grid's respacing (:func:`~jaxir.samplers.time_grid`).
        timesteps: an explicit descending grid instead (passed to ``time_grid``).
        cond: passed to ``model_fn``.
        x_init: the state to start from, ``(B, *x_shape)``, instead of the method's draw.
        save_every: also return every k-th state (the start first, the output last).
        checkpoint: rematerialise the steps under ``jax.grad`` (``scan_steps``'s modes).

    Returns:
        :class:`~jaxir.samplers.Samples`; ``nfe`` counts reverse moves (model calls).
    """
    m, name = method, method.name
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"{name}() got an unexpected keyword argument {unknown[0]!r}")
    o = _Options(**options)
    shape, y_b = check_shapes(name, op, shape, o.x_init, y)
    grid = tuple(jnp.asarray(v, jnp.float32) for v in _grid(m, sde, o))
    p = Problem(name, model_fn, sde, op, y_b, sigma_y, shape, *grid, o.prediction, o.cond)
    sampler = m.build(p)
    ts, ts_next, up = *grid, None
    if m.walk is not None:
        path = m.walk(len(ts))
        levels = jnp.concatenate([jnp.zeros((1,), jnp.float32), ts[::-1]])  # level k at k + 1
        ts, ts_next = levels[path[:-1] + 1], levels[path[1:] + 1]
        up = np.asarray(path[1:] > path[:-1])
    ks = dict(zip(m.keys, jax.random.split(key, len(m.keys))))
    if o.x_init is not None:
        x = jnp.asarray(o.x_init)
    elif sampler.init is not None:
        x = sampler.init(ks["init"])
    else:
        x = sde.prior_sample(ks["init"], shape)
    state = None if sampler.state is None else sampler.state(ks.get("state"), x)

    def move(piece, x, state, t, s, i, k):
        st = piece.update(Step(x, t, s, i, state), k if piece.draws else None)
        return st.x_next, st.state

    def body(carry, inp):
        x, state = carry
        args = (x, state, *inp[:4])
        if up is None:
            return move(sampler.step, *args)
        return jax.lax.cond(inp[4], lambda: move(sampler.up, *args),
                            lambda: move(sampler.step, *args))

    xs = (ts, ts_next, jnp.arange(len(ts), dtype=jnp.int32),
          jax.random.split(ks["steps"], len(ts)))
    if up is not None:
        xs = (*xs, jnp.asarray(up))
    (x, state), traj = scan_steps(body, (x, state), xs, save_every=o.save_every,
                                  checkpoint=o.checkpoint)
    extras = None
    if sampler.finish is not None:
        out, extras = sampler.finish(x, state, ks.get("finish"))
        if out is not x and traj is not None:
            traj = traj.at[-1].set(out)
        x = out
    nfe = len(ts) if up is None else int(np.sum(~up))
    return Samples(x, traj, nfe, jnp.all(jnp.isfinite(x)), extras)
