"""GOUB (Yue et al. 2024): the IR-SDE bridged to x_T = μ (generalized OU bridge), learned with
the IR-SDE L1 objective on the bridge, sampled by its Mean-ODE."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ... import bridges
from ...sdes import MeanRevertingSDE
from ._pieces import int_steps
from .._registry import Family, FamilyOptions, register_family
from .irsde import paired_batch, step_l1, template


@dataclasses.dataclass(frozen=True)
class GOUBOptions(FamilyOptions):
    """The IR-SDE's λ, T, ε, network input and prediction (`IRSDEOptions`), and ``t_pin``: the
    sampler's evaluation time at the pinned end (:func:`jaxir.samplers.goub_sample`)."""

    lam: float = 10.0 / 255.0
    T: int = 100
    eps: float = 0.005
    t_pin: float = 1e-2
    input_mode: str = "residual"
    prediction: str = "eps"


def goub_loss(sde: MeanRevertingSDE | None = None, *, lam: float = 10.0 / 255.0, T: int = 100,
              eps: float = 0.005, t_pin: float = 1e-2, cond_key: str = "lq",
              degrade_fn: Callable | None = None, input_mode: str = "residual",
              prediction: str = "eps") -> Callable:
    """GOUB's loss (Yue et al. 2024, Eq. 17): the IR-SDE L1 objective on the bridge.

    ``x_t ~ q(x_t | x_0, x_T = μ)`` (bridge mean ``μ + (x_0 − μ) e^{−θ̄_t} σ̄²_{t:T}/σ̄²_T``, std
    ``σ̄_t σ̄_{t:T}/σ̄_T``); ``s = −ε̂/std``; the reverse mean uses the bridge drift
    ``(θ_t + σ_t² e^{−2θ̄_{t:T}}/σ̄²_{t:T})(μ − x)`` and is matched in L1 to ``x*_{t−1}`` —
    the same target as IR-SDE, since ``x_{t−1} ⊥ x_T | x_t`` (Markov). Times: ``t ~ U{1..T−1}``
    as in the official code (``randint(1, T)``): the bridge is pinned at T (std 0), where the
    sampler uses no score (:func:`jaxir.samplers.goub_sample`). ``t_pin`` is unused here; it
    is an option of the loss so that `restore_learned` hands the same value to the sampler.
    """
    del t_pin
    tmpl = template(sde, lam, T, eps)
    n = int(round(tmpl.T))

    def loss_fn(model_fn, batch, key):
        x0, mu, s, k_t, k_e = paired_batch(tmpl, batch, key, cond_key, degrade_fn)
        b = bridges.Bridge(s, mu)
        t = int_steps(k_t, x0.shape[0], n - 1)  # 1..T−1: never at the pinned end
        x_t = b.sample_marginal(k_e, x0, t)
        std = b.marginal(x0, t)[1]
        return step_l1(model_fn, b, s, mu, x0, x_t, t, std, prediction, input_mode)

    return loss_fn


def _process(o: GOUBOptions, lq) -> bridges.Bridge:
    return bridges.goub(lq, o.lam, o.T, o.eps)


def _sample(model, lq, key, steps, o: GOUBOptions, known):
    from ...samplers import goub_sample

    return goub_sample(key, model.model_fn, _process(o, lq), prediction=o.prediction,
                       input_mode=o.input_mode, t_pin=o.t_pin)


register_family(Family(
    name="goub", options=GOUBOptions,
    factory=goub_loss,
    sample=_sample, process=_process, fixed_chain=True))
