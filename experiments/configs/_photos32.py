"""Run settings shared by the paired-restoration configs (``*_photos.py``): 32x32 RGB crops of
``photos``, batch 16, random flips, 2000 steps, AdamW (lr 1e-4 unless a method's official
recipe says otherwise), 100 warm-up steps, global-norm clipping at 1 and an EMA of decay 0.999
with warm-up (TF's num_updates rule: min(0.999, (1 + n)/(10 + n)), so short runs do not
evaluate an average still dominated by the initialisation). Not a config itself (no
``get_config``); config files in this folder import it by name."""

from jaxir.training import DataConfig, OptimConfig, SDEConfig, TrainConfig


def photos32_config(name: str, model, loss, *, sde: SDEConfig | None = None,
                    lr: float = 1e-4) -> TrainConfig:
    """A `TrainConfig` with the shared settings and this method's model / loss (/ SDE)."""
    return TrainConfig(
        name=name,
        model=model,
        sde=sde or SDEConfig(),
        loss=loss,
        optim=OptimConfig(lr=lr, warmup_steps=100, ema_decay=0.999, ema_warmup=True,
                          grad_clip=1.0),
        data=DataConfig(source="photos", image_size=32, batch_size=16, random_flip=True),
        steps=2000,
        log_every=50,
        save_every=500,
        sample_every=0,
    )
