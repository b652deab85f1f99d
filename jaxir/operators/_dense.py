"""Operators given by (small) matrices: a general dense matrix and compressed sensing."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from ..precision import hmatmul
from ._base import LinearOperator, _check


class DenseMatrix(LinearOperator):
    """``A(x) = M @ x`` for a dense ``M`` of shape ``(dy, d)`` acting on vectors ``(d,)``.

    Intended for exact linear-Gaussian benchmarks (e.g. the MCGdiff GMM problem).
    Requires ``dy <= d`` (so the SVD layout below exists).

    SVD: ``M = U diag(s) V_1^T`` from the thin ``jnp.linalg.svd(M)`` at construction;
    ``U_T(y) = U^T y``, ``singular_values = [s, zeros(d - dy)]`` in LAPACK's descending order.
    Singular values at or below ``rtol * max(s)`` (default ``max(dy, d) * eps``, as
    ``jnp.linalg.pinv``) are set to exactly 0 so ``A_pinv`` ignores numerically null
    directions. The complete orthogonal ``V = [V_1, V_2]`` (``d x d``) is stored implicitly,
    like :class:`CompressedSensing`, by the ``dy`` Householder vectors of the QR of ``V_1``
    (``V = Q D`` with ``D = diag(sign(R_ii), 1, ..., 1)``, so its first ``dy`` columns are
    exactly ``V_1``): ``V_T`` and ``V`` cost ``O(dy d)`` per vector instead of ``O(d^2)``,
    which is what makes DDRM / DDNM / ΠGDM / MCGdiff on ``d = 800`` with ``dy = 4`` cheap.
    The basis ``V_2`` of the null space is arbitrary, as in any SVD; :attr:`vt` builds the
    dense ``V^T`` on demand.

    Example:
        >>> op = DenseMatrix(jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
        >>> op.A_pinv(jnp.array([1.0, 2.0]))
        Array([1., 1., 0.], dtype=float32)
    """

    has_svd = True

    matrix: Array
    u: Array
    s: Array
    y_house: Array
    t_wy: Array
    v_sign: Array
    x_shape: tuple[int] = eqx.field(static=True)
    y_shape: tuple[int] = eqx.field(static=True)

    def __init__(self, A, rtol: float | None = None):
        m = _check(A, None, "A", "DenseMatrix")
        if m.ndim != 2 or m.shape[0] > m.shape[1] or m.shape[0] < 1:
            raise ValueError(
                f"DenseMatrix: `A` must have shape (dy, d) with 1 <= dy <= d, got {tuple(m.shape)}."
            )
        dy, d = m.shape
        self.matrix = m
        self.x_shape, self.y_shape = (d,), (dy,)
        u, s, vt1 = jnp.linalg.svd(m, full_matrices=False)
        if rtol is None:
            rtol = max(dy, d) * float(jnp.finfo(m.dtype).eps)
        s = jnp.where(s > rtol * s[0], s, 0.0)
        self.u = u
        self.s = jnp.concatenate([s, jnp.zeros((d - dy,), s.dtype)])
        self.y_house, self.t_wy = _householder_wy(vt1.T)
        # Q^T V_1 = R is diagonal with entries ±1 (V_1 is orthonormal): fold the signs into V
        r_diag = jnp.sum(vt1.T * _wy_q(self.y_house, self.t_wy, jnp.eye(d, dy, dtype=m.dtype)), 0)
        self.v_sign = jnp.concatenate([jnp.sign(r_diag), jnp.ones((d - dy,), m.dtype)])

    @property
    def vt(self) -> Array:
        """The dense ``(d, d)`` ``V^T`` (built on demand; its first ``dy`` rows are ``V_1^T``)."""
        return jax.vmap(self.V_T, out_axes=1)(jnp.eye(self.x_size, dtype=self.matrix.dtype))

    def A(self, x: Array) -> Array:
        return hmatmul(self.matrix, self._cx(x))

    def A_T(self, y: Array) -> Array:
        return hmatmul(self.matrix.T, self._cy(y))

    def V_T(self, x: Array) -> Array:
        return self.v_sign * _wy_qt(self.y_house, self.t_wy, self._cx(x))

    def V(self, z: Array) -> Array:
        return _wy_q(self.y_house, self.t_wy, self.v_sign * self._czx(z))

    def U_T(self, y: Array) -> Array:
        return hmatmul(self.u.T, self._cy(y))

    def U(self, z: Array) -> Array:
        return hmatmul(self.u, self._czy(z))

    @property
    def singular_values(self) -> Array:
        return self.s


@jax.jit
def _householder_wy(g: Array) -> tuple[Array, Array]:
    """Compact WY form ``Q = I - Y T Y^T`` of the Householder QR ``g = Q R`` of ``g (D, m)``.

    ``Y`` holds the unit Householder vectors (``H_k = I - 2 y_k y_k^T``, ``Q = H_1 ... H_m``)
    and ``T^{-1} = I/2 + strict_upper(Y^T Y)`` (the "UT transform").
    """
    big_d, m = g.shape
    idx = jnp.arange(big_d)

    def step(k, carry):
        r, y = carry
        x = jnp.where(idx >= k, r[:, k], 0.0)
        sign = jnp.where(x[k] >= 0, 1.0, -1.0)
        v = x.at[k].add(sign * jnp.linalg.norm(x))
        v = v / jnp.linalg.norm(v)
        r = r - 2.0 * jnp.outer(v, hmatmul(v, r))
        return r, y.at[:, k].set(v)

    _, y = jax.lax.fori_loop(0, m, step, (g, jnp.zeros_like(g)))
    t_inv = 0.5 * jnp.eye(m, dtype=y.dtype) + jnp.triu(hmatmul(y.T, y), 1)
    t = jax.scipy.linalg.solve_triangular(t_inv, jnp.eye(m, dtype=y.dtype), lower=False)
    return y, t


def _wy_qt(y: Array, t: Array, v: Array) -> Array:
    """``Q^T v`` for ``Q = I - Y T Y^T`` (``v`` of shape ``(D,)`` or ``(D, k)``)."""
    return v - hmatmul(y, hmatmul(t.T, hmatmul(y.T, v)))


def _wy_q(y: Array, t: Array, v: Array) -> Array:
    """``Q v`` for ``Q = I - Y T Y^T``."""
    return v - hmatmul(y, hmatmul(t, hmatmul(y.T, v)))


class CompressedSensing(LinearOperator):
    """``A(x) = R @ vec(x)`` with ``R`` of shape ``(m, D)`` having random orthonormal rows.

    ``R`` is the transposed Q factor of the QR of a Gaussian ``(D, m)`` matrix drawn from
    ``key``. ``R`` is stored implicitly by its ``m`` Householder vectors in compact WY form,
    ``Q = I - Y T Y^T`` (``Y (D, m)``, ``T (m, m)`` upper triangular, ``T^{-1} = I/2 +
    strict_upper(Y^T Y)``), which gives the *complete* orthogonal ``V = Q`` (``D x D``) in
    ``O(m D)`` memory: ``R = Q[:, :m]^T``.

    Shapes: ``x_shape`` (any, e.g. ``(H, W, C)``) ``-> (m,)``; requires ``1 <= m <= D``.
    SVD: ``V_T(x) = Q^T vec(x)`` (first ``m`` entries are ``A(x)``), ``U = I_m``,
    ``singular_values = [1]*m + [0]*(D - m)``. ``A_pinv = A_T``.

    Example:
        >>> op = CompressedSensing(jax.random.key(0), (4, 4, 3), 20)
        >>> op.A(jnp.zeros((4, 4, 3))).shape
        (20,)
    """

    has_svd = True

    y_house: Array
    t_wy: Array
    x_shape: tuple[int, ...] = eqx.field(static=True)
    y_shape: tuple[int] = eqx.field(static=True)

    def __init__(self, key: Array, x_shape, num_measurements: int):
        x_shape = tuple(int(s) for s in x_shape)
        if not x_shape or min(x_shape) < 1:
            raise ValueError(f"CompressedSensing: `x_shape` must be positive ints, got {x_shape}.")
        self.x_shape = x_shape
        big_d, m = self.x_size, int(num_measurements)
        if not 1 <= m <= big_d:
            raise ValueError(
                f"CompressedSensing: `num_measurements` must be in [1, D={big_d}], got {m}."
            )
        self.y_shape = (m,)
        g = jax.random.normal(key, (big_d, m), jnp.float32)
        self.y_house, self.t_wy = _householder_wy(g)

    def matrix(self) -> Array:
        """The dense ``(m, D)`` measurement matrix ``R`` (built on demand)."""
        return jax.vmap(lambda e: self.A_T(e).reshape(-1))(jnp.eye(self.y_size))

    def _qt(self, v: Array) -> Array:
        return _wy_qt(self.y_house, self.t_wy, v)

    def _q(self, v: Array) -> Array:
        return _wy_q(self.y_house, self.t_wy, v)

    def A(self, x: Array) -> Array:
        return self.V_T(x)[: self.y_size]

    def A_T(self, y: Array) -> Array:
        return self.V(self._pad(self._cy(y)))

    def A_pinv(self, y: Array) -> Array:
        return self.A_T(y)

    def V_T(self, x: Array) -> Array:
        return self._qt(self._cx(x).reshape(-1))

    def V(self, z: Array) -> Array:
        return self._q(self._czx(z)).reshape(self.x_shape)

    def U_T(self, y: Array) -> Array:
        return self._cy(y)

    def U(self, z: Array) -> Array:
        return self._czy(z)

    @property
    def singular_values(self) -> Array:
        return self._pad(jnp.ones((self.y_size,), jnp.float32))
