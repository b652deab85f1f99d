"""Every core sampler against an exact Gaussian target (``jaxir bench gaussian``, ``jaxir demo``).

A ``d``-dimensional Gaussian with a random non-diagonal covariance is the data; each sampler
is driven by its exact score (:meth:`jaxir.exact.Gaussian.model_fn`) and starts from the
exact marginal at ``T``, so what remains is the sampler's own error. Reported per sampler:
the largest |z|-score of the sample mean and covariance entries (in standard errors,
:func:`jaxir.exact.moment_zscores`), the raw max errors, the Gaussian 2-Wasserstein distance
between the fitted and the exact Gaussian, network evaluations and seconds (compile
excluded: each sampler is run once to compile, then timed).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from .. import exact, samplers, schedules, sdes
from ..metrics import gaussian_w2


def _configs(num_steps: int):
    n = num_steps
    return {
        "ddpm": ("ddpm", lambda k, mf, s, x: samplers.ddpm_sample(k, mf, s, x_init=x, num_steps=n, clip_x0=False), "data"),
        "ddim (eta=0)": ("ddpm", lambda k, mf, s, x: samplers.ddim_sample(k, mf, s, x_init=x, num_steps=n), "data"),
        "ddim (eta=1)": ("ddpm", lambda k, mf, s, x: samplers.ddim_sample(k, mf, s, x_init=x, num_steps=n, eta=1.0), "data"),
        "dpm-solver++ 2M (50)": ("vp", lambda k, mf, s, x: samplers.dpm_solver_sample(k, mf, s, x_init=x, num_steps=50), "data"),
        "reverse SDE, Euler-Maruyama": ("vp", lambda k, mf, s, x: samplers.sde_sample(k, mf, s, x_init=x, num_steps=n, denoise=False), "t_min"),
        "reverse SDE, Heun": ("vp", lambda k, mf, s, x: samplers.sde_sample(k, mf, s, x_init=x, num_steps=n // 2, solver="heun", denoise=False), "t_min"),
        "PF-ODE, Heun (100)": ("vp", lambda k, mf, s, x: samplers.ode_sample(k, mf, s, x_init=x, num_steps=100), "t_min"),
        "PF-ODE, Tsit5 adaptive": ("vp", lambda k, mf, s, x: samplers.ode_sample(k, mf, s, x_init=x, num_steps=None, solver="tsit5"), "t_min"),
        # snr 0.05: the Langevin corrector's bias is O(snr²) at any N (see pc_sample)
        "predictor-corrector (snr 0.05)": ("vp", lambda k, mf, s, x: samplers.pc_sample(k, mf, s, x_init=x, num_steps=n, snr=0.05), "data"),
        "predictor-corrector (VE, snr 0.05)": ("ve", lambda k, mf, s, x: samplers.pc_sample(k, mf, s, x_init=x, num_steps=n, snr=0.05), "data"),
    }


def run_gaussian_benchmark(dim: int = 4, num_samples: int = 10_000, num_steps: int = 1000,
                           seed: int = 0, progress: bool = False) -> list[dict]:
    """Run every sampler once; return one JSON-serialisable dict per sampler."""
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(dim, dim)) * 0.6
    prior = exact.Gaussian(rng.normal(size=dim) * 0.8, L @ L.T + 0.3 * np.eye(dim))
    sde_table = {
        "vp": sdes.VPSDE(),
        "ve": sdes.VESDE(sigma_max=20.0),
        "ddpm": sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000)),
    }
    rows = []
    configs = _configs(num_steps)
    items = configs.items()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=len(configs), desc="samplers", leave=False)
    for i, (name, (sde_name, fn, target)) in enumerate(items):
        sde = sde_table[sde_name]
        x_T = prior.marginal(sde, sde.T).sample(jax.random.key(seed + 1000 + i), num_samples)
        run = jax.jit(lambda k, x, fn=fn, sde=sde: fn(k, prior.model_fn(sde), sde, x))
        key = jax.random.key(seed + i)
        jax.block_until_ready(run(key, x_T))  # compile
        t0 = time.perf_counter()
        out = jax.block_until_ready(run(key, x_T))
        secs = time.perf_counter() - t0
        tgt = prior if target == "data" else prior.marginal(sde, sde.t_min)
        z = exact.moment_zscores(out.x, tgt.mean, tgt.cov)
        x = np.asarray(out.x, np.float64)
        w2 = float(gaussian_w2(x.mean(0), np.cov(x.T), np.asarray(tgt.mean), np.asarray(tgt.cov)))
        rows.append({
            "sampler": name,
            "sde": type(sde).__name__,
            "target": "data" if target == "data" else "marginal at t_min",
            "nfe": int(np.asarray(out.nfe)),
            "mean_err": z["mean_err"],
            "cov_err": z["cov_err"],
            "z_mean": z["z_mean"],
            "z_cov": z["z_cov"],
            "w2": w2,
            "seconds": secs,
            "finite": bool(out.finite),
            "pass": bool(z["z_mean"] < 5 and z["z_cov"] < 5),
            "dim": dim,
            "num_samples": num_samples,
        })
    return rows


def format_table(rows: list[dict]) -> str:
    """A markdown table of :func:`run_gaussian_benchmark` rows."""
    head = "| sampler | SDE | NFE | max abs mean err | max abs cov err | max z (mean) | max z (cov) | W2 | s | within 5 SE |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['sampler']} | {r['sde']} | {r['nfe']} | {r['mean_err']:.4f} | {r['cov_err']:.4f} "
            f"| {r['z_mean']:.2f} | {r['z_cov']:.2f} | {r['w2']:.4f} | {r['seconds']:.2f} | "
            f"{'yes' if r['pass'] else 'NO'} |"
        )
    return "\n".join(lines)
