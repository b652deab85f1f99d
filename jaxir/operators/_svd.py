"""Shared building blocks of matrix-free SVDs.

* group means (colorization, block-average SR): the row ``(1/n) 1^T`` acting on a group of
  ``n`` entries has one singular value ``1/sqrt(n)``; its right singular vectors are the
  columns of an orthonormal ``(n, n)`` basis whose first column is constant.
* separable (Kronecker) operators: ``Y[:, :, c] = M_r X[:, :, c] M_c^T`` with small 1-D
  matrices ``M_r (h, H)`` and ``M_c (w, W)``; the SVD is the Kronecker product of the 1-D SVDs.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array

from ..precision import heinsum, hmatmul
from ._base import LinearOperator


def _constant_first_basis(n: int) -> np.ndarray:
    """Orthonormal ``(n, n)`` matrix whose first column is ``1/sqrt(n)`` (the DCT-II basis)."""
    k = np.arange(n)[None, :]
    i = np.arange(n)[:, None]
    q = np.cos(np.pi * (i + 0.5) * k / n) * np.sqrt(2.0 / n)
    q[:, 0] = 1.0 / np.sqrt(n)
    return q.astype(np.float32)


def _group_vt(groups: Array, q: Array) -> Array:
    """Groups ``(N, n)`` -> coefficients ``(N*n,)``: the ``N`` group-mean coefficients first."""
    c = hmatmul(groups, q)
    return jnp.concatenate([c[:, 0], c[:, 1:].reshape(-1)])


def _group_v(z: Array, q: Array, n_groups: int) -> Array:
    """Inverse of ``_group_vt``: coefficients ``(N*n,)`` -> groups ``(N, n)``."""
    n = q.shape[0]
    c = jnp.concatenate([z[:n_groups, None], z[n_groups:].reshape(n_groups, n - 1)], axis=1)
    return hmatmul(c, q.T)


def _svd_1d(m: Array) -> tuple[Array, Array, Array]:
    """Full SVD of a small 1-D operator matrix ``(h, n)``, ``h <= n``."""
    u, s, vt = jnp.linalg.svd(m, full_matrices=True)
    return u, s, vt


class _SeparableSVD(LinearOperator):
    """A separable operator ``Y_c = M_r X_c M_c^T`` per channel, via the Kronecker SVD.

    With ``M_r = U_r S_r V_r^T`` (``h x H``) and ``M_c = U_c S_c V_c^T`` (``w x W``), the
    coefficient grid ``G = V_r^T X_c V_c`` of shape ``(H, W)`` per channel is laid out as
    ``[G[:h, :w, :], G[:h, w:, :], G[h:, :, :]]`` (each raveled C-order), so the first
    ``dy = h*w*C`` coefficients carry the singular values ``s2d[i, j]`` (``= s_r[i] s_c[j]``,
    possibly truncated) and pair with ``U_T(y) = (U_r^T Y_c U_c)`` raveled in ``(h, w, C)`` order.
    """

    has_svd = True

    ur: Array
    vtr: Array
    uc: Array
    vtc: Array
    s2d: Array

    def _hw(self):
        return self.ur.shape[0], self.uc.shape[0]

    def V_T(self, x: Array) -> Array:
        x = self._cx(x)
        h, w = self._hw()
        g = heinsum("ia,abk,jb->ijk", self.vtr, x, self.vtc)
        return jnp.concatenate([g[:h, :w].reshape(-1), g[:h, w:].reshape(-1), g[h:].reshape(-1)])

    def V(self, z: Array) -> Array:
        big_h, big_w, c = self.x_shape
        z = self._czx(z)
        h, w = self._hw()
        n1, n2 = h * w * c, h * (big_w - w) * c
        top = jnp.concatenate(
            [z[:n1].reshape(h, w, c), z[n1 : n1 + n2].reshape(h, big_w - w, c)], axis=1
        )
        g = jnp.concatenate([top, z[n1 + n2 :].reshape(big_h - h, big_w, c)], axis=0)
        return heinsum("ai,abk,bj->ijk", self.vtr, g, self.vtc)

    def U_T(self, y: Array) -> Array:
        y = self._cy(y)
        return heinsum("ai,abk,bj->ijk", self.ur, y, self.uc).reshape(-1)

    def U(self, z: Array) -> Array:
        z = self._czy(z)
        h, w = self._hw()
        g = z.reshape(h, w, self.x_shape[2])
        return heinsum("ia,abk,jb->ijk", self.ur, g, self.uc)

    @property
    def singular_values(self) -> Array:
        h, w = self._hw()
        s = jnp.broadcast_to(self.s2d[:, :, None], (h, w, self.x_shape[2])).reshape(-1)
        return self._pad(s)
