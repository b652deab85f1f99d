"""The MCGdiff authors' own GMM instances (d = 8; dy = 1, 2, 4) and jaxir's solvers on them.

    # once, in a throw-away environment with torch (not a jaxir dependency):
    #   python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchenv/bin/python experiments/gmm_posterior/authors_instances.py --regenerate
    # then, with the project's venv (reads authors_instances.npz, writes results/authors_instances.*):
    python experiments/gmm_posterior/authors_instances.py [--repeats 7] [--methods ddrm dps ...]

The published CPU table of Cardoso et al. (ICLR 2024; REFERENCES.md) is one fixed instance per
dy of their benchopt benchmark (``gabrielvc/benchopts_inverse_problem_diffusion_prior``,
``datasets/gaussian_mixture.py``): ``torch.manual_seed(27)`` before building each dy, then
weights ``randn(25)**2`` (normalised) for the 25 means ``[-8i, -8j] * (d/2)`` (i outer, j inner,
i, j ∈ {-2..2}, identity covariances); ``A0 = randn(dy, d)``, its full SVD, the singular values
replaced by ``sort(rand(dy), descending)``, ``A = U diag(s) Vh[:dy]``; ``x* = prior.sample()``;
``σ_y = rand(1) · max(s)``; ``y = A x* + σ_y randn(dy)``; the exact posterior (25 components)
and 10,000 reference samples drawn from it. ``--regenerate`` repeats these torch calls and
stores the arrays (float32 as torch made them), the posterior and the solvers' grids in
``authors_instances.npz``; ``authors_rerun.py`` rebuilds them with their own file and checks
them bit for bit.

Protocol (``objective.py``, ``solvers/*.py``): 1,000 samples per run, scored by POT's
``max_sliced_wasserstein_distance(reference, samples, n_projections=100)``: the largest 1-D W2
over 100 random unit directions, fresh each call (:func:`jaxir.metrics.sliced_wasserstein` with
``p=2, reduce="max"``); the ± is the sd over repeated runs on the one instance (4–12 runs a cell in
their saved run ``outputs/benchopt_run_2024-03-15_18h27m33.parquet``, whose values are
:data:`PUBLISHED_RUNS`). The chain is their DDPM ``β = linspace(0.02, 1e-4, 999)`` (decreasing,
kept) with ``ᾱ = cumprod([1, 1 − β])``; the exact noised-mixture score drives every solver, each
on the authors' grid:

* DDRM: ``seq = linspace(0, 1000, 100).long()[:-1]``, η_A = 0.85, η_B = 1, η_C = 1; their step
  at ``t`` uses ``ᾱ[t + 1]``, the network ``ᾱ[t]``; y has batch 1, so the noise of the "noisier
  than y" branch is one vector shared by all samples. jaxir's DDRM (Eq. 8, one η = 0.85,
  independent noise) runs on ``ᾱ[seq + 1]``.
* DPS: ``linspace(0, 999, 100).long()``, η = 0.6; their ζ = 1 multiplies
  ``∇‖y − A x̂0‖² / ‖y − A x̂0‖ = 2 ∇‖y − A x̂0‖`` (jaxir's ζ = 2). Their step is
  ``√ᾱ_t (1 − ᾱ_prev)/(1 − ᾱ_t) x_t + √ᾱ_t (1 − ᾱ_t/ᾱ_prev)/(1 − ᾱ_t) x̂0`` (DDPM's posterior mean
  has ``√α_t`` and ``√ᾱ_prev`` there); jaxir's DPS steps with DDIM(η).
* MCGdiff: their ``get_optimal_timesteps_from_singular_values(..., 100, mode='else')`` grid,
  uniform in ``√ᾱ`` to the first ``√ᾱ < 0.01`` (index 704), then linear in the index. Its
  ``torch.unique`` flattens the distances, so the τ index it adds is a position in that flat
  array (933, 1886, 3803), past 704: nothing is added, the √ᾱ step is 1/98 instead of 1/99 of
  the range. DDIM η = 0.6, 32 / 128 particles, one draw per filter.

x* depends on the torch build. ``prior.sample()`` picks its component by ``multinomial(probs,
1)`` = ``argmax(probs / q)``, ``q = exponential_()``; torch's x86 builds with MKL, from
pytorch #69967 until the fix of #132395, drew ``q`` from an MKL ``VSL_BRNG_MCG31`` stream seeded
by ONE 32-bit draw of torch's generator (ICDF method); torch ≥ 2.7 draws it from torch's own
generator (25 64-bit draws), so x*, σ_y, y and the reference all change. Their run (March 2024,
x86-64 Linux, an Intel i7-1185G7) had the MKL path; ``authors_torch.py`` (``--regenerate``)
replays it with :func:`mcg31_exponentials`, whose values equal Intel MKL's own
``vdRngExponential`` (checked in ``tests/test_gmm_authors.py`` against values from libmkl_rt
2026.2). With this x* their own DDRM reproduces their published DDRM column; with torch 2.13's
own draw it does not (results/authors_instances.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NPZ = os.path.join(HERE, "authors_instances.npz")
RESULTS = os.path.join(HERE, "results")
DIM, DYS, SEED, N_REF, N_SAMPLES = 8, (1, 2, 4), 27, 10_000, 1000

# objective values of every run in the authors' saved benchopt run (2024-03-15 18h27m33);
# mean ± sd: the published table
PUBLISHED_RUNS = {
    ("ddrm", 1): [30.555244, 33.06303, 28.907553, 26.891497, 29.716135, 30.319633, 28.273556],
    ("ddrm", 2): [15.634327, 14.539888, 12.870259, 11.692311, 15.081691, 11.978271, 13.417273],
    ("ddrm", 4): [0.453631, 0.430978, 0.503469, 0.437373, 0.605258],
    ("dps", 1): [29.231642, 23.069355, 27.337944, 28.61846, 27.819494],
    ("dps", 2): [19.410719, 20.365458, 19.416016, 18.334494, 17.57233, 19.290516, 16.540859,
                 19.318655, 19.57963, 17.166494],
    ("dps", 4): [12.957672, 12.192273, 11.897471, 11.955574, 14.142454, 11.001493, 12.486265,
                 12.54058, 12.432376],
    ("mcgdiff-32", 1): [18.175207, 17.996969, 18.93841, 20.180384, 23.80467],
    ("mcgdiff-32", 2): [10.86235, 10.318417, 11.187218, 10.67147, 10.045972, 10.781106, 11.237189,
                        9.904615, 10.746459, 11.081392, 12.355717],
    ("mcgdiff-32", 4): [1.224292, 1.052371, 1.082335, 1.122247, 0.946418, 1.013644, 0.943427,
                        0.979111, 0.657801, 1.131011, 0.796757, 0.996879],
    ("mcgdiff-128", 1): [4.697683, 4.753695, 5.656563, 5.821672],
    ("mcgdiff-128", 2): [4.077139, 4.599078, 4.657399, 3.775338],
    ("mcgdiff-128", 4): [0.185863, 0.158295, 0.203933, 0.202983, 0.143322],
}
METHODS = ("ddrm", "dps", "mcgdiff-32", "mcgdiff-128")
EXTRA_METHODS = ("mcgdiff-32-official-resampling", "mcgdiff-128-official-resampling")


# ---- the one draw that depends on the torch version ------------------------------------------

_MCG31_M, _MCG31_A = 2**31 - 1, 1132489760


def mcg31_exponentials(seed: int, n: int) -> np.ndarray:
    """The first ``n`` Exp(1) values of an MKL ``VSL_BRNG_MCG31`` stream seeded with ``seed`` by
    the ICDF method: ``x_0 = seed mod (2^31 − 1)`` (1 if that is 0), ``x_{k+1} = 1132489760 x_k
    mod (2^31 − 1)``, value ``k`` = ``−log(x_k / (2^31 − 1))`` (float64)."""
    x = int(seed) % _MCG31_M or 1
    states = []
    for _ in range(n):
        states.append(x)
        x = (_MCG31_A * x) % _MCG31_M
    return -np.log(np.asarray(states, np.float64) / _MCG31_M)


# ---- jaxir on the stored instances -----------------------------------------------------------


def load_instances(path=NPZ):
    """``{dy: {name: array}}`` and the shared arrays (``alphas_cumprod`` and the DDRM / DPS grids)."""
    with np.load(path, allow_pickle=False) as f:
        shared = {k: f[k] for k in f.files if "/" not in k}
        per_dy = {dy: {k.split("/", 1)[1]: f[k] for k in f.files if k.startswith(f"dy{dy}/")} for dy in DYS}
    return per_dy, shared


def chain_sde(abar, grid):
    """``(sde, n)``: the n-step DDPM chain whose ``ᾱ_i`` are ``abar[grid[i + 1]]`` (``grid``
    increasing from 0), on which a sampler with ``num_steps=n, spacing="leading"`` visits them all."""
    from jaxir.sdes import DiscreteVPSDE

    a = np.asarray(abar, np.float64)[np.asarray(grid)]
    return DiscreteVPSDE(1.0 - a[1:] / a[:-1]), len(grid) - 1


def _runner(name, inst, shared):
    """``run(key) -> (1000, d)`` samples of one method on one instance, jitted."""
    import jax
    import jax.numpy as jnp

    from jaxir.bench import gmm
    from jaxir.inverse import ddrm_sample, dps_sample, mcgdiff_sample
    from jaxir.operators import DenseMatrix

    chain = lambda grid: chain_sde(shared["alphas_cumprod"], grid)  # noqa: E731
    f32 = lambda k: jnp.asarray(inst[k], jnp.float32)  # noqa: E731
    problem = gmm.GMMProblem(f32("weights"), f32("means"), f32("A"), f32("sigma_y"), f32("y"),
                             f32("x_star"), f32("post_weights"), f32("post_means"),
                             jnp.ones(DIM), jnp.eye(DIM))
    op, shape = DenseMatrix(problem.A), (N_SAMPLES, DIM)
    if name == "ddrm":
        sde, n = chain(shared["ddrm_grid"])
        kw = dict(eta=0.85, eta_b=1.0)
        fn = ddrm_sample
    elif name == "dps":
        sde, n = chain(shared["dps_grid"])
        kw = dict(zeta=2.0, eta=0.6, clip_x0=False)
        fn = dps_sample
    else:
        sde, n = chain(inst["mcgdiff_grid"])
        kw = dict(eta=0.6, num_particles=int(name.split("-")[1]))
        if name.endswith("official-resampling"):
            kw.update(resampling="multinomial", resample_threshold=1.0)
        fn = mcgdiff_sample
    model = gmm.gmm_model_fn(problem, sde)
    return jax.jit(lambda key: fn(key, model, sde, op, problem.y, problem.sigma_y, shape,
                                  num_steps=n, spacing="leading", **kw).x)


def exact_draws(inst, n, rng):
    """``n`` draws of the stored exact posterior (a mixture with one shared covariance), float64."""
    w = inst["post_weights"].astype(np.float64)
    chol = np.linalg.cholesky(inst["post_cov"].astype(np.float64))
    comp = rng.choice(len(w), n, p=w / w.sum())
    return inst["post_means"][comp].astype(np.float64) + rng.standard_normal((n, DIM)) @ chol.T


def exact_floor(inst, n=N_SAMPLES, repeats=20, seed=0):
    """The noise floor of the metric: max-sliced W2 (100 directions) between ``n`` fresh exact
    posterior draws and the stored reference, ``repeats`` times (list of floats)."""
    import jax

    from jaxir.metrics import sliced_wasserstein

    distance = jax.jit(lambda k, a, b: sliced_wasserstein(k, a, b, 100, p=2, reduce="max"))
    ref = jax.numpy.asarray(inst["reference"])
    rng, key = np.random.default_rng(seed), jax.random.key(seed)
    out = []
    for kd in jax.random.split(key, repeats):
        x = jax.numpy.asarray(exact_draws(inst, n, rng), jax.numpy.float32)
        out.append(float(distance(kd, x, ref)))
    return out


def run(methods=METHODS, repeats=7, floor_repeats=20, seed=0, dys=DYS, save=None):
    """Every (method, dy): ``repeats`` runs of 1,000 samples against the stored reference, plus
    ``floor_repeats`` exact-vs-exact distances; ``save(rows)`` is called after each cell."""
    import jax

    from jaxir.metrics import sliced_wasserstein

    per_dy, shared = load_instances()
    distance = jax.jit(lambda k, a, b: sliced_wasserstein(k, a, b, 100, p=2, reduce="max"))
    rows = []
    for dy in dys:
        inst, key = per_dy[dy], jax.random.fold_in(jax.random.key(seed), dy)
        ref = jax.numpy.asarray(inst["reference"])
        if floor_repeats:
            rows += [{"method": "exact", "dy": dy, "repeat": r, "sw": v, "seconds": 0.0}
                     for r, v in enumerate(exact_floor(inst, N_SAMPLES, floor_repeats, seed + dy))]
        for name in methods:
            fn = _runner(name, inst, shared)
            jax.block_until_ready(fn(jax.random.key(0)))  # compile
            for r in range(repeats):
                key, ks, kd = jax.random.split(key, 3)
                t0 = time.perf_counter()
                x = jax.block_until_ready(fn(ks))
                secs = time.perf_counter() - t0
                rows.append({"method": name, "dy": dy, "repeat": r, "sw": float(distance(kd, x, ref)),
                             "seconds": secs})
            v = [q["sw"] for q in rows if q["method"] == name and q["dy"] == dy]
            print(f"dy = {dy} {name}: {np.mean(v):.3g} ± {np.std(v, ddof=1):.2g}", flush=True)
            if save:
                save(rows)
    return rows


def _cell(v):
    if not v:
        return "—"
    v = np.asarray(v, np.float64)
    return f"{v.mean():.3g} ± {v.std(ddof=1):.2g} ({len(v)})" if len(v) > 1 else f"{v.mean():.3g} (1)"


# (label, jaxir method, published key, authors' code as benchmarked, authors' code at jaxir's setting)
TABLE_ROWS = (
    ("DDRM", "ddrm", "ddrm", "ddrm", "ddrm[aligned,etaC=0.85,iid]"),
    ("DPS", "dps", "dps", "dps", "dps[ddim]"),
    ("MCGdiff-32", "mcgdiff-32", "mcgdiff-32", "mcgdiff-32", None),
    ("MCGdiff-32, jaxir resampling as theirs", "mcgdiff-32-official-resampling", "mcgdiff-32",
     "mcgdiff-32", None),
    ("MCGdiff-128", "mcgdiff-128", "mcgdiff-128", "mcgdiff-128", None),
    ("MCGdiff-128, jaxir resampling as theirs", "mcgdiff-128-official-resampling", "mcgdiff-128",
     "mcgdiff-128", None),
)


def report(rows, official=None, findings=""):
    """The markdown: published, the authors' code rerun here (as benchmarked and at jaxir's
    setting), jaxir; the metric's floor; the instances; then ``findings``."""
    per_dy, _ = load_instances()
    off = official or {}
    pick = lambda m, dy: [r["sw"] for r in rows if r["method"] == m and r["dy"] == dy]  # noqa: E731
    lines = ["# MCGdiff's GMM table on the authors' own instances (d = 8)", "",
             "Generated by `experiments/gmm_posterior/authors_instances.py` from "
             "`authors_instances.npz` (their benchopt instances, seed 27, rebuilt with torch; x* "
             "drawn as the MKL-era torch of their run drew it). \"authors' code here\": their "
             "benchmark's solvers run on the same instances by `authors_rerun.py` (torch, POT; not "
             "jaxir dependencies), as benchmarked and with the settings jaxir uses (DDRM: η_C = "
             "0.85, the network at the ᾱ of the step, independent noise per sample; DPS: the "
             "DDIM step). Metric: POT's "
             "max-sliced W2 (100 random directions, fresh each call), 1,000 samples per run vs "
             "the 10,000 reference samples. Cells: mean ± sd over repeated runs on the one "
             "instance (runs).", "",
             "| method | dy | published | authors' code here | authors' code here, jaxir's "
             "setting | jaxir |", "|---|---|---|---|---|---|"]
    for label, jname, pub, oname, vname in TABLE_ROWS:
        for dy in DYS:
            cells = [PUBLISHED_RUNS.get((pub, dy)), off.get(f"{oname}/{dy}"),
                     off.get(f"{vname}/{dy}") if vname else None, pick(jname, dy)]
            if cells[3]:
                lines.append(f"| {label} | {dy} | " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "Exact vs exact (1,000 fresh draws of the exact posterior vs the reference: the "
              "metric's floor), jaxir's metric: " + "; ".join(
                  f"dy = {dy}: {_cell(pick('exact', dy))}" for dy in DYS)
              + (("; POT's: " + "; ".join(f"dy = {dy}: {_cell(off.get(f'floor/{dy}'))}" for dy in DYS))
                 if "floor/1" in off else "") + ".",
              "", "The instances: " + "; ".join(
                  f"dy = {dy}: σ_y = {float(per_dy[dy]['sigma_y']):.4g}, singular values "
                  f"{np.array2string(per_dy[dy]['singular_values'], precision=3)}, x* from "
                  f"component {int(per_dy[dy]['x_star_component'])}, largest posterior weight "
                  f"{per_dy[dy]['post_weights'].max():.3f}" for dy in DYS) + "."]
    if "environment" in off:
        lines += ["", "Authors' code run with " + ", ".join(f"{k} {v}" for k, v in off["environment"].items())
                  + "; mcg_diff at 3726563 (2024-03-14, its last commit before their run)."]
    if findings:
        lines += ["", findings.strip()]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regenerate", action="store_true", help="rebuild the npz with torch")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + EXTRA_METHODS)
    ap.add_argument("--dys", nargs="+", type=int, default=list(DYS), choices=DYS)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--floor-repeats", type=int, default=20, help="0: keep the stored floor")
    ap.add_argument("--report-only", action="store_true", help="rebuild the markdown from the json")
    args = ap.parse_args(argv)
    if args.regenerate:
        sys.path.insert(0, HERE)
        from authors_torch import regenerate

        regenerate(NPZ)
        return 0
    os.makedirs(RESULTS, exist_ok=True)
    js = os.path.join(RESULTS, "authors_instances.json")
    old = json.load(open(js))["rows"] if os.path.exists(js) else []

    def save(new):  # the cells just run replace the stored ones
        done = {(r["method"], r["dy"]) for r in new}
        with open(js, "w") as f:
            json.dump({"rows": [r for r in old if (r["method"], r["dy"]) not in done] + new}, f, indent=1)

    if not args.report_only:
        run(args.methods, args.repeats, args.floor_repeats, dys=args.dys, save=save)
    rows = json.load(open(js))["rows"]
    off_path = os.path.join(RESULTS, "authors_instances_official.json")
    official = json.load(open(off_path)) if os.path.exists(off_path) else None
    notes = os.path.join(HERE, "authors_findings.md")
    findings = open(notes).read() if os.path.exists(notes) else ""
    md = os.path.join(RESULTS, "authors_instances.md")
    with open(md, "w") as f:
        f.write(report(rows, official, findings))
    print("wrote", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
