"""Restore with a *trained* restoration model: one entry point for every learned family.

A workdir of ``jaxir train`` records its loss kind; :func:`restore_learned` dispatches on it to
the family's sampler with that sampler's official defaults (REFERENCES.md) and the process
options the model was trained with (``config.loss.options``, the loss factory's defaults
otherwise), so a model is always sampled with the process it learned:

==============  =============================================  ===============================
kind            sampler (`jaxir.samplers` / `jaxir.latent`)     default steps → NFE
==============  =============================================  ===============================
conditional     ``ddpm_sample``, LQ concatenated, x̂0 clipped   100 respaced (SR3's inference)
irsde           ``irsde_sample`` (reverse SDE from μ + λε)      T (100) — the chain is fixed
goub            ``goub_sample`` (Mean-ODE)                      T (100) — the chain is fixed
i2sb            ``i2sb_sample`` (OT-ODE if trained so)          100
ddbm            ``ddbm_sample`` (Heun, churn 0.33)              40 → 119 NFE
flow            ``flow_sample`` (Euler)                         10
resshift        ``resshift_sample`` (x̂0 clipped)               T (15) — the chain is fixed
latent          ``latent_restore`` (DDIM η = 0, then decode)    50
regression      one forward pass ``model(LQ, 0)``               1
==============  =============================================  ===============================

``steps`` overrides the default where the sampler has a free step count; for the fixed chains
(IR-SDE, GOUB, ResShift: the step is the network's time input) any other value is a
`ValueError`. The LQ is the degraded image at the output size, as in training (for "sr:F"
the block-averaged image upsampled by nearest neighbour; :func:`prepare_lq` does that from
the small image). A Palette inpainting / uncropping model also takes the ``mask`` of observed
pixels: its holes are refilled with N(0, 1) and the known pixels pasted after every step, as
in Palette's inference.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["LearnedModel", "load_learned", "prepare_lq", "restore_learned"]

_FIXED_CHAINS = ("irsde", "goub", "resshift")
_DEFAULT_STEPS = {"conditional": 100, "i2sb": 100, "ddbm": 40, "flow": 10, "latent": 50}


class LearnedModel(NamedTuple):
    """A trained restoration model: ``model_fn(x, t, cond)`` (EMA params by default), the
    `jaxir.sdes` object of ``config.sde``, the `TrainConfig`, and for ``kind="latent"`` the
    autoencoder's `jaxir.latent.LatentCodec`."""

    model_fn: Any
    sde: Any
    config: Any
    codec: Any = None

    @property
    def kind(self) -> str:
        return self.config.loss.kind

    @property
    def image_size(self) -> int:
        """The training crop size (the size the model expects)."""
        d = self.config.data
        return int(d.random_crop or d.image_size or self.config.model.image_size)

    @property
    def channels(self) -> int:
        """Image channels (a latent U-Net's condition is the image)."""
        m = self.config.model
        return int(m.cond_channels if self.kind == "latent" else m.in_channels)


def load_learned(workdir, ema: bool = True, step: int | None = None) -> LearnedModel:
    """A :class:`LearnedModel` from a training workdir (`jaxir.training.load_model_fn`).

    Raises `ValueError` if the workdir holds no learned-restoration model (an unconditional
    prior, a classifier), `FileNotFoundError` / `jaxir.training.CheckpointError` as
    `load_model_fn` does.
    """
    from ..training import LEARNED_RESTORATION_KINDS, load_model_fn

    model_fn, sde, config = load_model_fn(workdir, ema=ema, step=step)
    kind = config.loss.kind
    if kind not in LEARNED_RESTORATION_KINDS:
        raise ValueError(f"{str(workdir)!r} holds a {kind!r} model, not a learned restoration "
                         f"model (one of {LEARNED_RESTORATION_KINDS}); restore with an "
                         "unconditional prior through jaxir restore / jaxir.inverse instead")
    codec = None
    if kind == "latent":
        from ..latent import AUTOENCODER_FILE, load_autoencoder, resolve_autoencoder

        path = Path(workdir) / AUTOENCODER_FILE  # the trainer's copy
        if not path.is_file():
            try:
                path = resolve_autoencoder(config.loss.options["autoencoder"])
            except FileNotFoundError as e:
                raise FileNotFoundError(f"the autoencoder of {str(workdir)!r} is missing (no "
                                        f"{AUTOENCODER_FILE} in the workdir; {e})") from None
        codec = load_autoencoder(path).codec()
    return LearnedModel(model_fn, sde, config, codec)


