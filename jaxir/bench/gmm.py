"""The 25-component Gaussian-mixture posterior benchmark of MCGdiff (Cardoso et al., ICLR 2024).

Problem (one per seed, as the authors' script):

* prior: 25 components with means ``(−8i, −8j)`` repeated ``d/2`` times, ``i, j ∈ {−2, …, 2}``,
  identity covariances, weights ``∝ ε²``, ``ε ~ N(0, 1)``, renormalised;
* operator: ``A0 ~ N(0, 1)^{dy×d}``, its SVD ``U S Vᵀ``, the singular values replaced by sorted
  (descending) ``U(0, 1)`` draws, ``A = U diag(s) V[:dy]``;
* noise ``σ_y = u · max(s)``, ``u ~ U(0, 1)``; ``y = A x* + σ_y ε`` with ``x*`` from the prior.

Diffusion: the authors' schedule ``β = linspace(0.02, 1e-4, 999)`` — *decreasing*, so noise is
added fastest next to the data — with ``ᾱ = cumprod([1, 1 − β])`` (``ᾱ[0] = 1``; it equals
``DiscreteVPSDE(β)`` with ``ᾱ(t = k/999) = ᾱ[k]``), kept in that order, not "fixed". Every
method steps on the authors' grid (:func:`authors_timesteps`: uniform in ``√ᾱ``, much finer
near the data than a uniform index grid) with DDIM ``(num_steps, η)``: the authors' script runs
``(20, 0.6)`` and ``(100, 0.85)``; the published CPU table below uses ``(100, 0.6)``.

The exact prior score (every component has identity covariance, so ``E[x_0 | x_t]`` needs one
``(n, d) × (d, 25)`` product) drives every method; the exact posterior is a mixture of 25
Gaussians with one shared covariance ``(I + AᵀA/σ_y²)⁻¹``, sampled in closed form.

Metric: sliced Wasserstein between ``num_samples`` method samples and ``num_reference`` exact
posterior samples (:func:`jaxir.metrics.sliced_wasserstein`): ``metric="max"`` is max-sliced
``W_2`` (as POT's ``max_sliced_wasserstein_distance``, random directions), ``metric="mean"`` is
mean-sliced ``W_1`` (the authors' evaluation script). Published CPU run (REFERENCES.md; d = 8,
100 DDIM steps, η = 0.6, max-sliced, 100 projections, 1,000 vs 10,000 samples): DDRM
29.7 / 13.6 / 0.49, DPS (ζ = 1) 27.2 / 18.7 / 12.4, MCGdiff-128 5.23 / 4.28 / 0.18 for
dy = 1 / 2 / 4.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..metrics import mean_ci, sliced_wasserstein
from ..precision import hmatmul
from ..sdes import DiscreteVPSDE
from ._gmm_methods import DEFAULT_METHODS, METHODS, gmm_model_fn, reads_setting

__all__ = [
    "GMMProblem",
    "METHODS",
    "DEFAULT_METHODS",
    "PUBLISHED",
    "gmm_sde",
    "make_problem",
    "pad_problem",
    "authors_timesteps",
    "posterior_sample",
    "prior_sample",
    "gmm_model_fn",
    "reads_setting",
    "run_gmm_benchmark",
    "compare_published",
    "summarize",
    "format_table",
]

# the published CPU table (mean, sd) by method and dy: d = 8, (100, 0.6), max-sliced W
PUBLISHED = {
    "ddrm": {1: (29.7, 2.0), 2: (13.6, 1.5), 4: (0.49, 0.07)},
    "dps": {1: (27.2, 2.4), 2: (18.7, 1.2), 4: (12.4, 0.9)},
    "mcgdiff-32": {1: (19.8, 2.4), 2: (10.8, 0.7), 4: (1.00, 0.15)},
    "mcgdiff-128": {1: (5.23, 0.59), 2: (4.28, 0.42), 4: (0.18, 0.03)},
}


def _authors_alphas_cumprod() -> np.ndarray:
    """``ᾱ = cumprod([1, 1 − β])``, ``β = linspace(0.02, 1e-4, 999)``: 1000 values, ``ᾱ[0] = 1``."""
    return np.concatenate([[1.0], np.cumprod(1.0 - np.linspace(0.02, 1e-4, 999))])


def authors_timesteps(num_steps: int) -> np.ndarray:
    """The ``num_steps + 1`` increasing indices (0 … 999) of the authors' sampling grid.

    As the authors' ``get_optimal_timesteps_from_singular_values``: points uniform in
    ``√ᾱ`` from ``ᾱ = 1`` down to the first index with ``√ᾱ < 0.01`` (step
    ``(1 − √ᾱ_end)/(n − 2)``, n points in all), then the rest linear in the index up to 999.
    That function also tries to add the times τ_i where ``σ_y² ᾱ = (1 − ᾱ) s_i²``, but its
    ``torch.unique`` flattens the distance matrix, so the points it adds are not the τ_i;
    they are left out here (the MCGdiff sampler here is exact on any grid).
    """
    n = int(num_steps) + 1
    if n < 3:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    r = np.sqrt(_authors_alphas_cumprod())
    end = int(np.argmax(r < 1e-2))
    target = (r[0] - r[end]) / (n - 2)
    ts, last = [0], r[0]
    for i in range(1, end):
        if last - r[i] >= target and len(ts) < n - 1:
            ts.append(i)
            last = r[i]
    rest = np.ceil(np.linspace(ts[-1], len(r) - 1, n - len(ts) + 1))[1:].astype(int)
    grid = np.asarray(ts + rest.tolist())
    if len(grid) != n or np.any(np.diff(grid) <= 0):  # pragma: no cover - defensive
        raise ValueError(f"could not build a grid of {n} increasing points, got {grid}")
    return grid


def gmm_sde(num_steps: int = 100) -> DiscreteVPSDE:
    """The authors' chain restricted to their ``num_steps``-step grid, as a ``DiscreteVPSDE``.

    ``β = linspace(0.02, 1e-4, 999)`` (decreasing) with ``ᾱ = cumprod([1, 1 − β])``; its
    values at :func:`authors_timesteps` ``g_0 = 0 < g_1 < … < g_n = 999`` define a chain of
    ``n = num_steps`` steps, ``β'_k = 1 − ᾱ[g_{k+1}]/ᾱ[g_k]``, whose ``ᾱ'_k = ᾱ[g_{k+1}]``.
    Every sampler then takes all ``num_steps`` steps of it (``"leading"`` respacing of n of
    n), which is DDIM on the authors' grid; the exact model is evaluated at the same ᾱ.
    """
    abar = _authors_alphas_cumprod()[authors_timesteps(num_steps)]
    return DiscreteVPSDE(1.0 - abar[1:] / abar[:-1])


class GMMProblem(NamedTuple):
    """One benchmark problem (arrays only, so it is a pytree that ``jit`` takes as an argument)."""

    weights: jax.Array  # (25,) prior weights
    means: jax.Array  # (25, d) prior means
    A: jax.Array  # (dy, d)
    sigma_y: jax.Array  # ()
    y: jax.Array  # (dy,)
    x_star: jax.Array  # (d,)
    post_weights: jax.Array  # (25,)
    post_means: jax.Array  # (25, d)
    post_scale: jax.Array  # (d,) posterior std along the rows of vt
    vt: jax.Array  # (d, d) right singular vectors of A (rows)


def _prior_means(dim: int) -> np.ndarray:
    if dim % 2:
        raise ValueError(f"dim must be even (means are (−8i, −8j) repeated d/2 times), got {dim}")
    return np.array([[-8.0 * i, -8.0 * j] * (dim // 2) for i in range(-2, 3) for j in range(-2, 3)],
                    np.float32)


def make_problem(key, dim: int, dy: int) -> GMMProblem:
    """Draw one problem (prior weights, A, σ_y, x*, y) and its exact posterior."""
    if not 1 <= dy <= dim:
        raise ValueError(f"need 1 <= dy <= dim, got dy={dy}, dim={dim}")
    kw, ka, ks, ku, kc, kx, ke = jax.random.split(key, 7)
    means = jnp.asarray(_prior_means(dim))
    w = jax.random.normal(kw, (25,)) ** 2
    w = w / jnp.sum(w)
    u, _, vt = jnp.linalg.svd(jax.random.normal(ka, (dy, dim)), full_matrices=True)
    s = -jnp.sort(-jax.random.uniform(ks, (dy,)))
    A = hmatmul(u * s, vt[:dy])
    sigma_y = jax.random.uniform(ku) * s[0]
    comp = jax.random.choice(kc, 25, p=w)
    x_star = means[comp] + jax.random.normal(kx, (dim,))
    y = hmatmul(A, x_star) + sigma_y * jax.random.normal(ke, (dy,))
    # exact posterior: N(μ_k, I) × N(y; A x, σ²I) → means m_k, shared covariance V diag(λ) Vᵀ
    lam = jnp.concatenate([1.0 / (1.0 + s**2 / sigma_y**2), jnp.ones(dim - dy)])
    resid = y - hmatmul(means, A.T)  # (25, dy)
    post_means = means + hmatmul(hmatmul(hmatmul(resid, A), vt.T) * lam, vt) / sigma_y**2
    # evidence N(y; A μ_k, A Aᵀ + σ²I), A Aᵀ = U diag(s²) Uᵀ
    r = hmatmul(resid, u)  # (25, dy)
    ev = -0.5 * jnp.sum(r**2 / (s**2 + sigma_y**2), -1)
    post_w = jax.nn.softmax(jnp.log(w) + ev)
    return GMMProblem(w, means, A, sigma_y, y, x_star, post_w, post_means, jnp.sqrt(lam), vt)


def posterior_sample(key, problem: GMMProblem, n: int):
    """``(n, d)`` exact posterior samples."""
    kc, kz = jax.random.split(key)
    comp = jax.random.choice(kc, problem.post_weights.shape[0], (n,), p=problem.post_weights)
    z = jax.random.normal(kz, (n, problem.vt.shape[0])) * problem.post_scale
    return problem.post_means[comp] + hmatmul(z, problem.vt)


def prior_sample(key, problem: GMMProblem, n: int):
    """``(n, d)`` prior samples."""
    kc, kz = jax.random.split(key)
    comp = jax.random.choice(kc, problem.weights.shape[0], (n,), p=problem.weights)
    return problem.means[comp] + jax.random.normal(kz, (n, problem.means.shape[1]))


def pad_problem(problem: GMMProblem, dy: int) -> GMMProblem:
    """Zero rows appended to ``A`` and ``y`` up to ``dy`` rows: the same inverse problem.

    A zero row adds a zero singular value, an unobserved coordinate for every method here
    (DDRM / DDNM / ΠGDM / MCGdiff treat ``s = 0`` as unobserved, DPS sees a zero residual),
    so the samplers are unchanged while one compiled function serves every ``dy``.
    """
    extra = dy - problem.A.shape[0]
    if extra < 0:
        raise ValueError(f"cannot pad dy={problem.A.shape[0]} down to {dy}")
    A = jnp.concatenate([problem.A, jnp.zeros((extra, problem.A.shape[1]), problem.A.dtype)])
    y = jnp.concatenate([problem.y, jnp.zeros((extra,), problem.y.dtype)])
    return problem._replace(A=A, y=y)


def run_gmm_benchmark(
    dim: int = 8,
    dys=(1, 2, 4),
    num_problems: int = 3,
    methods=None,
    num_samples: int = 1000,
    num_reference: int = 10_000,
    num_projections: int = 100,
    metric: str = "max",
    num_steps: int = 100,
    eta: float = 0.6,
    seed: int = 0,
    progress: bool = False,
    mesh=None,
) -> list[dict]:
    """Run every (method, dy, problem); return JSON-serialisable rows.

    Each row: ``method, dim, dy, problem, num_steps, eta, metric, sw`` (the sliced distance),
    ``sw_prior`` (prior samples vs the posterior, a scale for the problem's difficulty),
    ``sw_exact`` (fresh exact samples vs the reference: the metric's noise floor) and
    ``seconds`` (one run, compile excluded). Problems are drawn from ``seed`` and are the
    same for every method. ``mesh`` (`jaxir.distributed.as_mesh`: a device count, a dict, a
    Mesh) spreads each method's runs over its devices with the same keys (one run per device
    at a time, `jaxir.bench._gmm_devices`); ``seconds`` is then a block's time per run.
    """
    if metric not in ("max", "mean"):
        raise ValueError(f'metric must be "max" or "mean", got {metric!r}')
    names = list(DEFAULT_METHODS) if methods is None else list(methods)
    for m in names:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {list(METHODS)}")
    sde = gmm_sde(num_steps)
    p, reduce = (2, "max") if metric == "max" else (1, "mean")
    distance = jax.jit(lambda k, a, b: sliced_wasserstein(k, a, b, num_projections, p=p, reduce=reduce))
    rows = []
    dys = tuple(int(d) for d in dys)
    items = [(m, dy) for m in names for dy in dys]
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=f"gmm d={dim}", leave=False)
    problems = {dy: [make_problem(jax.random.key(seed * 1_000_003 + 1000 * dy + i), dim, dy)
                     for i in range(num_problems)] for dy in dys}
    refs = {}
    for dy in dys:
        for i, prob in enumerate(problems[dy]):
            kr, ke, kp, kd = jax.random.split(jax.random.key(seed + 7919 * (i + 1) + dy), 4)
            ref = posterior_sample(kr, prob, num_reference)
            refs[dy, i] = (ref, kd, float(distance(kd, posterior_sample(ke, prob, num_samples), ref)),
                           float(distance(kd, prior_sample(kp, prob, num_samples), ref)))
    dmax = max(dys)
    keys = {(dy, i): jax.random.fold_in(jax.random.key(seed + 101 * dy), i)
            for dy in dys for i in range(num_problems)}
    padded = {(dy, i): pad_problem(problems[dy][i], dmax) for dy, i in keys}
    compiled, mapped = {}, None
    if mesh is not None:  # each method's runs spread over the devices
        from ._gmm_devices import run_on_devices

        mapped = run_on_devices(METHODS, names, padded, keys, sde, num_samples, num_steps, eta,
                                mesh)
    for name, dy in items:
        if mapped is None and name not in compiled:  # one compile per method (padded to max(dys))
            fn = jax.jit(lambda k, prob, name=name: METHODS[name](k, prob, sde, num_samples, num_steps, eta))
            compiled[name] = fn.lower(jax.random.key(0), padded[dys[0], 0]).compile()
        for i in range(num_problems):
            if mapped is not None:
                x, secs = mapped[name, dy, i]
            else:
                t0 = time.perf_counter()
                x = jax.block_until_ready(compiled[name](keys[dy, i], padded[dy, i]))
                secs = time.perf_counter() - t0
            ref, kd, sw_exact, sw_prior = refs[dy, i]
            rows.append({
                "method": name, "dim": int(dim), "dy": int(dy), "problem": int(i),
                "num_steps": int(num_steps), "eta": float(eta), "metric": metric,
                "num_samples": int(num_samples), "num_reference": int(num_reference),
                "num_projections": int(num_projections),
                "sw": float(distance(kd, x, ref)), "sw_exact": sw_exact, "sw_prior": sw_prior,
                "finite": bool(jnp.all(jnp.isfinite(x))), "seconds": float(secs),
            })
    return rows


def summarize(rows: list[dict], level: float = 0.95) -> list[dict]:
    """Mean ± sd (and the ``level`` Student-t CI half-width) of ``sw`` and seconds per (method, dim, dy)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["method"], r["dim"], r["dy"], r["num_steps"], r["eta"]), []).append(r)
    out = []
    for (method, dim, dy, steps, eta), rs in groups.items():
        sw = np.array([r["sw"] for r in rs], np.float64)
        ci = float(mean_ci(sw, level)[1]) if len(sw) > 1 else float("nan")
        out.append({
            "method": method, "dim": dim, "dy": dy, "num_steps": steps, "eta": eta,
            "n": len(rs), "sw_mean": float(sw.mean()),
            "sw_sd": float(sw.std(ddof=1)) if len(sw) > 1 else float("nan"), "sw_ci": ci,
            "sw_exact_mean": float(np.mean([r["sw_exact"] for r in rs])),
            "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
        })
    return out


