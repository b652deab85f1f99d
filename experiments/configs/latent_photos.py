"""SRLDM-style latent diffusion (Rombach et al. 2022, Sec. 4.4), stage 2: 4x super-resolution
of 32x32 RGB crops of ``photos`` in the 8x8x4 latent space of a frozen f = 4 autoencoder.

Stage 1 (the autoencoder) is trained outside the trainer and saved as one ``.npz``::

    python -c "import jax; from jaxir import latent; from jaxir.models import AutoencoderConfig
    g, p = latent.train_autoencoder('photos', 32, 2000, key=jax.random.key(0),
                                    config=AutoencoderConfig(factor=4, latent_channels=4))
    imgs = latent.load_images('photos', 32, 512)
    latent.save_autoencoder('runs/ae_photos.npz', AutoencoderConfig(factor=4, latent_channels=4),
                            p, latent_scale=latent.latent_scale(g, p, imgs))"

Stage 2 (this config; the trainer copies the autoencoder into the workdir)::

    jaxir train --config latent_photos --workdir runs/latent \\
        --set 'loss.options={"autoencoder": "runs/ae_photos.npz"}'

The tiny U-Net runs on the scaled latents z = s·E(x) (s = 1/std, LDM's scale_factor) with the
LQ brought to the latent resolution concatenated (SRLDM's conditioning; with 4x SR and f = 4 it
is the 8x8 LR image itself); DDPM linear β, ε prediction. Restore with
`jaxir.restore.restore_learned` (DDIM, 50 steps, then the decoder)."""

from jaxir.models import unet_config
from jaxir.training import DataConfig, LossConfig, OptimConfig, SDEConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="latent_photos",
        model=unet_config("tiny", in_channels=4, out_channels=4, cond_channels=3, image_size=8),
        sde=SDEConfig(name="ddpm_linear", num_train_steps=1000),
        loss=LossConfig(kind="latent", prediction="eps", degradation="sr:4",
                        options={"autoencoder": "runs/ae_photos.npz"}),
        optim=OptimConfig(lr=1e-4, warmup_steps=100, ema_decay=0.999, grad_clip=1.0),
        data=DataConfig(source="photos", image_size=32, batch_size=16, random_flip=True),
        steps=2000,
        log_every=50,
        save_every=500,
        sample_every=0,
    )
