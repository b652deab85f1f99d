"""Generative diffusion prior (GDP; Fei et al., CVPR 2023, Alg. 1 and 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from ..samplers import Samples
from ._driver import Method, Sampler, chain, correct, ddpm, denoise, sample

GUIDANCES = ("x0", "xt")

#: Official guidance scales ``s`` (``--img_guidance_scale`` of the GDP scripts, ImageNet 256).
GDP_SCALES = {
    "sr4": 2000.0,
    "deblur": 6000.0,
    "colorization": 6000.0,
    "inpainting": 4000.0,
    "low_light": 80000.0,
    "hdr": 80000.0,
}


def _residual_fn(op):
    """Single-example image-space residual ``r(z, y)`` compared by GDP's MSE.

    Same-shape operators (deblur, inpainting, low light): ``A(z) − y``. Others (SR,
    colorization) compare upsampled images, as the official ``H_pinv(H(x))`` vs the
    upsampled LR image: ``A⁺(A z − y)`` (nonlinear ones without ``A_pinv``: ``A(z) − y``).
    """
    if op.x_shape is not None and op.y_shape is not None and tuple(op.x_shape) != tuple(op.y_shape):
        if hasattr(op, "A_pinv"):
            return lambda z, y: op.A_pinv(op.A(z) - y)
    return lambda z, y: op.A(z) - y


def _mask_shape(x_shape):
    return (*x_shape[:-1], 1) if len(x_shape) >= 2 else tuple(x_shape)


def gdp_sample(key, model_fn, sde, op, y, sigma_y=None, shape=None, *, scale,
               guidance: str = "x0", learn_degradation: bool = False,
               optimizer: optax.GradientTransformation | None = None, clip_x0=True,
               **options) -> Samples:
    """GDP: DDPM whose posterior mean is pushed down the gradient of an image-space MSE.

    Fei et al. 2023, Alg. 1 (GDP-x_t) and Alg. 2 (GDP-x0), as the official code runs them:
    with ``μ`` the DDPM posterior mean of ``q(x_s | x_t, x̂_0)`` (x̂_0 clipped),

        x_s = μ − ∇_z [ s · mean_i ( r_i(z) / 2 )² ] + τ ε,

    where ``z = x̂_0`` (``guidance="x0"``, GDP-x0, the default of the paper's tables) or
    ``z = x_t`` (``guidance="xt"``; the official GDP-x_t applies the degradation to ``x_t``
    itself, not through the network), ``r`` is the image-space residual (``A(z) − y``, or
    ``A⁺(A z − y)`` when ``A`` changes the shape, i.e. the official ``H_pinv(H(x))`` against
    the upsampled LR image), the mean runs over the ``D`` entries of an example and ``/2``
    puts [-1, 1] images into the official [0, 1] units. The gradient is added to the mean
    without the variance factor (the official ``condition_mean``), so ``s`` scales a step of
    ``s/(2D) · Jᵀr`` per sampling step: the official values (:data:`GDP_SCALES`: 2000 for 4×
    SR, 6000 deblur and colorization, 4000 inpainting, 80000 low light / HDR) assume
    ``D = 256·256·3``; for other sizes keep ``s/D`` about the same. ``scale`` is required: a
    number or one of the task names in :data:`GDP_SCALES`.

    Unknown degradation (``learn_degradation=True``, the low-light / HDR setting): ``op`` is
    not used (may be None) and the model is ``(y+1)/2 ≈ f·(x+1)/2 + M`` with a scalar ``f``
    and a mask ``M`` (shape ``x_shape[:-1] + (1,)``: one value per pixel, shared by
    channels), one pair per example, initialised ``f ~ N(0, 1)/100``, ``M ~ U(0, 1)/10⁴``.
    Each sampling step makes ONE ``optimizer`` step on ``(f, M)`` for the same MSE
    (default ``optax.sgd(1.0)``: the official plain gradient step); the optimiser state is
    carried in the scan and the final ``(f, M)`` come back in ``extras``. The official
    quality terms (exposure, colour, TV) are off in its default; they are not included.
    ``y`` is treated as noiseless (``sigma_y`` unused). GDP is a guided sampler, not a
    posterior sampler: with the exact score it trades prior fit for data fit through ``s``.

    Defaults: all 1000 DDPM steps of a discrete SDE, β̃ variance, clipped x̂_0.

    Args:
        key: PRNG key.
        model_fn: ``model_fn(x, t, cond)`` on batches ``(B, *x_shape)``.
        sde: a VP-type :class:`~jaxir.sdes.LinearSDE`.
        op: an operator (``A``; ``A_pinv`` when shapes differ); None with ``learn_degradation``.
        y: ``op.y_shape`` (shared) or ``(B, *op.y_shape)``; with ``learn_degradation`` the
            observed image, ``x_shape`` or ``(B, *x_shape)``.
        sigma_y: unused.
        shape: ``(B, *x_shape)``, or give ``x_init``.
        scale: ``s`` (float) or a task name in :data:`GDP_SCALES`.
        guidance: ``"x0"`` or ``"xt"``.
        learn_degradation: learn ``(f, M)`` instead of using ``op``.
        optimizer: optax transformation for ``(f, M)`` (default ``optax.sgd(1.0)``).
        clip_x0: ``True``, ``(lo, hi)`` or ``False``.
        **options: :data:`~jaxir.inverse.OPTIONS` (``num_steps`` default: all steps).

    Returns:
        :class:`~jaxir.samplers.Samples`; ``extras = {"f": (B,), "M": (B, *mask)}`` when the
        degradation is learned, else None.

    Example (the setup of :mod:`jaxir.inverse`):
        >>> gdp_sample(key, model_fn, sde, op, y, 0.0, (2, 4), scale=0.1, num_steps=100,
        ...            clip_x0=False).x.shape
        (2, 4)
    """
    who = "gdp_sample"
    if guidance not in GUIDANCES:
        raise ValueError(f"{who}: guidance must be one of {GUIDANCES}, got {guidance!r}")
    if isinstance(scale, str):
        if scale not in GDP_SCALES:
            raise ValueError(f"{who}: scale must be a number or one of {sorted(GDP_SCALES)}, got {scale!r}")
        scale = GDP_SCALES[scale]
    if not learn_degradation and op is None:
        raise ValueError(f"{who}: op is required unless learn_degradation=True")
    opt = (optax.sgd(1.0) if optimizer is None else optimizer) if learn_degradation else None

    def build(p):
        if learn_degradation:
            def residual(z, y1, params):
                f, m = params
                return f * (z + 1.0) / 2.0 + m - (y1 + 1.0) / 2.0
        else:
            r_fn = _residual_fn(op)

            def residual(z, y1, params):
                del params
                return r_fn(z, y1) / 2.0

        def batch_mse(z, params):  # Σ_b mean_i (r_i/2)²: [0, 1] units, per-example gradients
            return jnp.sum(jax.vmap(lambda *a: jnp.mean(residual(*a) ** 2))(z, p.y, params))

        def init_state(k, x):  # f ~ N(0, 1)/100, M ~ U(0, 1)/10⁴, one pair per example
            kf, km = jax.random.split(k)
            f0 = jax.random.normal(kf, (p.shape[0],) + (1,) * len(p.shape[1:])) / 100.0
            params = (f0, jax.random.uniform(km, (p.shape[0], *_mask_shape(p.shape[1:]))) / 1e4)
            return params, opt.init(params)

        def pull(st):  # x_s = μ − ∇_z s·MSE + τ ε, and one optimiser step on (f, M)
            z = st.x0 if guidance == "x0" else st.x
            if opt is None:
                return st._replace(x_next=st.x_next - scale * jax.grad(batch_mse)(z, None))
            params, opt_state = st.state
            grad_z, grad_p = jax.grad(batch_mse, argnums=(0, 1))(z, params)
            updates, opt_state = opt.update(grad_p, opt_state, params)
            return st._replace(x_next=st.x_next - scale * grad_z,
                               state=(optax.apply_updates(params, updates), opt_state))

        def finish(x, state, k):
            return x, {"f": state[0][0].reshape(p.shape[0]), "M": state[0][1]}

        return Sampler(chain(denoise(p, clip_x0), ddpm(p), correct(pull)),
                       state=None if opt is None else init_state,
                       finish=None if opt is None else finish)

    return sample(Method(who, build, keys=("init", "state", "steps")), key, model_fn, sde,
                  None if learn_degradation else op, y, sigma_y, shape, **options)
