"""Image conveniences: value ranges, and exact priors over images instead of flat vectors.

**Value ranges.** The library works on images in [-1, 1] (DESIGN.md); data and papers often
use [0, 1]. :func:`to_signed` / :func:`to_unit` map images. A *measurement* cannot be mapped
alone: with ``x' = 2x − 1`` the model ``y = A x + σ ε`` becomes ``y' = A x' + σ' ε`` with

    y' = 2 y − A(1),     σ' = 2 σ,

so :func:`measurement_to_signed` / :func:`measurement_to_unit` map ``y`` and ``σ_y`` together
(``A(1)``, the operator applied to an image of ones, is 1 for operators that preserve constants
— denoising, block-average SR, normalised blur, colorization — and the mask for inpainting;
give ``op`` for those, or ``op=None`` when ``A(1) = 1``). DDRM's official code doubles its
``--sigma_0`` for the same reason.

**Exact priors over images.** :class:`ImagePrior` wraps a :class:`jaxir.exact.Gaussian` or
:class:`~jaxir.exact.GaussianMixture` over ``d = H·W·C`` and an image shape, so its
``model_fn``, samples and exact posteriors take and give ``(B, H, W, C)`` arrays — no hand
reshaping between ``(B, d)`` and images — and its ``posterior`` takes a `jaxir.operators`
operator (a linear one: its dense matrix is built with ``jax.jacfwd`` of ``op.A``).

    >>> prior = ImagePrior(exact.Gaussian(jnp.zeros(64), cov), (8, 8, 1))   # doctest: +SKIP
    >>> out = ddrm_sample(key, prior.model_fn(sde), sde, op, y, 0.05, (16, 8, 8, 1))  # +SKIP
    >>> exact_mean = prior.posterior(op, 0.05, y).mean                 # (8, 8, 1)  # +SKIP
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["to_signed", "to_unit", "measurement_to_signed", "measurement_to_unit",
           "ImagePrior", "operator_matrix"]


def to_signed(x):
    """Images in [0, 1] → [-1, 1]: ``2x − 1``."""
    return 2.0 * jnp.asarray(x) - 1.0


def to_unit(x):
    """Images in [-1, 1] → [0, 1]: ``(x + 1) / 2``."""
    return (jnp.asarray(x) + 1.0) / 2.0


def _ones_image(op):
    return op.A(jnp.ones(op.x_shape, jnp.float32))


def measurement_to_signed(y, sigma_y, op=None):
    """``(y, σ_y)`` of ``y = A x + σ_y ε`` for x in [0, 1] → the same for ``x' = 2x − 1`` in
    [-1, 1]: ``(2y − A(1), 2σ_y)`` (``A(1) = 1`` when ``op`` is None). ``y`` is one measurement
    ``op.y_shape`` or a batch of them."""
    offset = 1.0 if op is None else _ones_image(op)
    return 2.0 * jnp.asarray(y) - offset, 2.0 * sigma_y


def measurement_to_unit(y, sigma_y, op=None):
    """Inverse of :func:`measurement_to_signed`: ``((y + A(1)) / 2, σ_y / 2)``."""
    offset = 1.0 if op is None else _ones_image(op)
    return (jnp.asarray(y) + offset) / 2.0, sigma_y / 2.0


def operator_matrix(op) -> jax.Array:
    """The dense ``(dim y, dim x)`` matrix of a *linear* operator, ``∂ vec(A(x)) / ∂ vec(x)``
    (``jax.jacfwd`` at 0; exact for linear operators, meaningless for nonlinear ones)."""
    d = math.prod(op.x_shape)
    return jax.jacfwd(lambda v: jnp.ravel(op.A(v.reshape(op.x_shape))))(jnp.zeros(d, jnp.float32))


class ImagePrior(eqx.Module):
    """An exact prior over flat vectors (``prior.dim = H·W·C``) seen as images of ``shape``.

    Attributes:
      prior: a :class:`jaxir.exact.Gaussian` or :class:`jaxir.exact.GaussianMixture`.
      shape: ``(H, W, C)``.
    """

    prior: eqx.Module
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, prior, shape):
        shape = tuple(int(s) for s in shape)
        if math.prod(shape) != int(prior.dim):
            raise ValueError(f"shape {shape} has {math.prod(shape)} entries; the prior's "
                             f"dimension is {prior.dim}")
        self.prior = prior
        self.shape = shape

    def _flat(self, x):
        x = jnp.asarray(x)
        if x.shape[-len(self.shape):] != self.shape:
            raise ValueError(f"expected images (..., {', '.join(map(str, self.shape))}), got "
                             f"shape {x.shape}")
        return x.reshape(*x.shape[:-len(self.shape)], -1)

    def _image(self, v):
        return v.reshape(*v.shape[:-1], *self.shape)

    @property
    def mean(self):
        """The prior mean as an image ``(H, W, C)`` (a mixture's overall mean)."""
        p = self.prior
        m = p.mean if hasattr(p, "mean") else jnp.einsum("k,kd->d", p.weights, p.means, precision="highest")
        return self._image(m)

    def sample(self, key, n: int):
        """``n`` exact samples ``(n, H, W, C)``."""
        return self._image(self.prior.sample(key, n))

    def log_prob(self, x):
        """``log p(x)`` of images ``(..., H, W, C)``."""
        return self.prior.log_prob(self._flat(x))

    def model_fn(self, sde, prediction: str = "eps"):
        """The exact ``model_fn(x, t, cond)`` on images ``(B, H, W, C)`` (see
        :meth:`jaxir.exact.Gaussian.model_fn`)."""
        flat = self.prior.model_fn(sde, prediction)

        def model_fn(x, t, cond=None):
            return self._image(flat(self._flat(x), t, cond))

        return model_fn

    def posterior(self, op, sigma_y, y) -> ImagePrior:
        """The exact posterior of ``x`` given ``y = A(x) + σ_y ε`` for a linear operator ``op``
        with ``op.x_shape == shape`` (``y``: ``op.y_shape``), as an `ImagePrior`."""
        if tuple(op.x_shape) != self.shape:
            raise ValueError(f"op.x_shape {tuple(op.x_shape)} differs from the prior's image "
                             f"shape {self.shape}")
        y = jnp.asarray(y)
        if tuple(y.shape) != tuple(op.y_shape):
            raise ValueError(f"y must have shape {tuple(op.y_shape)}, got {y.shape}")
        A = operator_matrix(op)
        return ImagePrior(self.prior.posterior(A, sigma_y, jnp.ravel(y)), self.shape)
