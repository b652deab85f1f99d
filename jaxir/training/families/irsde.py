"""IR-SDE (Luo et al. 2023): a mean-reverting SDE from the clean image to the LQ μ, learned
with the maximum-likelihood L1 loss, sampled by the reverse SDE from μ + λε."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ..._utils import bcast
from ...samplers._irsde import irsde_optimal_prev, irsde_score, reverse_step_mean
from ...sdes import MeanRevertingSDE
from ._pieces import int_steps, lq_of, mean_per_example, x0_of
from .._registry import Family, FamilyOptions, register_family


@dataclasses.dataclass(frozen=True)
class IRSDEOptions(FamilyOptions):
    """λ (stationary std; the official 10/255 deblur/derain, 30/255 SR/inpainting on [0, 1]
    images), T steps (100), ε (0.005: the θ schedule's cosine offset), the network's input
    ("residual": concat[x_t − μ, μ], official; "plain": concat[x_t, μ]) and its prediction."""

    lam: float = 10.0 / 255.0
    T: int = 100
    eps: float = 0.005
    input_mode: str = "residual"
    prediction: str = "eps"


def template(sde, lam, T, eps) -> MeanRevertingSDE:
    """``sde`` (a `MeanRevertingSDE` whose ``mu`` the loss replaces per batch) or one built
    from λ, T, ε; `ValueError` for any other SDE."""
    if sde is None:
        return MeanRevertingSDE(jnp.zeros(()), lam, T=T, eps=eps)
    if not isinstance(sde, MeanRevertingSDE):
        raise ValueError(f"expected a MeanRevertingSDE template or None, got {type(sde).__name__}")
    return sde


def with_mu(tmpl: MeanRevertingSDE, mu) -> MeanRevertingSDE:
    return eqx.tree_at(lambda s: s.mu, tmpl, mu)


def paired_batch(tmpl: MeanRevertingSDE, batch, key, cond_key, degrade_fn):
    """x_0, the LQ μ (`lq_of`), the template SDE with that μ, and the keys of t and of the
    noise, from one key split three ways."""
    x0 = x0_of(batch)
    k_lq, k_t, k_e = jax.random.split(key, 3)
    mu = lq_of(batch, x0, k_lq, cond_key, degrade_fn)
    return x0, mu, with_mu(tmpl, mu), k_t, k_e


def step_l1(model_fn, process, sde, mu, x0, x_t, t, std, prediction, input_mode):
    """IR-SDE's maximum-likelihood objective at (x_t, t): the L1 distance between the reverse
    step mean of ``process`` (the SDE, or GOUB's bridge) with the network's score and the
    optimal previous state of ``sde`` given x_0; returns ``(loss, {"l1": loss})``."""
    score = irsde_score(model_fn, mu, x_t, t, std, prediction=prediction, input_mode=input_mode)
    pred = reverse_step_mean(process, x_t, t, score.astype(jnp.float32))
    target = irsde_optimal_prev(sde, x_t, x0, t)
    loss = jnp.mean(mean_per_example(jnp.abs(pred - target)))
    return loss, {"l1": loss}


def irsde_loss(sde: MeanRevertingSDE | None = None, *, lam: float = 10.0 / 255.0, T: int = 100,
               eps: float = 0.005, cond_key: str = "lq", degrade_fn: Callable | None = None,
               input_mode: str = "residual", prediction: str = "eps") -> Callable:
    """IR-SDE maximum-likelihood loss (Luo et al. 2023, Eq. 12; official ``optimize_parameters``).

    ``t ~ U{1, …, T}``, ``x_t = μ + (x_0 − μ) e^{−θ̄_t Δ} + σ̄_t ε``; the network's noise ε̂
    gives ``s = −ε̂/σ̄_t`` and the reverse-SDE mean ``x_t − [θ_t(μ − x_t) − σ_t² s]``, which is
    compared in L1 (mean over pixels, then batch) with ``x*_{t−1}``
    (:func:`jaxir.samplers.irsde_optimal_prev`). ``sde``: a `MeanRevertingSDE` whose θ
    schedule, λ and ε are used (its ``mu`` is replaced by the batch's LQ), or None to build
    one from ``lam`` (10/255 deblur/derain, 30/255 SR/inpainting), ``T`` and ``eps``. The LQ
    is ``batch[cond_key]`` or ``degrade_fn(key, x_0)``. ``aux = {"l1": ...}``.
    """
    tmpl = template(sde, lam, T, eps)
    n = int(round(tmpl.T))

    def loss_fn(model_fn, batch, key):
        x0, mu, s, k_t, k_e = paired_batch(tmpl, batch, key, cond_key, degrade_fn)
        t = int_steps(k_t, x0.shape[0], n)
        mean, std = s.marginal(x0, t)
        x_t = mean + bcast(std, x0) * jax.random.normal(k_e, x0.shape, x0.dtype)
        return step_l1(model_fn, s, s, mu, x0, x_t, t, std, prediction, input_mode)

    return loss_fn


def _process(o: IRSDEOptions, lq) -> MeanRevertingSDE:
    return MeanRevertingSDE(lq, o.lam, T=o.T, eps=o.eps)


def _sample(model, lq, key, steps, o: IRSDEOptions, known):
    from ...samplers import irsde_sample

    return irsde_sample(key, model.model_fn, _process(o, lq), prediction=o.prediction,
                        input_mode=o.input_mode)


register_family(Family(
    name="irsde", options=IRSDEOptions,
    factory=irsde_loss,
    sample=_sample, process=_process, fixed_chain=True))
