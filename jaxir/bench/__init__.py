"""Benchmarks with exact answers, run by ``jaxir bench`` and ``experiments/``.

Submodules: :mod:`jaxir.bench.gaussian` (every core sampler vs an exact Gaussian) and
:mod:`jaxir.bench.gmm` (the MCGdiff 25-component mixture posterior benchmark:
``run_gmm_benchmark`` → JSON-serialisable rows, ``summarize``, ``format_table``) and
:mod:`jaxir.bench.perf` (sampler overhead vs network cost, diffrax vs ``lax.scan``, gradient
memory vs steps, training throughput, compile time: ``run_perf`` / ``format_perf``).
"""

# The benchmarks are submodules (each imports what it runs; ``import jaxir.bench.gmm``).
__all__ = ["gaussian", "gmm", "perf"]
