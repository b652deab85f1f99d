"""IR-SDE (Luo et al. 2023) denoising demo: 32x32 RGB crops of ``photos``, LQ = HQ + N(0, 0.2²)
([-1, 1] units, i.e. σ = 25.5/255 on [0, 1]). The tiny U-Net sees concat[x_t − μ, μ] (official)
and predicts the noise; L1 maximum-likelihood loss. λ = 0.2 in [-1, 1] units (the paper sets
λ to the noise level for denoising; its 10/255 and 30/255 are on [0, 1] images, i.e. 20/255
and 60/255 here). t is the official step 1..100, so time_scale = 10. Sample with
`jaxir.samplers.irsde_sample` (README)."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, TrainConfig
from jaxir.training.families import IRSDEOptions


def get_config() -> TrainConfig:
    return photos32_config(
        "irsde_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, cond_channels=3,
                          image_size=32, time_scale=10.0),
        loss=LossConfig(kind="irsde", degradation="noise:0.2",
                        options=IRSDEOptions(lam=0.2, T=100, eps=0.005, input_mode="residual")),
    )
