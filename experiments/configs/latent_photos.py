"""SRLDM-style latent diffusion (Rombach et al. 2022, Sec. 4.4), stage 2: 4x super-resolution
of 32x32 RGB crops of ``photos`` in the 8x8x4 latent space of a frozen f = 4 autoencoder.

Stage 1, the autoencoder (`autoencoder_photos`), then stage 2 (this config; it reads the
autoencoder from ``loss.options["autoencoder"]``, a stage-1 workdir or its ``autoencoder.npz``,
and the trainer copies it into the stage-2 workdir)::

    jaxir train --config autoencoder_photos --workdir runs/ae_photos
    jaxir train --config latent_photos --workdir runs/latent

The tiny U-Net runs on the scaled latents z = s·E(x) (s = 1/std, LDM's scale_factor) with the
LQ brought to the latent resolution concatenated (SRLDM's conditioning; with 4x SR and f = 4 it
is the 8x8 LR image itself); DDPM linear β, ε prediction. Restore with
`jaxir.restore.restore_learned` (DDIM, 50 steps, then the decoder)."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, SDEConfig, TrainConfig
from jaxir.training.families import LatentOptions


def get_config() -> TrainConfig:
    return photos32_config(
        "latent_photos",
        model=unet_config("tiny", in_channels=4, out_channels=4, cond_channels=3, image_size=8),
        sde=SDEConfig(name="ddpm_linear", num_train_steps=1000),
        loss=LossConfig(kind="latent", prediction="eps", degradation="sr:4",
                        options=LatentOptions(autoencoder="runs/ae_photos")),
    )
