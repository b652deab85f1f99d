"""Shared pytest setup: CPU by default, quiet, reproducible.

``JAX_PLATFORMS`` defaults to ``cpu``; an explicit setting is respected, so the accelerator
check (``experiments/accelerator/run.sh``) runs the suite with ``JAX_PLATFORMS=cuda,cpu``
(the accelerator first, the CPU kept for host callbacks and ``eqx.error_if``).

``JAXIR_EMULATE_MATMUL=tf32`` (or ``bf16``) makes the CPU behave like an accelerator at its
default precision: every float32 matrix product and convolution that does not ask for
``Precision.HIGHEST`` gets its operands rounded to TF32 (10-bit mantissa, NVIDIA's default)
or bfloat16 (7 bits, one TPU pass) before an exact float32 product. It replaces the CPU
lowering of the two primitives for the whole test process, so it finds on a CPU the
computations that would lose precision on a GPU or TPU (see ``jaxir.precision``).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_EMULATE = os.environ.get("JAXIR_EMULATE_MATMUL", "").lower()
_DROPPED_BITS = {"tf32": 13, "bf16": 16}  # float32 keeps 23 mantissa bits; TF32 10, bf16 7


def _emulate_reduced_precision(kind: str) -> None:
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.extend.core import primitives as prims
    from jax.interpreters import mlir

    if kind not in _DROPPED_BITS:
        raise ValueError(f"JAXIR_EMULATE_MATMUL must be one of {sorted(_DROPPED_BITS)}, got {kind!r}")
    bits = _DROPPED_BITS[kind]
    highest = (lax.Precision.HIGHEST, lax.Precision.HIGHEST)

    def round_operand(x):
        """Round a float32 array to nearest (ties to even) with ``bits`` fewer mantissa bits."""
        if x.dtype != jnp.float32:
            return x
        u = lax.bitcast_convert_type(x, jnp.uint32)
        lsb = (u >> bits) & jnp.uint32(1)
        u = (u + jnp.uint32((1 << (bits - 1)) - 1) + lsb) & jnp.uint32((0xFFFFFFFF >> bits) << bits)
        return lax.bitcast_convert_type(u, jnp.float32)

    def reduced(precision) -> bool:
        if precision is None:  # jax folds jax_default_matmul_precision in before lowering
            return True
        if isinstance(precision, tuple):
            return any(p != lax.Precision.HIGHEST for p in precision)
        return False  # an explicit DotAlgorithm(Preset): taken as asked

    for prim in (prims.dot_general_p, prims.conv_general_dilated_p):
        # jax's registries are private: the entry is a rule or holds one in ``.rule``
        entry = mlir._platform_specific_lowerings["cpu"].get(prim) or mlir._lowerings[prim]
        original = getattr(entry, "rule", entry)

        def rule(ctx, lhs, rhs, *, _prim=prim, _original=original, **params):
            if not reduced(params.get("precision")):
                return _original(ctx, lhs, rhs, **params)

            def emulated(a, b):
                return _prim.bind(round_operand(a), round_operand(b),
                                  **dict(params, precision=highest))

            return mlir.lower_fun(emulated, multiple_results=False)(ctx, lhs, rhs)

        mlir.register_lowering(prim, rule, platform="cpu")
    jax.clear_caches()


if _EMULATE:
    _emulate_reduced_precision(_EMULATE)
