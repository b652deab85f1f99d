"""Sampler overhead (issue 7, items 1 and 6): an N-step sampler against N forward passes.

For each sampler, ``ratio = T(sampler) / (nfe × T(forward))`` where ``nfe`` is the number of
network evaluations the sampler reports (``Samples.nfe``) and the forward is the same
network, jitted alone at the same batch and called from Python (so it includes one
dispatch and one host synchronisation). ``ratio_loop`` divides instead by ``nfe/N`` times
a ``lax.scan`` of N chained forwards: the network's cost inside a compiled loop, the fair
baseline on an accelerator where per-call launch/sync costs are a large part of a forward. A forward-only sampler at the cost of its network
has ratio 1. Samplers that take one vector-Jacobian product per step (DPS, ΠGDM) are also
compared with ``T(forward + VJP)``: their ``ratio_vs_vjp`` is 1 at the cost of their
network, and ``vjp_cost = T(forward + VJP)/T(forward)`` is what the forward-only ratio
must be read against. Compile (lower + XLA compile) times are recorded per N (item 6).
"""

# ruff: noqa: B023 -- timing lambdas made in a loop are called within the same iteration

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ._perf_common import Net, compile_fn, interleaved, median_time, run_once


class SamplerSpec(NamedTuple):
    name: str
    kind: str  # "forward" | "vjp"
    run: Callable  # run(key, model_fn, sde, shape, n, problem) -> Samples
    note: str = ""


def _problem(shape):
    """Box inpainting of the centre, the one degradation every posterior sampler accepts."""
    from ..operators import Inpainting, box_mask

    op = Inpainting(box_mask(shape[1:]))
    yimg = jnp.linspace(-0.8, 0.8, int(jnp.prod(jnp.asarray(shape[1:])))).reshape(shape[1:])
    return {"op": op, "y": op.A(yimg)}


def _specs() -> dict[str, SamplerSpec]:
    from .. import inverse, samplers
    from ..sdes import MeanRevertingSDE

    def ddpm(k, mf, sde, shape, n, pb):
        return samplers.ddpm_sample(k, mf, sde, shape, num_steps=n)

    def ddim(k, mf, sde, shape, n, pb):
        return samplers.ddim_sample(k, mf, sde, shape, num_steps=n)

    def dpm(k, mf, sde, shape, n, pb):
        return samplers.dpm_solver_sample(k, mf, sde, shape, num_steps=n)

    def sde_(k, mf, sde, shape, n, pb):
        return samplers.sde_sample(k, mf, sde, shape, num_steps=n)

    def ode(k, mf, sde, shape, n, pb):
        return samplers.ode_sample(k, mf, sde, shape, solver="euler", num_steps=n)

    def dps(k, mf, sde, shape, n, pb):
        return inverse.dps_sample(k, mf, sde, pb["op"], pb["y"], 0.05, shape, num_steps=n)

    def pigdm(k, mf, sde, shape, n, pb):
        return inverse.pigdm_sample(k, mf, sde, pb["op"], pb["y"], 0.05, shape, num_steps=n)

    def ddrm(k, mf, sde, shape, n, pb):
        return inverse.ddrm_sample(k, mf, sde, pb["op"], pb["y"], 0.0, shape, num_steps=n)

    def ddnm(k, mf, sde, shape, n, pb):
        return inverse.ddnm_sample(k, mf, sde, pb["op"], pb["y"], 0.0, shape, num_steps=n)

    def repaint(k, mf, sde, shape, n, pb):
        return inverse.repaint_sample(k, mf, sde, pb["op"], pb["y"], 0.0, shape, num_steps=n,
                                      jump_length=10, jump_n_sample=2)

    def irsde(k, mf, _sde, shape, n, pb):
        mr = MeanRevertingSDE(jnp.broadcast_to(pb["y"], shape))
        return samplers.sde_sample(k, mf, mr, shape, num_steps=n, denoise=False)

    return {s.name: s for s in [
        SamplerSpec("ddpm", "forward", ddpm),
        SamplerSpec("ddim", "forward", ddim),
        SamplerSpec("dpm_solver++", "forward", dpm, "2M"),
        SamplerSpec("sde_em", "forward", sde_, "diffrax reverse SDE, Euler-Maruyama, step BM"),
        SamplerSpec("ode_euler", "forward", ode, "diffrax PF-ODE, fixed-step Euler"),
        SamplerSpec("dps", "vjp", dps),
        SamplerSpec("pigdm", "vjp", pigdm),
        SamplerSpec("ddrm", "forward", ddrm),
        SamplerSpec("ddnm", "forward", ddnm),
        SamplerSpec("repaint", "forward", repaint, "jump_length=10, jump_n_sample=2"),
        SamplerSpec("irsde", "forward", irsde,
                    "IR-SDE reverse = sde_sample on MeanRevertingSDE (no separate IR-SDE/GOUB "
                    "sampler exists in jaxir.bridges/samplers)"),
    ]}


SAMPLERS = tuple(_specs())


