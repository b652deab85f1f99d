"""GOUB (Yue et al. 2024) 4x super-resolution demo: 32x32 RGB crops of ``photos``, LQ = 4x4 block
average upsampled back (SR3-style input). The IR-SDE bridged to x_T = μ; λ = 60/255 in [-1, 1]
units (the paper's 30/255 for SR on [0, 1] images), T = 100 (a parameter here, hard-coded in the
official code). Network input concat[x_t − μ, μ], noise prediction, L1 loss. Sample with
`jaxir.samplers.goub_sample` (Mean-ODE by default)."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, TrainConfig
from jaxir.training.families import GOUBOptions


def get_config() -> TrainConfig:
    return photos32_config(
        "goub_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, cond_channels=3,
                          image_size=32, time_scale=10.0),
        loss=LossConfig(kind="goub", degradation="sr:4",
                        options=GOUBOptions(lam=60 / 255, T=100, eps=0.005)),
    )
