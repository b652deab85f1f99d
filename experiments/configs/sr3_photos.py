"""SR3 (Saharia et al. 2021) 4x super-resolution demo: 32x32 RGB crops of ``photos``, LQ = 4x4
block average upsampled back (SR3 feeds the bicubic-upsampled LR; jaxir's "sr:4" upsamples by
nearest neighbour) and concatenated to x_t. DDPM linear β (1e-4 … 0.02, 1000 steps), ε
prediction, the simple MSE loss. Restore with `jaxir.restore.restore_learned` (DDPM ancestral,
100 respaced steps, x̂0 clipped: SR3's 100-step inference) or
``jaxir sample --workdir W --lq LQ.png --output OUT.png``."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, SDEConfig, TrainConfig


def get_config() -> TrainConfig:
    return photos32_config(
        "sr3_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, cond_channels=3,
                          image_size=32),
        sde=SDEConfig(name="ddpm_linear", num_train_steps=1000),
        loss=LossConfig(kind="conditional", prediction="eps", weighting="simple",
                        degradation="sr:4"),
    )
