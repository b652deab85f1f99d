"""ResShift (Yue et al. 2023, NeurIPS): a short Markov chain that shifts the HQ–LQ residual.

With ``e_0 = y_0 − x_0`` (LQ minus HQ, the LQ upsampled to the HQ size) and a monotone
schedule ``0 = η_0 < η_1 < … < η_T → 1``, α_t = η_t − η_{t−1}, the forward chain is

    q(x_t | x_{t−1}, y_0) = N(x_{t−1} + α_t e_0, κ² α_t I)                    (Eq. 1)
    q(x_t | x_0, y_0)     = N(x_0 + η_t e_0,     κ² η_t I)                    (Eq. 2)
    q(x_{t−1} | x_t, x_0, y_0) = N((η_{t−1}/η_t) x_t + (α_t/η_t) x_0,
                                   κ² (η_{t−1}/η_t) α_t I)                     (Eq. 7)

so x_T ≈ N(y_0, κ² η_T I) and sampling starts at ``x_T = y_0 + κ√η_T ε``. The network
predicts ``x̂_0 = f(x_t, y_0, t)`` (trained with MSE, Eq. 9); each reverse step draws from
Eq. 7 with x̂_0 in place of x_0, ``T`` network calls in all (T = 15 by default).

Schedule (Eq. 10; official ``get_named_eta_schedule("exponential")``)::

    √η_t = √η_1 · b^{β_t},  β_t = ((t−1)/(T−1))^p (T−1),  b = (√η_T/√η_1)^{1/(T−1)},

with ``√η_1 = min(0.04/κ, 0.04)`` (official ``min_noise_level = 0.04``) and
``√η_T = 0.99`` (official ``etas_end``), p = 0.3, κ = 2.0, T = 15 (the ×4 SR settings of the
official ``realsr_swinunet_realesrgan256.yaml``; the paper writes η_T = 0.999).

The network input is normalised as in the official code (``normalize_input``):
``x_t/√(κ² η_t + 1)`` (``input_norm="std"``, its ``latent_flag=True`` default),
``x_t/(3κ√η_t + 1)`` (``"max"``, ``latent_flag=False``) or unscaled (``None``); the LQ goes to
the network as its image condition (official ``cond_lq``). Time: the step ``t = 1..T`` (float).

With the exact ``E[x_0 | x_t, y_0]`` the chain draws x_{t−1} from Eq. 7 at the posterior
*mean* of x_0 and so drops ``(α_t/η_t)² Var(x_0 | x_t)`` of variance at each step (as DDPM's
fixed-small variance): with T = 15 the output covariance is well below the true conditional
covariance; the deficit shrinks as T grows (the chain's exact law at T = 15 and 50:
``tests/test_oracle_bridges.py``).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._utils import bcast, safe_sqrt
from ._common import Samples, all_finite, scan_steps

INPUT_NORMS = ("std", "max", None)

__all__ = ["INPUT_NORMS", "ResShift", "resshift_eta_schedule", "resshift_process", "resshift_sample"]


def resshift_eta_schedule(T: int = 15, kappa: float = 2.0, *, min_noise_level: float = 0.04,
                          sqrt_eta_end: float = 0.99, power: float = 0.3) -> np.ndarray:
    """ResShift's η schedule (Yue et al. 2023, Eq. 10): ``(T,)`` float64 η_1 … η_T.

    √η grows geometrically in a warped step ``β_t = ((t−1)/(T−1))^p (T−1)`` from
    ``√η_1 = min(min_noise_level/κ, min_noise_level)`` to ``√η_T = sqrt_eta_end``; ``power``
    p < 1 spends more steps at small η. Defaults: the official ×4 SR settings (T 15, κ 2,
    p 0.3, 0.04, 0.99), which give ``η_1 = 4e-4`` and ``η_T = 0.9801``.

    >>> eta = resshift_eta_schedule()
    >>> eta.shape, round(float(eta[0]), 6), round(float(eta[-1]), 4)
    ((15,), 0.0004, 0.9801)
    """
    if not isinstance(T, (int, np.integer)) or T < 2:
        raise ValueError(f"T must be an int >= 2, got {T!r}")
    start = min(min_noise_level / kappa, min_noise_level)
    if not 0 < start < sqrt_eta_end <= 1:
        raise ValueError(f"need 0 < √η_1 = {start} < sqrt_eta_end = {sqrt_eta_end} <= 1")
    log_b = math.log(sqrt_eta_end / start) / (T - 1)
    beta = np.linspace(0.0, 1.0, T) ** power * (T - 1)
    return (start * np.exp(beta * log_b)) ** 2


class ResShift(eqx.Module):
    """The residual-shifting chain: ``etas`` (η_1..η_T, ``(T,)``) and ``kappa``.

    Times are integer steps ``t ∈ {0, …, T}`` (η_0 = 0), scalar or per-example ``(B,)``.

    >>> rs = ResShift()                       # official ×4 SR schedule, κ = 2, T = 15
    >>> x0, y0 = jnp.zeros((1, 4)), jnp.ones((1, 4))
    >>> mean, std = rs.marginal(x0, y0, jnp.array([15]))
    >>> round(float(mean[0, 0]), 4), round(float(std[0]), 4)
    (0.9801, 1.98)
    """

    etas: jax.Array
    kappa: float = eqx.field(static=True)
    input_norm: str | None = eqx.field(static=True)

    def __init__(self, etas=None, kappa: float = 2.0, input_norm: str | None = "std"):
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        etas = resshift_eta_schedule(15, kappa) if etas is None else etas
        self.etas = jnp.asarray(etas, jnp.float32)
        if self.etas.ndim != 1 or self.etas.shape[0] < 1:
            raise ValueError(f"etas must be 1-D (T,), got shape {self.etas.shape}")
        self.kappa = float(kappa)
        self.input_norm = input_norm

    @property
    def T(self) -> int:
        return int(self.etas.shape[0])

    def eta(self, t):
        """η_t for integer steps ``t`` (η_0 = 0)."""
        full = jnp.concatenate([jnp.zeros((1,), self.etas.dtype), self.etas])
        return full[jnp.asarray(t).astype(jnp.int32)]

    def marginal(self, x0, y0, t):
        """Mean and std of ``x_t | x_0, y_0`` (Eq. 2): ``x_0 + η_t (y_0 − x_0)``, ``κ√η_t``."""
        eta = self.eta(t)
        return x0 + bcast(eta, x0) * (y0 - x0), self.kappa * jnp.sqrt(eta)

    def sample_marginal(self, key, x0, y0, t):
        mean, std = self.marginal(x0, y0, t)
        return mean + bcast(std, x0) * jax.random.normal(key, x0.shape, x0.dtype)

    def posterior(self, x0, x_t, t):
        """Mean and std of ``x_{t−1} | x_t, x_0`` (Eq. 7; independent of y_0 given x_t)::

            mean = (η_{t−1}/η_t) x_t + (α_t/η_t) x_0,   var = κ² (η_{t−1}/η_t) α_t.

        At ``t = 1`` it is ``(x_0, 0)``.
        """
        eta, prev = self.eta(t), self.eta(jnp.asarray(t) - 1)
        c_t = prev / eta
        mean = bcast(c_t, x_t) * x_t + bcast(1.0 - c_t, x0) * x0  # α_t/η_t = 1 − η_{t−1}/η_t
        return mean, self.kappa * safe_sqrt(c_t * (eta - prev))

    def scale_input(self, x, t):
        """The official input normalisation (see the module doc)."""
        if self.input_norm is None:
            return x
        eta = self.eta(t)
        if self.input_norm == "std":
            return x / bcast(jnp.sqrt(self.kappa**2 * eta + 1.0), x)
        return x / bcast(3.0 * self.kappa * jnp.sqrt(eta) + 1.0, x)

    def predict_x0(self, model_fn, x_t, t, cond=None):
        """``x̂_0 = model_fn(scale_input(x_t), t, cond)`` with ``t`` as a float ``(B,)``."""
        tb = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
        return model_fn(self.scale_input(x_t, tb), tb, cond)

    def prior_sample(self, key, y0):
        """``x_T = y_0 + κ√η_T ε`` (official ``prior_sample``)."""
        std = self.kappa * jnp.sqrt(self.etas[-1])
        return y0 + std * jax.random.normal(key, jnp.shape(y0), jnp.result_type(y0, float))


def resshift_process(T: int = 15, kappa: float = 2.0, *, min_noise_level: float = 0.04,
                     sqrt_eta_end: float = 0.99, power: float = 0.3,
                     input_norm: str | None = "std") -> ResShift:
    """A :class:`ResShift` with the schedule of :func:`resshift_eta_schedule` — the same
    keywords as the "resshift" loss options (minus ``condition``/``cond_key``)."""
    etas = resshift_eta_schedule(T, kappa, min_noise_level=min_noise_level,
                                 sqrt_eta_end=sqrt_eta_end, power=power)
    return ResShift(etas, kappa, input_norm)


def resshift_sample(key, model_fn, process: ResShift, y0, *, condition: bool = True,
                    clip_x0: bool = False, x_init=None, save_every: int | None = None,
                    checkpoint: bool | str = False) -> Samples:
    """ResShift sampling (Yue et al. 2023, Alg. 2; official ``p_sample_loop``).

    ``model_fn(x_in, t, cond) -> x̂_0`` with ``x_in = process.scale_input(x_t, t)``, ``t``
    the step ``(B,)`` float and ``cond = y0`` (``None`` when ``condition=False``). From
    ``x_T = y_0 + κ√η_T ε`` (or ``x_init``) each step ``t = T, …, 1`` draws
    ``x_{t−1} ~ q(x_{t−1} | x_t, x̂_0)`` (Eq. 7; zero variance at t = 1, so the last step
    returns x̂_0). ``clip_x0`` clamps x̂_0 to [-1, 1] (official ``clip_denoised`` in pixel
    space). ``y0``: ``(B, ...)``, the LQ at the HQ size. ``nfe = T``.
    """
    y0 = jnp.asarray(y0)
    k0, kseq = jax.random.split(key)
    x = process.prior_sample(k0, y0) if x_init is None else jnp.asarray(x_init)
    cond = y0 if condition else None
    T = process.T
    xs = (jnp.arange(T, 0, -1, dtype=jnp.int32), jax.random.split(kseq, T))

    def step(carry, inp):
        (x,) = carry
        t, k = inp
        x0 = process.predict_x0(model_fn, x, t, cond).astype(x.dtype)
        if clip_x0:
            x0 = jnp.clip(x0, -1.0, 1.0)
        mean, std = process.posterior(x0, x, t)
        return (mean + std * jax.random.normal(k, x.shape, x.dtype),)

    (x,), traj = scan_steps(step, (x,), xs, save_every=save_every, checkpoint=checkpoint)
    return Samples(x, traj, T, all_finite(x))
