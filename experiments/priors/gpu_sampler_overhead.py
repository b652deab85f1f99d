"""Sampler overhead of the trained prior on the accelerator it was trained on.

    python experiments/priors/gpu_sampler_overhead.py PRIOR.npz OUT.json

For batch B = 64 at 64x64: the jitted network forward, forward + VJP, and DDIM / DDRM (forward
only) and DPS / PiGDM (one VJP per step) with N = 100 steps; ratio = sampler time / (N x the
per-step unit). Medians of 5 runs after compilation.
"""

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxir import ddim_sample
from jaxir.inverse import ddrm_sample, dps_sample, pigdm_sample
from jaxir.operators import SuperResolution
from jaxir.priors import load_prior


def timeit(f, *a, reps=5):
    jax.block_until_ready(f(*a))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*a))
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main(path, out, batch=64, steps=100):
    prior = load_prior(path)
    B, S, N = int(batch), prior.image_size, int(steps)
    x = jax.random.normal(jax.random.key(0), (B, S, S, 3))
    t = jnp.full((B,), 0.5)
    fwd = jax.jit(lambda x: prior.model_fn(x, t))
    vjp = jax.jit(lambda x: jax.grad(lambda z: jnp.sum(prior.model_fn(z, t) ** 2))(x))
    t_f, t_v = timeit(fwd, x), timeit(vjp, x)
    op = SuperResolution((S, S, 3), 4)
    y = jax.vmap(op.A)(x)
    runs = {
        "ddim": (lambda k: ddim_sample(k, prior.model_fn, prior.sde, (B, S, S, 3), num_steps=N).x, t_f),
        "ddrm": (lambda k: ddrm_sample(k, prior.model_fn, prior.sde, op, y, 0.05, (B, S, S, 3),
                                       num_steps=N).x, t_f),
        "dps": (lambda k: dps_sample(k, prior.model_fn, prior.sde, op, y, 0.05, (B, S, S, 3),
                                     num_steps=N).x, t_v),
        "pigdm": (lambda k: pigdm_sample(k, prior.model_fn, prior.sde, op, y, 0.05, (B, S, S, 3),
                                         num_steps=N).x, t_v),
    }
    res = {"device": jax.devices()[0].device_kind, "jax": jax.__version__, "batch": B,
           "image_size": S, "steps": N, "forward_s": t_f, "forward_vjp_s": t_v,
           "vjp_over_forward": t_v / t_f}
    for name, (f, unit) in runs.items():
        try:
            tt = timeit(jax.jit(f), jax.random.key(1), reps=3)
            res[name] = {"seconds": tt, "ratio": tt / (N * unit), "ratio_to_forward": tt / (N * t_f)}
        except Exception as e:  # record and go on: one sampler's failure must not lose the rest
            res[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(name, res[name], flush=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main(*sys.argv[1:5])
