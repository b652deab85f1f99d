"""Palette (Saharia et al. 2022) colorization demo: 32x32 RGB crops of ``photos``; the
condition is the grayscale image (channel mean repeated over the three channels) concatenated
to x_t. DDPM linear β (1e-4 … 0.02, 1000 steps; Palette's official configs use the same
linear range), ε prediction, the simple MSE loss. Other Palette tasks are one ``--set`` away:
``loss.degradation`` = "inpaint:box" (centre box), "inpaint:0.7" (70 % of the pixels missing),
"uncrop" (one half missing) or "jpeg:10" — missing pixels hold N(0, 1) noise, as in Palette.
Restore with `jaxir.restore.restore_learned` (DDPM, 100 respaced steps, x̂0 clipped) or
``jaxir sample --workdir W --lq GRAY.png --output OUT.png``."""

from _photos32 import photos32_config

from jaxir.models import unet_config
from jaxir.training import LossConfig, SDEConfig, TrainConfig


def get_config() -> TrainConfig:
    return photos32_config(
        "palette_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, cond_channels=3,
                          image_size=32),
        sde=SDEConfig(name="ddpm_linear", num_train_steps=1000),
        loss=LossConfig(kind="conditional", prediction="eps", weighting="simple",
                        degradation="gray"),
    )
