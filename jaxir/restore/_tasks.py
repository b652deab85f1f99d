"""The restoration tasks of ``jaxir restore``: each names a degradation ``y = A(x) + σ_y n``.

Images are ``(H, W, C)`` float32 in [-1, 1] (DESIGN.md), so every σ_y below is a standard
deviation in [-1, 1] units: twice the value on [0, 1] images. (DDRM's official code doubles its
``--sigma_0`` for the same reason; :func:`jaxir.inverse.ddrm_sample` takes σ_y in the data's own
units, so the numbers here are passed to every sampler unchanged.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

# jax and the operators are imported where they are used, so that the task table (names,
# descriptions, factors) loads without jax: `jaxir --help` lists it.

#: Gaussian blur of the ``deblur`` task: a 9-tap kernel with σ = 1.5 px (DPS blurs 256 px
#: images with 61 taps, σ = 3; the restoration patches here are 64 px).
BLUR_SIZE, BLUR_SIGMA = 9, 1.5
#: Fraction of pixels observed by the ``inpaint`` task's random mask.
INPAINT_KEEP = 0.3


class Task(NamedTuple):
    """A degradation: how to build its operator on an ``(H, W, C)`` image and its noise.

    Attributes:
      name: registry key.
      description: one line for tables and ``--help``.
      sigma_y: measurement noise std in [-1, 1] units.
      factor: spatial down-scaling of ``y`` (4 for ``sr4``, else 1): ``y`` is
        ``(H/factor, W/factor, y_channels)``.
      y_channels: channels of ``y`` (1 for ``colorize``), None = same as ``x``.
      make_operator: ``(x_shape, mask) -> operator`` (``mask`` ``(H, W, 1)`` or None).
      make_mask: ``(key, (H, W)) -> (H, W, 1)`` observation mask, or None if the task has none.
      gdp_scale: key of :data:`jaxir.inverse.GDP_SCALES`, or None (GDP unsupported).
      dps_zeta: the official DPS step size ζ for this task.
    """

    name: str
    description: str
    sigma_y: float
    factor: int
    y_channels: int | None
    make_operator: Callable
    make_mask: Callable | None = None
    gdp_scale: str | None = None
    dps_zeta: float = 1.0

    def y_shape(self, x_shape) -> tuple[int, int, int]:
        h, w, c = x_shape
        return (h // self.factor, w // self.factor, self.y_channels or c)

    def x_shape(self, y_shape, channels: int = 3) -> tuple[int, int, int]:
        h, w, _ = y_shape
        return (h * self.factor, w * self.factor, channels)

    def forward(self, x, mask=None):
        """The noiseless measurement ``A(x)`` of one full image (untruncated blur)."""
        op = self.make_operator(tuple(x.shape), mask)
        return op.A_full(x) if hasattr(op, "A_full") else op.A(x)


def _identity_op(shape, mask=None):
    from .. import operators

    return operators.Identity(shape)


def _sr4_op(shape, mask=None):
    from .. import operators

    return operators.SuperResolution(shape, 4)


def _colorize_op(shape, mask=None):
    from .. import operators

    return operators.Colorization(shape)


def _blur_op(shape, mask=None):
    from .. import operators

    # "edge" boundary: a patch's blur then matches the crop of the blurred full image except
    # for the few pixels next to the patch border, which the blending window down-weights.
    return operators.Blur(shape, operators.gaussian_kernel(BLUR_SIZE, BLUR_SIGMA), boundary="edge")


def _random_mask(key, hw):
    from .. import operators

    return operators.random_mask(key, tuple(hw), INPAINT_KEEP)[..., None]


def _box_mask(key, hw):
    from .. import operators

    del key
    return operators.box_mask(tuple(hw))[..., None]


def _inpaint_op(shape, mask):
    import jax.numpy as jnp

    from .. import operators

    if mask is None:
        raise ValueError("inpainting needs a mask (H, W, 1): 1 = observed, 0 = missing")
    return operators.Inpainting(jnp.asarray(mask, jnp.float32).reshape(*shape[:2], 1), shape)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("denoise", "additive Gaussian noise, σ = 25/255", 2 * 25 / 255, 1, None,
             _identity_op),
        Task("sr4", "4× super-resolution, 4×4 block average (DDRM's 'SR by averaging'), "
             "σ_y = 0.05", 0.05, 4, None,
             _sr4_op,
             gdp_scale="sr4", dps_zeta=0.3),
        Task("deblur", f"Gaussian blur ({BLUR_SIZE} taps, σ = {BLUR_SIGMA} px), σ_y = 0.05", 0.05,
             1, None, _blur_op, gdp_scale="deblur", dps_zeta=0.3),
        Task("inpaint", f"random pixels, {100 - round(100 * INPAINT_KEEP)}% missing, σ_y = 0.05",
             0.05, 1, None, _inpaint_op, _random_mask, gdp_scale="inpainting", dps_zeta=0.5),
        Task("inpaint_box", "centred box (half of each side) missing, σ_y = 0.05", 0.05, 1,
             None, _inpaint_op, _box_mask, gdp_scale="inpainting", dps_zeta=0.5),
        Task("colorize", "grayscale (channel average) to colour, σ_y = 0.05", 0.05, 1, 1,
             _colorize_op,
             gdp_scale="colorization"),
    )
}


def get_task(name: str) -> Task:
    """The `Task` called ``name``; ``ValueError`` listing the known tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


def degrade_images(key, task: Task, x, mask=None):
    """``y = A(x) + σ_y ε`` for a batch ``x`` ``(N, H, W, C)``; returns ``(y, mask)``.

    ``mask`` (``(N, H, W, 1)``) is drawn from ``key`` for tasks that have one unless given.
    """
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(x, jnp.float32)
    n, h, w, _ = x.shape
    k_mask, k_noise = jax.random.split(key)
    if task.make_mask is not None and mask is None:
        mask = jax.vmap(lambda k: task.make_mask(k, (h, w)))(jax.random.split(k_mask, n))
    if mask is None:
        clean = jnp.stack([task.forward(xi) for xi in x])
    else:
        clean = jnp.stack([task.forward(xi, mi) for xi, mi in zip(x, mask)])
    y = clean + task.sigma_y * jax.random.normal(k_noise, clean.shape, clean.dtype)
    return y, mask
