"""Latent diffusion, stage 1: an f = 4, 4-channel convolutional autoencoder (the SRLDM setting,
Rombach et al. 2022) on 32x32 RGB crops of ``photos``, trained on reconstruction alone (L1,
LDM's pixel term, plus a 1e-6 pull of the latents towards 0 in place of the KL term)::

    jaxir train --config autoencoder_photos --workdir runs/ae_photos

When the run reaches its last step it writes ``runs/ae_photos/autoencoder.npz`` (the params and
the latent scale 1/std(E(x)), LDM's scale_factor), which `latent_photos` (stage 2) reads. No EMA
(decay 0: the exported params are the trained ones, as LDM's autoencoder), Adam at 1e-3 with a
cosine decay, batch 32."""

from jaxir.models import AutoencoderConfig
from jaxir.training import DataConfig, LossConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="autoencoder_photos",
        model=AutoencoderConfig(in_channels=3, base_channels=32, factor=4, latent_channels=4),
        loss=LossConfig(kind="autoencoder", options={"loss": "l1", "latent_weight": 1e-6}),
        optim=OptimConfig(lr=1e-3, warmup_steps=0, end_lr_factor=0.1, ema_decay=0.0,
                          grad_clip=None),
        data=DataConfig(source="photos", image_size=32, batch_size=32, random_flip=True),
        steps=2000,
        log_every=50,
        save_every=500,
        sample_every=0,
    )
