"""The ``jaxir`` command line (DESIGN.md layer 11): every argparse parser and entry point.

    jaxir demo [--full] [--out D]    restore bundled photos + exact benchmarks -> D/report.html
    jaxir restore --method M --task T IN -o OUT [--degrade]   restore one image (any size)
    jaxir evaluate --method M,M2 --task T [--data S --n N]    PSNR / SSIM / LPIPS table
    jaxir bench gaussian|gmm|perf    benchmarks (exact answers; speed)
    jaxir train --config C --workdir D   train (resumes from D), on 1 device, a mesh or a pod
    jaxir sample --workdir D ...     sample a PNG grid from a trained model, or restore --lq

Modules: ``_common`` (`UsageError`, argparse types, output checks), ``_restore`` (restore),
``_evaluate`` (evaluate, demo), ``_bench`` (bench), ``_train`` (train, sample). Nothing in the
library imports this package. Building the parser imports no jax (each command imports what it
needs when it runs), so ``jaxir --help`` and every subcommand's ``--help`` answer at once.

User mistakes end with one ``jaxir: error: ...`` line on stderr and exit code 2, never a
traceback; an unexpected failure is one ``jaxir: error: unexpected ...`` line and exit code 1
(set ``JAXIR_TRACEBACK=1`` to see its traceback).
"""

from __future__ import annotations

import os
import sys

from ._common import Parser, UsageError, positive_int
from ._evaluate import add_demo_parser, add_evaluate_parser
from ._restore import add_restore_parser
from ._train import add_sample_parser, add_train_parser

__all__ = ["UsageError", "build_parser", "main", "positive_int", "add_demo_parser",
           "add_evaluate_parser", "add_restore_parser", "add_sample_parser", "add_train_parser"]


def build_parser() -> Parser:
    """The ``jaxir`` parser with every subcommand (imports no jax)."""
    from . import _bench, _evaluate, _restore, _restore_sharded, _train

    p = Parser(prog="jaxir", description="Diffusion-based image restoration in JAX.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _evaluate.add_demo_parser(sub)
    _restore_sharded.extend(_restore.add_restore_parser(sub), _evaluate.add_evaluate_parser(sub))
    _bench.add_bench_parser(sub)
    _train.add_train_parser(sub)
    _train.add_sample_parser(sub)
    return p


def main(argv=None) -> int:
    """Run ``jaxir ARGV``; returns the exit code (argparse errors raise ``SystemExit(2)``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"jaxir: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxir: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not a user mistake: still one line unless asked
        if os.environ.get("JAXIR_TRACEBACK"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"jaxir: error: unexpected {type(e).__name__}: {msg} (set JAXIR_TRACEBACK=1 "
              f"for the traceback and please report it)", file=sys.stderr)
        return 1
