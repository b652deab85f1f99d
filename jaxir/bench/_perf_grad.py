"""Gradients through samplers (issue 7, item 3): memory and time against N.

The objective is ``L(x_T) = Σ sampler(x_T)²`` differentiated with respect to the initial
noise ``x_T`` (latent optimisation; a parameter gradient has the same memory structure).
Peak memory is XLA's ``memory_analysis().temp_size_in_bytes`` of the compiled gradient
(it works on CPU without running anything); ``exponent`` is the least-squares slope of
log memory against log N; ``grad_over_forward`` is T(grad) / T(forward sampler) in wall
time, ``grad_over_forward_cpu`` the same ratio in process CPU time (all threads; on a shared,
loaded CPU it is the steadier of the two, on an accelerator it means nothing), each the
median of per-repeat ratios measured interleaved.

Variants:
* ``ddim/naive``, ``ddim/remat``, ``ddim/sqrt``: :func:`jaxir.samplers.ddim_sample` with
  ``checkpoint=False/True/"sqrt"`` (nothing rematerialised; ``jax.checkpoint`` on each
  ``lax.scan`` step; two-level: ⌈√N⌉-step blocks, each block and step rematerialised, see
  :func:`jaxir.samplers.scan_steps`);
* ``ode/recursive``, ``ode/backsolve``: :func:`~jaxir.samplers.ode_sample` (diffrax Euler)
  with ``RecursiveCheckpointAdjoint`` (default) / ``BacksolveAdjoint``;
* ``sde/recursive``, ``sde/step``: :func:`~jaxir.samplers.sde_sample` with
  ``brownian="virtual"`` / ``"step"`` (the reverse-differentiable Brownian paths), default
  ``RecursiveCheckpointAdjoint``;
* ``scan_ode/naive``, ``/step``, ``/sqrt``: the hand-written Euler loop of
  :mod:`._perf_diffrax` without remat, with remat per step, and two-level (√N) remat.
"""

# ruff: noqa: B023 -- timing lambdas made in a loop are called within the same iteration

from __future__ import annotations

import statistics
import time

import diffrax
import jax
import jax.numpy as jnp

from ._perf_common import Net, compile_fn, fit_exponent, run_once
from ._perf_diffrax import scan_euler

VARIANTS = ("ddim/naive", "ddim/remat", "ddim/sqrt", "ode/recursive", "ode/backsolve",
            "sde/recursive", "sde/step", "scan_ode/naive", "scan_ode/step", "scan_ode/sqrt")


def _sampler(variant: str, net: Net, sde, n: int):
    from .. import samplers

    fam, how = variant.split("/")
    key = jax.random.key(7)

    def run(p, x):
        mf = net.model_fn(p)
        if fam == "ddim":
            return samplers.ddim_sample(key, mf, sde, x_init=x, num_steps=n,
                                        checkpoint={"naive": False, "remat": True,
                                                    "sqrt": "sqrt"}[how]).x
        if fam == "ode":
            adj = diffrax.BacksolveAdjoint() if how == "backsolve" else None
            return samplers.ode_sample(None, mf, sde, x_init=x, solver="euler", num_steps=n,
                                       adjoint=adj).x
        if fam == "sde":
            return samplers.sde_sample(key, mf, sde, x_init=x, num_steps=n,
                                       brownian="step" if how == "step" else "virtual").x
        return scan_euler(sde, mf, x, n, checkpoint={"naive": None}.get(how, how))

    return run


def _wall_and_cpu(fn, *args) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - w, time.process_time() - c


def _ratios(target, base, args, repeats: int) -> dict:
    """``target`` and ``base`` timed alternately; medians of the per-repeat ratios."""
    rows = []
    for _ in range(max(1, repeats)):
        b = _wall_and_cpu(base, *args)
        t = _wall_and_cpu(target, *args)
        rows.append((t, b))
    med = statistics.median
    return {"grad_s": med(t[0] for t, _ in rows), "forward_s": med(b[0] for _, b in rows),
            "grad_over_forward": med(t[0] / b[0] for t, b in rows),
            "grad_over_forward_cpu": med(t[1] / max(b[1], 1e-9) for t, b in rows)}


def grad_scaling(net: Net, steps, *, variants=VARIANTS, time_max_n: int = 100,
                 repeats: int = 2, progress=None) -> dict:
    """Rows per (variant, N): temp memory, compile time and, for ``N <= time_max_n``, the
    gradient time over the forward sampler's; plus the fitted memory exponent per variant."""
    from ..sdes import VPSDE

    sde = VPSDE()
    x = sde.prior_sample(jax.random.key(1), net.shape)
    rows = []
    for v in variants:
        for n in steps:
            run = _sampler(v, net, sde, n)
            grad = compile_fn(jax.grad(lambda p, x: jnp.sum(run(p, x) ** 2), argnums=1),
                              net.params, x)
            row = {"variant": v, "n": n, "net": net.name, "batch": net.shape[0],
                   "temp_bytes": (grad.memory or {}).get("temp"),
                   "compile_s": grad.lower_s + grad.compile_s, "grad_over_forward": None,
                   "grad_over_forward_cpu": None}
            if n <= time_max_n:
                fwd = compile_fn(run, net.params, x)
                run_once(fwd.fn, net.params, x)
                run_once(grad.fn, net.params, x)
                row.update(_ratios(grad.fn, fwd.fn, (net.params, x), repeats))
            rows.append(row)
            if progress:
                gof, goc = row["grad_over_forward"], row["grad_over_forward_cpu"]
                progress(f"  {v:15s} N={n:5d} temp={row['temp_bytes'] / 2**20:8.2f} MiB "
                         f"grad/fwd={'-' if gof is None else f'{gof:.2f}'} "
                         f"(cpu time {'-' if goc is None else f'{goc:.2f}'})")
    fits = []
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        fits.append({"variant": v, "memory_exponent": fit_exponent(
            [r["n"] for r in rs], [r["temp_bytes"] for r in rs])})
    return {"net": net.name, "batch": net.shape[0], "rows": rows, "fits": fits}
