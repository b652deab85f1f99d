"""The non-diffusion baseline: the same tiny U-Net as the diffusion demos, trained as a plain
regressor LQ -> HQ with L1 (loss kind "regression"; t = 0, no condition channels) on 32x32 RGB
crops of ``photos``, LQ = 4x4 block average upsampled back. One network evaluation per image;
restore with `jaxir.restore.restore_learned` or ``jaxir sample --workdir W --lq LQ.png``."""

from jaxir.models import unet_config
from jaxir.training import DataConfig, LossConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="regression_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, image_size=32),
        loss=LossConfig(kind="regression", degradation="sr:4", options={"norm": "l1"}),
        optim=OptimConfig(lr=1e-4, warmup_steps=100, ema_decay=0.999, grad_clip=1.0),
        data=DataConfig(source="photos", image_size=32, batch_size=16, random_flip=True),
        steps=2000,
        log_every=50,
        save_every=500,
        sample_every=0,
    )
