"""Palette (Saharia et al. 2022) colorization demo: 32x32 RGB crops of ``photos``; the
condition is the grayscale image (channel mean repeated over the three channels) concatenated
to x_t. DDPM linear β (1e-4 … 0.02, 1000 steps; Palette's official configs use the same
linear range), ε prediction, the simple MSE loss. Other Palette tasks are one ``--set`` away:
``loss.degradation`` = "inpaint:box" (centre box), "inpaint:0.7" (70 % of the pixels missing),
"uncrop" (one half missing) or "jpeg:10" — missing pixels hold N(0, 1) noise, as in Palette.
Restore with `jaxir.restore.restore_learned` (DDPM, 100 respaced steps, x̂0 clipped) or
``jaxir sample --workdir W --lq GRAY.png --output OUT.png``; for inpainting / uncropping add
the mask of observed pixels (``mask=`` / ``--mask MASK.png``), which refills the holes with
N(0, 1) and pastes the known pixels after every step, as Palette's inference does."""

import dataclasses

from sr3_photos import get_config as sr3_config

from jaxir.training import TrainConfig


def get_config() -> TrainConfig:
    """SR3's model, SDE and loss (`sr3_photos`) with the grayscale condition."""
    cfg = sr3_config()
    return dataclasses.replace(cfg, name="palette_photos",
                               loss=dataclasses.replace(cfg.loss, degradation="gray"))
