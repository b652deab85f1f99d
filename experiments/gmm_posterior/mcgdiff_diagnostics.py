"""Two runs that narrow down why the chain-exact MCGdiff (commit ee4b92c) scores worse on the GMM
benchmark than the tau-pinned MCGdiff it replaced (README, "MCGdiff's rows, re-run").

1. ``resampling``: MCGdiff-128 with systematic resampling at *every* step (``resample_threshold
   = 1``) instead of when ESS < N/2, d = 8, 100 DDIM steps, eta = 0.6, the benchmark's 20 problems
   per dy. Measured 2026-12-06: 3.96 / 1.76 / 1.26 (the default: 4.04 / 1.84 / 1.28; the
   pinned potentials: 3.56 / 1.52 / 0.995), so resampling is not the cause.
2. ``chain``: the unconditional DDIM chain (DPS with zero guidance, eta = 0.6) against 10,000 prior
   samples, max-sliced W2 over 100 directions, 1,000 draws, 5 problems (dy = 2 draws them), with
   two prior sample sets as the floor. Measured: d = 8: 5.32 (20 steps), 2.36 (100), floor 1.86;
   d = 80: 6.47, 4.26, floor 2.54. The d = 80 gap of MCGdiff is as large at 100 steps as at 20,
   so the chain's discretisation is not the cause either.

    python experiments/gmm_posterior/mcgdiff_diagnostics.py            # both (about 9 min, 2 cores)
    python experiments/gmm_posterior/mcgdiff_diagnostics.py --only chain
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from jaxir.bench import _gmm_methods as gm
from jaxir.bench import gmm
from jaxir.inverse._dps import dps_sample
from jaxir.inverse._smc import mcgdiff_sample
from jaxir.metrics import sliced_wasserstein


def resampling(num_problems: int = 20) -> None:
    name = "mcgdiff-128-resample-every-step"
    gm.METHODS[name] = gm._ddim_runner(mcgdiff_sample, num_particles=128, eta="eta",
                                        resample_threshold=1.0)
    rows = gmm.run_gmm_benchmark(dim=8, num_problems=num_problems, methods=[name],
                                 num_steps=100, eta=0.6)
    print(" / ".join(f"dy = {s['dy']}: {s['sw_mean']:.3g}" for s in gmm.summarize(rows)),
          f"({name}, d = 8, 100 steps, eta 0.6, {num_problems} problems per dy)")


def chain(num_problems: int = 5) -> None:
    run = gm._ddim_runner(dps_sample, zeta=0.0, eta="eta", clip_x0=False)
    for dim in (8, 80):
        for steps in (20, 100):
            ws, floor = [], []
            for i in range(num_problems):
                k = jax.random.fold_in(jax.random.PRNGKey(7), i)
                prob = gmm.make_problem(k, dim, 2)
                x = run(jax.random.fold_in(k, 1), prob, gmm.gmm_sde(steps), 1000, steps, 0.6)
                ref = gmm.prior_sample(jax.random.fold_in(k, 2), prob, 10_000)
                other = gmm.prior_sample(jax.random.fold_in(k, 3), prob, 1000)
                kd = jax.random.fold_in(k, 4)
                ws.append(float(sliced_wasserstein(kd, x, ref, 100, p=2, reduce="max")))
                floor.append(float(sliced_wasserstein(kd, other, ref, 100, p=2, reduce="max")))
            print(f"d = {dim}, {steps} steps: DDIM chain (eta 0.6) vs prior {np.mean(ws):.3g}, "
                  f"prior vs prior {np.mean(floor):.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("resampling", "chain"))
    ap.add_argument("--num-problems", type=int, help="problems (default 20 / 5)")
    args = ap.parse_args()
    kw = {} if args.num_problems is None else {"num_problems": args.num_problems}
    if args.only in (None, "resampling"):
        resampling(**kw)
    if args.only in (None, "chain"):
        chain(**kw)


if __name__ == "__main__":
    main()
