"""Blur: separable (Toeplitz, Kronecker SVD) and circular (FFT)."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import Array

from ..precision import heinsum
from ._base import LinearOperator, _check, _image_shape, _safe_inv
from ._svd import _SeparableSVD, _svd_1d


def gaussian_kernel(size: int, sigma: float) -> Array:
    """Normalised 1-D Gaussian kernel ``exp(-(t - (size-1)/2)^2 / (2 sigma^2))``, shape ``(size,)``.

    Example:
        >>> k = gaussian_kernel(5, 1.0)  # sums to 1
        >>> k2d = jnp.outer(k, k)        # 2-D kernel for CircularBlur
    """
    if int(size) < 1 or float(sigma) <= 0:
        raise ValueError(f"gaussian_kernel: need size >= 1 and sigma > 0, got {size}, {sigma}.")
    t = jnp.arange(int(size), dtype=jnp.float32) - (int(size) - 1) / 2
    k = jnp.exp(-(t**2) / (2.0 * float(sigma) ** 2))
    return k / k.sum()


def uniform_kernel(size: int) -> Array:
    """Box kernel ``ones(size) / size``.

    Example:
        >>> uniform_kernel(4)
        Array([0.25, 0.25, 0.25, 0.25], dtype=float32)
    """
    if int(size) < 1:
        raise ValueError(f"uniform_kernel: `size` must be >= 1, got {size}.")
    return jnp.full((int(size),), 1.0 / int(size), jnp.float32)


def _toeplitz_blur_matrix(n: int, kernel: Array, boundary: str = "zero") -> Array:
    """1-D blur matrix ``(n, n)``: ``(T x)[i] = sum_t k[t] x[i - t + K//2]``.

    Out-of-range samples are 0 (``boundary="zero"``) or the edge sample (``"edge"``).
    Built with jnp, so ``kernel`` may be traced.
    """
    k = jnp.asarray(kernel)
    size = k.shape[0]
    i = jnp.arange(n)[:, None]
    j = i - jnp.arange(size)[None, :] + size // 2
    rows = jnp.broadcast_to(i, j.shape)
    if boundary == "edge":
        j = jnp.clip(j, 0, n - 1)
        wts = jnp.broadcast_to(k[None, :], j.shape)
    else:
        wts = jnp.where((j >= 0) & (j < n), k[None, :], 0.0)
        j = jnp.clip(j, 0, n - 1)
    return jnp.zeros((n, n), k.dtype).at[rows, j].add(wts)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _blur_matrix_and_svd(n: int, kernel: Array, boundary: str):
    t = _toeplitz_blur_matrix(n, kernel, boundary)
    return (t, *_svd_1d(t))


class Blur(_SeparableSVD):
    """Separable blur with the same 1-D kernel on rows and columns, SVD-truncated.

    The full blur is ``B(x)[:, :, c] = T_H x[:, :, c] T_W^T`` with the 1-D Toeplitz matrices of
    ``_toeplitz_blur_matrix`` (convolution centred at ``K//2``; ``boundary`` "zero" or
    "edge"). Its SVD is the Kronecker product of the 1-D SVDs; the products
    ``s_H[i] s_W[j]`` below ``threshold`` (default 3e-2, DDRM's value) are set to zero.

    **A is the truncated operator**: ``A(x) = U(s_trunc * V_T(x))``, i.e. ``B`` with the
    spectral components of singular value ``< threshold`` removed, so the SVD contract
    (and ``A A_pinv A = A``, the exact adjoint) holds exactly. ``A_full(x)`` gives the
    untruncated ``B(x)``; with ``threshold=0`` the two agree.

    Shapes: ``x_shape == y_shape == (H, W, C)``, ``dy = D``. SVD layout: ``V_T(x)`` is
    ``V_H^T x_c V_W`` raveled in ``(H, W, C)`` order, likewise ``U_T``; not sorted.

    Example:
        >>> op = Blur((8, 8, 3), gaussian_kernel(5, 1.0))
        >>> op.A(jnp.ones((8, 8, 3))).shape
        (8, 8, 3)
    """

    th: Array
    tw: Array
    threshold: float = eqx.field(static=True)
    boundary: str = eqx.field(static=True)
    x_shape: tuple[int, int, int] = eqx.field(static=True)
    y_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(self, shape, kernel_1d, threshold: float = 3e-2, boundary: str = "zero"):
        shape = _image_shape(shape, "shape", "Blur")
        k = _check(kernel_1d, None, "kernel_1d", "Blur")
        if k.ndim != 1 or k.shape[0] < 1:
            raise ValueError(f"Blur: `kernel_1d` must have shape (K,), got {tuple(k.shape)}.")
        if boundary not in ("zero", "edge"):
            raise ValueError(f"Blur: `boundary` must be 'zero' or 'edge', got {boundary!r}.")
        h, w, _ = shape
        self.x_shape = self.y_shape = shape
        self.threshold = float(threshold)
        self.boundary = boundary
        self.th, self.ur, sr, self.vtr = _blur_matrix_and_svd(h, k, boundary)
        self.tw, self.uc, sc, self.vtc = _blur_matrix_and_svd(w, k, boundary)
        s2d = sr[:, None] * sc[None, :]
        self.s2d = jnp.where(s2d >= self.threshold, s2d, 0.0)

    def A_full(self, x: Array) -> Array:
        """The untruncated separable blur ``T_H x_c T_W^T``."""
        return heinsum("ia,abk,jb->ijk", self.th, self._cx(x), self.tw)


class CircularBlur(LinearOperator):
    """2-D circular convolution via the FFT (periodic boundary).

    ``B(x)[i, j, c] = sum_{a, b} k[a, b] x[(i - a + kh//2) % H, (j - b + kw//2) % W, c]``,
    computed as ``irfft2(K * rfft2(x))`` with ``K`` the spectrum of the kernel embedded in an
    ``(H, W)`` grid. Frequencies with ``|K| < threshold`` (default 3e-2, as ``Blur``) are set to
    zero in the stored spectrum, and **A is that truncated operator** (so
    ``A A_pinv A = A`` exactly); ``A_full`` is the untruncated ``B``. ``A_T`` multiplies by
    ``conj(K)``, ``A_pinv`` by ``conj(K)/|K|^2`` where ``K != 0``, else 0.

    No real SVD is provided (it is a Fourier, i.e. complex, one): ``has_svd`` is False and
    ``V``, ``V_T``, ``U``, ``U_T``, ``singular_values`` raise ``TypeError``.

    Shapes: ``x_shape == y_shape == (H, W, C)``; kernel ``(kh, kw)`` with ``kh <= H``, ``kw <= W``.

    Example:
        >>> k = gaussian_kernel(5, 1.0)
        >>> op = CircularBlur((8, 8, 3), jnp.outer(k, k))
        >>> op.A(jnp.ones((8, 8, 3))).shape
        (8, 8, 3)
    """

    kernel: Array
    spectrum: Array
    threshold: float = eqx.field(static=True)
    x_shape: tuple[int, int, int] = eqx.field(static=True)
    y_shape: tuple[int, int, int] = eqx.field(static=True)

    def __init__(self, shape, kernel_2d, threshold: float = 3e-2):
        shape = _image_shape(shape, "shape", "CircularBlur")
        k = _check(kernel_2d, None, "kernel_2d", "CircularBlur")
        h, w, _ = shape
        if k.ndim != 2 or k.shape[0] > h or k.shape[1] > w:
            raise ValueError(
                f"CircularBlur: `kernel_2d` must have shape (kh, kw) with kh <= {h}, kw <= {w}, "
                f"got {tuple(k.shape)}."
            )
        self.x_shape = self.y_shape = shape
        self.threshold = float(threshold)
        self.kernel = k
        spec = self._full_spectrum()
        self.spectrum = jnp.where(jnp.abs(spec) >= self.threshold, spec, 0.0)

    def _full_spectrum(self) -> Array:
        h, w, _ = self.x_shape
        kh, kw = self.kernel.shape
        pad = jnp.zeros((h, w), self.kernel.dtype).at[:kh, :kw].set(self.kernel)
        pad = jnp.roll(pad, (-(kh // 2), -(kw // 2)), axis=(0, 1))
        return jnp.fft.rfft2(pad)

    def _apply(self, x: Array, mult: Array) -> Array:
        h, w, _ = self.x_shape
        xf = jnp.fft.rfft2(x, axes=(0, 1))
        return jnp.fft.irfft2(xf * mult[:, :, None], s=(h, w), axes=(0, 1)).astype(x.dtype)

    def A(self, x: Array) -> Array:
        return self._apply(self._cx(x), self.spectrum)

    def A_full(self, x: Array) -> Array:
        """The untruncated circular convolution."""
        return self._apply(self._cx(x), self._full_spectrum())

    def A_T(self, y: Array) -> Array:
        return self._apply(self._cy(y), jnp.conj(self.spectrum))

    def A_pinv(self, y: Array) -> Array:
        mag2 = jnp.abs(self.spectrum) ** 2
        return self._apply(self._cy(y), jnp.conj(self.spectrum) * _safe_inv(mag2))
