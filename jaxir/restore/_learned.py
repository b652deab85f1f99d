"""Restore with a *trained* restoration model: one entry point for every learned family.

A workdir of ``jaxir train`` records its loss kind; :func:`restore_learned` looks the kind up
in the family registry (`jaxir.training.families`, whose table lists each family's sampler
and default steps) and runs that family's sampler with its official defaults and the options
the model was trained with (``config.loss.options``, the family's typed record), so a model
is always sampled with the process it learned.

``steps`` overrides the default where the sampler has a free step count; for the fixed chains
(IR-SDE, GOUB, ResShift: the step is the network's time input) any other value is a
`ValueError`. The LQ is the degraded image at the output size, as in training (for "sr:F"
the block-averaged image upsampled by nearest neighbour; :func:`prepare_lq` does that from
the small image). A Palette inpainting / uncropping model also takes the ``mask`` of observed
pixels: its holes are refilled with N(0, 1) and the known pixels pasted after every step, as
in Palette's inference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["LearnedModel", "load_learned", "prepare_lq", "restore_learned"]


class LearnedModel(NamedTuple):
    """A trained restoration model: ``model_fn(x, t, cond)`` (EMA params by default), the
    `jaxir.sdes` object of ``config.sde``, the `TrainConfig`, and what the family loads beside
    the network (``codec``: the latent family's `jaxir.latent.LatentCodec`)."""

    model_fn: Any
    sde: Any
    config: Any
    codec: Any = None

    @property
    def kind(self) -> str:
        return self.config.loss.kind

    @property
    def family(self):
        """The kind's `jaxir.training.families.Family` (`ValueError` if none)."""
        from ..training.families import get_family

        return get_family(self.kind)

    @property
    def image_size(self) -> int:
        """The training crop size (the size the model expects)."""
        d = self.config.data
        return int(d.random_crop or d.image_size or self.config.model.image_size)

    @property
    def channels(self) -> int:
        """Image channels (a latent U-Net's condition is the image)."""
        return int(self.family.image_channels(self.config))


def load_learned(workdir, ema: bool = True, step: int | None = None) -> LearnedModel:
    """A :class:`LearnedModel` from a training workdir (`jaxir.training.load_model_fn`, then the
    family's own files, e.g. the latent family's autoencoder).

    Raises `ValueError` if the workdir holds no learned-restoration model (an unconditional
    prior, a classifier), `FileNotFoundError` / `jaxir.training.CheckpointError` as
    `load_model_fn` does.
    """
    from ..training import FAMILIES, load_model_fn

    model_fn, sde, config = load_model_fn(workdir, ema=ema, step=step)
    kind = config.loss.kind
    family = FAMILIES.get(kind)
    if family is None:
        raise ValueError(f"{str(workdir)!r} holds a {kind!r} model, not a learned restoration "
                         f"model (one of {sorted(FAMILIES)}); restore with an "
                         "unconditional prior through jaxir restore / jaxir.inverse instead")
    extra = None
    if family.load is not None:
        extra = family.load(workdir, config, family.parse_options(config.loss.options))
    return LearnedModel(model_fn, sde, config, extra)


def _as_model(model) -> LearnedModel:
    if isinstance(model, LearnedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_learned(model)
    if isinstance(model, tuple) and len(model) == 3:  # load_model_fn's (model_fn, sde, config)
        m = LearnedModel(*model)
        if m.family.load is not None:
            raise ValueError(f"a {m.kind} model needs more than its network: pass the workdir "
                             "or load_learned(workdir), not load_model_fn's triple")
        return m
    raise ValueError("model must be a workdir path, a LearnedModel or load_model_fn's "
                     f"(model_fn, sde, config), got {type(model).__name__}")


def prepare_lq(lq, model: LearnedModel):
    """The LQ batch as the model wants it: (B, H, W, C) float32 in [-1, 1] at the output
    size. For an "sr:F" model an input F times smaller than the training size is upsampled by
    nearest neighbour (as the training LQ was). `ValueError` naming the expected shape for a
    wrong channel count or a size the network cannot take."""
    from ..operators import Degradation

    lq = jnp.asarray(lq, jnp.float32)
    if lq.ndim == 3:
        lq = lq[None]
    if lq.ndim != 4:
        raise ValueError(f"lq must have shape (B, H, W, C) or (H, W, C), got {lq.shape}")
    c = model.channels
    if lq.shape[-1] != c:
        raise ValueError(f"lq has {lq.shape[-1]} channel(s); this model takes {c}")
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
    """Restore the batch ``lq`` with a trained model, by its family's sampler.

    Args:
      model: a workdir path, a :class:`LearnedModel` (:func:`load_learned`; load once when
        restoring many batches), or `jaxir.training.load_model_fn`'s triple.
      lq: the degraded images (B, H, W, C) (or one (H, W, C)) in [-1, 1], at the output size
        (see :func:`prepare_lq`).
      key: `jax.random` key (the stochastic samplers' noise; unused by regression / flow
        without source noise / GOUB's Mean-ODE).
      steps: sampler steps (the family table of `jaxir.training.families`); None for the
        family's default.
      mask: for a family that takes one (Palette's inpainting / uncropping, kind
        "conditional"): the observed pixels (1 = observed, 0 = hole; (H, W), (H, W, 1) or
        (B, H, W, 1|C)). The holes of ``lq`` are refilled with N(0, 1) noise from ``key`` (the
        training condition, so whatever the file held there is ignored) and, as in Palette's
        inference, the known pixels of ``lq`` are pasted into the state after every step, so
        the output equals ``lq`` there. Other families refuse a mask.

    Returns a `jaxir.samplers.Samples` with ``x`` (B, H, W, C) (not clipped), ``nfe`` and
    ``finite``. Jit it with the model closed over: ``jax.jit(lambda y, k:
    restore_learned(m, y, k))``.

    >>> # restore_learned("runs/irsde", lq, jax.random.key(0)).x
    """
    from ..operators import Degradation

    m = _as_model(model)
    family = m.family
    lq = prepare_lq(lq, m)
    options = family.parse_options(m.config.loss.options)
    n_steps = family.steps(options, steps)
    known = None
    if mask is not None:
        if not family.masks:
            raise ValueError(f"mask= is for Palette-style conditional models (inpainting / "
                             f"uncropping); a {m.kind!r} model takes the degraded image only")
        mask = _palette_mask(mask, lq)
        key, k_fill = jax.random.split(key)
        lq = Degradation.fill_holes(k_fill, lq, mask, noise=True)
        known = (lq, mask)
    return family.sample(m, lq, key, n_steps, options, known)
