"""Do learned 10-step grids help DDRM restore `photos64` images? (issue 17, transfer check)

    python experiments/learned_schedules/photos64.py                 # learn on the prior, evaluate
    python experiments/learned_schedules/photos64.py --learn-steps 0 # evaluate the saved grids only

DDRM (official η = 0.85, η_b = 1) at 10 NFE with the shipped prior (the same 1000-step
linear-β DDPM chain as the GMM experiment of ``run.py``, so a grid learned there applies
unchanged). Grids compared, all with 10 model calls:

* ``default``: DDRM's own ("leading" respacing, 10 of 1000);
* ``GMM posterior (DDRM)``: learned by ``run.py`` for DDRM on the exact GMM posterior
  (``results/schedules/ddrm_k10.json``);
* ``GMM prior (DDIM)``: learned by ``run.py`` for DDIM on the exact GMM prior (``ddim_k10.json``);
* ``photos64 (LPIPS)``: learned here, directly on the shipped prior: Adam on the grid's logits
  (initialised at the default), loss = LPIPS (AlexNet features) between DDRM's 10-step
  restoration and the clean crop, on 4× super-resolution of *training* crops
  (``photos:train``, photographs disjoint from the test ones), 8 steps of 2 crops (every crop
  seen once; CPU-sized: ~2 min of wall per step on the shared 2 cores), the DDRM noise
  reparameterised (a fixed key per step), gradients through the U-Net with
  ``checkpoint=True``. Saved as ``results/schedules/photos64_ddrm_sr4_k10.json``.

Evaluation: held-out crops of ``jaxir evaluate`` (``photos:test``, seed 0 degradations), one
posterior sample per crop with the same keys for every grid (paired); PSNR / SSIM / LPIPS,
mean ± 95 % CI (Student t) and the paired difference to the default grid. Writes
``results/photos64.md`` and ``results/photos64.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxir import inverse, metrics, samplers
from jaxir.priors import load_prior
from jaxir.restore._evaluate import load_eval_images
from jaxir.restore._tasks import degrade_images, get_task

HERE = pathlib.Path(__file__).resolve().parent
K = 10
LEARNED = "photos64_ddrm_sr4_k10.json"


def _ci(v, fmt=".3f"):
    m, h = metrics.mean_ci(np.asarray(v, np.float64))
    return f"{float(m):{fmt}} ± {float(h):{fmt}}"


def _ddrm(prior, task, op, key, y, ts, *, checkpoint=False):
    opts = {"num_steps": K} if ts is None else {"timesteps": ts}
    return inverse.ddrm_sample(key, prior.model_fn, prior.sde, op, y, float(task.sigma_y),
                               (y.shape[0], prior.image_size, prior.image_size, prior.channels),
                               prediction=prior.prediction, checkpoint=checkpoint, **opts).x


def learn_on_prior(prior, *, task_name, steps, batch, lr, log):
    """Adam on the 10-step grid's logits, loss = LPIPS(DDRM restoration, clean training crop)."""
    task = get_task(task_name)
    x = load_eval_images("photos:train", n=steps * batch, size=prior.image_size)
    y, _ = degrade_images(jax.random.key(1), task, x)
    op = task.make_operator(x.shape[1:], None)
    sde = prior.sde
    default = np.asarray(samplers.time_grid(sde, K)[0], np.float32)
    params = samplers.logits_from_timesteps(sde, default)
    opt = optax.adam(lr)
    metrics.lpips(x[:1], x[:1])  # load the LPIPS net outside jit: its cache would keep tracers

    def loss_fn(z, key, yb, xb):
        xh = _ddrm(prior, task, op, key, yb, samplers.timesteps_from_logits(sde, z),
                   checkpoint=True)
        return jnp.mean(metrics.lpips(xh, xb))

    @jax.jit
    def step(z, state, key, yb, xb):
        loss, g = jax.value_and_grad(loss_fn)(z, key, yb, xb)
        upd, state = opt.update(g, state)
        return optax.apply_updates(z, upd), state, loss

    state, losses, t0 = opt.init(params), [], time.perf_counter()
    for i in range(steps):
        sl = slice(i * batch, (i + 1) * batch)  # every crop seen once
        params, state, loss = step(params, state, jax.random.key(20_000 + i),
                                   jnp.asarray(y[sl]), jnp.asarray(x[sl]))
        losses.append(float(loss))
        log(f"  learn on photos64 ({task_name}) step {i:3d} LPIPS {losses[-1]:.4f} "
            f"({time.perf_counter() - t0:.0f} s)")
    ts = np.asarray(samplers.timesteps_from_logits(sde, params))
    return ts, losses, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="held-out test crops")
    ap.add_argument("--tasks", default="sr4,deblur,denoise", help="'' (empty): learn only")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--learn-steps", type=int, default=8,
                    help="Adam steps on the prior (0: reuse the saved grid if there is one)")
    ap.add_argument("--learn-batch", type=int, default=2)
    ap.add_argument("--learn-lr", type=float, default=0.1)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)

    def log(s):
        print(s, file=sys.stderr, flush=True)

    prior = load_prior("photos64")
    sde = prior.sde
    res = {"k": K, "n": args.n, "tasks": {}}
    if args.learn_steps > 0:
        ts, losses, secs = learn_on_prior(prior, task_name="sr4", steps=args.learn_steps,
                                          batch=args.learn_batch, lr=args.learn_lr, log=log)
        samplers.save_schedule(out / "schedules" / LEARNED, ts, sde=sde, sampler="DDRM",
                               meta={"k": K, "target": "photos64 sr4 (photos:train crops)",
                                     "loss": "LPIPS(alex)", "steps": args.learn_steps,
                                     "batch": args.learn_batch, "lr": args.learn_lr})
        (out / "photos64_learn.json").write_text(json.dumps(
            {"steps": args.learn_steps, "batch": args.learn_batch, "lr": args.learn_lr,
             "losses": losses, "seconds": secs, "timesteps": ts.tolist()}, indent=1))
    if (out / "photos64_learn.json").is_file():
        res["learn"] = json.loads((out / "photos64_learn.json").read_text())
    tasks = [t for t in args.tasks.split(",") if t]
    if not tasks:
        return 0
    grids = {"default": None}
    for name, file in (("GMM posterior (DDRM)", "ddrm_k10.json"),
                       ("GMM prior (DDIM)", "ddim_k10.json"), ("photos64 (LPIPS)", LEARNED)):
        if (out / "schedules" / file).is_file():
            grids[name] = jnp.asarray(samplers.load_schedule(out / "schedules" / file,
                                                             sde).timesteps)
    res["grids"] = {g: None if v is None else np.asarray(v).tolist() for g, v in grids.items()}
    x = load_eval_images("photos:test", n=args.n, size=prior.image_size)
    t0 = time.perf_counter()
    for task_name in tasks:
        task = get_task(task_name)
        y, _ = degrade_images(jax.random.key(0), task, x)
        op = task.make_operator(x.shape[1:], None)
        per = {}
        # two compilations per task: DDRM's own default, and one taking the grid as an argument
        own = jax.jit(lambda key, yb, task=task, op=op: _ddrm(prior, task, op, key, yb, None))
        given = jax.jit(lambda key, yb, ts, task=task, op=op: _ddrm(prior, task, op, key, yb, ts))
        for g, ts in grids.items():
            fn = own if ts is None else (lambda key, yb, ts=ts: given(key, yb, ts))
            xs = [np.asarray(fn(jax.random.key(100 + i), jnp.asarray(y[i:i + args.batch])))
                  for i in range(0, args.n, args.batch)]
            xh = np.clip(np.concatenate(xs), -1.0, 1.0)
            per[g] = {"psnr": np.asarray(metrics.psnr(xh, x)).tolist(),
                      "ssim": np.asarray(metrics.ssim(xh, x)).tolist(),
                      "lpips": np.asarray(metrics.lpips(xh, x)).tolist()}
            log(f"{task_name} {g}: PSNR {np.mean(per[g]['psnr']):.2f} "
                f"LPIPS {np.mean(per[g]['lpips']):.4f} ({time.perf_counter() - t0:.0f} s)")
        res["tasks"][task_name] = per
    res["eval_seconds"] = time.perf_counter() - t0
    lines = ["# Learned grids inside DDRM on `photos64` (10 NFE)\n",
             f"DDRM (η = 0.85, η_b = 1), one sample per crop, {args.n} held-out 64×64 crops of "
             "`photos:test` (the crops and degradations of `jaxir evaluate`, seed 0), the same "
             "keys for every grid; mean ± 95 % CI (Student t); Δ = paired difference to the "
             "default grid (positive Δ PSNR / SSIM and negative Δ LPIPS favour the grid). "
             "Generated by `experiments/learned_schedules/photos64.py`.\n",
             "| task | grid | PSNR (dB) ↑ | SSIM ↑ | LPIPS ↓ | Δ PSNR | Δ SSIM | Δ LPIPS |",
             "|---|---|---|---|---|---|---|---|"]
    for task_name, per in res["tasks"].items():
        base = per["default"]
        for g, m in per.items():
            d = ["–"] * 3 if g == "default" else [
                _ci(np.subtract(m[c], base[c]), ".2f" if c == "psnr" else ".3f")
                for c in ("psnr", "ssim", "lpips")]
            lines.append(f"| {task_name} | {g} | {_ci(m['psnr'], '.2f')} | {_ci(m['ssim'])} | "
                         f"{_ci(m['lpips'])} | " + " | ".join(d) + " |")
    lines.append("\nGrids (t, descending): " + "; ".join(
        f"{g}: {'leading 10 of 1000' if v is None else np.round(v, 3).tolist()}"
        for g, v in res["grids"].items()))
    if "learn" in res:
        lr = res["learn"]
        lines.append(f"\nOn-prior learning: {lr['steps']} Adam steps (lr {lr['lr']}) × "
                     f"{lr['batch']} training crops, {lr['seconds'] / 60:.1f} min; training "
                     f"LPIPS first {lr['losses'][0]:.4f}, last {lr['losses'][-1]:.4f} (each "
                     "step a different batch, so these are noisy).")
    (out / "photos64.json").write_text(json.dumps(res, indent=1))
    (out / "photos64.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
