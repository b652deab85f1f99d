"""Degradation specs: a short string that names how an LQ image is made from an HQ one.

``"sr:4+noise:0.05"`` is the 4× block average (upsampled back by nearest neighbour) followed by
Gaussian noise of std 0.05. The steps, joined by ``+`` and applied left to right:

================  ==============================================================================
``sr:F``          F×F block average then nearest upsampling back (SR3's upsampled LQ input)
``blur:S``        Gaussian blur of std S pixels, ``2⌈3S⌉ + 1`` taps, replicate (edge) boundary:
                  :meth:`Blur.A_full` of ``Blur(shape, gaussian_kernel(2⌈3S⌉ + 1, S),
                  boundary="edge")`` (its 1-D blur matrices, without the SVD)
``noise:S``       additive N(0, S²) noise, in [-1, 1] units
``gray``          colorization's condition: the channel mean repeated over the channels
                  (:class:`Colorization` ``A⁺A``)
``inpaint:P``     a random fraction P of the pixels missing, per image
``inpaint:box``   the centred H/2 × W/2 box missing (Palette's centre mask)
``uncrop``        one half missing, its side drawn per image
``jpeg:Q``        :class:`JPEGLike` at quality Q
================  ==============================================================================

Missing pixels hold N(0, 1) noise, as in Palette's condition (0 with ``noise=False``). The same
spec makes training pairs (`jaxir.training`, ``loss.degradation``) and tells
`jaxir.restore.prepare_lq` how a model's LQ was made (:attr:`Degradation.sr_factor`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..precision import heinsum

__all__ = ["Degradation", "make_degradation"]

_HELP = ("use 'sr:F' (integer F), 'blur:S' (S > 0 pixels), 'noise:S' (S >= 0), 'gray', "
         "'inpaint:P' (0 < P < 1 missing), 'inpaint:box', 'uncrop' or 'jpeg:Q' "
         "(1 <= Q <= 100), joined by '+'")
_MASKED = ("inpaint", "uncrop")


def _parse_step(part: str, spec: str) -> tuple[str, Any]:
    kind, _, arg = part.partition(":")
    if (kind, arg) in (("gray", ""), ("uncrop", ""), ("inpaint", "box")):
        return kind, arg or None
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(f"bad degradation {part!r} in {spec!r}; {_HELP}") from None
    if kind == "sr" and value >= 1 and value == int(value):
        return "sr", int(value)
    if kind == "noise" and value >= 0:
        return "noise", value
    if kind == "blur" and value > 0 and math.isfinite(value):
        return "blur", value
    if kind == "inpaint" and 0 < value < 1:
        return "inpaint", value
    if kind == "jpeg" and 1 <= value <= 100 and value == int(value):
        return "jpeg", int(value)
    raise ValueError(f"bad degradation {part!r} in {spec!r}; {_HELP}")


def _gaussian_blur(x, sigma: float):
    """Separable Gaussian blur of (B, H, W, C) images (module table), exact products."""
    from ._blur import _toeplitz_blur_matrix, gaussian_kernel

    k = gaussian_kernel(2 * int(math.ceil(3.0 * sigma)) + 1, sigma).astype(x.dtype)
    th = _toeplitz_blur_matrix(x.shape[1], k, "edge")
    tw = _toeplitz_blur_matrix(x.shape[2], k, "edge")
    return heinsum("ia,nabc,jb->nijc", th, x, tw)


def _block_sr(x, f: int):
    b, h, w, c = x.shape
    if h % f or w % f:
        raise ValueError(f"sr:{f} needs H and W divisible by {f}, got {x.shape}")
    low = x.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4))
    return jnp.repeat(jnp.repeat(low, f, axis=1), f, axis=2)


def _mask_of(kind, value, key, shape, b):
    """(B, H, W, 1) observation mask (1 = observed) of an "inpaint" / "uncrop" step."""
    from ._inpaint import box_mask, half_mask, random_mask

    hw = shape[:2]
    if kind == "inpaint" and value == "box":
        return jnp.broadcast_to(box_mask(hw)[None, :, :, None], (b, *hw, 1))
    if kind == "inpaint":  # a fraction `value` of the pixels missing, per image
        return jax.vmap(lambda k: random_mask(k, hw, 1.0 - value))(jax.random.split(key, b))[
            ..., None]
    sides = jnp.stack([half_mask(hw, s) for s in ("left", "right", "top", "bottom")])
    return sides[jax.random.randint(key, (b,), 0, 4)][..., None]


class Degradation(NamedTuple):
    """A parsed degradation spec (module table): ``Degradation.parse("blur:1.5+noise:0.1")``.

    Calling it, ``d(key, x0, noise=True)``, degrades a batch (B, H, W, C) at x0's resolution.
    ``noise=False`` skips the noise steps (the noiseless A(x0), e.g. for the consistency error
    ‖A(x̂) − y‖) and keeps every mask: the same key gives the same masks either way. ``key``
    may be None when no step draws (no noise, no random mask).

    >>> import jax, jax.numpy as jnp
    >>> d = Degradation.parse("sr:2+noise:0.1")
    >>> d.steps, d.sr_factor
    ((('sr', 2), ('noise', 0.1)), 2)
    >>> d(jax.random.key(0), jnp.zeros((2, 8, 8, 3))).shape
    (2, 8, 8, 3)
    """

    spec: str
    steps: tuple

    @classmethod
    def parse(cls, spec: str) -> Degradation:
        """`ValueError` naming the bad step and the grammar for anything else."""
        if not isinstance(spec, str) or not spec:
            raise ValueError(f"a degradation spec must be a non-empty string; {_HELP}; got "
                             f"{spec!r}")
        return cls(spec, tuple(_parse_step(p, spec) for p in spec.split("+")))

    @property
    def sr_factor(self) -> int:
        """The product of the ``sr:F`` factors (1 without one): an LQ that small is upsampled
        by nearest neighbour to the model's size."""
        return math.prod(v for k, v in self.steps if k == "sr")

    @property
    def masked(self) -> bool:
        """Whether a step removes pixels (inpainting, uncropping)."""
        return any(k in _MASKED for k, _ in self.steps)

    @staticmethod
    def fill_holes(key, x, mask, noise: bool = True):
        """Palette's masked condition: ``x`` where ``mask`` is 1, N(0, 1) noise (0 with
        ``noise=False``) where it is 0."""
        fill = jax.random.normal(key, x.shape, x.dtype) if noise else jnp.zeros_like(x)
        return mask * x + (1.0 - mask) * fill

    def __call__(self, key, x0, noise: bool = True):
        from ._color import Colorization
        from ._nonlinear import JPEGLike

        x = x0
        shape = tuple(x.shape[1:])
        for i, (kind, v) in enumerate(self.steps):
            if kind == "sr":
                x = _block_sr(x, v)
            elif kind == "blur":
                x = _gaussian_blur(x, v)
            elif kind == "gray":
                op = Colorization(shape)
                x = jax.vmap(lambda xi, op=op: op.A_pinv(op.A(xi)))(x)
            elif kind == "jpeg":
                x = jax.vmap(JPEGLike(shape, quality=int(v)).A)(x)
            elif kind in _MASKED:
                if key is None:
                    raise ValueError(f"{kind!r} draws a mask: pass a key (the same key gives "
                                     "the same masks with noise=False)")
                k_mask, k_fill = jax.random.split(jax.random.fold_in(key, 1000 + i))
                mask = _mask_of(kind, v, k_mask, shape, x.shape[0])
                x = self.fill_holes(k_fill, x, mask, noise)
            else:  # noise: the key chain advances with or without the noise itself
                key, sub = jax.random.split(key) if (noise or self.masked) else (key, None)
                if noise:
                    x = x + v * jax.random.normal(sub, x.shape, x.dtype)
        return x


def make_degradation(spec: str, noise: bool = True):
    """``degrade(key, x0) -> lq`` for a spec such as "sr:4", "blur:1.5" or "sr:4+noise:0.05"
    (:class:`Degradation`, module table); `ValueError` for a bad spec, at once.

    >>> import jax, jax.numpy as jnp
    >>> make_degradation("blur:1.5+noise:0.1")(jax.random.key(0), jnp.zeros((2, 8, 8, 3))).shape
    (2, 8, 8, 3)
    """
    d = Degradation.parse(spec)
    return lambda key, x0: d(key, x0, noise)
