"""Paired differences of every row of an evaluation table against one reference row.

    python experiments/evaluate/paired.py experiments/evaluate/sr4/n4/evaluate_sr4.csv ddrm

prints, per method, the mean paired difference (method − reference) of PSNR, SSIM and, when
the table has it, LPIPS, with its 95 % Student-t half-width, and on how many images the
method is better (higher PSNR / SSIM, lower LPIPS). The rows of one table score the same
images (same crops, degradations and seed), so the differences are paired.
"""

from __future__ import annotations

import csv
import sys

import numpy as np
from scipy import stats


def paired(path: str, ref: str) -> str:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = [c for c in ("psnr", "ssim", "lpips") if c in rows[0]]
    table: dict = {}
    for r in rows:
        table.setdefault(r["method"], {})[int(r["image"])] = r
    if ref not in table:
        raise SystemExit(f"{path}: no rows labelled {ref!r}; labels: {', '.join(table)}")
    base = table[ref]
    out = [f"{path}: paired difference against {ref!r} (mean ± 95 % CI, images better)",
           "| method | n | " + " | ".join(f"Δ{c.upper()}" for c in cols) + " |",
           "|---|---|" + "---|" * len(cols)]
    for name, per in table.items():
        if name == ref:
            continue
        imgs = sorted(per)
        if imgs != sorted(base):
            raise SystemExit(f"{name!r} and {ref!r} score different images")
        cells = []
        for c in cols:
            d = np.array([float(per[i][c]) - float(base[i][c]) for i in imgs])
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            better = int(np.sum(d < 0 if c == "lpips" else d > 0))
            digits = 2 if c == "psnr" else 3
            cells.append(f"{d.mean():+.{digits}f} ± {half:.{digits}f} ({better}/{len(d)})")
        out.append(f"| {name} | {len(imgs)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(paired(sys.argv[1], sys.argv[2]))