def _baselines(net: Net, sde, repeats: int):
    """Compiled forward and forward+VJP of ``net`` (x̂0 and its VJP, as DPS/ΠGDM use it)."""
    from ..inverse import x0_and_vjp

    x = jax.random.normal(jax.random.key(1), net.shape)
    t = jnp.float32(0.5)
    fwd = compile_fn(lambda p, x, t: net.apply(p, x, t), net.params, x, t)

    def fvjp(p, x, t):
        x0, _, vjp = x0_and_vjp(net.model_fn(p), sde, "eps", x, t)
        return x0, vjp(x0)

    fv = compile_fn(fvjp, net.params, x, t)
    args = (net.params, x, t)
    run_once(fwd.fn, *args)
    run_once(fv.fn, *args)
    cost = interleaved(lambda: median_time(fv.fn, *args, n=3),
                       lambda: median_time(fwd.fn, *args, n=3), repeats)
    return fwd, fv, args, cost


def _forward_loop(net: Net, n: int, fargs):
    """``n`` forwards chained in one ``lax.scan`` (no host round trip between them): the
    network's cost inside a loop, without per-call dispatch and synchronisation."""
    def loop(p, x):
        def body(x, t):
            return 0.5 * x + 0.5 * net.apply(p, x, t), None

        return jax.lax.scan(body, x, jnp.linspace(1.0, 1e-3, n))[0]

    c = compile_fn(loop, net.params, fargs[1])
    run_once(c.fn, net.params, fargs[1])
    return c.fn


def sampler_overhead(net: Net, steps, *, names=None, repeats: int = 3,
                     progress: Callable | None = None) -> dict:
    """Rows ``{sampler, n, nfe, ratio, ...}`` for every sampler in ``names`` and N in ``steps``.

    The forward baseline is re-timed (median of 3 calls) right before each sampler run
    (``interleaved``); VJP samplers get a second ratio against forward+VJP, timed likewise.
    """
    from ..sdes import VPSDE

    sde = VPSDE()
    specs = _specs()
    names = list(names or SAMPLERS)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown samplers {unknown}; choose from {SAMPLERS}")
    problem = _problem(net.shape)
    fwd, fv, fargs, cost = _baselines(net, sde, repeats)
    loops = {}
    rows = []
    for name in names:
        spec = specs[name]
        for n in steps:
            def f(p, key, spec=spec, n=n):
                out = spec.run(key, net.model_fn(p), sde, net.shape, n, problem)
                return out.x, jnp.asarray(out.nfe), out.finite

            key = jax.random.key(0)
            c = compile_fn(f, net.params, key)
            t_first = run_once(c.fn, net.params, key)
            _, nfe, finite = c.fn(net.params, key)
            nfe = int(nfe)
            base = fv if spec.kind == "vjp" else fwd
            res = interleaved(lambda: run_once(c.fn, net.params, key),
                              lambda: median_time(fwd.fn, *fargs, n=3), repeats)
            row = {"sampler": name, "kind": spec.kind, "net": net.name, "batch": net.shape[0],
                   "n": n, "nfe": nfe, "sampler_s": res["target_s"], "forward_s": res["base_s"],
                   "ratio": res["ratio"] / nfe,
                   "ratio_spread": [res["ratio_min"] / nfe, res["ratio_max"] / nfe],
                   "lower_s": c.lower_s, "compile_s": c.compile_s,
                   "first_sample_s": c.lower_s + c.compile_s + t_first,
                   "finite": bool(finite), "note": spec.note}
            if spec.kind == "vjp":
                rv = interleaved(lambda: run_once(c.fn, net.params, key),
                                 lambda: median_time(base.fn, *fargs, n=3), repeats)
                row["vjp_cost"] = cost["ratio"]
                row["ratio_vs_vjp"] = rv["ratio"] / nfe
            if n not in loops:
                loops[n] = _forward_loop(net, n, fargs)
            rl = interleaved(lambda: run_once(c.fn, net.params, key),
                             lambda: run_once(loops[n], net.params, fargs[1]), repeats)
            row["ratio_loop"] = rl["ratio"] * n / nfe
            rows.append(row)
            if progress:
                progress(f"  {name:13s} N={n:5d} nfe={nfe:5d} ratio={row['ratio']:.3f} "
                         f"loop={row['ratio_loop']:.3f} "
                         f"compile={c.lower_s + c.compile_s:.1f}s")
    return {"rows": rows, "forward_s": cost["base_s"], "forward_vjp_s": cost["target_s"],
            "vjp_cost": cost["ratio"], "forward_compile_s": fwd.lower_s + fwd.compile_s}


def compile_growth(rows) -> list[dict]:
    """Per sampler: compile time at the largest N over that at the smallest (item 6)."""
    by = {}
    for r in rows:
        by.setdefault(r["sampler"], []).append(r)
    out = []
    for name, rs in by.items():
        rs = sorted(rs, key=lambda r: r["n"])
        lo, hi = rs[0], rs[-1]
        c_lo, c_hi = lo["lower_s"] + lo["compile_s"], hi["lower_s"] + hi["compile_s"]
        out.append({"sampler": name, "n_lo": lo["n"], "n_hi": hi["n"], "compile_lo_s": c_lo,
                    "compile_hi_s": c_hi, "growth": c_hi / c_lo if c_lo else None})
    return out
