"""Performance benchmarks (issue 7): samplers at the cost of their network.

``run_perf(quick, ...) -> dict`` (JSON-serialisable) runs, as asked:

* ``samplers``: T(N-step sampler) / (nfe × T(jitted forward)) per sampler and N, with
  compile times per N (:mod:`._perf_samplers`);
* ``diffrax``: diffrax reverse SDE (each Brownian path) / PF-ODE, and parameter gradients
  through the SDE, against a hand-written ``lax.scan`` loop (:mod:`._perf_diffrax`);
* ``grad``: temp memory and time of ``jax.grad`` through samplers against N
  (:mod:`._perf_grad`);
* ``train`` (not in quick mode): train step against forward+backward, and 1/2/4/8 fake
  devices (:mod:`._perf_train`).

Every number is a ratio of times measured interleaved in the same run (see
:mod:`._perf_common`); nothing here asserts a time. ``format_perf`` renders markdown.
Quick mode (``jaxir bench perf --quick``, whose parser is in ``jaxir.cli._bench``) is sized
for 2 busy CPU cores: the tiny U-Net at batch 2 for three samplers, the ``toy``
two-convolution network for the loop-overhead and gradient sections.
"""

from __future__ import annotations

import time

from ._perf_common import fit_exponent, machine_info, make_net

QUICK = {"net": "tiny", "batch": 2, "steps": (20, 100), "samplers": ("ddim", "sde_em", "dps"),
         "repeats": 2, "diffrax_net": "toy", "diffrax_steps": (100,), "virtual": False,
         "diffrax_grad": ("recursive",),
         "grad_net": "toy", "grad_steps": (10, 100),
         "grad_variants": ("ddim/naive", "ddim/remat", "ddim/sqrt", "ode/recursive"),
         "grad_time_max_n": 10, "train": False}
FULL = {"net": "tiny", "batch": 4, "steps": (20, 100, 1000), "samplers": None, "repeats": 3,
        "diffrax_net": "toy", "diffrax_steps": (100, 1000), "virtual": True,
        "diffrax_grad": ("recursive", "recursive_N"),
        "grad_net": "tiny", "grad_steps": (10, 100, 1000), "grad_variants": None,
        "grad_time_max_n": 100, "train": True}
SECTIONS = ("samplers", "diffrax", "grad", "train")


def run_perf(quick: bool = True, *, sections=SECTIONS, progress=None, **overrides) -> dict:
    """Run the benchmark ``sections``; ``overrides`` replace entries of QUICK/FULL (e.g.
    ``net="small"``, ``steps=(20,)``, ``samplers=("ddim",)``). Returns a JSON-ready dict."""
    from ._perf_diffrax import diffrax_vs_scan
    from ._perf_grad import VARIANTS, grad_scaling
    from ._perf_samplers import compile_growth, sampler_overhead

    cfg = dict(QUICK if quick else FULL)
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(overrides)
    say = progress or (lambda s: None)
    out = {"quick": quick, "config": {k: list(v) if isinstance(v, tuple) else v
                                      for k, v in cfg.items()},
           "machine": machine_info(), "timings_s": {}}
    t0 = time.perf_counter()
    if "samplers" in sections:
        say(f"sampler overhead ({cfg['net']}, batch {cfg['batch']})")
        net = make_net(cfg["net"], cfg["batch"])
        res = sampler_overhead(net, cfg["steps"], names=cfg["samplers"], repeats=cfg["repeats"],
                               progress=say)
        res["compile_growth"] = compile_growth(res["rows"])
        res["num_params"] = net.num_params
        out["samplers"] = res
        out["timings_s"]["samplers"] = time.perf_counter() - t0
    if "diffrax" in sections:
        t1 = time.perf_counter()
        say(f"diffrax vs scan ({cfg['diffrax_net']})")
        net = make_net(cfg["diffrax_net"], cfg["batch"])
        out["diffrax"] = diffrax_vs_scan(net, cfg["diffrax_steps"], repeats=cfg["repeats"],
                                         virtual=cfg["virtual"], grad=cfg["diffrax_grad"],
                                         progress=say)
        out["timings_s"]["diffrax"] = time.perf_counter() - t1
    if "grad" in sections:
        t1 = time.perf_counter()
        say(f"gradients through samplers ({cfg['grad_net']})")
        net = make_net(cfg["grad_net"], cfg["batch"])
        out["grad"] = grad_scaling(net, cfg["grad_steps"],
                                   variants=cfg["grad_variants"] or VARIANTS,
                                   time_max_n=cfg["grad_time_max_n"], repeats=cfg["repeats"],
                                   progress=say)
        out["timings_s"]["grad"] = time.perf_counter() - t1
    if "train" in sections and cfg["train"]:
        from ._perf_train import device_scaling, train_throughput

        t1 = time.perf_counter()
        say("training throughput")
        out["train"] = train_throughput(make_net(cfg["net"], cfg["batch"]),
                                        repeats=cfg["repeats"])
        out["train"]["devices"] = device_scaling(cfg["net"], 8)
        out["timings_s"]["train"] = time.perf_counter() - t1
    out["timings_s"]["total"] = time.perf_counter() - t0
    return out


def _f(v, fmt=".3f"):
    return "–" if v is None else format(v, fmt)