def compare_published(rows: list[dict]) -> list[dict]:
    """Each published cell (:data:`PUBLISHED`: d = 8, 100 DDIM steps, η = 0.6, max-sliced)
    next to the per-problem distances measured in ``rows`` for the same setting.

    The published sd (0.03–2.4) is much smaller than the spread over problems, so a published
    mean is read as one problem's value: per (method, dy) this returns ``published_mean``,
    ``published_sd``, the measured ``min`` / ``max`` / ``mean`` over problems, ``share_below``
    (the fraction of problems at or below the published mean) and ``inside_range`` (the
    published mean lies in [min, max]). ``-multinomial`` rows compare with the MCGdiff cells
    (the published code resamples multinomially). Empty if ``rows`` hold no such setting.
    """
    out = []
    groups: dict = {}
    for r in rows:
        if (r["dim"], r["num_steps"], r["metric"]) == (8, 100, "max") and abs(r["eta"] - 0.6) < 1e-9:
            groups.setdefault((r["method"], r["dy"]), []).append(float(r["sw"]))
    for (method, dy), v in groups.items():
        pub = PUBLISHED.get(method.replace("-multinomial", ""), {}).get(dy)
        if pub is None:
            continue
        v = np.asarray(v)
        out.append({"method": method, "dy": dy, "published_mean": pub[0], "published_sd": pub[1],
                    "n": len(v), "min": float(v.min()), "max": float(v.max()),
                    "mean": float(v.mean()), "share_below": float(np.mean(v <= pub[0])),
                    "inside_range": bool(v.min() <= pub[0] <= v.max())})
    return out


def format_table(summary: list[dict], stat: str = "sd") -> str:
    """A markdown table: one row per method, one column per dy, ``mean ± sd`` (or ``± ci``)."""
    dys = sorted({s["dy"] for s in summary})
    methods = list(dict.fromkeys(s["method"] for s in summary))
    cell = {(s["method"], s["dy"]): s for s in summary}
    head = "| method | " + " | ".join(f"dy = {d}" for d in dys) + " | seconds/run |"
    lines = [head, "|" + "---|" * (len(dys) + 2)]
    for m in methods:
        vals = []
        for d in dys:
            s = cell.get((m, d))
            vals.append("—" if s is None else f"{s['sw_mean']:.3g} ± {s['sw_' + stat]:.2g}")
        secs = np.mean([cell[(m, d)]["seconds_mean"] for d in dys if (m, d) in cell])
        lines.append(f"| {m} | " + " | ".join(vals) + f" | {secs:.2f} |")
    return "\n".join(lines)
