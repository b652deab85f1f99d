"""DDBM (Zhou et al. 2024) denoising demo with the VP bridge (β_d = 2, β_min = 0.1): 32x32 RGB
crops of ``photos``, x_T = HQ + N(0, 0.2²). Bridge preconditioning (σ_data = 0.5); the network
sees c_in·x_t and x_T concatenated. Sample with `jaxir.samplers.ddbm_sample` (Heun, 40 steps,
churn 0.33) on `jaxir.samplers.ddbm_denoiser`. ``DDBMOptions(bridge="ve")`` gives DDBM-VE
(then t ∈ [0.002, 80]: set model.time_scale ≈ 12)."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, TrainConfig
from jaxir.training.families import DDBMOptions


def get_config() -> TrainConfig:
    return photos32_config(
        "ddbm_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, cond_channels=3,
                          image_size=32),
        loss=LossConfig(kind="ddbm", degradation="noise:0.2",
                        options=DDBMOptions(bridge="vp", beta_d=2.0, beta_min=0.1,
                                            sigma_data=0.5)),
    )
