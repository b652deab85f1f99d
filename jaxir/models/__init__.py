"""Flax NNX networks for diffusion (DESIGN.md, layer 8) and their pure-function boundary.

- `UNet` / `UNetConfig` / `unet_config`: the ADM / DDPM++ U-Net and its presets
  ("tiny", "small", "base" = DDPM CIFAR-10, "adm64" = ADM ImageNet-64).
- `NoisyClassifier` / `ClassifierConfig` / `classifier_config`: p(y | x_t) for guidance.
- `Autoencoder` / `AutoencoderConfig`: the convolutional autoencoder of latent diffusion
  (`jaxir.latent` trains it and samples in its latent space).
- `split_model`, `make_model_fn`, `classifier_log_prob_fn`, `param_count`: a network as a
  pure `model_fn(x, t, cond)` (the convention is documented in `make_model_fn`'s module);
  `make_model_fn(..., compute_dtype=jnp.bfloat16)` runs it in mixed precision, and
  `cast_floating` casts a params pytree.
"""

from ._autoencoder import Autoencoder as Autoencoder
from ._autoencoder import AutoencoderConfig as AutoencoderConfig
from ._boundary import cast_floating as cast_floating
from ._boundary import classifier_log_prob_fn as classifier_log_prob_fn
from ._boundary import make_model_fn as make_model_fn
from ._boundary import param_count as param_count
from ._boundary import split_model as split_model
from ._classifier import NoisyClassifier as NoisyClassifier
from ._config import ClassifierConfig as ClassifierConfig
from ._config import UNetConfig as UNetConfig
from ._config import classifier_config as classifier_config
from ._config import unet_config as unet_config
from ._layers import fourier_embedding as fourier_embedding
from ._layers import sinusoidal_embedding as sinusoidal_embedding
from ._unet import UNet as UNet

__all__ = [
    "Autoencoder",
    "AutoencoderConfig",
    "ClassifierConfig",
    "NoisyClassifier",
    "UNet",
    "UNetConfig",
    "cast_floating",
    "classifier_config",
    "classifier_log_prob_fn",
    "fourier_embedding",
    "make_model_fn",
    "param_count",
    "sinusoidal_embedding",
    "split_model",
    "unet_config",
]
