"""Base classes of the degradation operators ``y = A(x) + n`` and shared checks.

Spectral layout (used by DDRM and every SVD-based solver)
----------------------------------------------------------
A linear operator with an SVD has ``D = prod(x_shape)`` and ``dy = prod(y_shape)``, with
``dy <= D``, and four matrix-free maps

* ``V_T(x) -> (D,)``   spectral coefficients of an image,
* ``V(z: (D,)) -> x_shape``,
* ``U_T(y) -> (dy,)``,
* ``U(z: (dy,)) -> y_shape``,

plus ``singular_values`` of shape ``(D,)``, entries ``>= 0``, where only the first ``dy``
can be nonzero. Coefficient ``i < dy`` of ``V_T(x)`` is paired with coefficient ``i`` of
``U_T(y)``, so that

    A(x) == U(singular_values[:dy] * V_T(x)[:dy]).

Singular values are *not* sorted, and zeros may appear among the first ``dy`` entries (e.g.
inpainting, truncated blur). Coefficients ``i >= dy`` are always unobserved.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jax import Array

__all__ = ["LinearOperator", "Operator"]


def _check(x, shape, name: str, who: str) -> Array:
    """Return ``x`` as a float array, raising ``ValueError`` on a wrong shape or dtype."""
    x = jnp.asarray(x)
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{who}: `{name}` must have shape {tuple(shape)}, got {tuple(x.shape)}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{who}: `{name}` must be a floating-point array, got dtype {x.dtype}.")
    return x


def _image_shape(shape, name: str, who: str) -> tuple[int, int, int]:
    """Validate an image shape ``(H, W, C)`` of positive ints."""
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{who}: `{name}` must be a tuple (H, W, C), got {shape!r}.") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"{who}: `{name}` must be a tuple (H, W, C) of positive ints, got {shape}."
        )
    return shape


def _safe_inv(s: Array) -> Array:
    """``1/s`` where ``s > 0`` and exactly 0 where ``s == 0`` (gradient-safe)."""
    pos = s > 0
    return jnp.where(pos, 1.0 / jnp.where(pos, s, 1.0), 0.0)


class Operator(eqx.Module):
    """A (possibly nonlinear) degradation ``y = A(x)``; an immutable pytree.

    Subclasses provide ``x_shape`` and ``y_shape`` (static tuples) and ``A``. Inputs are single
    examples (``(H, W, C)`` images or ``(d,)`` vectors); batch with ``jax.vmap``.
    Calling the operator, ``op(x)``, is the same as ``op.A(x)``.
    """

    x_shape: eqx.AbstractVar[tuple[int, ...]]
    y_shape: eqx.AbstractVar[tuple[int, ...]]

    @abc.abstractmethod
    def A(self, x: Array) -> Array:
        """The forward map ``x_shape -> y_shape``."""

    def __call__(self, x: Array) -> Array:
        return self.A(x)

    @property
    def x_size(self) -> int:
        """``D = prod(x_shape)``."""
        return math.prod(self.x_shape)

    @property
    def y_size(self) -> int:
        """``dy = prod(y_shape)``."""
        return math.prod(self.y_shape)

    def _cx(self, x) -> Array:
        return _check(x, self.x_shape, "x", type(self).__name__)

    def _cy(self, y) -> Array:
        return _check(y, self.y_shape, "y", type(self).__name__)

    def _czx(self, z) -> Array:
        return _check(z, (self.x_size,), "z", type(self).__name__)

    def _czy(self, z) -> Array:
        return _check(z, (self.y_size,), "z", type(self).__name__)


class LinearOperator(Operator):
    """A linear operator ``y = A x`` with exact adjoint and Moore–Penrose pseudo-inverse.

    A subclass either

    * gives a matrix-free SVD (``V_T``, ``V``, ``U_T``, ``U``, ``singular_values``, see the
      module docstring for the layout) and sets ``has_svd = True``; then ``A``, ``A_T`` and
      ``A_pinv`` follow from it (``A_pinv`` treats zero singular values as zero, never divides
      by them), and the subclass may override them with faster direct forms; or
    * overrides ``A``, ``A_T`` and ``A_pinv`` itself and leaves ``has_svd = False``; then the
      SVD methods raise ``TypeError`` (``CircularBlur``, compositions).

    Solvers that need the SVD (DDRM) should check ``op.has_svd``.
    """

    has_svd: ClassVar[bool] = False

    # ---- SVD (override in subclasses that have one) ----
    def _no_svd(self):
        name = type(self).__name__
        return TypeError(f"{name} has no real SVD; use A, A_T and A_pinv.")

    def V_T(self, x: Array) -> Array:
        """Spectral coefficients ``V^T x``, shape ``(D,)``."""
        raise self._no_svd()

    def V(self, z: Array) -> Array:
        """``V z`` for ``z`` of shape ``(D,)``, returns ``x_shape``."""
        raise self._no_svd()

    def U_T(self, y: Array) -> Array:
        """``U^T y``, shape ``(dy,)``."""
        raise self._no_svd()

    def U(self, z: Array) -> Array:
        """``U z`` for ``z`` of shape ``(dy,)``, returns ``y_shape``."""
        raise self._no_svd()

    @property
    def singular_values(self) -> Array:
        """Shape ``(D,)``, ``>= 0``; only the first ``dy`` entries can be nonzero."""
        raise self._no_svd()

    # ---- defaults derived from the SVD ----
    def _pad(self, zy: Array) -> Array:
        return jnp.concatenate([zy, jnp.zeros((self.x_size - self.y_size,), zy.dtype)])

    def A(self, x: Array) -> Array:
        """``A x = U (s[:dy] * (V^T x)[:dy])``."""
        x = self._cx(x)
        dy = self.y_size
        return self.U(self.singular_values[:dy] * self.V_T(x)[:dy])

    def A_T(self, y: Array) -> Array:
        """Exact adjoint ``A^T y = V [s[:dy] * U^T y, 0]``."""
        y = self._cy(y)
        return self.V(self._pad(self.singular_values[: self.y_size] * self.U_T(y)))

    def A_pinv(self, y: Array) -> Array:
        """Moore–Penrose pseudo-inverse ``V [s⁺ * U^T y, 0]`` with ``s⁺ = 1/s`` for ``s > 0``, else 0."""
        y = self._cy(y)
        s_inv = _safe_inv(self.singular_values[: self.y_size])
        return self.V(self._pad(s_inv * self.U_T(y)))


class _OutputBasis(LinearOperator):
    """A linear operator whose ``U`` is the identity: ``U_T`` flattens ``y``, ``U`` reshapes
    (inpainting, colorization, block-average SR, identity)."""

    def U_T(self, y: Array) -> Array:
        return self._cy(y).reshape(-1)

    def U(self, z: Array) -> Array:
        return self._czy(z).reshape(self.y_shape)


class _PixelBasis(_OutputBasis):
    """Both bases the identity (``V_T`` flattens ``x``, ``V`` reshapes): a diagonal operator
    (identity, inpainting)."""

    def V_T(self, x: Array) -> Array:
        return self._cx(x).reshape(-1)

    def V(self, z: Array) -> Array:
        return self._czx(z).reshape(self.x_shape)