def _as_model(model) -> LearnedModel:
    if isinstance(model, LearnedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_learned(model)
    if isinstance(model, tuple) and len(model) == 3:  # load_model_fn's (model_fn, sde, config)
        if model[2].loss.kind == "latent":
            raise ValueError("a latent model needs its autoencoder: pass the workdir or "
                             "load_learned(workdir), not load_model_fn's triple")
        return LearnedModel(*model)
    raise ValueError("model must be a workdir path, a LearnedModel or load_model_fn's "
                     f"(model_fn, sde, config), got {type(model).__name__}")


def _options(kind: str, options: dict) -> dict:
    """The loss factory's keyword defaults updated with the config's options."""
    from ..training import LOSSES

    sig = inspect.signature(LOSSES[kind])
    out = {k: p.default for k, p in sig.parameters.items()
           if p.default is not inspect.Parameter.empty}
    out.update(options)
    return out


def prepare_lq(lq, model: LearnedModel):
    """The LQ batch as the model wants it: (B, H, W, C) float32 in [-1, 1] at the output
    size. For an "sr:F" model an input F times smaller than the training size is upsampled by
    nearest neighbour (as the training LQ was). `ValueError` naming the expected shape for a
    wrong channel count or a size the network cannot take."""
    lq = jnp.asarray(lq, jnp.float32)
    if lq.ndim == 3:
        lq = lq[None]
    if lq.ndim != 4:
        raise ValueError(f"lq must have shape (B, H, W, C) or (H, W, C), got {lq.shape}")
    c = model.channels
    if lq.shape[-1] != c:
        raise ValueError(f"lq has {lq.shape[-1]} channel(s); this model takes {c}")
    from ..operators import Degradation

    size = model.image_size
    spec = model.config.loss.degradation
    factor = Degradation.parse(spec).sr_factor if spec else 1
    h, w = lq.shape[1:3]
    if factor > 1 and (h, w) == (size // factor, size // factor):
        lq = jnp.repeat(jnp.repeat(lq, factor, axis=1), factor, axis=2)
        h, w = lq.shape[1:3]
    m = model.config.model
    mult = 2 ** (len(m.channel_mults) - 1) * (model.codec.factor if model.codec else 1)
    if h % mult or w % mult or (factor > 1 and (h % factor or w % factor)):
        need = max(mult, factor)
        small = f" or {size // factor}x{size // factor} (the LR image)" if factor > 1 else ""
        raise ValueError(f"lq is {h}x{w}; this model takes H and W divisible by {need} "
                         f"(trained on {size}x{size}{small})")
    return lq


def _palette_mask(mask, lq):
    """The (B, H, W, 1|C) float mask (1 = observed) of a Palette restoration, checked."""
    mask = jnp.asarray(mask, jnp.float32)
    if mask.ndim == 2:
        mask = mask[..., None]
    if mask.ndim == 3:
        mask = mask[None]
    if (mask.ndim != 4 or mask.shape[1:3] != lq.shape[1:3] or mask.shape[0] not in (1, lq.shape[0])
            or mask.shape[3] not in (1, lq.shape[3])):
        raise ValueError(f"mask must have shape (H, W), (H, W, 1) or (B, H, W, 1|C) matching the "
                         f"lq {lq.shape}, got {mask.shape}")
    return mask


def restore_learned(model, lq, key, steps: int | None = None, mask=None):
    """Restore the batch ``lq`` with a trained model, dispatching on its loss kind.

    Args:
      model: a workdir path, a :class:`LearnedModel` (:func:`load_learned`; load once when
        restoring many batches), or `jaxir.training.load_model_fn`'s triple.
      lq: the degraded images (B, H, W, C) (or one (H, W, C)) in [-1, 1], at the output size
        (see :func:`prepare_lq`).
      key: `jax.random` key (the stochastic samplers' noise; unused by regression / flow
        without source noise / GOUB's Mean-ODE).
      steps: sampler steps (module table); None for the default.
      mask: for a "conditional" model trained on Palette's inpainting / uncropping: the
        observed pixels (1 = observed, 0 = hole; (H, W), (H, W, 1) or (B, H, W, 1|C)). The
        holes of ``lq`` are refilled with N(0, 1) noise from ``key`` (the training condition,
        so whatever the file held there is ignored) and, as in Palette's inference, the known
        pixels of ``lq`` are pasted into the state after every step, so the output equals
        ``lq`` there. Other kinds refuse a mask.

    Returns a `jaxir.samplers.Samples` with ``x`` (B, H, W, C) (not clipped), ``nfe`` and
    ``finite``. Jit it with the model closed over: ``jax.jit(lambda y, k:
    restore_learned(m, y, k))``.

    >>> # restore_learned("runs/irsde", lq, jax.random.key(0)).x
    """
    from .. import bridges, samplers
    from ..samplers import Samples

    m = _as_model(model)
    kind = m.kind
    lq = prepare_lq(lq, m)
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive int or None, got {steps!r}")
    o = _options(kind, m.config.loss.options) if kind not in ("conditional", "latent") else {}
    if kind in _FIXED_CHAINS:
        n = int(o["T"])
        if steps is not None and steps != n:
            raise ValueError(f"a {kind} model runs its fixed {n}-step chain (the step is the "
                             f"network's time input); steps={steps} is not possible")
    n_steps = steps or _DEFAULT_STEPS.get(kind)
    f = m.model_fn
    known = None
    if mask is not None:
        if kind != "conditional":
            raise ValueError(f"mask= is for Palette-style conditional models (inpainting / "
                             f"uncropping); a {kind!r} model takes the degraded image only")
        from ..operators import Degradation  # the training condition's fill

        mask = _palette_mask(mask, lq)
        key, k_fill = jax.random.split(key)
        lq = Degradation.fill_holes(k_fill, lq, mask, noise=True)
        known = (lq, mask)

    if kind == "regression":
        x = f(lq, jnp.zeros((lq.shape[0],), jnp.float32), None)
        x = x + lq if o["residual"] else x
        return Samples(x, None, 1, jnp.all(jnp.isfinite(x)))
    if kind == "conditional":
        return samplers.ddpm_sample(key, f, m.sde, lq.shape, prediction=m.config.loss.prediction,
                                    num_steps=n_steps, clip_x0=True, cond=lq, known=known)
    if kind == "latent":
        from ..latent import latent_restore

        return latent_restore(key, f, m.codec, m.sde, lq, num_steps=n_steps, sampler="ddim",
                              prediction=m.config.loss.prediction)
    if kind == "irsde":
        from ..sdes import MeanRevertingSDE

        sde = MeanRevertingSDE(lq, o["lam"], T=o["T"], eps=o["eps"])
        return samplers.irsde_sample(key, f, sde, prediction=o["prediction"],
                                     input_mode=o["input_mode"])
    if kind == "goub":
        b = bridges.goub(lq, o["lam"], o["T"], o["eps"])
        return samplers.goub_sample(key, f, b, prediction=o["prediction"],
                                    input_mode=o["input_mode"], t_pin=o["t_pin"])
    if kind == "i2sb":
        b = bridges.i2sb(lq, o["beta_max"], o["num_steps"])
        return samplers.i2sb_sample(key, f, b, num_steps=n_steps, ot_ode=o["ot_ode"],
                                    cond=lq if o["condition"] else None)
    if kind == "ddbm":
        if o["bridge"] not in ("vp", "ve"):
            raise ValueError(f"unknown DDBM bridge {o['bridge']!r}")
        b = (bridges.ddbm_vp(lq, o["beta_d"], o["beta_min"]) if o["bridge"] == "vp"
             else bridges.ddbm_ve(lq, o["sigma_max"], o["sigma_min"]))
        den = samplers.ddbm_denoiser(f, b, sigma_data=o["sigma_data"],
                                     sigma_data_end=o["sigma_data_end"], cov_xy=o["cov_xy"])
        return samplers.ddbm_sample(key, den, b, num_steps=n_steps)
    if kind == "flow":
        return samplers.flow_sample(key, f, lq, num_steps=n_steps,
                                    source_noise=o["source_noise"],
                                    cond=lq if o["condition"] else None)
    if kind == "resshift":
        process = samplers.resshift_process(o["T"], o["kappa"],
                                            min_noise_level=o["min_noise_level"],
                                            sqrt_eta_end=o["sqrt_eta_end"], power=o["power"],
                                            input_norm=o["input_norm"])
        return samplers.resshift_sample(key, f, process, lq, condition=o["condition"],
                                        clip_x0=True)
    raise ValueError(f"no learned restoration for loss kind {kind!r}")
