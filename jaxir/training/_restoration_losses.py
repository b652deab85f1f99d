"""Losses of the "diffusion toward the degraded image" family and of restoration flows.

Same contract as every loss of `jaxir.training` (``loss_fn(model_fn, batch, key) -> (loss,
aux)``). The degraded image (LQ) is ``batch[cond_key]`` or is made on the fly by
``degrade_fn(key, x0)`` (`jaxir.training.make_degradation`: "sr:4", "noise:0.2", ...). The
first argument of each factory is the process's SDE *template* (the per-batch LQ is put in
by the loss) or ``None`` for the method's defaults (REFERENCES.md):

============  ===============================================================================
``"irsde"``   L1 between the network's reverse-SDE mean and the optimal ``x*_{t−1}``
              (Luo et al. 2023, Eq. 12); ε network, input concat[x_t − μ, μ] or [x_t, μ].
``"goub"``    the same L1 on the GOUB bridge (Yue et al. 2024, Eq. 17).
``"i2sb"``    MSE on ``(x_t − x_0)/σ_t`` with x_t from the Brownian bridge (Liu et al. 2023,
              Eq. 12 / official ``compute_label``); ``ot_ode`` drops the bridge noise.
``"ddbm"``    DDBM (Zhou et al. 2024): preconditioned denoiser, MSE on
              ``F = (x_0 − c_skip x_t)/c_out`` (their "bridge_karras" weighting 1/c_out²).
``"flow"``    flow matching / rectified flow (Liu et al. 2023; Lipman et al. 2023): MSE on
              the velocity ``x_1 − x_0`` of ``x_t = (1 − t) x_0 + t x_1``, x_1 = LQ + noise.
============  ===============================================================================

``"resshift"``: ResShift (Yue et al. 2023, Eq. 9), MSE of the x_0 prediction from
``x_t = x_0 + η_t (LQ − x_0) + κ√η_t ε`` with the LQ as the image condition.

``"regression"``: not a diffusion model — the non-generative baseline every restoration paper
compares with: the same network maps the LQ image to the HQ one in one pass, trained with L1
(or MSE). It shares the data, degradation and trainer of the other kinds.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import bridges, schedules
from .._utils import bcast
from ..samplers._irsde import irsde_optimal_prev, irsde_score, reverse_step_mean
from ..samplers._resshift import ResShift, resshift_process
from ..sdes import LinearSDE, MeanRevertingSDE

__all__ = ["RESTORATION_LOSSES", "ddbm_loss", "flow_loss", "goub_loss", "i2sb_loss",
           "irsde_loss", "regression_loss", "resshift_loss"]


def _x0(batch):
    from ._losses import _x0 as get  # the shared batch check

    return get(batch)


def _lq(batch, x0, key, cond_key, degrade_fn):
    """The degraded image: ``batch[cond_key]`` or ``degrade_fn(key, x0)``."""
    if isinstance(batch, dict) and cond_key in batch:
        lq = jnp.asarray(batch[cond_key], x0.dtype)
    elif degrade_fn is not None:
        lq = degrade_fn(key, x0)
    else:
        raise ValueError(f"batch has no {cond_key!r} entry (the degraded image) and no "
                         "degrade_fn was given to make it")
    if lq.shape != x0.shape:
        raise ValueError(f"the degraded image must have x_0's shape {x0.shape} (upsample SR "
                         f"inputs first), got {lq.shape}")
    return lq


def _mean_per_example(x):
    return jnp.mean(x.reshape(x.shape[0], -1), axis=-1)


def _irsde_template(sde, lam, T, eps):
    if sde is None:
        return MeanRevertingSDE(jnp.zeros(()), lam, T=T, eps=eps)
    if not isinstance(sde, MeanRevertingSDE):
        raise ValueError(f"expected a MeanRevertingSDE template or None, got {type(sde).__name__}")
    return sde


def _with_mu(template: MeanRevertingSDE, mu):
    return eqx.tree_at(lambda s: s.mu, template, mu)


def _int_steps(key, b, T):
    return jax.random.randint(key, (b,), 1, T + 1).astype(jnp.float32)


def irsde_loss(sde: MeanRevertingSDE | None = None, *, lam: float = 10.0 / 255.0, T: int = 100,
               eps: float = 0.005, cond_key: str = "lq", degrade_fn: Callable | None = None,
               input_mode: str = "residual", prediction: str = "eps") -> Callable:
    """IR-SDE maximum-likelihood loss (Luo et al. 2023, Eq. 12; official ``optimize_parameters``).

    ``t ~ U{1, …, T}``, ``x_t = μ + (x_0 − μ) e^{−θ̄_t Δ} + σ̄_t ε``; the network's noise ε̂
    gives ``s = −ε̂/σ̄_t`` and the reverse-SDE mean ``x_t − [θ_t(μ − x_t) − σ_t² s]``, which is
    compared in L1 (mean over pixels, then batch) with ``x*_{t−1}``
    (:func:`jaxir.samplers.irsde_optimal_prev`). ``sde``: a `MeanRevertingSDE` whose θ
    schedule, λ and ε are used (its ``mu`` is replaced by the batch's LQ), or None to build
    one from ``lam`` (10/255 deblur/derain, 30/255 SR/inpainting), ``T`` and ``eps``.
    ``aux = {"l1": ...}``.
    """
    tmpl = _irsde_template(sde, lam, T, eps)
    n = int(round(tmpl.T))

    def loss_fn(model_fn, batch, key):
        x0 = _x0(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        mu = _lq(batch, x0, k_lq, cond_key, degrade_fn)
        s = _with_mu(tmpl, mu)
        t = _int_steps(k_t, x0.shape[0], n)
        mean, std = s.marginal(x0, t)
        x_t = mean + bcast(std, x0) * jax.random.normal(k_e, x0.shape, x0.dtype)
        score = irsde_score(model_fn, mu, x_t, t, std, prediction=prediction,
                            input_mode=input_mode)
        pred = reverse_step_mean(s, x_t, t, score.astype(jnp.float32))
        target = irsde_optimal_prev(s, x_t, x0, t)
        loss = jnp.mean(_mean_per_example(jnp.abs(pred - target)))
        return loss, {"l1": loss}

    return loss_fn


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
    tmpl = _irsde_template(sde, lam, T, eps)
    n = int(round(tmpl.T))

    def loss_fn(model_fn, batch, key):
        x0 = _x0(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        mu = _lq(batch, x0, k_lq, cond_key, degrade_fn)
        s = _with_mu(tmpl, mu)
        b = bridges.Bridge(s, mu)
        t = _int_steps(k_t, x0.shape[0], n - 1)  # 1..T−1: never at the pinned end
        x_t = b.sample_marginal(k_e, x0, t)
        std = b.marginal(x0, t)[1]
        score = irsde_score(model_fn, mu, x_t, t, std, prediction=prediction,
                            input_mode=input_mode)
        pred = reverse_step_mean(b, x_t, t, score.astype(jnp.float32))
        target = irsde_optimal_prev(s, x_t, x0, t)
        loss = jnp.mean(_mean_per_example(jnp.abs(pred - target)))
        return loss, {"l1": loss}

    return loss_fn


def i2sb_loss(sde: LinearSDE | None = None, *, beta_max: float = 0.3, num_steps: int = 1000,
              ot_ode: bool = False, condition: bool = False, cond_key: str = "lq",
              degrade_fn: Callable | None = None) -> Callable:
    """I2SB's loss (Liu et al. 2023, Eq. 12): ``‖ε̂(x_t, t) − (x_t − x_0)/σ_t‖²``.

    ``sde``: a :class:`jaxir.bridges.BrownianSDE` (default: I2SB's symmetric sqrt-linear β
    with ``beta_max``, 0.3 JPEG/SR, 1.0 blur/inpainting, over ``num_steps``). ``t`` is a
    uniform step ``n ∈ {0..N−1}`` at ``t = (n + 1)/N`` (continuous U(t_min, T) for an SDE
    without ``betas``); ``x_t ~ q(x_t | x_0, x_1 = LQ)`` (its mean only with ``ot_ode``);
    σ_t = ``std_fwd``. ``condition``: also pass the LQ as the image condition (``cond_x1``).
    """
    sde = bridges.BrownianSDE(schedules.i2sb_beta_schedule(num_steps, beta_max)) if sde is None else sde

    def loss_fn(model_fn, batch, key):
        x0 = _x0(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        x1 = _lq(batch, x0, k_lq, cond_key, degrade_fn)
        b = bridges.Bridge(sde, x1)
        betas = getattr(sde, "betas", None)
        if betas is not None:
            nb = betas.shape[0]
            t = (jax.random.randint(k_t, (x0.shape[0],), 0, nb) + 1).astype(jnp.float32) * (b.T / nb)
        else:
            t = jax.random.uniform(k_t, (x0.shape[0],), jnp.float32, sde.t_min, b.T)
        mean, std = b.marginal(x0, t)
        x_t = mean if ot_ode else mean + bcast(std, x0) * jax.random.normal(k_e, x0.shape, x0.dtype)
        sigma = sde.marginal_coeffs(t)[1]
        target = (x_t - x0) / bcast(sigma, x0)
        pred = model_fn(x_t, t, x1 if condition else None)
        mse = jnp.mean(_mean_per_example((pred.astype(jnp.float32) - target) ** 2))
        return mse, {"mse": mse}

    return loss_fn


def ddbm_loss(sde: LinearSDE | None = None, *, bridge: str = "vp", beta_d: float = 2.0,
              beta_min: float = 0.1, sigma_max: float = 80.0, sigma_min: float = 0.002,
              sigma_data: float = 0.5, sigma_data_end: float | None = None, cov_xy: float = 0.0,
              cond_key: str = "lq", degrade_fn: Callable | None = None) -> Callable:
    """DDBM's denoising bridge score matching (Zhou et al. 2024, Eq. 11 with Thm. 2's
    preconditioning): ``t ~ U(t_min, T − 1e-4)``, ``x_t ~ q(x_t | x_0, x_T = LQ)``,
    ``F(c_in x_t, t, x_T)`` regressed on ``(x_0 − c_skip x_t)/c_out``, i.e. the denoiser error
    weighted by 1/c_out² (official "bridge_karras").

    ``sde``: a `VPSDE` / :class:`jaxir.bridges.EDMVESDE`, or None to build DDBM-VP
    (``bridge="vp"``: β_d 2, β_min 0.1) or DDBM-VE (``"ve"``: σ_max 80, σ_min 0.002). The
    network sees x_T as its image condition (concatenated); sample with
    :func:`jaxir.samplers.ddbm_sample` and :func:`jaxir.samplers.ddbm_denoiser`.
    """
    if sde is None:
        if bridge not in ("vp", "ve"):
            raise ValueError(f"bridge must be 'vp' or 've', got {bridge!r}")
        sde = (bridges.ddbm_vp(0.0, beta_d, beta_min) if bridge == "vp"
               else bridges.ddbm_ve(0.0, sigma_max, sigma_min)).sde

    def loss_fn(model_fn, batch, key):
        x0 = _x0(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        y = _lq(batch, x0, k_lq, cond_key, degrade_fn)
        b = bridges.Bridge(sde, y)
        t = jax.random.uniform(k_t, (x0.shape[0],), jnp.float32, sde.t_min, b.T - 1e-4)
        x_t = b.sample_marginal(k_e, x0, t)
        c_skip, c_out, c_in = bridges.bridge_preconditioning(b, t, sigma_data, sigma_data_end,
                                                             cov_xy)
        target = (x0 - bcast(c_skip, x0) * x_t) / bcast(c_out, x0)
        pred = model_fn(bcast(c_in, x0) * x_t, t, y)
        mse = jnp.mean(_mean_per_example((pred.astype(jnp.float32) - target) ** 2))
        return mse, {"mse": mse}

    return loss_fn


def flow_loss(sde=None, *, source_noise: float = 0.0, condition: bool = True,
              cond_key: str = "lq", degrade_fn: Callable | None = None,
              t_min: float = 0.0, teacher: Callable | None = None, teacher_steps: int = 10,
              teacher_solver: str = "euler") -> Callable:
    """Flow matching for restoration (rectified flow, Liu et al. 2023, Eq. 1; Lipman et al.
    2023, Eq. 23 with σ_min = 0): ``x_1 = LQ + source_noise · ε``, ``t ~ U(t_min, 1)``,
    ``x_t = (1 − t) x_0 + t x_1``, MSE of ``model_fn(x_t, t, LQ)`` against ``x_1 − x_0``.
    Sample with :func:`jaxir.samplers.flow_sample` (``x1 = LQ``, same ``source_noise``,
    ``cond = LQ``). ``sde`` is unused (accepted for the factory contract).

    Reflow (Liu et al. 2023, Sec. 2.2): with ``teacher``, a trained flow's
    ``velocity_fn(x, t, cond)``, the target ``x_0`` is not the batch's HQ image but the
    teacher's own output from the same start, ``x_0 = Φ(x_1)`` (:func:`flow_sample`,
    ``teacher_steps`` of ``teacher_solver``, no gradient). The pairs ``(x_1, Φ(x_1))`` are the
    teacher's coupling, straightened: the student's paths are straighter, so fewer steps
    suffice. The paper draws a fixed set of pairs once; here they are drawn afresh each step
    (the same law, an unlimited set). The student must use the teacher's ``source_noise`` and
    LQ. Through the trainer: ``loss.options={"teacher": "runs/flow", ...}`` (a flow workdir;
    its EMA params).
    """
    del sde
    if teacher is not None:
        from ..samplers import flow_sample

        if not isinstance(teacher_steps, int) or teacher_steps < 1:
            raise ValueError(f"teacher_steps must be a positive int, got {teacher_steps!r}")

    def loss_fn(model_fn, batch, key):
        x0 = _x0(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        lq = _lq(batch, x0, k_lq, cond_key, degrade_fn)
        x1 = lq + source_noise * jax.random.normal(k_e, x0.shape, x0.dtype) if source_noise else lq
        if teacher is not None:
            x0 = jax.lax.stop_gradient(flow_sample(
                None, teacher, x1, num_steps=teacher_steps, solver=teacher_solver,
                cond=lq if condition else None).x).astype(x1.dtype)
        t = jax.random.uniform(k_t, (x0.shape[0],), jnp.float32, t_min, 1.0)
        tb = bcast(t, x0)
        x_t = (1.0 - tb) * x0 + tb * x1
        pred = model_fn(x_t, t, lq if condition else None)
        mse = jnp.mean(_mean_per_example((pred.astype(jnp.float32) - (x1 - x0)) ** 2))
        return mse, {"mse": mse}

    return loss_fn


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
        x0 = _x0(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        y0 = _lq(batch, x0, k_lq, cond_key, degrade_fn)
        t = _int_steps(k_t, x0.shape[0], process.T)
        x_t = process.sample_marginal(k_e, x0, y0, t)
        pred = process.predict_x0(model_fn, x_t, t, y0 if condition else None)
        mse = jnp.mean(_mean_per_example((pred.astype(jnp.float32) - x0) ** 2))
        return mse, {"mse": mse}

    return loss_fn


REGRESSION_NORMS = ("l1", "mse")


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
        x0 = _x0(batch)
        lq = _lq(batch, x0, key, cond_key, degrade_fn)
        pred = model_fn(lq, jnp.zeros((x0.shape[0],), jnp.float32), None).astype(jnp.float32)
        if residual:
            pred = pred + lq
        l1 = jnp.mean(_mean_per_example(jnp.abs(pred - x0)))
        mse = jnp.mean(_mean_per_example((pred - x0) ** 2))
        return (l1 if norm == "l1" else mse), {"l1": l1, "mse": mse}

    return loss_fn


RESTORATION_LOSSES = {
    "irsde": irsde_loss,
    "goub": goub_loss,
    "i2sb": i2sb_loss,
    "ddbm": ddbm_loss,
    "flow": flow_loss,
    "resshift": resshift_loss,
    "regression": regression_loss,
}
"""Factories of this module by `make_loss` name."""
