"""The MCGdiff 25-component GMM posterior benchmark: full grid, tables and a figure.

    python experiments/gmm_posterior/run.py                      # the full grid (slow on CPU)
    python experiments/gmm_posterior/run.py --dims 8             # d = 8 only
    python experiments/gmm_posterior/run.py --report-only        # rebuild results.md from CSVs
    python experiments/gmm_posterior/run.py --dims 8 --methods mcgdiff-32 --merge   # re-run rows

Grid: d ∈ {8, 80, 800}, dy ∈ {1, 2, 4}, 20 problems, the DDIM settings of the authors'
script (20 steps, η = 0.6) and (100, 0.85) plus the published CPU table's (100, 0.6), every
method of :data:`jaxir.bench.gmm.METHODS`. Writes, under ``--out``:

* ``gmm_d{d}_n{steps}_eta{η}.csv``: one row per (method, dy, problem);
* ``results.md``: mean ± 95% CI (Student t over problems) per setting, and the d = 8,
  (100, 0.6) table next to the published one;
* ``gmm_d8.png``: samples of each method vs the exact posterior in the plane of the first two
  coordinates (where the 5 × 5 grid of prior means lives), one problem per dy.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import time

import jax
import numpy as np

from jaxir.bench import gmm

SETTINGS = ((100, 0.6), (20, 0.6), (100, 0.85))
# MCGdiff changed in ee4b92c (exact potentials ending at the likelihood, adaptive resampling):
# the (dim, steps, eta) tables whose MCGdiff rows were re-run with it (``--methods mcgdiff-32
# mcgdiff-128 ... --merge``, 2026-12-06; d = 800 at (100, 0.6) on the first 5 problems per dy);
# the other tables carry a note that theirs predate it
MCGDIFF_RERUN = {(8, 100, 0.6), (8, 20, 0.6), (8, 100, 0.85), (80, 100, 0.6), (80, 20, 0.6),
                 (80, 100, 0.85), (800, 20, 0.6), (800, 100, 0.6)}


def _csv_path(out, dim, steps, eta):
    return os.path.join(out, f"gmm_d{dim}_n{steps}_eta{eta:g}.csv")


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _read_csv(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            for k in ("dim", "dy", "problem", "num_steps", "num_samples", "num_reference", "num_projections"):
                r[k] = int(r[k])
            for k in ("eta", "sw", "sw_exact", "sw_prior", "seconds"):
                r[k] = float(r[k])
            r["finite"] = r["finite"] == "True"
            rows.append(r)
    return rows


def _shared_rows(args, dim, steps, eta):
    """method -> (csv, rows) for the methods whose rows in this setting are already in another
    CSV of ``args.out``: a setting that agrees on every part the method reads
    (:func:`jaxir.bench.gmm.reads_setting`), with the same problems, sample counts and metric.
    The keys depend on the problem only, so these rows are what a re-run would compute
    (``tests/test_inverse.py::test_gmm_methods_ignore_what_they_do_not_read``); they are
    copied with this setting's ``num_steps`` / ``eta``."""
    want = {(dy, i) for dy in args.dys for i in range(args.num_problems)}
    here = {"num_steps": steps, "eta": eta}
    out = {}
    for path in sorted(glob.glob(os.path.join(args.out, f"gmm_d{dim}_n*_eta*.csv"))):
        if path == _csv_path(args.out, dim, steps, eta):
            continue
        rows = _read_csv(path)
        for m in args.methods:
            got = [r for r in rows if r["method"] == m and r["dy"] in args.dys
                   and r["problem"] < args.num_problems]
            if m in out or not got or {(r["dy"], r["problem"]) for r in got} != want:
                continue
            r0 = got[0]
            if any(r0[k] != here[k] for k in gmm.reads_setting(m)):
                continue
            if (r0["num_samples"], r0["num_reference"], r0["metric"]) != (
                    args.num_samples, args.num_reference, args.metric):
                continue
            out[m] = path, [{**r, **here} for r in got]
    return out


