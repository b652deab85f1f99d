"""ResShift (Yue et al. 2023): a short chain that shifts the residual between the HQ and the
LQ image, its network predicting x_0, sampled by the chain's own posterior steps."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ...samplers._resshift import ResShift, resshift_process
from ._pieces import int_steps, lq_of, mean_per_example, x0_of
from .._registry import Family, FamilyOptions, register_family


@dataclasses.dataclass(frozen=True)
class ResShiftOptions(FamilyOptions):
    """The official ×4 SR schedule (T 15, κ 2, √η_1 = min_noise_level/κ, √η_T 0.99, p 0.3),
    the input normalisation ("std": x_t/√(κ²η_t + 1), or None) and ``condition`` (the network
    also sees the LQ, official ``cond_lq``)."""

    T: int = 15
    kappa: float = 2.0
    min_noise_level: float = 0.04
    sqrt_eta_end: float = 0.99
    power: float = 0.3
    input_norm: str | None = "std"
    condition: bool = True


def resshift_loss(process=None, *, T: int = 15, kappa: float = 2.0, min_noise_level: float = 0.04,
                  sqrt_eta_end: float = 0.99, power: float = 0.3, input_norm: str | None = "std",
                  condition: bool = True, cond_key: str = "lq",
                  degrade_fn: Callable | None = None) -> Callable:
    """ResShift's loss (Yue et al. 2023, Eq. 9; official ``training_losses`` with
    ``predict_type: xstart``, ``weighted_mse: False``): ``‖f(x_t, y_0, t) − x_0‖²``.

    ``t ~ U{1..T}``, ``x_t = x_0 + η_t (y_0 − x_0) + κ√η_t ε`` (y_0 = LQ at the HQ size); the
    network gets the normalised ``x_t`` (:meth:`jaxir.samplers.ResShift.scale_input`), the
    step ``t`` and (``condition``) y_0 as its image condition, and predicts x_0. ``process``:
    a :class:`jaxir.samplers.ResShift`, or None to build one from the schedule options
    (defaults: official ×4 SR, T 15, κ 2, p 0.3). ``aux = {"mse": ...}``. Sample with
    :func:`jaxir.samplers.resshift_sample` and the same process.
    """
    if process is None:
        process = resshift_process(T, kappa, min_noise_level=min_noise_level,
                                   sqrt_eta_end=sqrt_eta_end, power=power, input_norm=input_norm)
    elif not isinstance(process, ResShift):
        raise ValueError(f"expected a ResShift process or None, got {type(process).__name__}")

    def loss_fn(model_fn, batch, key):
        x0 = x0_of(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        y0 = lq_of(batch, x0, k_lq, cond_key, degrade_fn)
        t = int_steps(k_t, x0.shape[0], process.T)
        x_t = process.sample_marginal(k_e, x0, y0, t)
        pred = process.predict_x0(model_fn, x_t, t, y0 if condition else None)
        mse = jnp.mean(mean_per_example((pred.astype(jnp.float32) - x0) ** 2))
        return mse, {"mse": mse}

    return loss_fn


def _process(o: ResShiftOptions, lq=None) -> ResShift:
    return resshift_process(o.T, o.kappa, min_noise_level=o.min_noise_level,
                            sqrt_eta_end=o.sqrt_eta_end, power=o.power, input_norm=o.input_norm)


def _sample(model, lq, key, steps, o: ResShiftOptions, known):
    from ...samplers import resshift_sample

    return resshift_sample(key, model.model_fn, _process(o, lq), lq, condition=o.condition,
                           clip_x0=True)


register_family(Family(
    name="resshift", options=ResShiftOptions,
    factory=resshift_loss,
    sample=_sample, process=_process, fixed_chain=True, conditioned=lambda o: o.condition))
