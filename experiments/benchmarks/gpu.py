"""Issue 7 on an accelerator: sampler overhead for the `small` U-Net at batch 64 and the
train step against forward+backward. Writes ``$OUT/perf_gpu.json`` (and ``.md``).

    OUT=/tmp/out python experiments/benchmarks/gpu.py [--budget 100] [--n 20,100]

Needs jax (with CUDA), flax, optax, diffrax, equinox; no tensorflow-datasets or dm-pix.
Stays inside ``--budget`` seconds (default 95, plus start-up and the last sampler): samplers are run in order of interest
and the rest are skipped (and listed) once the budget is spent; partial results are
written after every sampler, so a kill still leaves a JSON behind.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

ORDER = ("ddim", "ddpm", "dps", "sde_em", "ode_euler", "dpm_solver++", "pigdm", "ddrm", "ddnm",
         "repaint", "irsde")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", default="20,100")
    ap.add_argument("--budget", type=float, default=95.0,
                    help="seconds for everything (samplers stop at budget - train_reserve)")
    ap.add_argument("--train-reserve", type=float, default=35.0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)

    from jaxir.bench._perf_common import machine_info, make_net
    from jaxir.bench._perf_samplers import compile_growth, sampler_overhead
    from jaxir.bench._perf_train import train_throughput
    from jaxir.bench.perf import format_perf

    steps = tuple(int(v) for v in args.n.split(","))
    net = make_net(args.net, args.batch)
    res = {"quick": False, "machine": machine_info(), "config": {
        "net": args.net, "batch": args.batch, "steps": list(steps), "budget_s": args.budget},
        "skipped": []}

    def save():
        res["elapsed_s"] = time.perf_counter() - t0
        (out / "perf_gpu.json").write_text(json.dumps(res, indent=1))
        try:
            (out / "perf_gpu.md").write_text(format_perf(res))
        except Exception as e:  # noqa: BLE001 - partial results must still be saved
            (out / "perf_gpu.md").write_text(f"format failed: {e}")

    rows = []
    for i, name in enumerate(ORDER):
        if time.perf_counter() - t0 > args.budget - args.train_reserve:
            res["skipped"] = list(ORDER[i:])
            break
        r = sampler_overhead(net, steps, names=(name,), repeats=3,
                             progress=lambda s: print(s, flush=True))
        rows += r["rows"]
        res["samplers"] = {**r, "rows": rows, "compile_growth": compile_growth(rows)}
        save()
    try:  # the train step compiles slowly (~30 s on an H200): kept for last, with its reserve
        res["train"] = train_throughput(net, repeats=5)
    except Exception as e:  # noqa: BLE001
        res["train_error"] = repr(e)
    save()
    print(format_perf(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
