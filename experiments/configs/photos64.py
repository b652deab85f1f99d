"""The shipped prior ``photos64``: an unconditional DDPM (linear β, 1000 steps, ε-prediction)
on 64x64 RGB crops of the offline ``photos`` training split (six photographs; the test split,
astronaut and coffee, is never seen), random flips. ~5M parameters: trained on one accelerator
in minutes (experiments/priors/README.md), sampled on a laptop CPU."""

from jaxir.models import UNetConfig
from jaxir.training import DataConfig, LossConfig, OptimConfig, SDEConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="photos64",
        model=UNetConfig(in_channels=3, out_channels=3, base_channels=48,
                         channel_mults=(1, 2, 2, 2), num_res_blocks=2,
                         attention_resolutions=(16,), image_size=64, num_heads=4,
                         num_groups=8, dropout=0.1),
        sde=SDEConfig(name="ddpm_linear", num_train_steps=1000),
        loss=LossConfig(kind="denoising", prediction="eps", weighting="simple"),
        optim=OptimConfig(lr=2e-4, warmup_steps=500, ema_decay=0.999, grad_clip=1.0,
                          end_lr_factor=0.1),
        data=DataConfig(source="photos", image_size=64, batch_size=64, random_flip=True,
                        prefetch=4, source_kwargs={"crops_per_image": 20_000}),
        steps=20_000,
        log_every=100,
        save_every=2000,
        sample_every=0,
        num_samples=36,
    )
