"""Conditioning by replacement (Song et al., ICLR 2021, Sec. 5 and App. I.2; "projection")."""

from __future__ import annotations

from ..samplers import Samples
from ._common import require_svd
from ._driver import Method, Sampler, chain, ddim, denoise, replace, sample


def projection_sample(key, model_fn, sde, op, y, sigma_y=None, shape=None, *, eta: float = 1.0,
                      clip_x0=True, **options) -> Samples:
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
        eta: DDIM η of the base step (1.0: ancestral).
        clip_x0: clip ``x̂_0`` to [-1, 1] (image default); ``False`` for non-image data.
        **options: :data:`~jaxir.inverse.OPTIONS` (``num_steps`` default: all steps of a
            discrete SDE, else 1000).

    Returns:
        :class:`~jaxir.samplers.Samples`.

    Example (the setup of :mod:`jaxir.inverse`):
        >>> out = projection_sample(key, model_fn, sde, op, y, 0.0, (8, 4), num_steps=100,
        ...                         clip_x0=False)
        >>> out.x[:, :2].tolist()[0]
        [0.5, -0.5]
    """
    require_svd(op, "projection_sample")

    def build(p):
        return Sampler(chain(denoise(p, clip_x0), ddim(p, eta), replace(p)))

    return sample(Method("projection_sample", build), key, model_fn, sde, op, y, sigma_y, shape,
                  **options)
