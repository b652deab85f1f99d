"""Flow matching / rectified flow for 4x super-resolution: 32x32 RGB crops of ``photos``,
x_1 = (4x4 block average upsampled back) + N(0, 0.05²), x_0 = HQ, straight paths, velocity
loss; the network also sees the LQ image (concatenated). Sample with
`jaxir.samplers.flow_sample(key, v, lq, source_noise=0.05, cond=lq, num_steps=10)`."""

from jaxir.models import unet_config
from jaxir.training import DataConfig, LossConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="flow_photos",
        model=unet_config("tiny", in_channels=3, out_channels=3, cond_channels=3,
                          image_size=32),
        loss=LossConfig(kind="flow", degradation="sr:4",
                        options={"source_noise": 0.05, "condition": True}),
        optim=OptimConfig(lr=1e-4, warmup_steps=100, ema_decay=0.999, grad_clip=1.0),
        data=DataConfig(source="photos", image_size=32, batch_size=16, random_flip=True),
        steps=2000,
        log_every=50,
        save_every=500,
        sample_every=0,
    )
