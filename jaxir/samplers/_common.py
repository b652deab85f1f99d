"""Pieces every sampler shares: the result type, time grids, and the scan loop."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import schedules
from ..sdes import DiscreteVPSDE, LinearSDE


class Samples(NamedTuple):
    """What every sampler returns.

    Attributes:
        x: the final samples, shape ``shape``.
        trajectory: ``(n_saved, *shape)`` states every ``save_every`` steps (the initial
            state first, the final last) when asked for, else ``None``.
        nfe: number of network (``model_fn``) evaluations per sample.
        finite: ``bool`` array, whether every entry of ``x`` is finite (NaN/inf are
            reported here rather than silently returned).
        extras: sampler-specific diagnostics (a dict) or ``None``.
    """

    x: jax.Array
    trajectory: jax.Array | None
    nfe: Any
    finite: jax.Array
    extras: Any = None


def check_shape(shape, x_init=None):
    if x_init is not None:
        return tuple(x_init.shape)
    if shape is None:
        raise ValueError("give either shape=(B, ...) or x_init")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1:
        raise ValueError(f"shape must include a batch axis, got {shape}")
    return shape


def check_timesteps(sde: LinearSDE, timesteps, num_steps: int | None = None):
    """An explicit grid ``t_1 > t_2 > … > t_K`` as float32 ``(K,)``, checked.

    Every ``t_k`` must lie in ``[t_lo, T]`` with ``t_lo = max(sde.t_min, 0)`` (the end of the
    default grids) and ``t_k > 0``, and the times must strictly decrease: a clear
    ``ValueError`` naming ``timesteps`` when the values are concrete; under ``jit`` / ``grad``
    (traced values, e.g. a schedule being learned) the same check runs inside the program
    (``equinox.error_if``: an error at run time, never a silent wrong grid). ``num_steps``,
    if given, must equal ``K``.
    """
    ts = jnp.asarray(timesteps)
    if not jnp.issubdtype(ts.dtype, jnp.floating) and not jnp.issubdtype(ts.dtype, jnp.integer):
        raise ValueError(f"timesteps must be real numbers, got dtype {ts.dtype}")
    ts = ts.astype(jnp.float32)
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise ValueError(f"timesteps must be a 1-D array of K >= 1 times, got shape {ts.shape}")
    if num_steps is not None and num_steps != ts.shape[0]:
        raise ValueError(f"num_steps={num_steps!r} does not match the {ts.shape[0]} timesteps "
                         "given; leave num_steps unset when giving timesteps")
    lo, hi = max(float(sde.t_min), 0.0), float(sde.T)
    what = (f"timesteps must be strictly decreasing within [t_min, T] = [{lo:g}, {hi:g}] of "
            f"{type(sde).__name__} (and > 0)")
    try:
        vals = np.asarray(ts)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        vals = None
    if vals is not None:
        bad = (~np.isfinite(vals)) | (vals < np.float32(lo)) | (vals > np.float32(hi)) | (vals <= 0)
        if bad.any():
            raise ValueError(f"{what}; got {vals[bad][:3].tolist()} outside it")
        if np.any(np.diff(vals) >= 0):
            i = int(np.argmax(np.diff(vals) >= 0))
            raise ValueError(f"{what}; got t[{i}] = {vals[i]:g} <= t[{i + 1}] = {vals[i + 1]:g}")
        return ts
    ok = (jnp.all(jnp.isfinite(ts)) & jnp.all(ts >= np.float32(lo)) & jnp.all(ts <= np.float32(hi))
          & jnp.all(ts > 0) & jnp.all(ts[1:] < ts[:-1]))
    return eqx.error_if(ts, ~ok, what)


def time_grid(sde: LinearSDE, num_steps: int | None = None, spacing: str | None = None, *,
              timesteps=None):
    """Descending times ``t_0 > … > t_{n−1}`` and the times each step moves to.

    Returns ``(ts, ts_next)``, each ``(num_steps,)``; ``ts_next[-1] = 0`` is the data
    end (α = 1, σ = 0), so the last step of DDPM/DDIM outputs ``x̂_0``.

    * ``timesteps``: an explicit grid (for example a learned one, see
      :func:`~jaxir.samplers.load_schedule`) used as is, in float32 ``jnp`` (it may be traced:
      samplers are differentiable with respect to it); checked by :func:`check_timesteps`.
      ``spacing`` must then be unset and ``num_steps`` unset or equal to its length. On a
      :class:`~jaxir.sdes.DiscreteVPSDE` the times need not sit on the integer grid: ``α(t)``
      interpolates ``log ᾱ`` linearly between the chain's times, and on them it is the chain.
    * :class:`~jaxir.sdes.DiscreteVPSDE`: the respaced integer grid (``"leading"`` default,
      ``"trailing"``, ``"linspace"``), ``t = (i + 1)/N`` — the previous index is read off
      the respaced grid, never computed as ``i − N//n`` (numpy arrays).
    * other SDEs: ``"uniform"`` (default) ``linspace(T, t_min, n)`` or ``"quadratic"``
      (DDIM's quadratic spacing in t) (numpy arrays).
    """
    if timesteps is not None:
        if spacing is not None:
            raise ValueError(f"give timesteps or spacing, not both (spacing={spacing!r})")
        ts = check_timesteps(sde, timesteps, num_steps)
        return ts, jnp.concatenate([ts[1:], jnp.zeros((1,), ts.dtype)])
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if isinstance(sde, DiscreteVPSDE):
        idx, prev = schedules.respace_timesteps(sde.num_steps, num_steps, spacing or "leading")
        scale = sde.T / sde.num_steps
        return (idx + 1) * scale, (prev + 1) * scale
    spacing = spacing or "uniform"
    lo = max(sde.t_min, 0.0)
    if spacing == "uniform":
        ts = np.linspace(sde.T, lo, num_steps) if num_steps > 1 else np.array([sde.T])
    elif spacing == "quadratic":
        u = np.linspace(np.sqrt(sde.T), np.sqrt(lo), num_steps)
        ts = u**2
    else:
        raise ValueError(
            f"spacing {spacing!r} is not valid for {type(sde).__name__}; use 'uniform' or "
            "'quadratic' (respaced 'leading'/'trailing'/'linspace' need a DiscreteVPSDE)"
        )
    ts_next = np.concatenate([ts[1:], [0.0]])
    return ts, ts_next


CHECKPOINTS = (False, True, "sqrt")


def _checkpoint_mode(checkpoint):
    """``False`` / ``True`` / ``"sqrt"`` from the ``checkpoint`` argument (None means False)."""
    if checkpoint is None or isinstance(checkpoint, (bool, np.bool_)):
        return bool(checkpoint)
    if isinstance(checkpoint, str) and checkpoint == "sqrt":
        return "sqrt"
    raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")


def sqrt_blocks(n: int, save_every: int | None = None) -> tuple[int, int, int]:
    """Layout ``(num_blocks, block_size, remainder)`` of ``checkpoint="sqrt"`` over ``n`` steps.

    ``block_size = ⌈√n⌉``, rounded up to a multiple of ``save_every`` when
    ``save_every ≤ ⌈√n⌉`` (then every block keeps its saved states at the same positions);
    ``num_blocks = ⌊n / block_size⌋``; the last ``remainder = n mod block_size`` steps run in
    a second, per-step rematerialised scan (no padding, no extra network evaluations).
    """
    if n < 1:
        raise ValueError(f"need at least one step, got {n}")
    b = math.isqrt(n - 1) + 1  # ⌈√n⌉
    if save_every is not None and save_every <= b:
        b = save_every * -(-b // save_every)  # ≤ 2⌈√n⌉ − 1 ≤ n for every n ≥ 1
    return n // b, b, n % b


def _scan_sqrt(body, carry, xs, n: int, save_every: int | None):
    """The outer scan over blocks (each a rematerialised scan of ``body``) and the remainder.

    Returns ``(final_carry, saved)``: ``saved`` is ``None`` or the states after the steps
    ``g`` with ``(g + 1) % save_every == 0``, in order, ``(n // save_every, *state)``.
    """
    nb, b, r = sqrt_blocks(n, save_every)
    head = jax.tree.map(lambda a: a[: nb * b].reshape(nb, b, *a.shape[1:]), xs)
    tail = jax.tree.map(lambda a: a[nb * b:], xs)
    per_block = save_every is not None and b % save_every == 0

    if save_every is None:
        @jax.checkpoint
        def block(c, xb):
            return jax.lax.scan(lambda c, x: (body(c, x), None), c, xb)[0], None
    elif per_block:  # the same local positions in every block
        local = np.arange(save_every - 1, b, save_every)

        def keep_all(c, x):
            c = body(c, x)
            return c, c[0]

        @jax.checkpoint
        def block(c, xb):
            c, ys = jax.lax.scan(keep_all, c, xb)
            return c, ys[local]
    else:  # save_every > b: at most one saved state per block, carried in a slot
        def keep_slot(cs, gx):
            (c, slot), (g, x) = cs, gx
            c = body(c, x)
            return (c, jnp.where((g + 1) % save_every == 0, c[0], slot)), None

        @jax.checkpoint
        def block(c, jxb):
            j, xb = jxb
            init = (c, jnp.zeros_like(c[0]))
            (c, slot), _ = jax.lax.scan(keep_slot, init, (j * b + jnp.arange(b), xb))
            return c, slot

        head = (jnp.arange(nb), head)

    carry, ys_head = jax.lax.scan(block, carry, head)
    ys_tail = None
    if r:
        def tail_step(c, x):
            c = body(c, x)
            return c, (None if save_every is None else c[0])

        carry, ys_tail = jax.lax.scan(tail_step, carry, tail)
    if save_every is None:
        return carry, None
    if per_block:
        parts = [ys_head.reshape(-1, *ys_head.shape[2:])]
    else:  # the blocks whose steps g include one with (g + 1) % save_every == 0
        has = [j for j in range(nb) if ((j + 1) * b) // save_every > (j * b) // save_every]
        parts = [ys_head[np.asarray(has, np.int32)]]
    if r:
        g = np.arange(nb * b, n)
        parts.append(ys_tail[np.flatnonzero((g + 1) % save_every == 0)])
    return carry, jnp.concatenate(parts, axis=0)


def scan_steps(step, carry, xs, *, save_every: int | None = None,
               checkpoint: bool | str = False):
    """Run ``step(carry, x) -> carry`` over ``xs`` (leading axis: the N steps) with ``lax.scan``.

    ``carry[0]`` must be the state array. Returns ``(final_carry, trajectory)`` where the
    trajectory holds the initial state and every ``save_every``-th state (and the final
    one), or ``None``.

    ``checkpoint`` chooses what reverse mode (``jax.grad``) stores; values and the forward
    pass are the same in every mode:

    * ``False``: every step's intermediates (network activations): memory ∝ N;
    * ``True``: ``jax.checkpoint`` on each step: one carry per step is stored and each step
      recomputed in the backward pass: memory ∝ N carries + one step's intermediates;
    * ``"sqrt"``: two-level checkpointing (Griewank & Walther, *Evaluating Derivatives*,
      2nd ed. 2008, ch. 12: √N checkpoints with two repetitions): an outer scan over
      ``⌊N/B⌋`` blocks of ``B = ⌈√N⌉`` steps, each block rematerialised and each step inside
      it rematerialised, then the ``N mod B`` remaining steps in a per-step rematerialised
      scan (no padding). Memory ∝ ``2√N`` carries + one step's intermediates; each step is
      evaluated three times (forward, block recomputation, step recomputation) before its
      backward, against twice for ``True``. With ``save_every`` the block size is rounded
      up to a multiple of it (``save_every ≤ ⌈√N⌉``), or each block carries its one saved
      state in a slot, so a trajectory costs only the states it keeps
      (:func:`sqrt_blocks` gives the layout).
    """
    mode = _checkpoint_mode(checkpoint)
    if save_every is not None and (isinstance(save_every, (bool, np.bool_))
                                   or not isinstance(save_every, (int, np.integer))
                                   or save_every < 1):
        raise ValueError(f"save_every must be a positive int or None, got {save_every!r}")
    leaves = jax.tree.leaves(xs)
    n = int(leaves[0].shape[0]) if leaves else 0
    if mode == "sqrt" and n > 1:
        final, saved = _scan_sqrt(jax.checkpoint(step), carry, xs, n, save_every)
        if save_every is None:
            return final, None
        traj = [carry[0][None], saved]
        if n % save_every:
            traj.append(final[0][None])
        return final, jnp.concatenate(traj, axis=0)

    body = jax.checkpoint(step) if mode else step
    if save_every is None:
        final, _ = jax.lax.scan(lambda c, x: (body(c, x), None), carry, xs)
        return final, None

    def with_out(c, x):
        c = body(c, x)
        return c, c[0]

    final, ys = jax.lax.scan(with_out, carry, xs)
    n = ys.shape[0]
    keep = np.unique(np.concatenate([np.arange(save_every - 1, n, save_every), [n - 1]]))
    traj = jnp.concatenate([carry[0][None], ys[keep]], axis=0)
    return final, traj


def all_finite(x):
    return jnp.all(jnp.isfinite(x))
