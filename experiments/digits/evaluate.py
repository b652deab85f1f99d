"""One-step denoising of the trained digits model against the best linear (Wiener) denoiser.

For a noise level t of the model's SDE, ``x_t = α x0 + σ ε``. The best *linear* estimator of
x0 from x_t (the Wiener filter, closed form from the data mean μ and covariance C) is

    x̂0_W = μ + α C (α² C + σ² I)^{-1} (x_t − α μ),

with MSE  tr(C − α² C (α² C + σ² I)^{-1} C) / d. The network's one-step estimate is Tweedie's
x̂0 = (x_t − σ ε̂)/α from its ε-prediction (EMA params). Both use all 1797 digits (the training
set; the Wiener filter is fitted on it too), the same noise draws, in [-1, 1] pixel units.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def add_evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="denoising MSE vs the Wiener filter, sample grid")
    p.add_argument("--workdir", required=True)
    p.add_argument("--draws", type=int, default=4, help="noise draws per image")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=evaluate)
    return p


def _t_for_ratio(sde, ratio):
    """t with σ(t)/α(t) = ratio (bisection; σ/α increases with t)."""
    lo, hi = sde.t_min, sde.T
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        a, s = (float(v) for v in sde.marginal_coeffs(mid))
        lo, hi = (mid, hi) if s / a < ratio else (lo, mid)
    return 0.5 * (lo + hi)


def evaluate(args) -> int:
    import jax
    import jax.numpy as jnp

    from jaxir import predictions
    from jaxir.data import get_source, images_to_float
    from jaxir.samplers import ddim_sample
    from jaxir.training import load_model_fn, save_image_grid

    t0 = time.perf_counter()
    workdir = Path(args.workdir)
    model_fn, sde, config = load_model_fn(workdir, ema=True)
    src = get_source(config.data.source, size=config.data.image_size)
    x0 = images_to_float(np.stack([src[i]["image"] for i in range(len(src))]))  # (N, H, W, 1)
    n, shape = x0.shape[0], x0.shape[1:]
    flat = x0.reshape(n, -1).astype(np.float64)
    mu, C = flat.mean(0), np.cov(flat, rowvar=False, bias=True)
    d = flat.shape[1]
    x0_fn = jax.jit(predictions.x0_fn_from_model(model_fn, sde, config.loss.prediction))

    rows = []
    key = jax.random.key(args.seed)
    for ratio in (0.5, 1.0, 2.0):  # σ/α: SNR 4, 1 (mid noise), 0.25
        t = _t_for_ratio(sde, ratio)
        a, s = (float(v) for v in sde.marginal_coeffs(t))
        S = a**2 * C + s**2 * np.eye(d)
        W = a * C @ np.linalg.inv(S)  # (d, d), symmetric up to rounding
        wiener_theory = float(np.trace(C - a * W @ C) / d)
        se_net, se_w, se_id = [], [], []
        for _ in range(args.draws):
            key, sub = jax.random.split(key)
            eps = np.asarray(jax.random.normal(sub, x0.shape), np.float64)
            xt = a * x0 + s * eps
            xw = mu + (xt.reshape(n, -1) - a * mu) @ W.T
            xn = np.concatenate([np.asarray(x0_fn(jnp.asarray(xt[i:i + 256], jnp.float32),
                                                   jnp.full((len(xt[i:i + 256]),), t)))
                                 for i in range(0, n, 256)])
            se_net.append(((xn - x0) ** 2).reshape(n, -1).mean(1))
            se_w.append(((xw - flat) ** 2).mean(1))
            se_id.append(((xt / a - x0) ** 2).reshape(n, -1).mean(1))
        se_net, se_w = np.concatenate(se_net), np.concatenate(se_w)
        rows.append({
            "sigma_over_alpha": ratio, "t": t, "alpha": a, "sigma": s,
            "mse_network": float(se_net.mean()),
            "mse_network_se": float(se_net.std() / np.sqrt(se_net.size)),
            "mse_wiener": float(se_w.mean()), "mse_wiener_closed_form": wiener_theory,
            "mse_rescaled_input": float(np.concatenate(se_id).mean()),
        })
        if ratio == 1.0:  # figure: noisy | Wiener | network | clean, 12 digits
            k = 12
            fig = np.concatenate([np.clip(xt[:k] / a, -1, 1), np.clip(xw[:k].reshape(k, *shape), -1, 1),
                                  np.clip(xn[:k], -1, 1), x0[:k]])
            save_image_grid(fig, workdir / "denoise_mid.png", ncol=k)
    out = ddim_sample(jax.random.key(args.seed + 1), model_fn, sde, (64, *shape),
                      prediction=config.loss.prediction, num_steps=50, clip_x0=True)
    save_image_grid(jnp.clip(out.x, -1, 1), workdir / "ddim_samples.png")
    result = {"rows": rows, "num_images": n, "draws": args.draws,
              "seconds": time.perf_counter() - t0}
    (workdir / "evaluation.json").write_text(json.dumps(result, indent=1))
    print(f"{'σ/α':>5} {'t':>6} {'network':>9} {'± se':>8} {'Wiener':>9} {'(closed)':>9} {'x_t/α':>8}")
    for r in rows:
        print(f"{r['sigma_over_alpha']:5.2f} {r['t']:6.3f} {r['mse_network']:9.5f} "
              f"{r['mse_network_se']:8.5f} {r['mse_wiener']:9.5f} {r['mse_wiener_closed_form']:9.5f}"
              f" {r['mse_rescaled_input']:8.5f}")
    return 0
