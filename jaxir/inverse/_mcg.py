"""Manifold constrained gradients (MCG; Chung et al., NeurIPS 2022, Eq. 14–16)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..samplers import Samples
from ._common import require_svd, safe_norm
from ._driver import Method, Sampler, chain, ddpm, denoise, guide, replace, sample

NORMS = ("l2", "squared")


def mcg_sample(key, model_fn, sde, op, y, sigma_y=None, shape=None, *, scale: float = 1.0,
               norm: str = "l2", weight_fn=None, clip_x0=True, **options) -> Samples:
    """MCG: a manifold-constrained gradient step, then projection onto the noisy measurement.

    Chung et al. 2022, Eq. 14–16, per step ``t → s``::

        x'_s  = ancestral step from x_t with x̂_0(x_t)                          (Eq. 14)
        x''_s = x'_s − α ∇_{x_t} ‖W (y − A x̂_0(x_t))‖                          (Eq. 15)
        x_s   = observed part of x''_s replaced by α_s y + σ_s ε  (A x = y_s)   (Eq. 16)

    The gradient goes through the network (one VJP, :func:`x0_and_vjp`) and is per example.
    ``norm="l2"`` differentiates the norm itself, as the official code
    (``torch.norm(...)`` then ``autograd.grad``; ``weight`` 1.0 for CT, 0.1 for
    colorization); ``norm="squared"`` is the paper's ``‖·‖²``. ``weight_fn`` is ``W``, a
    single-example map on y-space residuals (default identity; the official CT code uses
    ``A⁺``). The projection (Eq. 16) replaces the observed spectral coefficients as
    :func:`projection_sample` does, at the level ``s`` the step arrives at (the official code
    uses the level of the step's start); it needs an operator with an SVD and treats ``y``
    as noiseless (``sigma_y`` is unused). MCG is approximate: it is not an exact posterior
    sampler even with the exact score.

    Defaults: all 1000 DDPM steps of a discrete SDE, β̃ variance, ``scale = 1.0`` (the
    official default ``weight``), clipped x̂_0 for the ancestral step (the residual is taken
    on the unclipped x̂_0 so that its gradient is not cut by the clip).

    Args:
        key: PRNG key.
        model_fn: ``model_fn(x, t, cond)`` on batches ``(B, *op.x_shape)``.
        sde: a VP-type :class:`~jaxir.sdes.LinearSDE`.
        op: a linear operator with ``has_svd``.
        y: ``op.y_shape`` (shared) or ``(B, *op.y_shape)``.
        sigma_y: unused.
        shape: ``(B, *op.x_shape)``, or give ``x_init``.
        scale: the step ``α``.
        norm: ``"l2"`` (official code) or ``"squared"`` (paper).
        weight_fn: ``W`` on a single y-space residual, or None.
        clip_x0: ``True``, ``(lo, hi)`` or ``False``.
        **options: :data:`~jaxir.inverse.OPTIONS` (``num_steps`` default: all steps).

    Returns:
        :class:`~jaxir.samplers.Samples` (``nfe`` forward passes, each with one VJP).

    Example (the setup of :mod:`jaxir.inverse`):
        >>> out = mcg_sample(key, model_fn, sde, op, y, 0.0, (8, 4), num_steps=50, scale=0.5,
        ...                  clip_x0=False)
        >>> bool(jnp.all(out.x[:, :2] == y[:2]))  # the last projection sets A x = y
        True
    """
    if norm not in NORMS:
        raise ValueError(f"mcg_sample: norm must be one of {NORMS}, got {norm!r}")
    require_svd(op, "mcg_sample")
    W = (lambda r: r) if weight_fn is None else jax.vmap(weight_fn)

    def build(p):
        A = p.batched("A")

        def loss(x0):  # sum over the batch of per-example losses -> per-example gradients
            r = W(p.y - A(x0))
            return jnp.sum(safe_norm(r)) if norm == "l2" else jnp.sum(r**2)

        pull = guide(lambda st: jax.grad(loss)(st.denoised), -scale)  # Eq. 15
        return Sampler(chain(denoise(p, clip_x0, vjp=True), ddpm(p), pull, replace(p)))

    return sample(Method("mcg_sample", build), key, model_fn, sde, op, y, sigma_y, shape,
                  **options)
