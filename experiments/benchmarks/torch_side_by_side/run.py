"""jaxir vs PyTorch + diffusers: DDPM and DDIM sampling loops side by side.

    .venv/bin/python experiments/benchmarks/torch_side_by_side/run.py --quick   # ~1-2 min
    .venv/bin/python experiments/benchmarks/torch_side_by_side/run.py           # full, < 10 min

The driver (numpy only) starts two long-lived workers: ``jax_worker.py`` in jaxir's venv
(``--jax-python``, default: this interpreter) and ``torch_worker.py`` in a separate venv
with torch and diffusers (``--torch-python``, default ``$TORCH_PYTHON`` or
``/work/torchvenv/bin/python``), so torch never enters jaxir's dependencies. It

1. writes one set of toy-network weights (``.npz``) that both load;
2. checks the two networks agree, then that DDIM (η = 0, 50 steps) from the same x_T and
   DDPM (1000 steps, x̂0 clipped) from the same x_T *and the same noise* (jaxir's noise
   patched into diffusers) give the same samples;
3. compiles/warms every case (JAX's time to first sample is reported, not timed after),
   then times the cases in rounds, alternating which framework goes first (A/B, B/A, …)
   so both see the same machine load; ratios are medians of per-round ratios.

Writes ``results/torch_side_by_side.json`` and ``.md`` (``_quick`` with ``--quick``; ``--out`` to
change the stem).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as C  # noqa: E402

RESULTS = HERE.parent / "results"


def cases(quick: bool):
    ddpm_b1 = 100 if quick else 1000
    ddpm_b64_toy = 20 if quick else 50
    out = [dict(net="toy", batch=b, sampler="forward", steps=1) for b in (1, 64)]
    for net in ("toy", "trivial"):
        for batch in (1, 64):
            out.append(dict(net=net, batch=batch, sampler="ddim", steps=50))
            steps = ddpm_b64_toy if (net == "toy" and batch == 64) else ddpm_b1
            out.append(dict(net=net, batch=batch, sampler="ddpm", steps=steps))
    for i, c in enumerate(out):
        c["seed"] = i
        c["id"] = f"{c['net']}_b{c['batch']}_{c['sampler']}{c['steps']}"
    return out


class Worker:
    def __init__(self, name, python, script, cpu, env=None):
        self.name = name
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen([python, str(HERE / script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
                                     bufsize=1, preexec_fn=pre, env={**os.environ, **(env or {})})

    def __call__(self, op, **kw):
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker died (see stderr above)")
        rep = json.loads(line)
        if not rep.pop("ok"):
            raise RuntimeError(f"{self.name} worker: {rep['error']}\n{rep['trace']}")
        return rep

    def close(self):
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait(timeout=30)


def host_info():
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")), platform.processor())
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    try:  # uncommitted changes in the code this benchmark runs
        used = ["jaxir/samplers/_ancestral.py", "jaxir/samplers/_common.py", "jaxir/sdes.py",
                "jaxir/schedules.py", "jaxir/predictions.py"]
        dirty = subprocess.run(["git", "diff", "--name-only", "HEAD", "--", *used], cwd=HERE.parents[2],
                               capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        dirty = []
    return {"cpu_model": model, "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "jaxir_git": rev + ("+" if dirty else ""),
            "jaxir_uncommitted": dirty}


def maxdiff(a, b):
    d = float(np.max(np.abs(a - b)))
    return {"max_abs_diff": d, "max_abs_value": float(np.max(np.abs(a))),
            "rel": d / max(float(np.max(np.abs(a))), 1e-30)}


def checks(jw, tw, tmp, ddpm_steps):
    res = {}
    rng = np.random.default_rng(7)
    inp = tmp / "net_in.npz"
    np.savez(inp, x=rng.standard_normal((4, *C.IMG)).astype(np.float32),
             t=np.array([0, 17, 500, 999], np.float32))
    jw("net", **{"in": str(inp), "out": str(tmp / "net_jax.npz")})
    tw("net", **{"in": str(inp), "out": str(tmp / "net_torch.npz")})
    a, b = np.load(tmp / "net_jax.npz"), np.load(tmp / "net_torch.npz")
    res["network_toy"] = maxdiff(a["toy"], b["toy"])
    res["network_trivial"] = maxdiff(a["trivial"], b["trivial"])

    xin = tmp / "ddim_in.npz"
    np.savez(xin, x=C.x_T(100, 4))
    jw("check", sampler="ddim", steps=50, seed=0, **{"in": str(xin), "out": str(tmp / "ddim_jax.npz")})
    tw("check", sampler="ddim", steps=50, seed=0, **{"in": str(xin), "out": str(tmp / "ddim_torch.npz")})
    a, b = np.load(tmp / "ddim_jax.npz"), np.load(tmp / "ddim_torch.npz")
    res["ddim_eta0_50_steps_same_xT"] = {**maxdiff(a["x"], b["x"]), "batch": 4}

    xin = tmp / "ddpm_in.npz"
    np.savez(xin, x=C.x_T(101, 2))
    jw("check", sampler="ddpm", steps=ddpm_steps, seed=1, **{"in": str(xin), "out": str(tmp / "ddpm_jax.npz")})
    a = np.load(tmp / "ddpm_jax.npz")
    np.savez(xin, x=C.x_T(101, 2), noise=a["noise"])
    tw("check", sampler="ddpm", steps=ddpm_steps, seed=1, **{"in": str(xin), "out": str(tmp / "ddpm_torch.npz")})
    b = np.load(tmp / "ddpm_torch.npz")
    res[f"ddpm_{ddpm_steps}_steps_same_xT_and_noise"] = {**maxdiff(a["x"], b["x"]), "batch": 2}
    return res


def summarise(case, reps):
    j = np.array([r["jax"]["wall_s"] for r in reps])
    t = np.array([r["torch"]["wall_s"] for r in reps])
    jc = np.array([r["jax"]["cpu_s"] for r in reps])
    tc = np.array([r["torch"]["cpu_s"] for r in reps])
    ratio, ratio_cpu = t / j, tc / jc
    n, b = case["steps"], case["batch"]
    return {
        "jax_sample_s": float(np.median(j)), "torch_sample_s": float(np.median(t)),
        "jax_ms_per_step": 1e3 * float(np.median(j)) / n, "torch_ms_per_step": 1e3 * float(np.median(t)) / n,
        "jax_ms_per_image": 1e3 * float(np.median(j)) / b, "torch_ms_per_image": 1e3 * float(np.median(t)) / b,
        "ratio_torch_over_jax": float(np.median(ratio)),
        "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
        "ratio_cpu_torch_over_jax": float(np.median(ratio_cpu)),
        "jax_ms_per_step_cpu": 1e3 * float(np.median(jc)) / n,
        "torch_ms_per_step_cpu": 1e3 * float(np.median(tc)) / n,
    }


def fmt_md(res):
    h, v = res["host"], res["versions"]
    lines = [
        "# jaxir vs PyTorch + diffusers: DDPM / DDIM sampling loops",
        "",
        f"Generated by `experiments/benchmarks/torch_side_by_side/run.py{' --quick' if res['quick'] else ''}` "
        f"on {res['date']}.",
        "",
        f"* Machine: {h['cpu_model']}, {h['cpu_count']} cores visible (shared with other jobs), "
        f"load average {res['loadavg_start'][0]:.2f} at start, {res['loadavg_end'][0]:.2f} at end "
        f"(1-min; per-round median {np.median(res['loadavg_rounds']):.2f}).",
        f"* jaxir {h['jaxir_git']}"
        + (f" (uncommitted changes in {', '.join(h['jaxir_uncommitted'])})" if h.get("jaxir_uncommitted") else "")
        + f": jax {v['jax']['jax']}, jaxlib {v['jax']['jaxlib']}, flax {v['jax']['flax']}, "
        f"python {v['jax']['python']}.",
        f"* PyTorch {v['torch']['torch']}, diffusers {v['torch']['diffusers']}, python {v['torch']['python']} "
        "(separate venv).",
        f"* Threads: {res['threads_note']}",
        f"* β linear 1e-4..0.02, 1000 training steps, \"leading\" spacing (diffusers `steps_offset=0`); DDIM η = 0 "
        "without clipping, DDPM fixed-small variance with x̂0 clipped to [-1, 1] (both libraries' defaults). "
        f"Images 3×32×32; toy network: 3 convs (3→{C.CH}→{C.CH}→3) + sinusoidal time embedding MLP; "
        "trivial network: ε = 0.9x + 1e-3·t.",
        f"* {res['rounds']} timed rounds per case, alternating which framework runs first; inside a round each "
        "framework repeats the sample `inner` times (≥ ~{:.2f} s). Ratio = median over rounds of "
        "torch time / jaxir time (> 1: jaxir faster); [min–max] over rounds. CPU ratio uses process CPU time, "
        "which is less sensitive to other jobs on the machine.".format(res["min_round_s"]),
        "",
        "## Equality checks (before timing)",
        "",
        "| check | max abs diff | max abs value | relative |",
        "|---|---|---|---|",
    ]
    for k, c in res["checks"].items():
        lines.append(f"| {k} | {c['max_abs_diff']:.2e} | {c['max_abs_value']:.3g} | {c['rel']:.1e} |")
    lines += ["", "Networks on 4 inputs at t = 0, 17, 500, 999; DDIM from the same x_T (batch 4); DDPM from the "
              "same x_T with jaxir's per-step noise fed to diffusers' `randn_tensor` (batch 2). The toy network "
              "is untrained, so unclipped DDIM outputs reach ~10³ (hence the relative column); float32 "
              "rounding (ε ≈ 1.2e-7) accumulated over the steps."]
    lines += [
        "",
        "## Timings (steady state, compile excluded)",
        "",
        "| network | batch | sampler | steps | jaxir ms/step | torch ms/step | jaxir ms/image | torch ms/image "
        "| torch/jaxir (wall) | torch/jaxir (CPU) | JAX first sample s (≈ compile s) | torch first sample s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in res["cases"]:
        s = c["summary"]
        lines.append(
            f"| {c['net']} | {c['batch']} | {c['sampler'].upper()} | {c['steps']} | {s['jax_ms_per_step']:.3f} | "
            f"{s['torch_ms_per_step']:.3f} | {s['jax_ms_per_image']:.2f} | {s['torch_ms_per_image']:.2f} | "
            f"**{s['ratio_torch_over_jax']:.2f}** [{s['ratio_min']:.2f}–{s['ratio_max']:.2f}] | "
            f"{s['ratio_cpu_torch_over_jax']:.2f} | {c['jax_first_call_s']:.2f} "
            f"({c['jax_first_call_s'] - s['jax_sample_s']:.2f}) | {c['torch_first_call_s']:.3f} |"
            .replace("| FORWARD | 1 |", "| network forward only | — |"))
    triv = [c for c in res["cases"] if c["net"] == "trivial" and c["batch"] == 1]
    if triv:
        lines += ["", "Per-step framework overhead (trivial network, batch 1, ms/step): " + ", ".join(
            f"{c['sampler'].upper()} jaxir {c['summary']['jax_ms_per_step'] * 1e3:.0f} µs vs diffusers "
            f"{c['summary']['torch_ms_per_step'] * 1e3:.0f} µs" for c in triv) + "."]
    lines += ["", "JAX first sample = trace + compile + one run (one compile per case: shapes and step counts "
              "are static); torch first sample = one eager run (no compilation).", "",
              "## Caveats", "",
              "* Shared, loaded machine: absolute times are context only. With the toy network the ratio is "
              "mostly XLA's vs eager PyTorch's network speed (the \"network forward only\" rows), not the loop.",
              "* Both workers first allocate and free a 30 MiB buffer (`_common.settle_malloc`), which raises "
              "glibc's mmap threshold as loading any real model would; without it torch mapped and unmapped "
              "its batch-64 activations on every call and its forward ran 2.4× slower than here.",
              "* DDPM draws one Gaussian per step; JAX's threefry costs ~3 ms per 64×3×32×32 draw on one core "
              "(~4× `torch.randn`), so with a cheap network at batch 64 jaxir's DDPM is slower per step.",
              "* diffusers runs in eager mode as its pipelines do (no `torch.compile`, no CUDA graphs); one "
              "thread per framework by default (`--threads 0` for all cores).", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and rounds (~1-2 min)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per case (default 5, quick 3)")
    p.add_argument("--threads", type=int, default=1,
                   help="1 (default): both workers pinned to one CPU and single-threaded; "
                        "0: no pinning, torch uses all cores, XLA its default pool")
    p.add_argument("--cpu", type=int, default=None, help="the CPU to pin to with --threads 1 (default: last)")
    p.add_argument("--jax-python", default=sys.executable)
    p.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON", "/work/torchvenv/bin/python"))
    p.add_argument("--out", default=None, help="output stem (.json, .md); default "
                   "results/torch_side_by_side, or results/torch_side_by_side_quick with --quick")
    a = p.parse_args(argv)
    rounds = a.rounds or (3 if a.quick else 5)
    min_round_s = 0.1 if a.quick else 0.25
    if a.threads == 1:
        cpu = a.cpu if a.cpu is not None else max(os.sched_getaffinity(0))
        torch_threads = 1
        note = (f"1 per framework: both workers pinned to CPU {cpu} (sched_setaffinity, so XLA sizes its "
                "intra-op pool to 1), `torch.set_num_threads(1)`, `torch.set_num_interop_threads(1)`; "
                "only one worker runs at a time.")
    else:
        cpu, torch_threads = None, os.cpu_count()
        note = (f"all: no pinning, XLA's default pool (all {os.cpu_count()} cores), "
                f"`torch.set_num_threads({torch_threads})`.")
    t_start = time.perf_counter()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="torch_sbs_"))
    weights = tmp / "weights.npz"
    np.savez(weights, **C.make_weights(0))

    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "quick": a.quick, "rounds": rounds, "min_round_s": min_round_s, "threads": a.threads,
           "threads_note": note, "host": host_info(), "loadavg_start": list(os.getloadavg())}
    jw = Worker("jax", a.jax_python, "jax_worker.py", cpu, {"JAX_PLATFORMS": "cpu"})
    tw = Worker("torch", a.torch_python, "torch_worker.py", cpu)
    try:
        vj, vt = jw("init", weights=str(weights)), tw("init", weights=str(weights), threads=torch_threads)
        res["versions"] = {"jax": vj["versions"], "torch": vt["versions"]}
        res["workers"] = {"jax": {k: vj[k] for k in ("devices", "affinity")},
                          "torch": {k: vt[k] for k in ("torch_threads", "torch_interop_threads", "affinity")}}
        print(f"[setup] {res['versions']}", file=sys.stderr)
        res["checks"] = checks(jw, tw, tmp, 100 if a.quick else 1000)
        for k, c in res["checks"].items():
            print(f"[check] {k}: max abs diff {c['max_abs_diff']:.2e} (max |x| {c['max_abs_value']:.3g})",
                  file=sys.stderr)
        cs = cases(a.quick)
        for c in cs:
            pj, pt = jw("prepare", case=c), tw("prepare", case=c)
            c["jax_first_call_s"], c["torch_first_call_s"] = pj["first_call_s"], pt["first_call_s"]
            c["inner"] = {"jax": max(1, round(min_round_s / pj["second_call_s"])),
                          "torch": max(1, round(min_round_s / pt["second_call_s"]))}
            c["reps"] = []
            print(f"[prepare] {c['id']}: JAX first {pj['first_call_s']:.2f}s then {pj['second_call_s']:.4f}s; "
                  f"torch first {pt['first_call_s']:.4f}s then {pt['second_call_s']:.4f}s", file=sys.stderr)
        res["loadavg_rounds"] = []
        for r in range(rounds):
            res["loadavg_rounds"].append(os.getloadavg()[0])
            for c in cs:
                order = [("jax", jw), ("torch", tw)]
                if r % 2:
                    order.reverse()
                rep = {name: w("time", id=c["id"], inner=c["inner"][name]) for name, w in order}
                rep["first"] = order[0][0]
                c["reps"].append(rep)
            print(f"[round {r + 1}/{rounds}] load {res['loadavg_rounds'][-1]:.2f}, "
                  f"{time.perf_counter() - t_start:.0f}s", file=sys.stderr)
        for c in cs:
            c["summary"] = summarise(c, c["reps"])
        res["cases"] = cs
    finally:
        jw.close()
        tw.close()
    res["loadavg_end"] = list(os.getloadavg())
    res["total_s"] = time.perf_counter() - t_start
    out = pathlib.Path(a.out or RESULTS / ("torch_side_by_side" + ("_quick" if a.quick else "")))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    md = fmt_md(res)
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"[done] {res['total_s']:.0f}s -> {out}.json/.md", file=sys.stderr)


if __name__ == "__main__":
    main()