def _across_dims(out, steps=100, eta=0.6):
    """One table, methods × (d, dy), of the mean distance in one setting, with the floor."""
    cells, floor, prior, dims = {}, {}, {}, []
    for path in sorted(glob.glob(os.path.join(out, f"gmm_d*_n{steps}_eta{eta:g}.csv")),
                       key=lambda p: int(os.path.basename(p).split("_")[1][1:])):
        rows = _read_csv(path)
        d = rows[0]["dim"]
        dims.append(d)
        for s in gmm.summarize(rows):
            cells[(s["method"], d, s["dy"])] = s
        for dy in sorted({r["dy"] for r in rows}):
            floor[(d, dy)] = np.mean([r["sw_exact"] for r in rows if r["dy"] == dy])
            prior[(d, dy)] = np.mean([r["sw_prior"] for r in rows if r["dy"] == dy])
    cols = [(d, dy) for d in dims for dy in (1, 2, 4) if (d, dy) in floor]
    methods = list(dict.fromkeys(m for (m, _, _) in cells))
    lines = [f"\n## Across dimensions ({steps} DDIM steps, η = {eta:g}; mean over problems, "
             "`n` problems per dy where fewer than 20)\n",
             "| method | " + " | ".join(f"d = {d}, dy = {dy}" for d, dy in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for m in methods:
        out_cells = []
        for c in cols:
            s = cells.get((m, *c))
            out_cells.append("–" if s is None else f"{s['sw_mean']:.3g}"
                             + ("" if s["n"] >= 20 else f" (n = {s['n']})"))
        lines.append(f"| {m} | " + " | ".join(out_cells) + " |")
    lines.append("| exact vs exact (floor) | " + " | ".join(f"{floor[c]:.3g}" for c in cols)
                 + " |")
    lines.append("| prior samples | " + " | ".join(f"{prior[c]:.3g}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _published_table(summary, rows):
    """Measured (d = 8, 100 steps, η = 0.6) next to the published CPU table: mean ± sd, the
    range over our problems, and the share of our problems at or below the published mean
    (`jaxir.bench.gmm.compare_published`)."""
    cell = {(s["method"], s["dy"]): s for s in summary}
    pub = {(c["method"], c["dy"]): c for c in gmm.compare_published(rows)}
    lines = ["| method | dy | measured mean ± sd | range over problems | problems ≤ published "
             "| published mean ± sd |", "|---|---|---|---|---|---|"]
    for m in ("ddrm", "dps", "mcgdiff-32", "mcgdiff-32-multinomial", "mcgdiff-128",
              "mcgdiff-128-multinomial", "pigdm", "ddnm"):
        for dy in (1, 2, 4):
            s = cell.get((m, dy))
            if s is None:
                continue
            v = [r["sw"] for r in rows if r["method"] == m and r["dy"] == dy]
            c = pub.get((m, dy))
            p = f"{c['published_mean']:.3g} ± {c['published_sd']:.2g}" if c else "—"
            share = f"{c['share_below']:.0%}" if c else "—"
            lines.append(f"| {m} | {dy} | {s['sw_mean']:.3g} ± {s['sw_sd']:.2g} | "
                         f"{min(v):.3g} – {max(v):.3g} | {share} | {p} |")
    return "\n".join(lines)


def write_report(out):
    parts = [
        "# GMM posterior benchmark (MCGdiff, 25 components)\n",
        "Generated by `experiments/gmm_posterior/run.py` (`jaxir.bench.gmm`). Metric: sliced "
        "Wasserstein between the method's samples and exact posterior samples (numbers per "
        "section; `max` = max-sliced W2 over random directions, `mean` = mean-sliced W1). "
        "The noise floor is the same distance for fresh exact samples (`sw_exact` in the "
        "CSVs). Cells: mean ± 95% CI over problems (Student t); seconds per run on the "
        "machine that ran it (2 shared CPU cores here), compile excluded. MCGdiff rows use "
        "systematic resampling (the library default); `-multinomial` rows use the official "
        "multinomial resampling.\n",
    ]
    summary_100_06 = None
    for path in sorted(glob.glob(os.path.join(out, "gmm_d*_n*_eta*.csv"))):
        rows = _read_csv(path)
        summary = gmm.summarize(rows)
        r0 = rows[0]
        n_prob = max(r["problem"] for r in rows) + 1
        floor = {dy: np.mean([r["sw_exact"] for r in rows if r["dy"] == dy]) for dy in sorted({r["dy"] for r in rows})}
        parts.append(f"\n## d = {r0['dim']}, {r0['num_steps']} DDIM steps, η = {r0['eta']:g} "
                     f"({n_prob} problems per dy; {r0['metric']}-sliced, {r0['num_projections']} "
                     f"directions, {r0['num_samples']} vs {r0['num_reference']} samples)\n")
        parts.append(gmm.format_table(summary, stat="ci"))
        fewer = {m: max(r["problem"] for r in rows if r["method"] == m) + 1
                 for m in dict.fromkeys(r["method"] for r in rows)}
        fewer = {m: k for m, k in fewer.items() if k < n_prob}
        if fewer:
            parts.append("\nFewer problems per dy (the first ones; CPU time): " + ", ".join(
                f"{m} {k}" for m, k in fewer.items()) + ".\n")
        shared = [m for m in dict.fromkeys(r["method"] for r in rows)
                  if m in gmm.METHODS and "eta" not in gmm.reads_setting(m)]
        if shared and r0["eta"] != 0.6:
            parts.append("\nMethods that do not read η (" + ", ".join(shared) + "): the same "
                         f"computation as at η = 0.6 with {r0['num_steps']} steps "
                         "(`gmm.reads_setting`; `run.py` copies those rows unless `--recompute`; "
                         "rows of the two settings run on different days may differ by the "
                         "code changes between, up to 3 % per problem for d = 80 DDRM).\n")
        if any(r["method"].startswith("mcgdiff") for r in rows) and (
                r0["dim"], r0["num_steps"], r0["eta"]) not in MCGDIFF_RERUN:
            parts.append("\nThe MCGdiff rows of this table predate the exact-potential MCGdiff "
                         "(commit ee4b92c); the other rows are unaffected.\n")
        parts.append("\nnoise floor (exact vs exact): " + ", ".join(f"dy = {d}: {v:.3g}" for d, v in floor.items()) + "\n")
        if r0["dim"] == 8 and r0["num_steps"] == 100 and abs(r0["eta"] - 0.6) < 1e-9:
            summary_100_06 = summary, rows
    parts.append(_across_dims(out))
    if summary_100_06 is not None:
        parts.append("\n## Against the published CPU table (d = 8, 100 steps, η = 0.6; mean ± sd)\n")
        parts.append(_published_table(*summary_100_06) + "\n")
        parts.append(
            "\nReading this table: our sd is over 20 *different* problems (weights, A, σ_y, x* all "
            "redrawn), and the distance varies by an order of magnitude from one problem to the "
            "next (the range column; a few hard problems, whose posterior mode has small prior "
            "weight, dominate the mean). The published sd (0.03 to 2.4) is far smaller, which "
            "points to repeats on one problem per dy; each published mean is then one draw from "
            "the spread of problems, and the 'problems ≤ published' column says where it falls "
            "in ours. For DDRM and DPS the published means lie inside our per-problem range at "
            "every dy except DDRM at dy = 1 (29.7, just above our hardest problem, 25.0) — the "
            "same algorithm gives the same kind of numbers, but a single-problem mean cannot be "
            "matched cell by cell. Some published cells (MCGdiff-128 at dy = 4: 0.18) are below "
            "the exact-vs-exact noise floor of our estimator for that setting (0.48). What "
            "reproduces over problems is the ordering: the particle sampler at 128 particles "
            "beats DDRM and DPS at every dy, and more particles help. With the official "
            "multinomial resampling at every step MCGdiff is much worse at equal particles "
            "than with systematic resampling (the library default).\n")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(parts))


def figure(out, methods, num_steps=100, eta=0.6, n=1000, seed=0):
    """Samples vs exact posterior (coordinates 0 and 1) for one d = 8 problem per dy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sde = gmm.gmm_sde(num_steps)
    dys = (1, 2, 4)
    fig, axes = plt.subplots(len(dys), len(methods) + 1, figsize=(2.3 * (len(methods) + 1), 2.4 * len(dys)),
                             sharex=True, sharey=True)
    for r, dy in enumerate(dys):
        prob = gmm.make_problem(jax.random.key(seed * 1_000_003 + 1000 * dy), 8, dy)
        ref = np.asarray(gmm.posterior_sample(jax.random.key(1), prob, n))
        panels = [("exact posterior", ref)]
        for m in methods:
            x = jax.jit(lambda k, p, m=m: gmm.METHODS[m](k, p, sde, n, num_steps, eta))(jax.random.key(2), prob)
            panels.append((m, np.asarray(x)))
        for c, (name, x) in enumerate(panels):
            ax = axes[r, c]
            ax.scatter(np.asarray(prob.means)[:, 0], np.asarray(prob.means)[:, 1], s=6, c="0.7", marker="s")
            ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.4, c="C0" if c == 0 else "C1", rasterized=True)
            if r == 0:
                ax.set_title(name, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"dy = {dy}", fontsize=8)
            ax.set_xlim(-25, 25)
            ax.set_ylim(-25, 25)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"GMM posterior, d = 8 ({num_steps} DDIM steps, η = {eta:g}): coordinates 0 and 1; "
                 "grey squares: prior means", fontsize=9)
    fig.tight_layout()
    path = os.path.join(out, "gmm_d8.png")
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[8, 80, 800])
    ap.add_argument("--dys", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--num-problems", type=int, default=20)
    ap.add_argument("--settings", nargs="+", default=[f"{s},{e}" for s, e in SETTINGS],
                    help="DDIM settings as steps,eta")
    ap.add_argument("--methods", nargs="+", default=list(gmm.METHODS))
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--num-reference", type=int, default=10_000)
    ap.add_argument("--metric", default="max", choices=["max", "mean"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--no-figure", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--merge", action="store_true",
                    help="keep the existing CSV rows of the methods not re-run")
    ap.add_argument("--recompute", action="store_true",
                    help="run every method, also those whose rows another setting's CSV "
                         "already holds (a method that does not read η or the step count)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if not args.report_only:
        for dim in args.dims:
            for setting in args.settings:
                steps, eta = setting.split(",")
                steps, eta = int(steps), float(eta)
                t0 = time.perf_counter()
                shared = {} if args.recompute else _shared_rows(args, dim, steps, eta)
                to_run = [m for m in args.methods if m not in shared]
                rows = gmm.run_gmm_benchmark(
                    dim=dim, dys=tuple(args.dys), num_problems=args.num_problems, methods=to_run,
                    num_samples=args.num_samples, num_reference=args.num_reference, metric=args.metric,
                    num_steps=steps, eta=eta, seed=args.seed, progress=True) if to_run else []
                for m, (src, got) in shared.items():
                    print(f"{m}: the rows of {os.path.basename(src)} (reads only "
                          f"{gmm.reads_setting(m) or 'the problem'})", flush=True)
                    rows += got
                path = _csv_path(args.out, dim, steps, eta)
                if args.merge and os.path.exists(path):
                    rows = [r for r in _read_csv(path) if r["method"] not in set(args.methods)] + rows
                _write_csv(path, rows)
                print(f"d={dim} steps={steps} eta={eta}: {time.perf_counter() - t0:.0f}s", flush=True)
                print(gmm.format_table(gmm.summarize(rows), stat="ci"), flush=True)
        if 8 in args.dims and not args.no_figure:
            print("figure:", figure(args.out, [m for m in args.methods if "multinomial" not in m]))
    write_report(args.out)
    print("report:", os.path.join(args.out, "results.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
