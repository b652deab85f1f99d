"""Learned time grids: a smooth parameterisation, and saving / loading a schedule as JSON.

A K-step sampler's grid ``T ≥ t_1 > … > t_K ≥ t_lo`` (``t_lo = max(sde.t_min, 0)``) is
written as ``K + 1`` positive gaps (fractions of ``T − t_lo``) ``w = δ + (1 − (K+1)δ)
softmax(logits)`` — from ``T`` to ``t_1``, between consecutive times, and from ``t_K`` to
``t_lo`` — with a floor ``δ = 10⁻⁶`` (eight float32 ulps of 1) so that any real ``logits``,
however extreme, give a valid, strictly decreasing float32 grid and gradient descent never
leaves the valid set (Watson et al.,
ICLR 2022, "Learning fast samplers for diffusion models by differentiating through sample
quality", learn the grid of a few-step sampler by backpropagating through it the same way).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..sdes import LinearSDE
from ._common import check_timesteps

FORMAT = "jaxir.schedule"
MIN_GAP = 1e-6  # δ: the smallest gap, as a fraction of T − t_lo
VERSION = 1


def _span(sde: LinearSDE) -> tuple[float, float]:
    lo, hi = max(float(sde.t_min), 0.0), float(sde.T)
    if lo <= 0.0:  # a grid must stay above t = 0, where σ = 0
        lo = 1e-6 * hi
    return lo, hi


def timesteps_from_logits(sde: LinearSDE, logits):
    """``(K,)`` strictly decreasing times in ``[t_lo, T]`` from ``(K + 1,)`` real ``logits``.

    ``t_k = t_lo + (T − t_lo) Σ_{j ≥ k} w_j`` (k = 1 … K) with the gaps ``w`` of the module
    docstring; the partial sums are taken from the data end so that ``t_K − t_lo`` keeps full
    float32 precision. Smooth in ``logits`` (use it inside ``jax.grad``);
    :func:`logits_from_timesteps` inverts it.
    """
    logits = jnp.asarray(logits)
    if logits.ndim != 1 or logits.shape[0] < 2:
        raise ValueError(f"logits must have shape (K + 1,) with K >= 1, got {logits.shape}")
    lo, hi = _span(sde)
    n = logits.shape[0]
    w = MIN_GAP + (1.0 - n * MIN_GAP) * jax.nn.softmax(logits.astype(jnp.float32))
    tail = jnp.cumsum(w[::-1])[::-1]  # tail[k] = Σ_{j ≥ k} w_j, tail[0] = 1
    return jnp.clip(lo + (hi - lo) * tail[1:], lo, hi)


def logits_from_timesteps(sde: LinearSDE, timesteps, min_gap: float = 1e-4):
    """``(K + 1,)`` logits whose :func:`timesteps_from_logits` is ``timesteps`` (checked).

    Gaps smaller than ``min_gap · (T − t_lo)`` (a default grid that starts at ``T`` or ends at
    ``t_min`` has a zero gap) are raised to it before taking logs, which moves every time by
    at most ``min_gap · (T − t_lo)`` times the number of gaps raised.
    """
    lo, hi = _span(sde)
    ts = np.asarray(check_timesteps(sde, np.asarray(timesteps, np.float64)), np.float64)
    if not min_gap > MIN_GAP:
        raise ValueError(f"min_gap must exceed {MIN_GAP}, got {min_gap}")
    gaps = -np.diff(np.concatenate([[hi], ts, [lo]])) / (hi - lo)
    gaps = np.maximum(gaps, min_gap)
    gaps = gaps / gaps.sum()
    return jnp.asarray(np.log(gaps - MIN_GAP), jnp.float32)


class Schedule(NamedTuple):
    """A saved grid: ``timesteps`` (K,) float32, optional per-step ``eta`` (K,), the SDE it was
    made for (``{"class", "T", "t_min"}``), the sampler name, and free-form ``meta``."""

    timesteps: np.ndarray
    eta: np.ndarray | None = None
    sde: dict | None = None
    sampler: str | None = None
    meta: dict | None = None


def _sde_record(sde: LinearSDE | None) -> dict | None:
    if sde is None:
        return None
    rec = {"class": type(sde).__name__, "T": float(sde.T), "t_min": float(sde.t_min)}
    if hasattr(sde, "num_steps") and not callable(sde.num_steps):
        rec["num_steps"] = int(sde.num_steps)
    return rec


def _floats(name, v, k=None) -> list[float]:
    a = np.asarray(v, np.float64)
    if a.ndim != 1 or (k is not None and a.shape[0] != k) or not np.all(np.isfinite(a)):
        want = f"({k},)" if k is not None else "(K,)"
        raise ValueError(f"{name} must be finite with shape {want}, got {a.shape}")
    return [float(np.float32(x)) for x in a]


def save_schedule(path, timesteps, *, eta=None, sde: LinearSDE | None = None,
                  sampler: str | None = None, meta: dict | None = None) -> Path:
    """Write a schedule to ``path`` as JSON (no pickle): ``{"format": "jaxir.schedule",
    "version": 1, "timesteps": [...], "eta": [...] | null, "sde": {...} | null,
    "sampler": ..., "meta": {...}}``. The float32 values round-trip exactly. With ``sde``
    the times are checked against it (:func:`~jaxir.samplers.time_grid`'s rules) and its
    class, ``T`` and ``t_min`` are recorded. The write is atomic (a temporary file renamed).
    Returns the path.
    """
    ts = _floats("timesteps", timesteps)
    if sde is not None:
        check_timesteps(sde, np.asarray(ts, np.float32))
    elif any(b >= a for a, b in zip(ts, ts[1:])) or min(ts) <= 0:
        raise ValueError("timesteps must be positive and strictly decreasing")
    rec = {"format": FORMAT, "version": VERSION, "timesteps": ts,
           "eta": None if eta is None else _floats("eta", eta, len(ts)),
           "sde": _sde_record(sde), "sampler": sampler, "meta": meta or {}}
    text = json.dumps(rec, indent=1, allow_nan=False)  # meta must be JSON-serialisable
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".",
                               prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_schedule(path, sde: LinearSDE | None = None) -> Schedule:
    """Read a schedule written by :func:`save_schedule`.

    With ``sde``, the times are checked against it and, when the file records an SDE, its
    class and ``T`` must match (a grid in another time unit would be silently wrong).
    Raises ``ValueError`` for anything that is not a valid schedule file.
    """
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read schedule {str(path)!r}: {e}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"schedule {str(path)!r} is not JSON: {e}") from None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a jaxir schedule (format {FORMAT!r})")
    if rec.get("version") != VERSION:
        raise ValueError(f"schedule {str(path)!r} has version {rec.get('version')!r}; this "
                         f"jaxir reads version {VERSION}")
    ts = np.asarray(_floats("timesteps", rec.get("timesteps", [])), np.float32)
    if ts.shape[0] < 1 or np.any(np.diff(ts) >= 0) or ts.min() <= 0:
        raise ValueError(f"schedule {str(path)!r}: timesteps must be positive and strictly "
                         "decreasing")
    eta = rec.get("eta")
    eta = None if eta is None else np.asarray(_floats("eta", eta, ts.shape[0]), np.float32)
    saved = rec.get("sde")
    if sde is not None:
        if saved is not None and (saved.get("class") != type(sde).__name__
                                  or not math.isclose(saved.get("T", math.nan), sde.T)):
            raise ValueError(f"schedule {str(path)!r} was made for {saved.get('class')} with "
                             f"T = {saved.get('T')}, not {type(sde).__name__} with T = {sde.T}")
        check_timesteps(sde, ts)
    meta: Any = rec.get("meta") or {}
    return Schedule(ts, eta, saved, rec.get("sampler"), meta)
