"""Benchmarks with exact answers, run by ``jaxir bench`` and ``experiments/``.

Submodules: :mod:`jaxir.bench.gaussian` (every core sampler vs an exact Gaussian) and
:mod:`jaxir.bench.gmm` (the MCGdiff 25-component mixture posterior benchmark:
``run_gmm_benchmark`` → JSON-serialisable rows, ``summarize``, ``format_table``).
"""
