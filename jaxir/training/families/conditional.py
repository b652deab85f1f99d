"""Conditional direct diffusion: SR3 (Saharia et al. 2021) and Palette (Saharia et al. 2022).
The LQ image is concatenated to x_t; the process is the config's SDE (``config.sde``), the
loss ε/x0/v matching, the sampler DDPM ancestral with x̂0 clipped (SR3's 100-step inference).
Palette's inpainting / uncropping models also take a mask of observed pixels at inference."""

from __future__ import annotations

import dataclasses

from ._pieces import degrade_fn
from .._registry import Family, FamilyOptions, register_family


@dataclasses.dataclass(frozen=True)
class ConditionalOptions(FamilyOptions):
    """No options of its own: the prediction, weighting, time sampling and condition dropout
    are ``config.loss``'s fields and the process is ``config.sde``."""


def denoising_options(config) -> dict:
    """The `jaxir.training.denoising_loss` keywords of ``config.loss`` (and the label of a
    class-conditional model)."""
    lc, model = config.loss, config.model
    out = dict(prediction=lc.prediction, weighting=lc.weighting, time_sampling=lc.time_sampling,
               min_snr_gamma=lc.min_snr_gamma, sigma_data=lc.sigma_data,
               cond_drop_prob=lc.cond_drop_prob)
    if getattr(model, "num_classes", None) is not None:
        out.update(label_key="label", null_label=model.num_classes)
    return out


def _loss(config, o, sde):
    from .._losses import conditional_loss

    return conditional_loss(sde, degrade_fn=degrade_fn(config), **denoising_options(config))


def _sample(model, lq, key, steps, o, known):
    from ...samplers import ddpm_sample

    return ddpm_sample(key, model.model_fn, model.sde, lq.shape,
                       prediction=model.config.loss.prediction, num_steps=steps, clip_x0=True,
                       cond=lq, known=known)


register_family(Family(
    name="conditional", options=ConditionalOptions, loss=_loss, sample=_sample,
    default_steps=100, uses_sde=True, masks=True, preview=True))
