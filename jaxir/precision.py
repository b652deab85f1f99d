"""Precision policy: which computations are exact on GPUs and TPUs, and how to choose.

On an accelerator the backend's *default* float32 matrix product is not float32: NVIDIA GPUs
(Ampere and later) round both operands to TF32 (10-bit mantissa, unit roundoff 2⁻¹¹ ≈ 4.9e-4),
TPUs take one bfloat16 pass (7-bit mantissa, 2⁻⁸ ≈ 3.9e-3); convolutions likewise. CPUs
always compute in float32, so a result proven on a CPU silently changes on an accelerator
(measured on an H200: 42 of 273 numerics tests failed at the default precision, all passed at
``highest``). jaxir therefore splits its computations in two:

* **Exact** — everything a closed-form answer, a contract or a reported number rests on asks
  for ``jax.lax.Precision.HIGHEST`` explicitly at every matrix product and convolution (full
  float32 on GPUs; six bf16 passes on TPUs): the operator transforms ``A``, ``A_T``,
  ``A_pinv``, ``V``, ``V_T``, ``U``, ``U_T`` of every operator in :mod:`jaxir.operators` (dense
  matrices and their Householder/WY products, separable blur and bicubic Kronecker SVDs, group
  means of colorization and block SR, the JPEG DCT); the exact priors, posteriors, scores and
  denoisers of :mod:`jaxir.exact` (and the GMM benchmark's in :mod:`jaxir.bench.gmm`), hence
  every particle weight, log-density and quadratic form built from them; the metrics and
  their networks (distances, SSIM's window, LPIPS, the FID InceptionV3 and ``FeatureNet``);
  the degradations that make training pairs. Decompositions (``eigh``, ``svd``, ``solve``,
  ``slogdet``) are left to the backends' solvers (cuSOLVER on NVIDIA; JAX's own products
  inside ``solve`` already ask for HIGHEST) — not measured on a TPU; the bicubic SVD and the
  FID statistics are float64 (NumPy, on the host). Outside the networks nothing else in
  jaxir multiplies matrices: samplers, SDEs, bridges, likelihoods (``jaxir.samplers.log_likelihood``)
  and the prediction conversions are elementwise arithmetic and reductions, which are float32
  on every backend.
* **Network** — the score network (:mod:`jaxir.models`) runs at the backend default and,
  by the user's choice, in a low-precision compute dtype (``make_model_fn(...,
  compute_dtype=jnp.bfloat16)``: float32 parameters cast at the boundary, float32 output).
  Its error is a learned approximation's error already; TF32/bf16 is what makes it fast.
  Use ``jax.default_matmul_precision("highest")`` around a call to make the network exact too.

The exact sites go through the helpers of this module (:func:`hmatmul`, :func:`heinsum`,
:func:`hdot`, and :func:`hdot_general` / :func:`hconv_general_dilated` for Flax layers), which
read the level chosen with :func:`exact_precision` **when the function is traced**. The level
is a ``jax.make_user_context`` value, part of the jit cache key: a function jitted under one
level is traced again under another, never silently reused. Library code never changes
``jax.config``. Three products outside the exact layers ask for ``HIGHEST`` directly and do not
follow the scope: DiffPIR's step-size estimate ``‖A‖²``, the Gaussian blur that makes training
pairs (``jaxir.training``) and a mixture's mean in ``jaxir.images.ImagePrior``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxir import precision
    >>> a = jnp.ones((4, 4))
    >>> "HIGHEST" in jax.jit(precision.hmatmul).lower(a, a).as_text()
    True
    >>> with precision.exact_precision("default"):  # trade exactness for speed
    ...     "HIGHEST" in jax.jit(precision.hmatmul).lower(a, a).as_text()
    False
    >>> precision.get_exact_precision().name
    'HIGHEST'
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "LEVELS",
    "exact_precision",
    "get_exact_precision",
    "hconv_general_dilated",
    "hdot",
    "hdot_general",
    "heinsum",
    "hmatmul",
]

LEVELS = ("highest", "high", "default")
_ALIASES = {"float32": "highest", "fastest": "default", "tensorfloat32": "high",
            "bfloat16_3x": "high", "bfloat16": "default"}


def _canonical(level) -> str:
    if isinstance(level, lax.Precision):
        return level.name.lower()
    name = str(level).lower()
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(
            f"exact_precision: `level` must be one of {LEVELS} (or a jax.lax.Precision), "
            f"got {level!r}"
        )
    return name


class _ContextVarLevel:
    """Fallback for a jax without ``make_user_context``: a context variable, and the trace
    caches cleared on entering and leaving a scope so that no stale trace is reused."""

    def __init__(self, default: str):
        self._var = contextvars.ContextVar("jaxir_exact_precision", default=default)

    @property
    def value(self) -> str:
        return self._var.get()

    @contextlib.contextmanager
    def __call__(self, new_value: str):
        jax.clear_caches()
        token = self._var.set(new_value)
        try:
            yield
        finally:
            self._var.reset(token)
            jax.clear_caches()


_make_user_context = getattr(jax, "make_user_context", None)
_LEVEL = _make_user_context("highest") if _make_user_context else _ContextVarLevel("highest")


def exact_precision(level):
    """Context manager: the precision of jaxir's exact computations inside the ``with`` block.

    Args:
      level: ``"highest"`` (the default outside any block: full float32 on every backend),
        ``"high"`` (TF32 on NVIDIA, 3 bf16 passes on TPU) or ``"default"`` (the backend's
        default: TF32 / one bf16 pass); a ``jax.lax.Precision`` or one of JAX's aliases
        (``"float32"``, ``"tensorfloat32"``, ``"bfloat16_3x"``, ``"bfloat16"``) also works.

    The level is read when a function is traced; it is part of JAX's jit cache key, so a
    jitted function called inside and outside the block is compiled once for each. Scopes nest
    and are thread-local. The score network is not affected (see the module docstring).

    Raises:
      ValueError: an unknown ``level``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxir import operators, precision
        >>> op = operators.DenseMatrix(jnp.eye(2, 3))
        >>> with precision.exact_precision("high"):
        ...     y = jax.jit(lambda x: op.A(x))(jnp.ones(3))  # traced (and cached) at "high"
    """
    return _LEVEL(_canonical(level))


def get_exact_precision() -> lax.Precision:
    """The ``jax.lax.Precision`` of exact computations at this point of tracing."""
    return lax.Precision[_canonical(_LEVEL.value).upper()]


def hmatmul(a, b):
    """``jnp.matmul(a, b)`` (the ``@`` operator) at the exact precision."""
    return jnp.matmul(a, b, precision=get_exact_precision())


def hdot(a, b):
    """``jnp.dot(a, b)`` at the exact precision."""
    return jnp.dot(a, b, precision=get_exact_precision())


def heinsum(subscripts: str, *operands):
    """``jnp.einsum(subscripts, *operands)`` at the exact precision."""
    return jnp.einsum(subscripts, *operands, precision=get_exact_precision())


def hdot_general(lhs, rhs, dimension_numbers, precision=None, **kwargs):
    """``lax.dot_general`` at the exact precision; a drop-in ``dot_general=`` for
    ``nnx.Linear`` (the layer's own ``precision`` argument is overridden)."""
    del precision
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=get_exact_precision(),
                           **kwargs)


def hconv_general_dilated(lhs, rhs, window_strides, padding, *args, precision=None, **kwargs):
    """``lax.conv_general_dilated`` at the exact precision; a drop-in
    ``conv_general_dilated=`` for ``nnx.Conv`` (its ``precision`` argument is overridden)."""
    del precision
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, *args,
                                    precision=get_exact_precision(), **kwargs)
