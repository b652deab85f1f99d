"""``jaxir evaluate`` with an LPIPS column: the same command line, the same rows, plus
LPIPS-AlexNet (``jaxir.metrics.lpips``, the packaged weights) per image.

``jaxir evaluate`` scores PSNR, SSIM and the consistency RMSE; issue 16 asks for LPIPS too.
Rather than restore twice, this script runs the unchanged CLI with two module attributes
of ``jaxir.restore._evaluate`` extended for the run: ``image_metrics`` also returns
``lpips`` and ``COLUMNS`` names it, so the CSV gets an ``lpips`` column (mean ± 95 % CI in
the markdown table, an extra column after SSIM). Everything else — images, degradation,
seeds, labels, NFE, ``--append`` — is the CLI's own code. A table written here must be
appended to with this script (its rows carry ``lpips``).

    python experiments/evaluate/evaluate_lpips.py --task sr4 --method ddrm --n 4 --out DIR
"""

from __future__ import annotations

import math
import sys

import numpy as np

from jaxir import metrics
from jaxir.cli import main
from jaxir.restore import _evaluate as ev

_BASE = ev.image_metrics


def image_metrics(task, x_hat, x, y, mask=None):
    out = _BASE(task, x_hat, x, y, mask)
    out["lpips"] = np.asarray(metrics.lpips(np.asarray(x_hat, np.float32),
                                            np.asarray(x, np.float32)))
    return out


def markdown_table(summary):
    lines = ["| method | n | PSNR (dB) ↑ | SSIM ↑ | LPIPS ↓ | consistency RMSE | NFE / image "
             "| s / image |", "|---|---|---|---|---|---|---|---|"]

    def pm(s, c, digits):
        ci = s[c + "_ci"]
        return f"{s[c]:.{digits}f}" + ("" if math.isnan(ci) else f" ± {ci:.{digits}f}")

    for s in summary:
        nfe = s.get("nfe")
        nfe = "–" if nfe is None or (isinstance(nfe, float) and math.isnan(nfe)) else f"{nfe:g}"
        lines.append(f"| {s['method']} | {s['n']} | {pm(s, 'psnr', 2)} | {pm(s, 'ssim', 3)} | "
                     f"{pm(s, 'lpips', 3)} | {pm(s, 'consistency', 3)} | {nfe} | "
                     f"{s['seconds_per_image']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    ev.image_metrics = image_metrics
    ev.COLUMNS = (*ev.COLUMNS, "lpips")
    ev.markdown_table = markdown_table
    sys.exit(main(["evaluate", *sys.argv[1:]]))
