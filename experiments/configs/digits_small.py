"""The CPU demo: the `small` U-Net (attention at 8x8) on 16x16 digits, eps-prediction on the
continuous VP SDE. A few minutes on 2 CPU cores; see experiments/digits/README.md."""

from jaxir.models import unet_config
from jaxir.training import DataConfig, LossConfig, OptimConfig, SDEConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="digits_small",
        model=unet_config("small", in_channels=1, out_channels=1, image_size=16,
                          attention_resolutions=(8,)),
        sde=SDEConfig(name="vp"),
        loss=LossConfig(kind="denoising", prediction="eps", weighting="simple"),
        optim=OptimConfig(lr=1e-3, warmup_steps=50, ema_decay=0.995, grad_clip=1.0,
                          end_lr_factor=0.1),
        data=DataConfig(source="digits", image_size=16, batch_size=32, prefetch=2),
        steps=1600,
        log_every=25,
        save_every=250,
        keep=2,
        sample_every=800,
        num_samples=64,
        sample_steps=50,
    )
