"""Overlapping patches and seamless blending, so a fixed-size prior restores any image size.

The output image is covered by square ``patch × patch`` windows whose top-left corners lie on
a grid of step ``stride < patch`` (the last window is moved back to end exactly at the border,
so every pixel is covered). Each window is restored independently; the results are blended
with the separable raised-cosine weight

    w(i, j) = h(i) h(j),   h(i) = ½ − ½ cos(2π (i + ½) / patch),   i = 0 … patch − 1,

as ``out = Σ_k w_k · patch_k / Σ_k w_k`` (the normalised weights sum to one at every pixel).
``h`` is positive everywhere and tends to zero at the window's edges, so where two windows
overlap each one fades out towards its own border: there is no seam, and pixels seen by one
window only (the image border) keep that window's value exactly.
"""

from __future__ import annotations

import numpy as np


def patch_positions(length: int, patch: int, stride: int, align: int = 1) -> np.ndarray:
    """Start offsets ``0, stride, 2·stride, …, length − patch`` covering ``[0, length)``.

    Every offset is a multiple of ``align`` (``stride`` and ``length`` must be too), so for
    4× super-resolution the windows fall on whole low-resolution pixels.
    """
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be positive, got {patch}, {stride}")
    if stride > patch:
        raise ValueError(f"stride {stride} > patch {patch} would leave gaps")
    if length < patch:
        raise ValueError(f"length {length} is smaller than the patch {patch}: pad first")
    if stride % align or length % align or patch % align:
        raise ValueError(f"stride {stride}, length {length} and patch {patch} must be "
                         f"multiples of {align}")
    pos = list(range(0, length - patch + 1, stride))
    if pos[-1] != length - patch:
        pos.append(length - patch)
    return np.asarray(pos, np.int64)


def blend_window(patch: int) -> np.ndarray:
    """The 2-D raised-cosine weight ``(patch, patch)``, strictly positive (module docstring)."""
    i = np.arange(patch, dtype=np.float64)
    h = 0.5 - 0.5 * np.cos(2.0 * np.pi * (i + 0.5) / patch)
    return np.outer(h, h)


def extract_patches(images: np.ndarray, tops, lefts, size: int) -> np.ndarray:
    """Windows ``(N · len(tops) · len(lefts), size, size, C)`` of ``images`` ``(N, H, W, C)``,
    ordered image-major, then row, then column."""
    out = [img[t:t + size, lf:lf + size] for img in images for t in tops for lf in lefts]
    return np.stack(out)


def blend_patches(patches: np.ndarray, image_shape, tops, lefts) -> np.ndarray:
    """Inverse of :func:`extract_patches`: ``(N, H, W, C)`` as the window-weighted average.

    ``image_shape`` is ``(N, H, W, C)``. Returns float32.
    """
    n, h, w, c = image_shape
    size = patches.shape[1]
    win = blend_window(size)[..., None]
    acc = np.zeros((n, h, w, c))
    norm = np.zeros((n, h, w, 1))
    k = 0
    for b in range(n):
        for t in tops:
            for lf in lefts:
                acc[b, t:t + size, lf:lf + size] += win * patches[k]
                norm[b, t:t + size, lf:lf + size] += win
                k += 1
    return (acc / norm).astype(np.float32)


def blend_weights(height: int, width: int, patch: int, stride: int) -> np.ndarray:
    """The normalised weight of every window at every pixel, ``(K, H, W)`` (sums to one over K)."""
    tops = patch_positions(height, patch, stride)
    lefts = patch_positions(width, patch, stride)
    win = blend_window(patch)
    out = np.zeros((len(tops) * len(lefts), height, width))
    for k, (t, lf) in enumerate((t, lf) for t in tops for lf in lefts):
        out[k, t:t + patch, lf:lf + patch] = win
    return out / out.sum(0, keepdims=True)


def _pad_amount(size: int, target: int) -> tuple[int, int]:
    extra = max(target - size, 0)
    return extra // 2, extra - extra // 2


class Tiling:
    """A batch of measurements ``y`` ``(N, h, w, c)`` cut into the prior's windows.

    ``y`` is reflect-padded (whole low-resolution pixels) to at least one window of ``patch``
    high-resolution pixels (``factor`` per low-resolution pixel); windows start every
    ``stride`` pixels (default ¾ of the patch, a multiple of ``factor``). ``y_patches``
    (and ``mask_patches`` for a high-resolution ``mask`` ``(N, h·f, w·f, 1)``) hold the
    windows' measurements; :meth:`assemble` blends restored windows back and crops the padding.
    """

    def __init__(self, y, mask, patch: int, factor: int, stride: int | None, channels: int):
        f, p = int(factor), int(patch)
        if p % f:
            raise ValueError(f"the prior's size {p} is not a multiple of the task factor {f}")
        n, h, w, _ = y.shape
        ph, pw = _pad_amount(h, p // f), _pad_amount(w, p // f)
        if ph != (0, 0) or pw != (0, 0):
            y = np.pad(y, ((0, 0), ph, pw, (0, 0)), mode="symmetric")
            if mask is not None:
                mask = np.pad(mask, ((0, 0), (ph[0] * f, ph[1] * f), (pw[0] * f, pw[1] * f),
                                     (0, 0)), mode="symmetric")
        hp, wp = y.shape[1] * f, y.shape[2] * f
        if stride is None:
            stride = max(f, (3 * p // 4) // f * f)
        if stride % f or not 0 < stride <= p:
            raise ValueError(f"stride must be a multiple of {f} in (0, {p}], got {stride}")
        self.tops, self.lefts = patch_positions(hp, p, stride, f), patch_positions(wp, p, stride, f)
        self.y_patches = extract_patches(y, self.tops // f, self.lefts // f, p // f)
        self.mask_patches = (None if mask is None
                             else extract_patches(mask, self.tops, self.lefts, p))
        self.shape = (n, hp, wp, int(channels))
        self._crop = (slice(ph[0] * f, hp - ph[1] * f), slice(pw[0] * f, wp - pw[1] * f))

    def assemble(self, x_p) -> np.ndarray:
        """Blend restored windows ``(windows, patch, patch, channels)`` into the images, crop
        the padding, clip to [-1, 1]."""
        out = blend_patches(np.asarray(x_p)[:len(self.y_patches)], self.shape, self.tops,
                            self.lefts)
        return np.clip(out[:, self._crop[0], self._crop[1]], -1.0, 1.0)
