"""Latent diffusion for restoration (SRLDM; Rombach et al. 2022, Sec. 4.4): a conditional
ε-network on the latents of a frozen, pre-trained autoencoder (`jaxir.latent`), the LQ at the
latent resolution concatenated (loss `latent_loss`, re-exported as `jaxir.latent.latent_loss`);
sampled by DDIM in latent space, then decoded. Stage 1 is loss kind "autoencoder"; its ``autoencoder.npz`` is copied
into the stage-2 workdir, so restoring needs only that workdir."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import jax

from ... import latent as _latent
from .._losses import _x0, denoising_loss
from .._registry import Family, FamilyOptions, register_family
from ._pieces import degrade_fn, lq_of
from .conditional import denoising_options


@dataclasses.dataclass(frozen=True)
class LatentOptions(FamilyOptions):
    """``autoencoder``: the stage-1 autoencoder, a `jaxir.latent.save_autoencoder` ``.npz`` or
    the workdir of an autoencoder run (its ``autoencoder.npz``); required."""

    autoencoder: str | None = None


def _validate(config, o: LatentOptions) -> None:
    if config.loss.degradation is None:
        raise ValueError("loss.kind='latent' needs loss.degradation (e.g. 'sr:4')")
    if not o.autoencoder:
        raise ValueError("loss.kind='latent' needs loss.options['autoencoder']: the .npz of a "
                         "trained autoencoder (stage 1: jaxir.latent.train_autoencoder + "
                         "save_autoencoder, or a workdir of loss kind 'autoencoder')")
    from ...operators import Degradation

    Degradation.parse(config.loss.degradation)
    if config.model.cond_channels < 1:
        raise ValueError("loss.kind='latent' needs model.cond_channels = the image channels "
                         "(the LQ at latent resolution is concatenated)")
    if config.sample_every:
        raise ValueError("sample_every > 0 is not supported for loss.kind='latent'; set it to 0 "
                         "and restore with jaxir.restore.restore_learned")


def _check_files(config, o: LatentOptions) -> None:
    """The autoencoder file exists and fits the latent U-Net."""
    try:
        path = _latent.resolve_autoencoder(o.autoencoder)
    except FileNotFoundError as e:
        raise ValueError(f"loss.options['autoencoder']: {e}") from None
    ae = _latent.load_autoencoder(path).config
    m = config.model
    if (m.in_channels, m.out_channels, m.cond_channels) != (ae.latent_channels,
                                                             ae.latent_channels, ae.in_channels):
        raise ValueError(f"a latent U-Net for this autoencoder needs (in_channels, out_channels, "
                         f"cond_channels) = ({ae.latent_channels}, {ae.latent_channels}, "
                         f"{ae.in_channels}), got ({m.in_channels}, {m.out_channels}, "
                         f"{m.cond_channels})")


def _prepare_workdir(config, o: LatentOptions, workdir: Path) -> None:
    """Copy the autoencoder into the workdir: restoring then needs only the workdir."""
    src = _latent.resolve_autoencoder(o.autoencoder)
    dst = Path(workdir) / _latent.AUTOENCODER_FILE
    if src.resolve() != dst.resolve():
        shutil.copyfile(src, dst)


def _load(workdir, config, o: LatentOptions):
    """The codec of the workdir's copy of the autoencoder (else of ``options.autoencoder``)."""
    path = Path(workdir) / _latent.AUTOENCODER_FILE  # the trainer's copy
    if not path.is_file():
        try:
            path = _latent.resolve_autoencoder(o.autoencoder)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"the autoencoder of {str(workdir)!r} is missing (no "
                                    f"{_latent.AUTOENCODER_FILE} in the workdir; {e})") from None
    return _latent.load_autoencoder(path).codec()


def latent_loss(codec: _latent.LatentCodec, sde, *, degrade_fn: Callable | None = None,
                cond_key: str = "lq", **options) -> Callable:
    """SRLDM's loss: `jaxir.training.denoising_loss` on ``z_0 = encode(x_0)`` with the LQ at the
    latent resolution (`jaxir.latent.to_latent_resolution`) as the image condition.

    ``batch``: ``{"image": x_0 (B, H, W, C), cond_key?: LQ}``; without the LQ entry it is
    ``degrade_fn(key, x_0)``. ``options`` (``prediction``, ``weighting``, ``cond_drop_prob``,
    ...) go to `denoising_loss`. The encoder is frozen (``stop_gradient``). Returns
    ``loss_fn(model_fn, batch, key) -> (loss, aux)``; ``model_fn`` acts on latents with
    ``cond_channels`` = the image channels.
    """
    inner = denoising_loss(sde, image_cond_key="lq", **options)

    def loss_fn(model_fn, batch, key):
        x0 = _x0(batch)
        k_lq, k_loss = jax.random.split(key)
        lq = lq_of(batch, x0, k_lq, cond_key, degrade_fn, same_shape=False)
        z0 = jax.lax.stop_gradient(codec.encode(x0))
        c = _latent.to_latent_resolution(lq, z0.shape[1:3])
        return inner(model_fn, {"image": z0, "lq": c}, k_loss)

    return loss_fn


def _loss(config, o: LatentOptions, sde):
    codec = _latent.load_autoencoder(o.autoencoder).codec()
    return latent_loss(codec, sde, degrade_fn=degrade_fn(config), **denoising_options(config))


def _sample(model, lq, key, steps, o, known):
    if model.codec is None:
        raise ValueError("a latent model needs its autoencoder: pass the workdir or "
                         "load_learned(workdir), not load_model_fn's triple")
    return _latent.latent_restore(key, model.model_fn, model.codec, model.sde, lq,
                                  num_steps=steps, sampler="ddim",
                                  prediction=model.config.loss.prediction)


register_family(Family(
    name="latent", options=LatentOptions, loss=_loss, sample=_sample, default_steps=50,
    uses_sde=True, validate=_validate, check_files=_check_files,
    prepare_workdir=_prepare_workdir, load=_load,
    image_channels=lambda config: int(config.model.cond_channels)))
