"""DDPM on CIFAR-10 (Ho et al. 2020) for accelerators: the 35.7M-parameter `base` U-Net,
the linear 1000-step chain, L_simple, Adam 2e-4 with 5000 warm-up steps, grad clip 1,
EMA 0.9999, batch 128, 800k steps, random flips. Needs the TFDS cifar10 dataset prepared
(ArrayRecord). bfloat16 compute; on a multi-device host shard with --mesh data=N."""

from jaxir.models import unet_config
from jaxir.training import DataConfig, LossConfig, OptimConfig, SDEConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="cifar10_base",
        model=unet_config("base"),
        sde=SDEConfig(name="ddpm_linear", num_train_steps=1000),
        loss=LossConfig(kind="denoising", prediction="eps", weighting="simple"),
        optim=OptimConfig(lr=2e-4, warmup_steps=5000, decay_steps=10**9, ema_decay=0.9999,
                          grad_clip=1.0, compute_dtype="bfloat16"),
        data=DataConfig(source="tfds:cifar10", image_size=None, batch_size=128,
                        random_flip=True, prefetch=4),
        steps=800_000,
        log_every=100,
        save_every=10_000,
        keep=3,
        sample_every=20_000,
        num_samples=64,
        sample_steps=100,
    )
