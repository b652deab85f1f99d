"""CPU demo on natural images: the `small` U-Net on 32x32 RGB crops of the offline photographs
(scikit-image / scikit-learn), random flips, v-prediction with Min-SNR-5 weighting."""

from jaxir.models import unet_config
from jaxir.training import DataConfig, LossConfig, OptimConfig, SDEConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="photos_small",
        model=unet_config("small"),
        sde=SDEConfig(name="vp"),
        loss=LossConfig(kind="denoising", prediction="v", weighting="min_snr"),
        optim=OptimConfig(lr=5e-4, warmup_steps=200, ema_decay=0.999, grad_clip=1.0),
        data=DataConfig(source="photos", image_size=32, batch_size=32, random_flip=True),
        steps=5000,
        log_every=50,
        save_every=500,
        sample_every=1000,
        num_samples=36,
    )
