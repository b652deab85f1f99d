"""The non-diffusion baseline: the same U-Net maps the LQ image to the HQ one in one pass,
trained with L1 (or MSE); it shares the data, degradation and trainer of the other families."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from ._pieces import lq_of, mean_per_example, x0_of
from .._registry import Family, FamilyOptions, register_family

REGRESSION_NORMS = ("l1", "mse")


@dataclasses.dataclass(frozen=True)
class RegressionOptions(FamilyOptions):
    """``norm``: "l1" (the usual choice of restoration CNNs, e.g. EDSR / SwinIR) or "mse";
    ``residual``: the network predicts x̂ − LQ."""

    norm: str = "l1"
    residual: bool = False

    def __post_init__(self):
        if self.norm not in REGRESSION_NORMS:
            raise ValueError(f"norm must be one of {REGRESSION_NORMS}, got {self.norm!r}")


def regression_loss(sde=None, *, norm: str = "l1", residual: bool = False, cond_key: str = "lq",
                    degrade_fn: Callable | None = None) -> Callable:
    """Plain supervised regression (the non-diffusion baseline): ``x̂ = model_fn(LQ, 0, None)``
    (plus the LQ with ``residual``), loss ``mean|x̂ − x_0|`` (``norm="l1"``, the usual choice
    of restoration CNNs, e.g. EDSR / SwinIR) or the MSE.

    The network is the same U-Net as the diffusion kinds with ``cond_channels = 0``: it sees
    the LQ as its input ``x`` and a constant time ``t = 0`` (so its time embedding is a learned
    bias). One network evaluation restores an image (:func:`jaxir.restore.restore_learned`).
    ``sde`` is unused (accepted for the factory contract). ``aux = {"l1": ..., "mse": ...}``.
    """
    del sde
    if norm not in REGRESSION_NORMS:
        raise ValueError(f"norm must be one of {REGRESSION_NORMS}, got {norm!r}")

    def loss_fn(model_fn, batch, key):
        x0 = x0_of(batch)
        lq = lq_of(batch, x0, key, cond_key, degrade_fn)
        pred = model_fn(lq, jnp.zeros((x0.shape[0],), jnp.float32), None).astype(jnp.float32)
        if residual:
            pred = pred + lq
        l1 = jnp.mean(mean_per_example(jnp.abs(pred - x0)))
        mse = jnp.mean(mean_per_example((pred - x0) ** 2))
        return (l1 if norm == "l1" else mse), {"l1": l1, "mse": mse}

    return loss_fn


def _sample(model, lq, key, steps, o: RegressionOptions, known):
    from ...samplers import Samples

    x = model.model_fn(lq, jnp.zeros((lq.shape[0],), jnp.float32), None)
    x = x + lq if o.residual else x
    return Samples(x, None, 1, jnp.all(jnp.isfinite(x)))


register_family(Family(
    name="regression", options=RegressionOptions,
    factory=regression_loss,
    sample=_sample, conditioned=lambda o: False))
