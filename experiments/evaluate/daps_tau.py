"""DAPS with the measurement's own likelihood (``tau=None``: τ = √2 σ_y) on the ``n4/`` crops.

The method table runs DAPS with its official τ = 0.01, a constant of the authors' configs; on
denoising (σ_y = 0.196 in [-1, 1] units) that returned the noisy input. This script scores the
same DAPS (20 annealing levels, as the ``n4/`` row) with ``tau=None`` on the same 4 crops, the
same degradations and seed, and appends the row ``daps (20 steps, tau = sqrt2 sigma_y)`` to
``experiments/evaluate/TASK/n4/evaluate_TASK.csv`` / ``.md`` (an existing row of that label is
replaced), so ``paired.py`` compares it with the official-τ row.

    python experiments/evaluate/daps_tau.py                  # denoise, sr4, inpaint
    python experiments/evaluate/daps_tau.py --tasks denoise
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxir import restore
from jaxir.priors import load_prior
from jaxir.restore import Method

HERE = Path(__file__).resolve().parent
LABEL = "daps (20 steps, tau = sqrt2 sigma_y)"


def _daps_own_likelihood(key, prior, op, y, sigma_y, task, steps):
    from jaxir import inverse

    return inverse.daps_sample(key, prior.model_fn, prior.sde, op, y, sigma_y,
                               (y.shape[0], *op.x_shape),
                               prediction=prior.prediction, num_steps=steps, tau=None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["denoise", "sr4", "inpaint"])
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    base = restore.get_method("daps")
    method = Method(LABEL, base.kind, base.tasks, args.steps, _daps_own_likelihood,
                    "DAPS with tau = sqrt(2) sigma_y")
    prior = load_prior("photos64")  # the shipped prior, as jaxir evaluate's default
    for task in args.tasks:
        out = HERE / task / "n4"
        old = restore.read_results(out / f"evaluate_{task}.csv")
        rows = restore.evaluate([method], task, prior=prior, data="photos:test", n=4,
                                steps=args.steps,
                                seed=0, reference=False, progress=True)
        rows = [{**r, "method": LABEL} for r in rows]
        csv_path, md_path = restore.write_results(restore.merge_results(old, rows), out,
                                                  f"evaluate_{task}")
        print(f"{task}: {md_path}")
        print(restore.markdown_table(restore.summarize(rows)))


if __name__ == "__main__":
    main()
