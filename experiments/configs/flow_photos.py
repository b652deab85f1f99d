"""Flow matching / rectified flow for 4x super-resolution: 32x32 RGB crops of ``photos``,
x_1 = (4x4 block average upsampled back) + N(0, 0.05²), x_0 = HQ, straight paths, velocity
loss; the network also sees the LQ image (concatenated). Sample with
`jaxir.samplers.flow_sample(key, v, lq, source_noise=0.05, cond=lq, num_steps=10)`."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, TrainConfig
from jaxir.training.families import FlowOptions


def get_config() -> TrainConfig:
    return photos32_config(
        "flow_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, cond_channels=3,
                          image_size=32),
        loss=LossConfig(kind="flow", degradation="sr:4",
                        options=FlowOptions(source_noise=0.05, condition=True)),
    )
