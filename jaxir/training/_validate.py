"""Cross-section checks of a `TrainConfig` that the dataclasses cannot do alone."""

from __future__ import annotations

import math

from ..models import AutoencoderConfig, ClassifierConfig
from ._config import TrainConfig

__all__ = ["validate"]


def _validate_autoencoder(config: TrainConfig) -> None:
    lc = config.loss
    if not isinstance(lc.options, dict):
        raise ValueError(f"loss.options must be a dict, got {type(lc.options).__name__}")
    unknown = sorted(set(lc.options) - {"loss", "latent_weight"})
    if unknown:
        raise ValueError(f"loss.kind='autoencoder' takes options 'loss' and 'latent_weight', "
                         f"got {unknown}")
    if lc.degradation is not None:
        raise ValueError("loss.kind='autoencoder' reconstructs clean images; loss.degradation "
                         f"must be None, got {lc.degradation!r}")
    if config.sample_every:
        raise ValueError("sample_every > 0 is not supported for loss.kind='autoencoder'; set it "
                         "to 0 (the exported autoencoder.npz is the result)")


def _check_positive(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def validate(config: TrainConfig) -> None:
    """Cross-section checks that the dataclasses cannot do alone (raise `ValueError`)."""
    _check_positive("steps", config.steps)
    _check_positive("data.batch_size", config.data.batch_size)
    for name in ("log_every", "save_every", "sample_every"):
        v = getattr(config, name)
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    if set(config.mesh) - {"data", "fsdp"}:
        raise ValueError(f"mesh keys must be 'data' and 'fsdp', got {sorted(config.mesh)}")
    is_clf = isinstance(config.model, ClassifierConfig)
    if is_clf != (config.loss.kind == "classifier"):
        raise ValueError("loss.kind='classifier' goes with a ClassifierConfig model and only "
                         f"with one; got loss.kind={config.loss.kind!r} and "
                         f"{type(config.model).__name__}")
    is_ae = isinstance(config.model, AutoencoderConfig)
    if is_ae != (config.loss.kind == "autoencoder"):
        raise ValueError("loss.kind='autoencoder' goes with an AutoencoderConfig model and only "
                         f"with one; got loss.kind={config.loss.kind!r} and "
                         f"{type(config.model).__name__}")
    if is_ae:
        _validate_autoencoder(config)
    from ._registry import FAMILIES

    family = FAMILIES.get(config.loss.kind)
    if family is not None:
        family.check(config)
    elif not (is_clf or is_ae or config.loss.kind in ("denoising", "dsm")):
        raise ValueError(f"unknown loss.kind {config.loss.kind!r}: one of 'denoising', 'dsm', "
                         f"'classifier', 'autoencoder' or a family {sorted(FAMILIES)}")
    if not math.isfinite(config.optim.lr) or config.optim.lr <= 0:
        raise ValueError(f"optim.lr must be positive, got {config.optim.lr}")
