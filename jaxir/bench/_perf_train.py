"""Training throughput (issue 7 item 4, issue 19 item 4).

``step_over_fwd_bwd = T(train step) / T(forward + backward)``: the step `jaxir.training.train`
runs (:func:`jaxir.training.make_train_step` on the flat layout — parameters, AdamW moments
and EMA as single vectors — with noise and time draws, ε-matching loss, gradient, clip +
AdamW, EMA; jitted with buffer donation, each step's state fed to the next) against
``jax.grad`` of a plain squared-error loss of the same network at the same batch.
``step_over_fwd_bwd_tree`` is the same step on the tree layout (one array per parameter: what
FSDP uses), measured in the same run.

:func:`train_mfu` measures the full step's rate (steps/s over a chain of donated steps, one
host synchronisation at the end) per compute dtype and the model FLOP utilisation: the
network's forward + backward FLOPs per step (XLA's cost analysis of the compiled gradient)
times steps/s over the chip's peak (:data:`PEAK_FLOPS`, None on an unknown device). Issue 19
asks for the ``base`` preset (the 35.7M-parameter DDPM CIFAR-10 network) at batch 128 with
float32 and ``compute_dtype=bfloat16``: ``python -m jaxir.bench._perf_train mfu base 128``.

``device_scaling`` runs the same step data-parallel on 1/2/4/8 fake CPU devices in a
subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=8``): a correctness and
overhead check (loss equal to one device's), not a speed-up measurement on 2 cores.
Run as ``python -m jaxir.bench._perf_train NET BATCH STEPS`` it prints that JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

from ._perf_common import Net, compile_fn, make_net, median_time, run_once

# Dense peak FLOP/s per device kind (vendor data sheets; "float32" is the backend's default
# float32 matrix product: TF32 tensor cores on NVIDIA, one bfloat16 pass on TPU).
PEAK_FLOPS = {
    "NVIDIA H200": {"float32": 494e12, "bfloat16": 989e12},
    "NVIDIA H100 80GB HBM3": {"float32": 494e12, "bfloat16": 989e12},
    "NVIDIA A100-SXM4-80GB": {"float32": 156e12, "bfloat16": 312e12},
    "TPU v3": {"float32": 123e12, "bfloat16": 123e12},
    "TPU v4": {"float32": 275e12, "bfloat16": 275e12},
}


def _setup(apply_fn, params, *, flat: bool = True, compute_dtype="float32"):
    """``(step, state)``: the trainer's step and a fresh state (flat or tree layout)."""
    from ..sdes import VPSDE
    from ..training import (
        FlatLayout,
        OptimConfig,
        TrainState,
        make_loss,
        make_optimizer,
        make_train_step,
    )

    tx, schedule = make_optimizer(OptimConfig(warmup_steps=10), 1000)
    params = jax.tree.map(jnp.copy, params)  # the state is donated; the caller's params stay
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       ema_params=jax.tree.map(jnp.copy, params),
                       rng=jax.random.key_data(jax.random.key(0)))
    layout = FlatLayout.of(params, tx) if flat else None
    if layout is not None:
        state = jax.jit(layout.to_flat)(state)
    step = make_train_step(make_loss("denoising", VPSDE()), apply_fn, tx, ema_decay=0.999,
                           lr_schedule=schedule, compute_dtype=compute_dtype, layout=layout)
    return step, state


def _chain_time(jstep, state, batch, n: int, *, cpu: bool = False):
    """Seconds per step over ``n`` chained donated steps (one synchronisation at the end), and
    the final state (the input ``state`` is donated); with ``cpu`` also the process CPU seconds
    per step (all threads): ``((wall, cpu), state)``."""
    state, m = jstep(state, batch)
    jax.block_until_ready(m)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        state, m = jstep(state, batch)
    jax.block_until_ready((state, m))
    wall, cpu_s = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
    return ((wall, cpu_s) if cpu else wall), state


