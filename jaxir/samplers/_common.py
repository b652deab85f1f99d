"""Pieces every sampler shares: the result type, time grids, and the scan loop."""

from __future__ import annotations

from typing import Any, NamedTuple

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


def time_grid(sde: LinearSDE, num_steps: int, spacing: str | None = None):
    """Descending times ``t_0 > … > t_{n−1}`` and the times each step moves to.

    Returns numpy ``(ts, ts_next)``, each ``(num_steps,)``; ``ts_next[-1] = 0`` is the data
    end (α = 1, σ = 0), so the last step of DDPM/DDIM outputs ``x̂_0``.

    * :class:`~jaxir.sdes.DiscreteVPSDE`: the respaced integer grid (``"leading"`` default,
      ``"trailing"``, ``"linspace"``), ``t = (i + 1)/N`` — the previous index is read off
      the respaced grid, never computed as ``i − N//n``.
    * other SDEs: ``"uniform"`` (default) ``linspace(T, t_min, n)`` or ``"quadratic"``
      (DDIM's quadratic spacing in t).
    """
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


def scan_steps(step, carry, xs, *, save_every: int | None = None, checkpoint: bool = False):
    """Run ``step(carry, x) -> carry`` over ``xs`` with ``lax.scan``.

    ``carry[0]`` must be the state array. Returns ``(final_carry, trajectory)`` where the
    trajectory holds the initial state and every ``save_every``-th state (and the final
    one), or ``None``. ``checkpoint=True`` rematerialises each step in the backward pass
    (memory O(1) per step instead of the step's intermediates).
    """
    body = jax.checkpoint(step) if checkpoint else step

    if save_every is None:
        final, _ = jax.lax.scan(lambda c, x: (body(c, x), None), carry, xs)
        return final, None

    if save_every < 1:
        raise ValueError(f"save_every must be >= 1, got {save_every}")

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
