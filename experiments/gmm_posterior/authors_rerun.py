"""Rerun the MCGdiff authors' own benchmark solvers on their GMM instances (torch; not jaxir).

This fills the "authors' code here" columns of ``results/authors_instances.md``. It needs
torch, numpy, POT and tqdm in a throw-away environment (none is a jaxir dependency) and
checkouts of two repositories, ``gabrielvc/benchopts_inverse_problem_diffusion_prior`` (its
head) and ``gabrielvc/mcg_diff`` at 3726563 (2024-03-14, its last commit before their run of
2024-03-15); nothing of theirs is copied here, their files are loaded from the given paths::

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy POT tqdm
    /tmp/torchenv/bin/python experiments/gmm_posterior/authors_rerun.py --bench /tmp/bench \\
        --mcg-diff /tmp/mcg_diff --solvers ddrm dps --repeats 7 --floor-repeats 20
    /tmp/torchenv/bin/python experiments/gmm_posterior/authors_rerun.py --bench /tmp/bench \\
        --mcg-diff /tmp/mcg_diff --solvers mcgdiff-32 --repeats 5 --merge

``benchopt`` itself is not needed: a stand-in module with the three base classes and
``safe_import_context`` is put on the path. Each instance is rebuilt by their
``datasets/gaussian_mixture.py`` (seed 27) and checked against ``authors_instances.npz``
(reference samples, A, y and σ_y² bit for bit). Each run is their ``Solver`` as their
benchmark configures it (``ddim_params = (100, 0.6)``; DDRM η_B = 1, η_A = 0.85, η_C = 1;
DPS ζ = 1; MCGdiff 32 / 128 particles, ``gaussian_var`` 1e-6), scored with their objective
(POT's ``max_sliced_wasserstein_distance(reference, samples, n_projections=100)``).

Variants (``--solvers`` names with a bracket) change one setting of theirs, to attribute the
gaps between their numbers and jaxir's; they call their functions with other arguments or, for
DPS, replace only their update coefficients:

* ``ddrm[etaC=0.85]``: their DDRM steps with η_C = η_A = 0.85 (the official DDRM; the
  benchmark passes η_C = 1);
* ``ddrm[aligned]``: their DDRM with the network evaluated at the ᾱ the update uses
  (``ᾱ[t + 1]``; their adaptation evaluates it at ``ᾱ[t]``);
* ``ddrm[aligned,etaC=0.85]``: both, i.e. the official DDRM on this chain;
* ``...,iid]``: y passed once per sample (``y.expand(n, dy)``): their solver passes it with batch
  1, so ``randn_like(U_t_y)`` in the "noisier than y" branch draws ONE noise vector that all
  1,000 samples share; ``ddrm[aligned,etaC=0.85,iid]`` is jaxir's DDRM;
* ``dps[ddim]``: their DPS loop with the DDIM(η) step ``√ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z``
  in place of their coefficients (``√ᾱ_t`` where DDPM's posterior mean has ``√α_t`` and
  ``√ᾱ_prev``, and no ε̂ term), keeping their guidance term.

Output: ``results/authors_instances_official.json``, ``{"<solver>/<dy>": [values], ...,
"seconds": {...}, "floor/<dy>": [...]}`` (the floor: 1,000 fresh exact draws from the stored
posterior vs the reference, with POT).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NPZ = os.path.join(HERE, "authors_instances.npz")
OUT = os.path.join(HERE, "results", "authors_instances_official.json")
DYS = (1, 2, 4)


def _benchopt_stand_in():
    mod = types.ModuleType("benchopt")

    class _Base:
        pass

    mod.BaseSolver, mod.BaseDataset, mod.BaseObjective = _Base, type("BaseDataset", (), {}), \
        type("BaseObjective", (), {})
    mod.safe_import_context = contextlib.nullcontext
    sys.modules["benchopt"] = mod
    # their objective imports pyplot only for a commented-out figure: a stand-in will do
    if importlib.util.find_spec("matplotlib") is None:
        mpl, plt = types.ModuleType("matplotlib"), types.ModuleType("matplotlib.pyplot")
        mpl.pyplot = plt
        sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = mpl, plt


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _get_data_mkl_era(dataset):
    """Their ``get_data()`` with its one single-draw ``MixtureSameFamily.sample()`` (x*) made as
    torch of their run made it (``authors_torch.mkl_era_prior_draw``; the other draws unchanged)."""
    import torch
    from torch.distributions import MixtureSameFamily

    sys.path.insert(0, HERE)
    from authors_torch import mkl_era_prior_draw

    original = MixtureSameFamily.sample

    def sample(self, sample_shape=torch.Size()):
        if tuple(sample_shape) == ():
            return mkl_era_prior_draw(torch, self)[0]
        return original(self, sample_shape)

    MixtureSameFamily.sample = sample
    try:
        return dataset.get_data()
    finally:
        MixtureSameFamily.sample = original


def _instance(bench, dy, npz, native=False):
    """Their dataset for ``dy``, checked against the stored npz; their objective on it.
    ``native``: x* drawn by the installed torch's own ``MixtureSameFamily.sample()`` (not the
    instance of their run from torch 2.7 on; not checked)."""
    ds = _load("gaussian_mixture", os.path.join(bench, "datasets", "gaussian_mixture.py"))
    obj = _load("objective", os.path.join(bench, "objective.py"))
    d = ds.Dataset()
    d.n_samples, d.random_state, d.dims = 10_000, 27, (dy, 8)
    if native:
        data = d.get_data()
        o = obj.Objective()
        o.set_data(**data)
        return data, o
    data = _get_data_mkl_era(d)
    checks = {"reference": data["reference_samples"], "A": data["forward_operator"],
              "y": data["observation"]}
    for k, v in checks.items():
        if not np.array_equal(v.numpy(), npz[f"dy{dy}/{k}"]):
            raise SystemExit(f"dy = {dy}: their {k} differs from authors_instances.npz")
    if float(data["observation_noise"]) != float(npz[f"dy{dy}/sigma_y"]) ** 2:
        # σ_y² vs the stored σ_y squared: equal up to one float32 rounding
        rel = abs(float(data["observation_noise"]) / float(npz[f"dy{dy}/sigma_y"]) ** 2 - 1)
        if rel > 1e-6:
            raise SystemExit(f"dy = {dy}: their noise variance differs ({rel:.2g})")
    o = obj.Objective()
    o.set_data(**data)
    return data, o


def _ddrm_variant(module, solver, objective, eta_c, aligned, iid):
    """Their DDRM ``Solver`` with η_C, the network's time index and y's batch changed."""
    import torch

    kw = objective.get_objective()
    abar, score = kw["alphas_cumprod"], kw["score_network"]
    A, y, var, n = kw["forward_operator"], kw["observation"], kw["observation_noise"], kw["n_samples"]
    shift = 1 if aligned else 0

    def model(x, t):  # ε̂ = −√(1 − ᾱ) ∇log p_ᾱ, at ᾱ[t + shift]
        i = t[0].long() + shift
        return (-((1 - abar[i]) ** 0.5) * score(x.flatten(1), abar[i])).reshape(x.shape[0], 1, 1, -1)

    H = module.GeneralH(H=A)
    seq = torch.linspace(0, 1000, solver.ddim_params[0]).long()[:-1].tolist()
    solver.sampler = lambda x: module.efficient_generalized_steps_w_grad(
        x=x.reshape(n, 1, 1, A.shape[1]), b=kw["betas"], seq=seq, model=model,
        y_0=y[None, :].expand(n, -1) if iid else y[None, :],
        H_funcs=H, sigma_0=var**0.5, etaB=1, etaA=0.85, etaC=eta_c)[0][-1].flatten(1, 3)


def _dps_ddim_run(solver):
    """Their DPS loop with the DDIM(η) step (``dps[ddim]``); their guidance term unchanged."""
    import torch

    def run(n_iter):
        x = torch.randn((solver.n_samples, solver.dim_x))
        for t, t_prev in zip(solver.timesteps[1:][::-1], solver.timesteps[:-1][::-1]):
            a, a_prev = solver.alphas_cumprod[t], solver.alphas_cumprod[t_prev]
            grad, (res2, x0) = solver.dps_fn(x, a)
            eps = (x - a**0.5 * x0) / (1 - a) ** 0.5
            sig = solver.eta * (((1 - a_prev) / (1 - a)) * (1 - a / a_prev)) ** 0.5
            x = (a_prev**0.5 * x0 + (1 - a_prev - sig**2) ** 0.5 * eps + sig * torch.randn_like(x)
                 - solver.zeta / res2[:, None] ** 0.5 * grad)
        solver.samples = x

    solver.run = run


def make_solver(bench, name, objective):
    base = name.split("[")[0]
    variant = name[len(base):].strip("[]")
    kind, _, particles = base.partition("-")
    file = {"ddrm": "ddrm", "dps": "dps", "mcgdiff": "mcg_diff"}[kind]
    module = _load(f"solver_{file}", os.path.join(bench, "solvers", f"{file}.py"))
    s = module.Solver()
    s.ddim_params = (100, 0.6)  # their benchmark's only setting
    if kind == "dps":
        s.zeta = 1.0
    if kind == "mcgdiff":
        s.n_particles = int(particles)
    s.set_objective(**objective.get_objective())
    if kind == "ddrm" and variant:
        _ddrm_variant(module, s, objective, 0.85 if "etaC=0.85" in variant else 1.0,
                      "aligned" in variant, "iid" in variant)
    elif kind == "dps" and variant == "ddim":
        _dps_ddim_run(s)
    elif variant:
        raise SystemExit(f"unknown variant {name!r}")
    return s


def floor(npz, dy, reference, repeats, seed):
    from ot.sliced import max_sliced_wasserstein_distance

    w = npz[f"dy{dy}/post_weights"].astype(np.float64)
    m, L = npz[f"dy{dy}/post_means"], np.linalg.cholesky(npz[f"dy{dy}/post_cov"].astype(np.float64))
    rng = np.random.default_rng(seed + dy)
    out = []
    for _ in range(repeats):
        k = rng.choice(len(w), 1000, p=w / w.sum())
        x = (m[k] + rng.standard_normal((1000, m.shape[1])) @ L.T).astype(np.float32)
        out.append(float(max_sliced_wasserstein_distance(reference, x, n_projections=100)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True, help="checkout of benchopts_inverse_problem_diffusion_prior")
    ap.add_argument("--mcg-diff", required=True, help="checkout of gabrielvc/mcg_diff")
    ap.add_argument("--solvers", nargs="+", default=["ddrm", "dps"])
    ap.add_argument("--dys", nargs="+", type=int, default=list(DYS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--floor-repeats", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--merge", action="store_true", help="keep the other entries of the json")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--native-draw", action="store_true",
                    help="x* from this torch's own draw (keys 'native:<solver>/<dy>'): what "
                         "the benchmark gives with torch >= 2.7, for comparison")
    args = ap.parse_args(argv)
    _benchopt_stand_in()
    sys.path.insert(0, os.path.abspath(args.mcg_diff))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    npz = np.load(NPZ, allow_pickle=False)
    res = json.load(open(args.out)) if args.merge and os.path.exists(args.out) else {}
    res.setdefault("seconds", {})
    res["environment"] = {"torch": torch.__version__, "numpy": np.__version__,
                          "pot": __import__("ot").__version__}
    torch.manual_seed(args.seed)
    for dy in args.dys:
        data, objective = _instance(args.bench, dy, npz, args.native_draw)
        ref = data["reference_samples"]
        print(f"dy = {dy}: " + ("x* from this torch's own draw" if args.native_draw else
                                "instance identical to authors_instances.npz"), flush=True)
        if args.floor_repeats and not args.native_draw:
            res[f"floor/{dy}"] = floor(npz, dy, ref.numpy(), args.floor_repeats, args.seed)
        for name in args.solvers:
            vals, secs = [], []
            solver = make_solver(args.bench, name, objective)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                solver.run(1)
                secs.append(time.perf_counter() - t0)
                with contextlib.redirect_stdout(open(os.devnull, "w")):  # their objective prints
                    vals.append(objective.evaluate_result(**solver.get_result())["value"])
            key = ("native:" if args.native_draw else "") + f"{name}/{dy}"
            res[key], res["seconds"][key] = vals, float(np.mean(secs))
            print(f"  {name}: {np.mean(vals):.3g} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0:.2g} "
                  f"{np.round(vals, 3).tolist()} ({np.mean(secs):.1f} s/run)", flush=True)
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(args.out), delete=False) as f:
                json.dump(res, f, indent=1)
            os.replace(f.name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
