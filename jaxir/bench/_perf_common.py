"""Shared pieces of the performance benchmarks: networks, timing, machine description.

Timing rules (these machines are shared and noisy, so every result is a *ratio* of two
times measured interleaved in the same run):

* every function is compiled first (``jit(...).lower(...).compile()``; the lowering and
  compile times are recorded separately), then timed with ``block_until_ready``;
* a target and its baseline are timed alternately, ``repeats`` times, and the ratio is the
  median of the per-repeat ratios (a slow spell then hits both sides of one ratio).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class Net(NamedTuple):
    """A network as the benchmarks use it: ``apply(params, x, t) -> prediction``.

    ``params`` is passed as a jit *argument* everywhere (never closed over), so XLA sees
    the same program shape in the sampler loop and in the forward baseline.
    """

    name: str
    apply: Callable
    params: Any
    shape: tuple  # (B, H, W, C)
    num_params: int

    def model_fn(self, params):
        return lambda x, t, cond=None: self.apply(params, x, t)


def _count(params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))


def make_net(name: str, batch: int) -> Net:
    """``"tiny"``/``"small"``/``"base"``: the `jaxir.models` U-Net of that config;
    ``"toy"``: two 3×3 convolutions with a time-dependent scale (pure JAX, compiles in a
    fraction of a second; used where the loop's own overhead, not the network, is measured).
    """
    if name == "toy":
        k1, k2 = jax.random.split(jax.random.key(0))
        c, h = 3, 8
        params = {"w1": 0.1 * jax.random.normal(k1, (3, 3, c, h)),
                  "w2": 0.1 * jax.random.normal(k2, (3, 3, h, c))}
        dn = ("NHWC", "HWIO", "NHWC")

        def apply(p, x, t):
            z = jax.lax.conv_general_dilated(x, p["w1"], (1, 1), "SAME", dimension_numbers=dn)
            z = jax.nn.silu(z * (1.0 + jnp.asarray(t, x.dtype)))
            return jax.lax.conv_general_dilated(z, p["w2"], (1, 1), "SAME", dimension_numbers=dn)

        return Net("toy", apply, params, (batch, 16, 16, c), _count(params))

    from flax import nnx

    from ..models import UNet, make_model_fn, split_model, unet_config

    cfg = unet_config(name)
    graphdef, params = split_model(UNet(cfg, rngs=nnx.Rngs(0)))

    def apply(p, x, t):
        return make_model_fn(graphdef, p)(x, t, None)

    s = cfg.image_size
    return Net(name, apply, params, (batch, s, s, cfg.in_channels), _count(params))


class Compiled(NamedTuple):
    fn: Callable  # the compiled executable
    lower_s: float  # trace + lower to StableHLO
    compile_s: float  # XLA compile
    memory: dict | None  # memory_analysis sizes in bytes (None where unsupported)


def compile_fn(fn: Callable, *args, static_argnums=()) -> Compiled:
    """``jax.jit(fn)`` lowered and compiled for ``args``, with the time each stage took."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn, static_argnums=static_argnums).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return Compiled(compiled, t1 - t0, t2 - t1, memory_of(compiled))


def memory_of(compiled) -> dict | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - backends without memory analysis
        return None
    if m is None:
        return None
    keys = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
            "generated_code_size_in_bytes", "alias_size_in_bytes")
    return {k.replace("_size_in_bytes", ""): int(getattr(m, k, 0) or 0) for k in keys}


def run_once(fn: Callable, *args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def median_time(fn: Callable, *args, n: int = 5) -> float:
    return statistics.median(run_once(fn, *args) for _ in range(n))


def interleaved(target: Callable, base: Callable, repeats: int) -> dict:
    """Time ``target()`` and ``base()`` alternately; ``ratio`` = median of per-repeat ratios.

    Both are zero-argument callables that block until their result is ready and return
    seconds (e.g. ``lambda: run_once(f, *args)``).
    """
    ts, bs, rs = [], [], []
    for _ in range(max(1, repeats)):
        b = base()
        t = target()
        ts.append(t)
        bs.append(b)
        rs.append(t / b)
    return {"target_s": statistics.median(ts), "base_s": statistics.median(bs),
            "ratio": statistics.median(rs), "ratio_min": min(rs), "ratio_max": max(rs)}


def fit_exponent(ns, ys) -> float | None:
    """Least-squares slope of log y against log n (y ∝ n^slope); None with < 2 usable points."""
    import math

    pts = [(math.log(n), math.log(y)) for n, y in zip(ns, ys) if y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def machine_info() -> dict:
    """The machine and software the numbers come from (``lscpu``-like, jax versions)."""
    import importlib.metadata as md

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for pkg in ("jax", "jaxlib", "flax", "optax", "diffrax", "equinox"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = None
    return info
