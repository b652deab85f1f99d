"""Helper of ``experiments/accelerator/run.sh`` (issue 19): machine description, the network's
float32-vs-bfloat16 timing, and the one markdown report.

    python experiments/accelerator/report.py env    --out DIR   # DIR/env.json
    python experiments/accelerator/report.py dtype  --out DIR [--net small --batch 64 --size 32]
    python experiments/accelerator/report.py report --out DIR   # DIR/accelerator_report.md

``report`` reads what the stages left in DIR (``env.json``, ``junit.xml`` or, when the suite was
cut by its timeout, the ``-v`` lines of ``pytest.log``, ``perf/perf_gpu.json``, ``mfu.json``,
``dtype.json``)
and never fails on a missing piece: it says what is missing instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# modules the suite imports somewhere; a missing one fails its tests for the environment's sake
OPTIONAL_MODULES = ("dm_pix", "tqdm", "sklearn", "matplotlib", "PIL", "scipy", "skimage",
                    "tensorflow_datasets", "orbax.checkpoint", "nbformat", "nbclient", "ipykernel",
                    "xdist")


# ---- env ------------------------------------------------------------------------------------


def cmd_env(out: Path) -> None:
    import importlib
    import importlib.metadata as md

    import jax

    info = {"time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "host": platform.node(), "platform": platform.platform(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS"),
            "JAX_DEFAULT_MATMUL_PRECISION": os.environ.get("JAX_DEFAULT_MATMUL_PRECISION"),
            "default_backend": jax.default_backend(),
            "devices": [f"{d.platform}:{getattr(d, 'device_kind', '?')}" for d in jax.devices()],
            "default_matmul_precision": str(jax.config.jax_default_matmul_precision)}
    try:
        stats = jax.devices()[0].memory_stats() or {}
        info["device_memory_gib"] = round(stats.get("bytes_limit", 0) / 2**30, 1) or None
    except Exception:  # noqa: BLE001 - CPU and some backends have no memory stats
        info["device_memory_gib"] = None
    info["versions"] = {}
    for pkg in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "libtpu", "flax",
                "optax", "diffrax", "equinox", "lineax", "chex", "orbax-checkpoint", "dm-pix",
                "numpy", "scipy", "scikit-image", "pytest", "pytest-xdist"):
        try:
            info["versions"][pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    info["modules_missing"] = []
    for mod in OPTIONAL_MODULES:
        try:
            importlib.import_module(mod)
        except Exception:  # noqa: BLE001 - ImportError and anything an import may raise
            info["modules_missing"].append(mod)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if smi.returncode == 0:
            info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    (out / "env.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: info[k] for k in ("default_backend", "devices", "modules_missing")}))


# ---- dtype ----------------------------------------------------------------------------------


def cmd_dtype(out: Path, net: str, batch: int, size: int, repeats: int = 5) -> None:
    """Forward and forward+backward of a U-Net preset, float32 against bfloat16 compute
    (``make_model_fn(compute_dtype=...)``), interleaved; also the largest relative difference
    of the bf16 prediction from the float32 one (random weights everywhere)."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxir.bench._perf_common import interleaved, median_time
    from jaxir.models import UNet, make_model_fn, param_count, split_model, unet_config

    cfg = dataclasses.replace(unet_config(net), image_size=size)
    graphdef, abstract = split_model(nnx.eval_shape(lambda: UNet(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda v: jnp.asarray(0.05 * rng.standard_normal(v.shape), v.dtype),
                          abstract)
    x = jax.random.normal(jax.random.key(1), (batch, size, size, cfg.in_channels))
    t = jnp.linspace(0.05, 0.95, batch)
    res = {"net": net, "batch": batch, "size": size, "params": param_count(params),
           "backend": jax.default_backend()}
    fns = {}
    for name, dt in (("float32", None), ("bfloat16", jnp.bfloat16)):
        def fwd(p, xx, tt, dt=dt):
            return make_model_fn(graphdef, p, compute_dtype=dt)(xx, tt)

        def fwd_bwd(p, xx, tt, fwd=fwd):
            return jax.grad(lambda q: jnp.mean((fwd(q, xx, tt) - xx) ** 2))(p)

        for kind, f in (("forward", fwd), ("fwd_bwd", fwd_bwd)):
            t0 = time.perf_counter()
            fns[(name, kind)] = jax.jit(f).lower(params, x, t).compile()
            res[f"compile_{kind}_{name}_s"] = time.perf_counter() - t0
            print(f"compiled {kind} {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    y32 = np.asarray(fns[("float32", "forward")](params, x, t))
    y16 = np.asarray(fns[("bfloat16", "forward")](params, x, t))
    res["bf16_rel_diff"] = float(np.linalg.norm(y16 - y32) / max(np.linalg.norm(y32), 1e-30))
    for kind in ("forward", "fwd_bwd"):
        f32, f16 = fns[("float32", kind)], fns[("bfloat16", kind)]
        r = interleaved(lambda f=f16: median_time(f, params, x, t, n=3),
                        lambda f=f32: median_time(f, params, x, t, n=3), repeats)
        res[kind] = {"float32_ms": 1e3 * r["base_s"], "bfloat16_ms": 1e3 * r["target_s"],
                     "bf16_over_f32": r["ratio"]}
    (out / "dtype.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


# ---- report ---------------------------------------------------------------------------------

_V_LINE = re.compile(r"\b(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(tests/\S+)")
_ITEMS = re.compile(r"\[(\d+) items?\]|collected (\d+) items?")
_ENV_ERR = re.compile(r"ModuleNotFoundError|No module named|ImportError")


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def parse_junit(path: Path):
    """``{nodeid: (outcome, message, seconds)}`` from pytest's junit XML (None if absent)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    out = {}
    for case in root.iter("testcase"):
        cls, name = case.get("classname", ""), case.get("name", "")
        nodeid = cls.replace(".", "/") + ".py::" + name if cls else name
        outcome, msg = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                msg = (el.get("message") or el.text or "").strip()
                break
        out[nodeid] = (outcome, msg, float(case.get("time") or 0.0))
    return out


def parse_log(text: str):
    """``{nodeid: (outcome, message, 0.0)}`` from ``-v`` lines (a run cut by its timeout)."""
    out = {}
    for m in _V_LINE.finditer(text):
        outcome = m.group(1).lower().replace("xfail", "skipped").replace("xpass", "passed")
        out[m.group(2)] = (outcome, "", 0.0)
    for line in text.splitlines():  # the short summary's messages, when it was printed
        if line.startswith(("FAILED ", "ERROR ")):
            parts = line.split(" ", 1)[1].split(" - ", 1)
            if parts[0] in out:
                out[parts[0]] = (out[parts[0]][0], parts[1] if len(parts) > 1 else "", 0.0)
    return out


def _suite_section(out: Path, args) -> list[str]:
    log = _read(out / "pytest.log")
    rc = _read(out / "pytest.rc").strip()
    results = parse_junit(out / "junit.xml")
    source = "junit.xml"
    if results is None or rc in ("124", "137"):
        results, source = parse_log(log), "pytest.log (-v lines)"
    m = _ITEMS.search(log)
    collected = int(next(g for g in m.groups() if g)) if m else None
    counts = {}
    for outcome, _, _ in results.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    timed_out = rc in ("124", "137")
    lines = ["## 1. Test suite at the default precision", ""]
    lines.append(f"`pytest {args.tests} -n {args.workers} --dist loadfile` (timeout "
                 f"{args.suite_timeout} s; exit code {rc or '?'}"
                 f"{', **timed out**' if timed_out else ''}); results from {source}.")
    lines.append("")
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "error", "skipped"))
    not_run = f"; {collected - len(results)} of {collected} collected never ran" if (
        collected and collected > len(results)) else ""
    lines += [f"**{summary}**{not_run}.", ""]
    bad = {k: v for k, v in results.items() if v[0] in ("failed", "error")}
    env_bad = {k: v for k, v in bad.items() if _ENV_ERR.search(v[1])}
    num_bad = {k: v for k, v in bad.items() if k not in env_bad}
    if num_bad:
        lines += [f"### Failures ({len(num_bad)})", "", "| test | outcome | message |",
                  "|---|---|---|"]
        for k, (o, msg, _) in sorted(num_bad.items()):
            lines.append(f"| `{k}` | {o} | {_cell(msg)} |")
        lines.append("")
    if env_bad:
        lines += [f"### Failures from the environment ({len(env_bad)}: missing modules)", ""]
        lines += [f"- `{k}`: {_cell(v[1])}" for k, v in sorted(env_bad.items())]
        lines.append("")
    if not bad and results:
        lines += ["No failures.", ""]
    skipped = {k: v for k, v in results.items() if v[0] == "skipped"}
    if skipped:
        lines += [f"<details><summary>{len(skipped)} skipped</summary>", ""]
        lines += [f"- `{k}`: {_cell(v[1])}" for k, v in sorted(skipped.items())]
        lines += ["", "</details>", ""]
    slow = sorted(((v[2], k) for k, v in results.items() if v[2] > 0), reverse=True)[:10]
    if slow:
        lines += ["Slowest tests: " + ", ".join(f"`{k.split('::')[-1]}` {s:.0f} s"
                                                  for s, k in slow), ""]
    return lines


def _cell(msg: str, n: int = 160) -> str:
    msg = " ".join(msg.split()).replace("|", "\\|")
    return msg[:n] + ("…" if len(msg) > n else "")


def _perf_section(out: Path) -> list[str]:
    lines = ["## 2. Performance benchmarks", ""]
    res = _load(out / "perf" / "perf_gpu.json")
    rc = _read(out / "perf.rc").strip()
    if rc in ("124", "137"):
        lines.append(f"**Cut by its timeout** (exit code {rc}): partial results.")
    if res is None:
        tail = "\n".join(_read(out / "perf.log").splitlines()[-15:])
        return lines + [f"No results (exit code {rc or 'not run'}). Log tail:", "", "```",
                        tail, "```", ""]
    from jaxir.bench.perf import format_perf

    lines.append(f"`experiments/benchmarks/gpu.py` (exit code {rc}; {res.get('elapsed_s', 0):.0f} s"
                 f"{'; skipped: ' + ', '.join(res['skipped']) if res.get('skipped') else ''}"
                 f"{'; train step error: ' + res['train_error'] if res.get('train_error') else ''})")
    lines += ["", format_perf(res), ""]
    return lines


def _mfu_section(out: Path) -> list[str]:
    lines = ["## 3. Train step rate and model FLOP utilisation", ""]
    d = _load(out / "mfu.json")
    rc = _read(out / "mfu.rc").strip()
    if d is None:
        why = {"124": "timed out", "137": "killed", "": "not run"}.get(rc, f"exit code {rc}")
        tail = "\n".join(_read(out / "mfu.log").splitlines()[-10:])
        return lines + [f"No results ({why}). Log tail:", "", "```", tail, "```", ""]
    if rc in ("124", "137"):
        lines += [f"**Cut by its timeout** (exit code {rc}): the rows it finished.", ""]
    lines.append(f"`python -m jaxir.bench._perf_train mfu`: the full train step of "
                 f"`jaxir.training.train` (flat layout, donated, {d['net']} U-Net, "
                 f"{d['num_params']:,} parameters, batch {d['batch']}, {d['device_kind']}). "
                 "Model FLOPs: XLA's count of the network's forward + backward; MFU against "
                 "the chip's dense peak for that dtype (float32 = the backend's default "
                 "float32 product). Anchor: the DDPM paper's CIFAR-10 model trained at 21 "
                 "steps/s at batch 128 on a TPU v3-8; issue 19's goal is >= 42 steps/s.")
    lines += ["", "| compute dtype | step ms | steps/s | compile s | model GFLOP/step | "
              "achieved TFLOP/s | MFU |", "|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        f = r.get("model_flops_per_step")
        a = r.get("achieved_flops_per_s")
        lines.append(f"| {r['compute_dtype']} | {1e3 * r['step_s']:.2f} | "
                     f"{r['steps_per_s']:.1f} | {r['compile_s']:.0f} | "
                     f"{'–' if f is None else format(f / 1e9, '.1f')} | "
                     f"{'–' if a is None else format(a / 1e12, '.2f')} | "
                     f"{'–' if r.get('mfu') is None else format(r['mfu'], '.1%')} |")
    return lines + [""]


def _dtype_section(out: Path) -> list[str]:
    lines = ["## 4. The network in float32 and in bfloat16", ""]
    d = _load(out / "dtype.json")
    if d is None:
        rc = _read(out / "dtype.rc").strip()
        why = {"124": "timed out", "137": "killed", "": "not run"}.get(rc, f"exit code {rc}")
        tail = "\n".join(_read(out / "dtype.log").splitlines()[-10:])
        return lines + [f"No results ({why}). Log tail:", "", "```", tail, "```", ""]
    lines.append(f"`{d['net']}` U-Net ({d['params']:,} parameters), batch {d['batch']}, "
                 f"{d['size']}×{d['size']}, `make_model_fn(compute_dtype=...)`, random weights; "
                 f"bf16 prediction vs float32: relative difference {d['bf16_rel_diff']:.1e}.")
    lines += ["", "| | float32 ms | bfloat16 ms | bf16 / f32 |", "|---|---|---|---|"]
    for kind in ("forward", "fwd_bwd"):
        r = d[kind]
        lines.append(f"| {kind.replace('_', '+')} | {r['float32_ms']:.2f} | "
                     f"{r['bfloat16_ms']:.2f} | {r['bf16_over_f32']:.2f} |")
    return lines + [""]


def cmd_report(out: Path, args) -> Path:
    env = _load(out / "env.json") or {}
    lines = ["# Accelerator check (issue 19)", ""]
    lines.append(f"{env.get('time_utc', '?')} UTC, {args.elapsed} s in all. Devices: "
                 f"{', '.join(env.get('devices', [])) or '?'}"
                 f"{' (' + env['nvidia_smi'] + ')' if env.get('nvidia_smi') else ''}; "
                 f"{env.get('cpu_count', '?')} CPUs; `JAX_PLATFORMS={env.get('JAX_PLATFORMS')}`, "
                 f"default matmul precision: {env.get('default_matmul_precision')} "
                 f"(`JAX_DEFAULT_MATMUL_PRECISION` {'unset' if not env.get('JAX_DEFAULT_MATMUL_PRECISION') else '= ' + env['JAX_DEFAULT_MATMUL_PRECISION']}).")
    vers = env.get("versions", {})
    if vers:
        lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) +
                  f"; Python {env.get('python')}."]
    if env.get("modules_missing"):
        lines += ["", "Missing modules (their tests fail for the environment's sake, listed "
                  "apart): " + ", ".join(f"`{m}`" for m in env["modules_missing"]) + "."]
    lines.append("")
    lines += _suite_section(out, args)
    lines += _perf_section(out)
    lines += _mfu_section(out)
    lines += _dtype_section(out)
    path = out / "accelerator_report.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("env", "dtype", "report"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--net", default="small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--elapsed", default="?")
    ap.add_argument("--tests", default="tests")
    ap.add_argument("--workers", default="?")
    ap.add_argument("--suite-timeout", default="?")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "env":
        cmd_env(args.out)
    elif args.command == "dtype":
        cmd_dtype(args.out, args.net, args.batch, args.size)
    else:
        cmd_report(args.out, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
