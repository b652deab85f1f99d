"""ResShift (Yue et al. 2023) 4x super-resolution demo: 32x32 RGB crops of ``photos``, y_0 = 4x4
block average upsampled back. The residual-shifting chain with the official x4 SR schedule
(T = 15, κ = 2, p = 0.3, √η_1 = 0.04/κ, √η_T = 0.99; ``realsr_swinunet_realesrgan256.yaml``);
the tiny U-Net sees x_t/√(κ²η_t + 1) (official ``normalize_input``) with y_0 concatenated
(official ``cond_lq``) and predicts x_0 (MSE, official ``predict_type: xstart``). t is the
step 1..15, so time_scale = 64 (a DDPM-like 64..960 range). The official model runs in a VQ
latent space; this demo is pixel space. Sample with `jaxir.samplers.resshift_sample`."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, TrainConfig
from jaxir.training.families import ResShiftOptions


def get_config() -> TrainConfig:
    return photos32_config(
        "resshift_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, cond_channels=3,
                          image_size=32, time_scale=64.0),
        loss=LossConfig(kind="resshift", degradation="sr:4",
                        options=ResShiftOptions(T=15, kappa=2.0, power=0.3,
                                                min_noise_level=0.04, sqrt_eta_end=0.99,
                                                input_norm="std", condition=True)),
        lr=5e-5,
    )
