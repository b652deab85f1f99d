"""DDBM (Zhou et al. 2024): a VP or VE diffusion bridge to the LQ, a preconditioned denoiser
trained by denoising bridge score matching, sampled with Heun steps and churn."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ... import bridges
from ..._utils import bcast
from ...sdes import LinearSDE
from ._pieces import lq_of, mean_per_example, x0_of
from .._registry import Family, FamilyOptions, register_family

BRIDGES = ("vp", "ve")


@dataclasses.dataclass(frozen=True)
class DDBMOptions(FamilyOptions):
    """``bridge``: "vp" (β_d 2, β_min 0.1) or "ve" (σ_max 80, σ_min 0.002), DDBM's official
    processes; the preconditioning's σ_data (0.5), σ_data at the end (None: σ_data) and the
    x_0–x_T covariance (0)."""

    bridge: str = "vp"
    beta_d: float = 2.0
    beta_min: float = 0.1
    sigma_max: float = 80.0
    sigma_min: float = 0.002
    sigma_data: float = 0.5
    sigma_data_end: float | None = None
    cov_xy: float = 0.0

    def __post_init__(self):
        if self.bridge not in BRIDGES:
            raise ValueError(f"bridge must be 'vp' or 've', got {self.bridge!r}")


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
        if bridge not in BRIDGES:
            raise ValueError(f"bridge must be 'vp' or 've', got {bridge!r}")
        sde = (bridges.ddbm_vp(0.0, beta_d, beta_min) if bridge == "vp"
               else bridges.ddbm_ve(0.0, sigma_max, sigma_min)).sde

    def loss_fn(model_fn, batch, key):
        x0 = x0_of(batch)
        k_lq, k_t, k_e = jax.random.split(key, 3)
        y = lq_of(batch, x0, k_lq, cond_key, degrade_fn)
        b = bridges.Bridge(sde, y)
        t = jax.random.uniform(k_t, (x0.shape[0],), jnp.float32, sde.t_min, b.T - 1e-4)
        x_t = b.sample_marginal(k_e, x0, t)
        c_skip, c_out, c_in = bridges.bridge_preconditioning(b, t, sigma_data, sigma_data_end,
                                                             cov_xy)
        target = (x0 - bcast(c_skip, x0) * x_t) / bcast(c_out, x0)
        pred = model_fn(bcast(c_in, x0) * x_t, t, y)
        mse = jnp.mean(mean_per_example((pred.astype(jnp.float32) - target) ** 2))
        return mse, {"mse": mse}

    return loss_fn


def _process(o: DDBMOptions, lq) -> bridges.Bridge:
    return (bridges.ddbm_vp(lq, o.beta_d, o.beta_min) if o.bridge == "vp"
            else bridges.ddbm_ve(lq, o.sigma_max, o.sigma_min))


def _sample(model, lq, key, steps, o: DDBMOptions, known):
    from ...samplers import ddbm_denoiser, ddbm_sample

    b = _process(o, lq)
    den = ddbm_denoiser(model.model_fn, b, sigma_data=o.sigma_data,
                        sigma_data_end=o.sigma_data_end, cov_xy=o.cov_xy)
    return ddbm_sample(key, den, b, num_steps=steps)


register_family(Family(
    name="ddbm", options=DDBMOptions,
    factory=ddbm_loss,
    sample=_sample, process=_process, default_steps=40))
