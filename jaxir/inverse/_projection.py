"""Conditioning by replacement (Song et al., ICLR 2021, Sec. 5 and App. I.2; "projection")."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import predictions
from ..samplers import Samples, ddim_step, scan_steps, time_grid
from ._common import (
    batch_y,
    check_x_shape,
    default_steps,
    denoise_clipped,
    replace_observed,
    require_svd,
    spectral_y,
)


def projection_sample(
    key,
    model_fn,
    sde,
    op,
    y,
    sigma_y=None,
    shape=None,
    *,
    prediction: str = "eps",
    num_steps: int | None = None,
    eta: float = 1.0,
    spacing: str | None = None,
    clip_x0=True,
    cond=None,
    x_init=None,
    save_every: int | None = None,
) -> Samples:
    """Reverse diffusion whose observed spectral part is replaced by the noised measurement.

    Score-SDE's inpainting / colorization sampler (Song et al. 2021, App. I.2), written for
    any linear operator with an SVD ``A = U diag(s) Vᵀ``: after every reverse step
    ``x_t → x'_s`` (DDIM with ``eta``; ``eta = 1`` is the ancestral DDPM step) the coefficients
    of ``Vᵀ x'_s`` that ``y`` observes (``s_i > 0``) are replaced by a draw from the forward
    marginal of the measurement,

        (Vᵀ x_s)_i = α_s (Uᵀy)_i / s_i + σ_s ε_i          (s_i > 0),

    and the rest are kept. For :class:`~jaxir.operators.Inpainting` this is the pixel blend
    ``m ⊙ (α_s y + σ_s ε) + (1 − m) ⊙ x'_s``; for :class:`~jaxir.operators.Colorization` it is
    the replacement of the channel mean in the decoupled (orthogonal) colour basis, as the
    original. The last step (``s = 0``) sets ``A x = y`` exactly.

    Differences from the original code, on purpose: the measurement is noised to the level
    ``s`` the step arrives at (the original noises it to the level of the step's start,
    an off-by-one that vanishes with many steps), and the base step is DDPM/DDIM rather than
    the reverse-diffusion + Langevin predictor-corrector pair. ``y`` is treated as noiseless:
    ``sigma_y`` is unused, as in the original. This sampler is *approximate*: even with the
    exact score it under-conditions the unobserved part at intermediate noise levels
    (RePaint's resampling reduces that bias, see :func:`repaint_sample`).

    Args:
        key: PRNG key.
        model_fn: ``model_fn(x, t, cond)`` on batches ``(B, *op.x_shape)``.
        sde: a :class:`~jaxir.sdes.LinearSDE`; :class:`~jaxir.sdes.DiscreteVPSDE` gives the
            DDPM chain.
        op: a linear operator with ``has_svd`` (e.g. ``Inpainting``, ``Colorization``,
            ``SuperResolution``, ``DenseMatrix``).
        y: ``op.y_shape`` (shared by the batch) or ``(B, *op.y_shape)``.
        sigma_y: unused (``y`` is taken as noiseless).
        shape: ``(B, *op.x_shape)``, or give ``x_init``.
        prediction, num_steps, spacing, cond: as :func:`~jaxir.samplers.ddpm_sample`
            (default: all steps of a discrete SDE, else 1000).
        eta: DDIM η of the base step (1.0: ancestral).
        clip_x0: clip ``x̂_0`` to [-1, 1] (image default); ``False`` for non-image data.

    Returns:
        :class:`~jaxir.samplers.Samples`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxir import exact, operators, schedules, sdes
        >>> sde = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
        >>> prior = exact.Gaussian(jnp.zeros(4), jnp.eye(4))
        >>> op = operators.Inpainting(jnp.array([1.0, 1.0, 0.0, 0.0]))
        >>> out = projection_sample(jax.random.key(0), prior.model_fn(sde), sde, op,
        ...                         jnp.array([0.5, -0.5, 0.0, 0.0]), 0.0, (8, 4),
        ...                         num_steps=100, clip_x0=False)
        >>> out.x[:, :2].tolist()[0]
        [0.5, -0.5]
    """
    del sigma_y
    who = "projection_sample"
    require_svd(op, who)
    shape = check_x_shape(op, shape, x_init, who)
    y_b = batch_y(op, y, shape[0], who)
    _, s_all, ybar = spectral_y(op, y_b)
    denoise = predictions.denoiser_from_model(model_fn, sde, prediction)
    ts, ts_next = time_grid(sde, default_steps(sde, num_steps), spacing)
    k_init, k_steps = jax.random.split(key)
    x = sde.prior_sample(k_init, shape) if x_init is None else jnp.asarray(x_init)

    def step(carry, inp):
        (x,) = carry
        t, s, k = inp
        k_step, k_known = jax.random.split(k)
        x0, eps = denoise_clipped(denoise, sde, x, t, cond, clip_x0)
        x = ddim_step(sde, k_step, x, t, s, x0, eps, eta)
        a_s, sig_s = sde.marginal_coeffs(s)
        x = replace_observed(op, k_known, x, ybar, s_all, a_s, sig_s, sde.marginal_offset(s, x))
        return (x,)

    xs = (jnp.asarray(ts, jnp.float32), jnp.asarray(ts_next, jnp.float32),
          jax.random.split(k_steps, len(ts)))
    (x,), traj = scan_steps(step, (x,), xs, save_every=save_every)
    return Samples(x, traj, len(ts), jnp.all(jnp.isfinite(x)))
