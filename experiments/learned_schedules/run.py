"""Learned few-step samplers on exact targets (issue 17; Watson et al., ICLR 2022).

    python experiments/learned_schedules/run.py            # ~1 h wall on the shared 2 cores
    python experiments/learned_schedules/run.py --quick    # fewer steps and samples

Learn the K time points (and η: one per step for DDIM, one scalar for DDRM) of a K-step
sampler, K ∈ {4, 6, 10}, by Adam through the sampler on SW₂² to exact target draws, in the
spirit of Watson, Chan, Ho & Norouzi, "Learning fast samplers for diffusion models by
differentiating through sample quality" (ICLR 2022; their target needs perceptual features,
this one is exact). Targets (``jaxir.bench.gmm``, d = 8): the 25-component prior (identity
covariances, weights drawn per problem) and, for DDRM / ΠGDM, its exact posterior given
``y = A x + σ_y n`` (dy cycling 1, 2, 4). The exact ε-model drives every sampler on the
DDPM chain (1000 linear β); DDIM and DPM-Solver++ start from exact draws of ``p_T`` at t = T.

Training: 4 prior (6 posterior) problems; each Adam step (cosine-decayed rate) on the grid's
logits (:func:`jaxir.samplers.timesteps_from_logits`, started at the default grid) takes the
mean SW₂² (64 projections) between 256 sampler outputs and 256 exact draws per problem, all
noise fresh per step and reparameterised (fixed keys inside the step).

Evaluation on held-out problems (other seeds), the same keys for every grid (paired): 2,000
samples vs 2,000 exact draws, SW₂ (256 projections) and MMD² (RBF, median bandwidth), off-mode
fraction and mode-weight TV; mean ± sd over problems, the paired learned − fixed difference
(95 % t-CI) and the noise floor (the same distances between two sets of exact draws). Fixed
grids at equal NFE: DDIM "leading" (its default, first step at 1 − 1/K + 1/1000 < T, started
from the p_T draw, as DDIM does) and "trailing" (first step at T), DPM-Solver++'s log-SNR grid,
DDRM's and ΠGDM's defaults with K steps. Writes ``results/``: results.json, table.md,
figure.png, schedules/*.json (:func:`jaxir.samplers.save_schedule`).
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

from jaxir import inverse, metrics, operators, samplers, schedules, sdes
from jaxir.bench import gmm

HERE = pathlib.Path(__file__).resolve().parent
SDE = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
D = 8
DY_MAX = 4


def problems(seed: int, n: int, posterior: bool):
    """n stacked problems; posterior ones cycle dy = 1, 2, 4, padded to dy = 4 (zero rows:
    the same problem) so that one compiled function serves all."""
    ps = [gmm.pad_problem(gmm.make_problem(jax.random.key(seed + i), D, (1, 2, 4)[i % 3]), DY_MAX)
          if posterior else gmm.make_problem(jax.random.key(seed + i), D, 1) for i in range(n)]
    return jax.tree.map(lambda *a: jnp.stack(a), *ps)


def exact_x_T(key, p, n):
    """Draws of the exact p_T = Σ w_k N(α_T μ_k, (α_T² + σ_T²) I)."""
    a, s = SDE.marginal_coeffs(jnp.float32(SDE.T))
    kc, kz = jax.random.split(key)
    c = jax.random.choice(kc, p.weights.shape[0], (n,), p=p.weights)
    return a * p.means[c] + jnp.sqrt(a**2 + s**2) * jax.random.normal(kz, (n, D))


# ---- samplers: (name, default grid (K,), run(params-derived ts, eta, problem, key, n)) --------

def _ddim(ts, eta, p, key, n):
    k1, k2 = jax.random.split(key)
    return samplers.ddim_sample(k2, gmm.gmm_model_fn(p, SDE), SDE, x_init=exact_x_T(k1, p, n),
                                timesteps=ts, eta=0.0 if eta is None else eta).x


def _dpm(ts, eta, p, key, n):
    k1, k2 = jax.random.split(key)
    return samplers.dpm_solver_sample(k2, gmm.gmm_model_fn(p, SDE), SDE,
                                      x_init=exact_x_T(k1, p, n), timesteps=ts).x


def _ddrm(ts, eta, p, key, n):
    kw = {} if eta is None else {"eta": eta}  # None: DDRM's official η = 0.85
    return inverse.ddrm_sample(key, gmm.gmm_model_fn(p, SDE), SDE, operators.DenseMatrix(p.A),
                               p.y, p.sigma_y, (n, D), timesteps=ts, **kw).x


def _pigdm(ts, eta, p, key, n):
    return inverse.pigdm_sample(key, gmm.gmm_model_fn(p, SDE), SDE, operators.DenseMatrix(p.A),
                                p.y, p.sigma_y, (n, D), timesteps=ts).x


def ddim_default(k, spacing=None):  # "leading" (DDIM's default; t_1 = 0.751 for K = 4)
    return np.asarray(samplers.time_grid(SDE, k, spacing)[0], np.float32)


def ddim_trailing(k):  # t_1 = T: a stronger fixed baseline than "leading" at small K
    return ddim_default(k, "trailing")


def dpm_default(k):
    return np.asarray(samplers.solver_time_grid(SDE, k)[0], np.float32)


# name: (run, default grid, learn η? (False | "step": one per step | "scalar"), target)
VARIANTS = {
    "DDIM": (_ddim, ddim_default, False, "prior"),
    "DDIM + η": (_ddim, ddim_default, "step", "prior"),
    "DPM-Solver++": (_dpm, dpm_default, False, "prior"),
    "DDRM": (_ddrm, ddim_default, False, "posterior"),
    "DDRM + η": (_ddrm, ddim_default, "scalar", "posterior"),
    "ΠGDM": (_pigdm, ddim_default, False, "posterior"),
}
SLUGS = {"DDIM": "ddim", "DDIM + η": "ddim_eta", "DPM-Solver++": "dpmpp", "DDRM": "ddrm",
         "DDRM + η": "ddrm_eta", "ΠGDM": "pigdm"}  # schedules/{slug}_k{K}.json
#: extra fixed grids evaluated next to a sampler's default (no learning)
EXTRA_GRIDS = {"DDIM": {"trailing": ddim_trailing}}
ETA0 = {"step": -3.0, "scalar": float(np.log(0.85 / 0.15))}  # σ(−3) ≈ 0.047; σ(1.73) = 0.85


#: χ²₈ 0.999-quantile: an exact draw lies farther than this (squared, in its component's own
#: metric) from every component's mean with probability < 0.1 %
CHI2_8_999 = 26.124481558376


def mode_stats(kind, x, p):
    """(off-mode fraction, total variation of the mode weights): each sample is assigned to its
    nearest component (in that component's metric: identity for the prior, the shared posterior
    covariance for the posterior); off-mode = squared distance above :data:`CHI2_8_999`
    (0.1 % of exact draws); TV = ½ Σ_k |fraction assigned to k − weight_k|."""
    if kind == "prior":
        means, weights = p.means, p.weights
        z = x[:, None, :] - means[None]
    else:
        means, weights = p.post_means, p.post_weights
        z = jnp.einsum("nkd,ed->nke", x[:, None, :] - means[None], p.vt,
                       precision="highest") / p.post_scale
    d2 = jnp.sum(z**2, -1)
    k = jnp.argmin(d2, -1)
    off = jnp.mean(jnp.min(d2, -1) > CHI2_8_999)
    freq = jnp.bincount(k, length=weights.shape[0]) / x.shape[0]
    return off, 0.5 * jnp.sum(jnp.abs(freq - weights))


def target_sample(kind, key, p, n):
    return (gmm.prior_sample if kind == "prior" else gmm.posterior_sample)(key, p, n)


def learn(name, k, probs, *, steps, n, projections, lr, seed=0, log=print):
    """Adam on the grid's logits (and η's logits) of variant ``name`` with K = ``k`` steps."""
    run, default, with_eta, kind = VARIANTS[name]
    params = {"z": samplers.logits_from_timesteps(SDE, default(k))}
    if with_eta:  # float32, not weak-typed: a weak-typed leaf makes step 1 recompile
        params["e"] = jnp.full((k,) if with_eta == "step" else (), ETA0[with_eta], jnp.float32)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    n_prob = probs.weights.shape[0]

    def loss_fn(params, key):
        ts = samplers.timesteps_from_logits(SDE, params["z"])
        eta = jax.nn.sigmoid(params["e"]) if with_eta else None

        def one(p, kk):
            k_run, k_tgt, k_proj = jax.random.split(kk, 3)
            x = run(ts, eta, p, k_run, n)
            y = target_sample(kind, k_tgt, p, n)
            return metrics.sliced_wasserstein(k_proj, x, y, projections, p=2) ** 2

        return jnp.mean(jax.vmap(one)(probs, jax.random.split(key, n_prob)))

    @jax.jit
    def step(params, state, key):
        loss, g = jax.value_and_grad(loss_fn)(params, key)
        upd, state = opt.update(g, state)
        return optax.apply_updates(params, upd), state, loss

    state, losses, t0 = opt.init(params), [], time.perf_counter()
    base = jax.random.key(10_000 + seed)
    for i in range(steps):
        params, state, loss = step(params, state, jax.random.fold_in(base, i))
        losses.append(float(loss))
        if i % max(1, steps // 5) == 0 or i == steps - 1:
            log(f"  {name:13s} K={k:2d} step {i:4d} SW2² {np.mean(losses[-20:]):.3f} "
                f"({time.perf_counter() - t0:.0f} s)")
    ts = np.asarray(samplers.timesteps_from_logits(SDE, params["z"]))
    eta = np.asarray(jax.nn.sigmoid(params["e"])) if with_eta else None
    return ts, eta, losses


def _mmd(x, y):
    """MMD² with the median heuristic computed in NumPy (the same bandwidth as
    ``metrics.mmd(x, y)``: the median distance between distinct pooled points) and passed in,
    which keeps XLA from constant-folding an 8-million-pair index table for every call."""
    z = np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    z = z - z.mean(0)
    sq = np.maximum((z**2).sum(1)[:, None] + (z**2).sum(1)[None] - 2 * z @ z.T, 0.0)
    h = float(np.median(np.sqrt(sq[np.triu_indices(len(z), 1)])))
    return float(metrics.mmd(x, y, bandwidth=h))


def _distances(kind, draw, probs, *, n, projections, seed):
    """Per held-out problem: SW₂, MMD², off-mode fraction, mode TV of ``draw(p, key)`` against
    n exact draws (evaluation keys fixed per problem: the same for every grid, paired)."""
    @jax.jit
    def one(p, key):
        k_run, k_tgt, k_proj = jax.random.split(key, 3)
        x, y = draw(p, k_run), target_sample(kind, k_tgt, p, n)
        return (x, y, metrics.sliced_wasserstein(k_proj, x, y, projections, p=2),
                *mode_stats(kind, x, p), jnp.all(jnp.isfinite(x)))

    out = [one(jax.tree.map(lambda a, i=i: a[i], probs), jax.random.key(50_000 + seed + i))
           for i in range(probs.weights.shape[0])]
    out = [(o[2], _mmd(o[0], o[1]), *o[3:]) for o in out]
    sw, mm, off, tv, fin = (np.array([float(o[j]) for o in out]) for j in range(5))
    return {"sw2": sw.tolist(), "mmd2": mm.tolist(), "off_mode": off.tolist(),
            "mode_tv": tv.tolist(), "finite": bool(fin.all())}


def evaluate(name, ts, eta, probs, *, n, projections, seed=1):
    """The distances of variant ``name`` with grid ``ts`` (and η) on the held-out problems."""
    run, _, _, kind = VARIANTS[name]
    ts = jnp.asarray(ts, jnp.float32)
    eta = None if eta is None else jnp.asarray(eta, jnp.float32)
    return _distances(kind, lambda p, k: run(ts, eta, p, k, n), probs, n=n,
                      projections=projections, seed=seed)


def floor(kind, probs, *, n, projections, seed=1):
    """The noise floor: the same distances between two independent sets of n exact draws."""
    return _distances(kind, lambda p, k: target_sample(kind, jax.random.fold_in(k, 7), p, n),
                      probs, n=n, projections=projections, seed=seed)


def _ms(v, fmt=".3g"):
    return f"{np.mean(v):{fmt}} ± {np.std(v, ddof=1):{fmt}}"


def _ci(v):
    m, h = metrics.mean_ci(np.asarray(v, np.float64))
    return f"{float(m):+.3g} ± {float(h):.2g}"


def summary(res, metric="sw2") -> str:
    """Learned vs fixed grids, paired over held-out problems (the same evaluation keys)."""
    rows, fl = res["rows"], res["floor"]
    nh = {kind: len(f[metric]) for kind, f in fl.items()}
    lines = [f"\n**Summary** — held-out SW₂ (mean over problems), learned minus fixed grid "
             "paired per problem (mean ± 95 % t-CI; negative = learned better), and the number "
             "of held-out problems where learned is lower; NFE = K for both.\n",
             "| target | sampler | K | fixed grid | SW₂ fixed | SW₂ learned | Δ learned − fixed "
             "| learned lower | floor |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["grid"] != "learned":
            continue
        base = r["sampler"].split(" + ")[0]
        for f in rows:
            if f["sampler"] == base and f["grid"] != "learned" and f["k"] == r["k"]:
                d = np.subtract(r[metric], f[metric])
                lines.append(
                    f"| {r['target']} | {r['sampler']} | {r['k']} | {base} {f['grid']} | "
                    f"{np.mean(f[metric]):.3g} | {np.mean(r[metric]):.3g} | {_ci(d)} | "
                    f"{int((d < 0).sum())}/{nh[r['target']]} | "
                    f"{np.mean(fl[r['target']][metric]):.3g} |")
    return "\n".join(lines) + "\n"


def table(res) -> str:
    ks = res["config"]["ks"]
    lines = [summary(res)]
    for kind, title in (("prior", "Exact GMM prior (d = 8, 25 components)"),
                        ("posterior", "Exact GMM posterior (d = 8, dy ∈ {1, 2, 4}; η = 0.85 "
                                      "for DDRM, 0 for ΠGDM, learned for DDRM + η)")):
        rows = [r for r in res["rows"] if r["target"] == kind]
        if not rows:
            continue
        fl = res["floor"][kind]
        nh = len(fl["sw2"])
        for metric, mname in (("sw2", "SW₂ (256 projections)"), ("mmd2", "MMD² (RBF, median)"),
                              ("off_mode", "fraction of samples off every mode (χ²₈ 0.999: "
                                           "0.001 for exact draws)"),
                              ("mode_tv", "total variation of the mode weights")):
            lines += [f"\n**{title}** — {mname}, mean ± sd over {nh} held-out problems, "
                      f"{res['config']['eval_n']} samples vs {res['config']['eval_n']} exact "
                      "draws; NFE = K\n",
                      "| sampler | grid | " + " | ".join(f"K = {k}" for k in ks) + " |",
                      "|---|---|" + "---|" * len(ks)]
            for sampler in dict.fromkeys(r["sampler"] for r in rows):
                for grid in ("default", "trailing", "learned"):
                    cells = []
                    for k in ks:
                        r = [x for x in rows if x["sampler"] == sampler and x["grid"] == grid
                             and x["k"] == k]
                        cells.append(_ms(r[0][metric]) if r else "–")
                    if any(c != "–" for c in cells):
                        lines.append(f"| {sampler} | {grid} | " + " | ".join(cells) + " |")
            lines.append("| exact vs exact (noise floor) | – | "
                         + " | ".join(_ms(fl[metric]) for _ in ks) + " |")
    return "\n".join(lines) + "\n"


def figure(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = res["config"]["ks"]
    names = list(dict.fromkeys(r["sampler"] for r in res["rows"]))
    color = {n: f"C{i}" for i, n in enumerate(names)}
    style = {"default": "x--", "trailing": "s:", "learned": "o-"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for r in res["rows"]:
        if r["k"] == max(ks) and r["sampler"] in ("DDIM", "DPM-Solver++", "DDRM"):
            axes[0].plot(np.arange(1, len(r["timesteps"]) + 1), r["timesteps"], style[r["grid"]],
                         color=color[r["sampler"]], label=f"{r['sampler']} {r['grid']}")
    axes[0].set(xlabel="step", ylabel="t", yscale="log", title=f"grids, K = {max(ks)}")
    axes[0].legend(fontsize=7)
    for ax, kind in zip(axes[1:], ("prior", "posterior")):
        series = [(n, g) for n in names for g in style
                  if any(r["sampler"] == n and r["grid"] == g and r["target"] == kind
                         for r in res["rows"])]
        for j, (name, grid) in enumerate(series):
            rs = sorted((r for r in res["rows"] if r["sampler"] == name and r["grid"] == grid
                         and r["target"] == kind), key=lambda r: r["k"])
            dx = 0.12 * (j - (len(series) - 1) / 2)  # side by side at each K
            ax.errorbar([r["k"] + dx for r in rs], [np.mean(r["sw2"]) for r in rs],
                        [np.std(r["sw2"], ddof=1) for r in rs], fmt=style[grid], capsize=2,
                        color=color[name], label=f"{name} {grid}")
        if kind in res["floor"]:
            ax.axhline(np.mean(res["floor"][kind]["sw2"]), color="k", ls=":", lw=1,
                       label="exact vs exact (floor)")
        ax.set(xlabel="NFE = K", ylabel="held-out SW₂ to exact draws (mean ± sd)",
               yscale="log", xticks=ks, title=f"exact GMM {kind}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_all(cfg, names, out, log):
    """Floors, fixed-grid rows, learning and learned rows; saves the schedules."""
    t0 = time.perf_counter()
    train = {"prior": problems(1000, cfg["train_problems"], False),
             "posterior": problems(3000, cfg["train_problems"] + 2, True)}
    held = {"prior": problems(2000, cfg["heldout_problems"], False),
            "posterior": problems(4000, cfg["heldout_problems"], True)}
    ev = {"n": cfg["eval_n"], "projections": cfg["eval_projections"]}
    res = {"config": cfg, "rows": [], "floor": {}}
    for kind in ("prior", "posterior"):
        if any(VARIANTS[v][3] == kind for v in names):
            res["floor"][kind] = floor(kind, held[kind], **ev)
    for name in names:
        run, default, with_eta, kind = VARIANTS[name]
        for k in cfg["ks"]:
            if not with_eta:  # "DDIM + η" shares DDIM's default rows
                for grid, make in {"default": default, **EXTRA_GRIDS.get(name, {})}.items():
                    d = make(k)
                    res["rows"].append({"sampler": name, "grid": grid, "k": k, "target": kind,
                                        "timesteps": d.tolist(), "eta": None,
                                        **evaluate(name, d, None, held[kind], **ev)})
            ts, eta, losses = learn(name, k, train[kind], steps=cfg["steps"], n=cfg["train_n"],
                                    projections=cfg["projections"], lr=cfg["lr"], log=log)
            row = {"sampler": name, "grid": "learned", "k": k, "target": kind,
                   "timesteps": ts.tolist(), "eta": None if eta is None else eta.tolist(),
                   "train_loss_first_last": [float(np.mean(losses[:10])),
                                             float(np.mean(losses[-10:]))],
                   **evaluate(name, ts, eta, held[kind], **ev)}
            res["rows"].append(row)
            slug = SLUGS[name]
            eta_k = None if eta is None else np.broadcast_to(eta, (k,))  # a scalar η: K copies
            samplers.save_schedule(out / "schedules" / f"{slug}_k{k}.json", ts, eta=eta_k,
                                   sde=SDE, sampler=name, meta={
                                       "k": k, "target": kind, "loss": "SW2^2",
                                       "heldout_sw2_mean": float(np.mean(row["sw2"]))})
            log(f"{name} K={k}: held-out SW2 {np.mean(row['sw2']):.3f} "
                f"(total {time.perf_counter() - t0:.0f} s)")
    res["elapsed_s"] = time.perf_counter() - t0
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and samples")
    ap.add_argument("--ks", default="4,6,10")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=None, help="Adam steps (default 300, quick 80)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--replot", action="store_true",
                    help="only rewrite table.md and figure.png from results.json")
    args = ap.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    cfg = {"ks": [int(k) for k in args.ks.split(",")], "steps": args.steps or (
        80 if args.quick else 300), "train_n": 256, "projections": 64, "lr": 0.05,
        "eval_n": 1000 if args.quick else 2000, "eval_projections": 256, "train_problems": 4,
        "heldout_problems": 6 if args.quick else 9, "quick": args.quick}
    out = pathlib.Path(args.out)
    (out / "schedules").mkdir(parents=True, exist_ok=True)
    if args.replot:
        res = json.loads((out / "results.json").read_text())
    else:
        res = run_all(cfg, names, out, lambda s: print(s, file=sys.stderr, flush=True))
        (out / "results.json").write_text(json.dumps(res, indent=1))
    md = ("# Learned few-step samplers on exact GMM targets\n\nGenerated by "
          "`experiments/learned_schedules/run.py`" + (" --quick" if res["config"]["quick"]
                                                     else "")
          + f" in {res['elapsed_s'] / 60:.1f} min. Lower is better; learned rows use the "
          "schedules in `schedules/`.\n" + table(res))
    (out / "table.md").write_text(md)
    figure(res, out / "figure.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
