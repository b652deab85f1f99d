"""Smoke-test run: the `tiny` U-Net on 8x8 digits, a few steps (tests, CI)."""

from jaxir.models import unet_config
from jaxir.training import DataConfig, LossConfig, OptimConfig, SDEConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="digits_tiny",
        model=unet_config("tiny", in_channels=1, out_channels=1, image_size=8),
        sde=SDEConfig(name="vp"),
        loss=LossConfig(kind="denoising", prediction="eps", weighting="simple"),
        optim=OptimConfig(lr=1e-3, warmup_steps=2, ema_decay=0.9, grad_clip=1.0),
        data=DataConfig(source="digits", image_size=8, batch_size=16, prefetch=0),
        steps=5,
        log_every=1,
        save_every=2,
        keep=2,
        sample_every=0,
        num_samples=8,
        sample_steps=10,
    )
