"""Training throughput (issue 7, item 4).

``step_over_fwd_bwd = T(train step) / T(forward + backward)``: the full
:func:`jaxir.training.make_train_step` (noise and time draws, ε-matching loss, gradient,
clip + AdamW, EMA; jitted with buffer donation by ``jit_train_step``) against
``jax.grad`` of a plain squared-error loss of the same network at the same batch.

``device_scaling`` runs the same step data-parallel on 1/2/4/8 fake CPU devices in a
subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=8``): a correctness and
overhead check (loss equal to one device's), not a speed-up measurement on 2 cores.
Run as ``python -m jaxir.bench._perf_train NET BATCH STEPS`` it prints that JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

from ._perf_common import Net, compile_fn, interleaved, make_net, median_time, run_once


def _setup(net: Net):
    from ..sdes import VPSDE
    from ..training import OptimConfig, TrainState, make_loss, make_optimizer, make_train_step

    sde = VPSDE()
    tx, schedule = make_optimizer(OptimConfig(warmup_steps=10), 1000)
    loss_fn = make_loss("denoising", sde)

    def apply_fn(params, dropout_key=None):
        return net.model_fn(params)

    step = make_train_step(loss_fn, apply_fn, tx, ema_decay=0.999, lr_schedule=schedule)

    def init(params):
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params), ema_params=jax.tree.map(jnp.copy, params),
                          rng=jax.random.key_data(jax.random.key(0)))

    return step, init


def train_throughput(net: Net, *, repeats: int = 5) -> dict:
    """One train step against one forward+backward of ``net`` (median of interleaved runs)."""
    from ..training import jit_train_step

    step, init = _setup(net)
    batch = {"image": jnp.clip(jax.random.normal(jax.random.key(2), net.shape), -1, 1)}
    state = init(net.params)
    jstep = jit_train_step(step, donate=False)
    jstep(state, batch)  # compile
    fb = compile_fn(jax.grad(lambda p, x, t: jnp.mean((net.apply(p, x, t) - x) ** 2)),
                    net.params, batch["image"], jnp.full((net.shape[0],), 0.5))
    args = (net.params, batch["image"], jnp.full((net.shape[0],), 0.5))
    run_once(fb.fn, *args)
    r = interleaved(lambda: median_time(jstep, state, batch, n=2),
                    lambda: median_time(fb.fn, *args, n=2), repeats)
    return {"net": net.name, "batch": net.shape[0], "train_step_s": r["target_s"],
            "fwd_bwd_s": r["base_s"], "step_over_fwd_bwd": r["ratio"]}


def _device_rows(name: str, batch: int, steps: int) -> list[dict]:
    from ..training import batch_sharding, jit_train_step, make_mesh, tree_shardings

    net = make_net(name, batch)
    step, init = _setup(net)
    x = {"image": jnp.clip(jax.random.normal(jax.random.key(2), net.shape), -1, 1)}
    rows, ref = [], None
    for n in (1, 2, 4, 8):
        if n > len(jax.devices()) or batch % n:
            continue
        mesh = make_mesh(data=n)
        state = init(net.params)
        sh = tree_shardings(state, mesh)
        bsh = batch_sharding(mesh)
        state = jax.device_put(state, sh)
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
    print(json.dumps(_device_rows(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
