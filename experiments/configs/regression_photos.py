"""The non-diffusion baseline: the same tiny U-Net as the diffusion demos, trained as a plain
regressor LQ -> HQ with L1 (loss kind "regression"; t = 0, no condition channels) on 32x32 RGB
crops of ``photos``, LQ = 4x4 block average upsampled back. One network evaluation per image;
restore with `jaxir.restore.restore_learned` or ``jaxir sample --workdir W --lq LQ.png``."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, TrainConfig
from jaxir.training.families import RegressionOptions


def get_config() -> TrainConfig:
    return photos32_config(
        "regression_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, image_size=32),
        loss=LossConfig(kind="regression", degradation="sr:4",
                        options=RegressionOptions(norm="l1")),
    )
