"""Composition of operators: ``A = outer.A ∘ inner.A``."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from ._base import LinearOperator, Operator


class _Composed(Operator):
    outer: Operator
    inner: Operator
    x_shape: tuple[int, ...] | None = eqx.field(static=True)
    y_shape: tuple[int, ...] | None = eqx.field(static=True)

    def A(self, x: Array) -> Array:
        return self.outer.A(self.inner.A(x))


class _ComposedLinear(LinearOperator):
    outer: LinearOperator
    inner: LinearOperator
    maxiter: int = eqx.field(static=True)
    tol: float = eqx.field(static=True)
    x_shape: tuple[int, ...] = eqx.field(static=True)
    y_shape: tuple[int, ...] = eqx.field(static=True)

    def A(self, x: Array) -> Array:
        return self.outer.A(self.inner.A(self._cx(x)))

    def A_T(self, y: Array) -> Array:
        return self.inner.A_T(self.outer.A_T(self._cy(y)))

    def A_pinv(self, y: Array) -> Array:
        """Approximate: CG on ``A^T A x = A^T y`` from ``x = 0`` (min-norm solution in the limit)."""
        b = self.A_T(y)
        x, _ = jax.scipy.sparse.linalg.cg(
            lambda v: self.A_T(self.A(v)),
            b,
            x0=jnp.zeros_like(b),
            tol=self.tol,
            maxiter=self.maxiter,
        )
        return x


def compose(outer: Operator, inner: Operator, maxiter: int = 100, tol: float = 1e-6) -> Operator:
    """Operator with ``A(x) = outer.A(inner.A(x))`` (apply ``inner`` first).

    For two ``LinearOperator``s the result is linear (``has_svd = False``):
    ``A_T = inner.A_T ∘ outer.A_T`` exactly, and ``A_pinv`` is **approximate**: conjugate
    gradients on the normal equations ``A^T A x = A^T y`` started at 0 (so the iterates stay
    in the row space and tend to the minimum-norm solution), at most ``maxiter`` iterations,
    relative tolerance ``tol``. Otherwise the result is a nonlinear ``Operator`` with ``A`` only.
    Requires ``inner.y_shape == outer.x_shape`` (``None`` = elementwise, matches anything).

    Example:
        >>> from jaxir.operators import Blur, SuperResolution, gaussian_kernel
        >>> op = compose(SuperResolution((8, 8, 3), 2), Blur((8, 8, 3), gaussian_kernel(5, 1.0)))
        >>> op.A(jnp.zeros((8, 8, 3))).shape
        (4, 4, 3)
    """
    if not isinstance(outer, Operator) or not isinstance(inner, Operator):
        raise ValueError("compose: `outer` and `inner` must be jaxir.operators.Operator instances.")
    mid_in, mid_out = inner.y_shape, outer.x_shape
    if mid_in is not None and mid_out is not None and tuple(mid_in) != tuple(mid_out):
        raise ValueError(f"compose: `inner.y_shape` {mid_in} must equal `outer.x_shape` {mid_out}.")
    x_shape = inner.x_shape if inner.x_shape is not None else outer.x_shape
    y_shape = outer.y_shape if outer.y_shape is not None else inner.y_shape
    if isinstance(outer, LinearOperator) and isinstance(inner, LinearOperator):
        return _ComposedLinear(
            outer=outer,
            inner=inner,
            maxiter=int(maxiter),
            tol=float(tol),
            x_shape=x_shape,
            y_shape=y_shape,
        )
    return _Composed(outer=outer, inner=inner, x_shape=x_shape, y_shape=y_shape)
