"""Benchmarks with exact answers, run by ``jaxir bench`` and ``experiments/``.

Submodules: :mod:`jaxir.bench.gaussian` (every core sampler vs an exact Gaussian).
"""
