"""I2SB (Liu et al. 2023) 4x super-resolution demo: 32x32 RGB crops of ``photos``, x_1 = 4x4 block
average upsampled back. Brownian bridge with the symmetric sqrt-linear β (β_max = 0.3, the
official SR/JPEG value) over 1000 steps; the network predicts (x_t − x_0)/σ_t from x_t alone
(official default, no cond_x1). Sample with `jaxir.samplers.i2sb_sample`."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, TrainConfig
from jaxir.training.families import I2SBOptions


def get_config() -> TrainConfig:
    return photos32_config(
        "i2sb_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, image_size=32),
        loss=LossConfig(kind="i2sb", degradation="sr:4",
                        options=I2SBOptions(beta_max=0.3, num_steps=1000, ot_ode=False)),
    )