def _wall_and_cpu(fn, *args, n: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``n`` blocking calls."""
    ws, cs = [], []
    for _ in range(n):
        w, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        ws.append(time.perf_counter() - w)
        cs.append(time.process_time() - c)
    return statistics.median(ws), statistics.median(cs)


def train_throughput(net: Net, *, repeats: int = 5, chain: int = 2) -> dict:
    """One train step (flat and tree layouts) against one forward+backward of ``net``.

    Each repeat times forward+backward (median of 2 calls), the flat-layout step and the
    tree-layout step (each the mean over ``chain`` chained donated steps), one after the
    other; the ratios are medians over repeats of the per-repeat ratios, in wall time
    (``step_over_fwd_bwd``, ``..._tree``; with the spread ``ratio_min``/``ratio_max``) and in
    process CPU time over all threads (``..._cpu``: steadier on a loaded shared CPU, where
    wall time also counts other jobs' slices; on an accelerator only wall time means much).
    """
    from ..training import jit_train_step

    batch = {"image": jnp.clip(jax.random.normal(jax.random.key(2), net.shape), -1, 1)}
    apply_fn = lambda p, dropout_key=None: net.model_fn(p)
    steps, states = {}, {}
    for name, flat in (("flat", True), ("tree", False)):
        step, states[name] = _setup(apply_fn, net.params, flat=flat)
        steps[name] = jit_train_step(step)
        states[name], _ = steps[name](states[name], batch)  # compile
    fb = compile_fn(jax.grad(lambda p, x, t: jnp.mean((net.apply(p, x, t) - x) ** 2)),
                    net.params, batch["image"], jnp.full((net.shape[0],), 0.5))
    args = (net.params, batch["image"], jnp.full((net.shape[0],), 0.5))
    run_once(fb.fn, *args)
    rows = []
    for _ in range(max(1, repeats)):
        row = {"fb": _wall_and_cpu(fb.fn, *args, n=2)}
        for name in ("flat", "tree"):
            row[name], states[name] = _chain_time(steps[name], states[name], batch, chain,
                                                  cpu=True)
        rows.append(row)

    def med(name, i):
        return statistics.median(r[name][i] for r in rows)

    def ratio(name, i):
        return statistics.median(r[name][i] / max(r["fb"][i], 1e-12) for r in rows)

    wall_ratios = [r["flat"][0] / r["fb"][0] for r in rows]
    return {"net": net.name, "batch": net.shape[0], "num_params": net.num_params,
            "repeats": len(rows), "chain": chain,
            "train_step_s": med("flat", 0), "fwd_bwd_s": med("fb", 0),
            "step_over_fwd_bwd": ratio("flat", 0), "ratio_min": min(wall_ratios),
            "ratio_max": max(wall_ratios), "train_step_tree_s": med("tree", 0),
            "step_over_fwd_bwd_tree": ratio("tree", 0),
            "train_step_cpu_s": med("flat", 1), "fwd_bwd_cpu_s": med("fb", 1),
            "train_step_tree_cpu_s": med("tree", 1),
            "step_over_fwd_bwd_cpu": ratio("flat", 1),
            "step_over_fwd_bwd_tree_cpu": ratio("tree", 1)}


def _flops(stage) -> float | None:
    """XLA's FLOP count of a lowered or compiled computation (None where unavailable)."""
    try:
        ca = stage.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without cost analysis
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    return float(ca["flops"]) if ca and "flops" in ca else None


def train_mfu(name: str = "base", batch: int = 128, *, dtypes=("float32", "bfloat16"),
              steps: int = 20) -> dict:
    """Steps/s of the trainer's full step (flat layout, donated, ``steps`` chained steps after
    a compiled warm-up) for the `jaxir.models` U-Net preset ``name`` per compute dtype, with
    the model FLOPs per step (XLA's cost analysis of the network's forward + backward at that
    dtype), the achieved FLOP/s and the model FLOP utilisation against :data:`PEAK_FLOPS`."""
    from flax import nnx

    from ..models import UNet, split_model, unet_config
    from ..training import make_apply_fn

    cfg = unet_config(name)
    graphdef, params = split_model(UNet(cfg, rngs=nnx.Rngs(0)))
    shape = (batch, cfg.image_size, cfg.image_size, cfg.in_channels)
    x = jnp.clip(jax.random.normal(jax.random.key(2), shape), -1, 1)
    t = jnp.full((batch,), 0.5)
    kind = jax.devices()[0].device_kind
    rows = []
    for dtype in dtypes:
        apply_fn = make_apply_fn(graphdef, compute_dtype=dtype)
        step, state = _setup(apply_fn, params, compute_dtype=dtype)
        t0 = time.perf_counter()
        jstep = jax.jit(step, donate_argnums=0).lower(state, {"image": x}).compile()
        compile_s = time.perf_counter() - t0
        # the network's forward + backward, counted on the lowered module (no compilation)
        fwd_bwd = jax.jit(jax.grad(lambda p: jnp.mean(apply_fn(p)(x, t) ** 2))).lower(params)
        sec, _ = _chain_time(jstep, state, {"image": x}, steps)
        model_flops = _flops(fwd_bwd)
        peak = PEAK_FLOPS.get(kind, {}).get(dtype)
        achieved = None if model_flops is None else model_flops / sec
        rows.append({"compute_dtype": dtype, "step_s": sec, "steps_per_s": 1.0 / sec,
                     "compile_s": compile_s, "model_flops_per_step": model_flops,
                     "step_flops": _flops(jstep), "achieved_flops_per_s": achieved,
                     "peak_flops_per_s": peak,
                     "mfu": None if achieved is None or peak is None else achieved / peak})
    return {"net": name, "batch": batch, "device_kind": kind,
            "num_params": int(sum(p.size for p in jax.tree.leaves(params))), "rows": rows}


def _device_rows(name: str, batch: int, steps: int) -> list[dict]:
    from ..training import batch_sharding, jit_train_step, make_mesh, tree_shardings

    net = make_net(name, batch)
    step, state0 = _setup(lambda p, dropout_key=None: net.model_fn(p), net.params, flat=False)
    x = {"image": jnp.clip(jax.random.normal(jax.random.key(2), net.shape), -1, 1)}
    rows, ref = [], None
    for n in (1, 2, 4, 8):
        if n > len(jax.devices()) or batch % n:
            continue
        mesh = make_mesh(data=n)
        sh = tree_shardings(state0, mesh)
        bsh = batch_sharding(mesh)
        state = jax.device_put(state0, sh)
        xb = jax.device_put(x, bsh)
        jstep = jit_train_step(step, sh, bsh, donate=False)
        s1, m = jstep(state, xb)
        loss = float(m["loss"])
        ref = loss if ref is None else ref
        t = median_time(jstep, state, xb, n=steps)
        rows.append({"devices": n, "step_s": t, "loss": loss, "loss_diff_vs_1": abs(loss - ref)})
    base = rows[0]["step_s"] if rows else None
    for r in rows:
        r["time_vs_1"] = r["step_s"] / base
    return rows


def device_scaling(name: str = "tiny", batch: int = 8, steps: int = 3, timeout: float = 300):
    """``_device_rows`` in a subprocess with 8 fake CPU devices; ``{"rows": ...}`` or an error."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "jaxir.bench._perf_train", name, str(batch), str(steps)]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout}s"}
    if p.returncode:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"}
    return {"net": name, "batch": batch, "rows": json.loads(p.stdout.strip().splitlines()[-1])}


if __name__ == "__main__":
    if sys.argv[1] == "mfu":  # python -m jaxir.bench._perf_train mfu [NET [BATCH [STEPS [OUT]]]]
        a = sys.argv[2:]
        name, b = (a[0] if a else "base"), (int(a[1]) if len(a) > 1 else 128)
        res = None
        for dt in ("float32", "bfloat16"):  # one dtype at a time: a kill keeps the first row
            r = train_mfu(name, b, dtypes=(dt,), steps=int(a[2]) if len(a) > 2 else 20)
            res = r if res is None else {**res, "rows": res["rows"] + r["rows"]}
            if len(a) > 3:
                with open(a[3], "w") as f:
                    json.dump(res, f, indent=1)
            print(json.dumps(r["rows"][0]), flush=True)
    else:
        print(json.dumps(_device_rows(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
