"""Throughput of sharded sampling (`jaxir.distributed.sample`) against the device count.

For each device count ``d`` (meshes of the first ``d`` devices) it draws ``--n`` DDIM samples
of a `jaxir.models` U-Net with ``per_device`` examples per device per compiled call, and reports
samples per second (compilation excluded: one warm-up call first) next to the network's own
cost: one forward pass of a ``per_device`` batch on one device, so that ``steps x forward`` is
what a device would spend if sampling were nothing but network evaluations ("network bound").

    # CPU, 8 fake devices (they share the machine's cores: this shows overhead, not speed-up)
    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
        python experiments/benchmarks/distributed.py --devices 1,2,4,8 --net tiny --n 64
    # an accelerator: the small U-Net at batch 256 on every device present
    python experiments/benchmarks/distributed.py --net small --per-device 256 --n 1024

Writes ``$OUT/distributed_<tag>.json`` and ``.md`` (``--tag``, default the backend).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="tiny")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--n", type=int, default=64, help="samples per timed run")
    ap.add_argument("--per-device", type=int, default=8)
    ap.add_argument("--devices", default=None, help="device counts, e.g. 1,2,4,8 (default: all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tag", default=None)
    args = ap.parse_args(argv)

    import jax
    import numpy as np

    from jaxir import distributed
    from jaxir.bench._perf_common import machine_info, make_net
    from jaxir.samplers import ddim_sample
    from jaxir.sdes import DiscreteVPSDE
    from jaxir.schedules import linear_beta_schedule

    out = pathlib.Path(os.environ.get("OUT", "experiments/benchmarks/results"))
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or jax.default_backend()
    counts = ([int(c) for c in args.devices.split(",")] if args.devices
              else [len(jax.devices())])
    net = make_net(args.net, args.per_device)
    shape = net.shape[1:]
    sde = DiscreteVPSDE(linear_beta_schedule(1000))

    def model_fn(x, t, cond=None):
        return net.apply(net.params, x, t)

    # the network alone: a per_device batch on one device, t = 0.5
    fwd = jax.jit(lambda p, x: net.apply(p, x, 0.5))
    x = jax.random.normal(jax.random.key(0), net.shape)
    jax.block_until_ready(fwd(net.params, x))
    reps = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(fwd(net.params, x))
        reps.append(time.perf_counter() - t0)
    forward_s = float(np.median(reps))
    rows = []
    for d in counts:
        mesh = distributed.as_mesh(d)
        kw = dict(mesh=mesh, per_device=args.per_device, num_steps=args.steps)
        t0 = time.perf_counter()
        distributed.sample(ddim_sample, jax.random.key(1), model_fn, sde,
                           args.per_device * d, shape, **kw)  # compiles
        compile_s = time.perf_counter() - t0
        times = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            res = distributed.sample(ddim_sample, jax.random.key(2 + r), model_fn, sde, args.n,
                                     shape, **kw)
            times.append(time.perf_counter() - t0)
        secs = float(min(times))
        blocks = -(-args.n // (args.per_device * d))
        rows.append({
            "devices": d, "n": args.n, "per_device": args.per_device, "blocks": blocks,
            "seconds": secs, "samples_per_s": args.n / secs, "first_call_s": compile_s,
            # if every block cost `steps` forward passes of a per_device batch, run in parallel
            "network_bound_samples_per_s": args.n / (blocks * args.steps * forward_s),
            "finite": bool(res.finite),
        })
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["speedup_vs_first"] = r["samples_per_s"] / base
    result = {"net": args.net, "params": net.num_params, "shape": list(shape),
              "steps": args.steps, "sampler": "ddim (eta 0)",
              "forward_s_per_device_batch": forward_s,
              "forward_ms_per_example": 1e3 * forward_s / args.per_device,
              "rows": rows, "machine": machine_info()}
    lines = [f"# Sharded DDIM sampling, {args.net} U-Net ({net.num_params:,} params), "
             f"{args.steps} steps, {args.per_device} per device",
             "", f"backend {jax.default_backend()}, {len(jax.devices())} devices "
             f"({jax.devices()[0].device_kind}); one forward of {args.per_device}: "
             f"{1e3 * forward_s:.2f} ms", "",
             "| devices | samples/s | network-bound samples/s | ratio | speed-up | first call s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['devices']} | {r['samples_per_s']:.2f} | "
                     f"{r['network_bound_samples_per_s']:.2f} | "
                     f"{r['samples_per_s'] / r['network_bound_samples_per_s']:.2f} | "
                     f"{r['speedup_vs_first']:.2f} | {r['first_call_s']:.1f} |")
    cores = os.cpu_count()
    if jax.default_backend() == "cpu" and len(jax.devices()) > 1:
        lines += ["", f"The {len(jax.devices())} devices are fake CPU devices "
                  f"(--xla_force_host_platform_device_count) sharing this machine's {cores} "
                  f"cores (load average {os.getloadavg()[0]:.1f} at the end of the run: other "
                  "jobs ran too). They cannot run in parallel, so the network-bound column "
                  "(which assumes they do) is not reachable and the speed-up column shows the "
                  "cost of the mapping (blocks, sharded inputs, gathering), not a gain. On real "
                  "devices run the accelerator command of the script's docstring."]
    result["load_average_end"] = os.getloadavg()[0]
    (out / f"distributed_{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"distributed_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