def _table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def format_perf(res: dict) -> str:
    """Markdown tables for a ``run_perf`` result (targets in the headers)."""
    parts = []
    m = res.get("machine", {})
    parts.append(f"machine: {m.get('cpu', '?')}, {m.get('cpu_count')} CPUs, "
                 f"load {m.get('load_avg')}, jax {m.get('jax')}, diffrax {m.get('diffrax')}, "
                 f"backend {m.get('backend')}")
    if "samplers" in res:
        s = res["samplers"]
        parts.append(f"\n### Sampler overhead: T(sampler) / (nfe × T(forward))  "
                     f"(target ≤ 1.05; VJP samplers ≤ 2.1)\n\nforward {s['forward_s'] * 1e3:.2f}"
                     f" ms; (forward+VJP)/forward = {s['vjp_cost']:.2f}\n")
        parts.append(_table(
            ["sampler", "net", "B", "N", "nfe", "ratio", "ratio vs scan of fwd",
             "ratio vs fwd+VJP", "compile s", "finite"],
            [[r["sampler"], r["net"], r["batch"], r["n"], r["nfe"], _f(r["ratio"]),
              _f(r.get("ratio_loop")),
              _f(r.get("ratio_vs_vjp")), _f(r["lower_s"] + r["compile_s"], ".1f"),
              r["finite"]] for r in s["rows"]]))
        parts.append("\n### Compile time against N (target: flat)\n")
        parts.append(_table(["sampler", "N lo", "N hi", "compile lo s", "compile hi s", "hi/lo"],
                            [[g["sampler"], g["n_lo"], g["n_hi"], _f(g["compile_lo_s"], ".1f"),
                              _f(g["compile_hi_s"], ".1f"), _f(g["growth"], ".2f")]
                             for g in s["compile_growth"]]))
    if "diffrax" in res:
        d = res["diffrax"]
        parts.append(f"\n### diffrax / lax.scan ({d['net']}, batch {d['batch']}; target ≤ 1.1)\n")
        parts.append(_table(["path", "N", "diffrax ms", "scan ms", "ratio", "max rel diff",
                             "compared"],
                            [[r["path"], r["n"], _f(r["diffrax_s"] * 1e3, ".2f"),
                              _f(r["scan_s"] * 1e3, ".2f"), _f(r["ratio"]),
                              _f(r["max_rel_diff"], ".1e"), r["compared"]] for r in d["rows"]]))
    if "grad" in res:
        g = res["grad"]
        parts.append(f"\n### Gradients through samplers ({g['net']}, batch {g['batch']}; "
                     "memory sub-linear in N, grad ≤ 4× forward; ddim/sqrt: memory "
                     "exponent ≤ 0.6, grad ≤ 3× forward)\n")
        ns = sorted({r["n"] for r in g["rows"]})
        timed = [n for n in ns if any(r["n"] == n and r["grad_over_forward"] is not None
                                      for r in g["rows"])]
        cpu = any(r.get("grad_over_forward_cpu") is not None for r in g["rows"]) and \
            res.get("machine", {}).get("backend") == "cpu"
        rows = []
        for fit in g["fits"]:
            rs = {r["n"]: r for r in g["rows"] if r["variant"] == fit["variant"]}
            mem = [_f(rs[n]["temp_bytes"] / 2**20, ".2f") if n in rs else "–" for n in ns]
            gof = [_f(rs[n]["grad_over_forward"], ".2f") if n in rs else "–" for n in timed]
            goc = [_f(rs[n].get("grad_over_forward_cpu"), ".2f") if n in rs else "–"
                   for n in timed] if cpu else []
            rows.append([fit["variant"], *mem, _f(fit["memory_exponent"], ".2f"), *gof, *goc])
        parts.append(_table(["variant", *[f"MiB N={n}" for n in ns], "mem exponent",
                             *[f"grad/fwd N={n}" for n in timed],
                             *([f"CPU-time grad/fwd N={n}" for n in timed] if cpu else [])],
                            rows))
    if "train" in res:
        t = res["train"]
        parts.append(f"\n### Training ({t['net']}, batch {t['batch']}; target ≤ 1.1)\n\n"
                     f"train step {t['train_step_s'] * 1e3:.1f} ms, forward+backward "
                     f"{t['fwd_bwd_s'] * 1e3:.1f} ms, ratio {t['step_over_fwd_bwd']:.2f}"
                     + (f" (flat layout; tree layout {t['train_step_tree_s'] * 1e3:.1f} ms, "
                        f"ratio {t['step_over_fwd_bwd_tree']:.2f})"
                        if "train_step_tree_s" in t else "")
                     + (f"; in CPU time: flat {t['step_over_fwd_bwd_cpu']:.2f}, tree "
                        f"{t['step_over_fwd_bwd_tree_cpu']:.2f}"
                        if "step_over_fwd_bwd_cpu" in t else "") + "\n")
        dev = t.get("devices", {})
        if "rows" in dev:
            parts.append(_table(["fake CPU devices", "step ms", "time vs 1", "|loss − loss₁|"],
                                [[r["devices"], _f(r["step_s"] * 1e3, ".1f"),
                                  _f(r["time_vs_1"], ".2f"), _f(r["loss_diff_vs_1"], ".1e")]
                                 for r in dev["rows"]]))
        elif dev:
            parts.append(f"fake devices: {dev.get('error')}")
    return "\n".join(parts)


__all__ = ["run_perf", "format_perf", "fit_exponent",
           "QUICK", "FULL", "SECTIONS"]
