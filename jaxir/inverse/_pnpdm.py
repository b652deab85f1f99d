"""PnP-DM: split Gibbs sampling with a diffusion prior (Wu, Sun, Chen, Zhang, Yue & Bouman,
NeurIPS 2024, "Principled probabilistic imaging using diffusion models as plug-and-play
priors")."""

from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp

from ..samplers import Samples
from ._common import own_steps, pad_to, require_svd
from ._daps import not_positive, time_of_sigma
from ._driver import Method, Piece, Sampler, sample

MODES = ("sde", "ode")


def pnpdm_rhos(n: int, rho: float = 10.0, decay: float = 0.9, rho_min: float = 0.3) -> np.ndarray:
    """The coupling strengths ``ρ_k = max(ρ_0 · decay^k, ρ_min)``, ``k < n`` (float64)."""
    return np.maximum(rho * decay ** np.arange(n, dtype=np.float64), rho_min)


def edm_grid(steps: int = 100, sigma_max: float = 80.0, sigma_min: float = 0.002,
             rho: float = 7.0) -> np.ndarray:
    """The official ``Denoiser_EDM`` levels (``discretization="edm"``): ``steps`` poly-ρ levels
    from ``sigma_max`` to ``sigma_min``, then 0 (float64, ``(steps + 1,)``)."""
    r = np.arange(steps, dtype=np.float64) / (steps - 1)
    lv = (sigma_max ** (1 / rho) + r * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.concatenate([lv, [0.0]])


def pnpdm_sample(key, model_fn, sde, op, y, sigma_y, shape=None, *, rho: float = 10.0,
                 rho_decay: float = 0.9, rho_min: float = 0.3, edm_steps: int = 100,
                 edm_sigma_max: float = 80.0, edm_sigma_min: float = 0.002, edm_rho: float = 7.0,
                 mode: str = "sde", **options) -> Samples:
    """PnP-DM: alternate an exact likelihood step and a diffusion "denoise from ρ_k" prior step.

    Split Gibbs on ``π(x, z) ∝ p(x) N(z; x, ρ² I) N(y; A z, σ_y² I)`` (Wu et al. 2024;
    official ``zihuiwu/PnP-DM-public``, ``pnpdm/samplers/pnp_edm/``), iteration ``k``:

    1. likelihood step (``LinearSVDOperator.proximal_generator``): ``z ~ N(C(Aᵀy/σ_y² +
       x/ρ_k²), C)``, ``C = (AᵀA/σ_y² + I/ρ_k²)⁻¹``, drawn in the SVD basis: coefficient ``i``
       of ``Vᵀz`` is ``c_i (s_i (Uᵀy)_i/σ_y² + (Vᵀx)_i/ρ_k²) + √c_i ε_i``, ``c_i = 1/(s_i²/σ_y²
       + 1/ρ_k²)``;
    2. prior step (``Denoiser_EDM``, ``mode="sde"``): ``z`` is taken as a noisy image at level
       ``ς_{i₀}``, the first of the EDM levels ``ς_0 = 80 > … > ς_{99} = 0.002 > ς_{100} = 0``
       *below* ρ_k (the official code starts there, not at ρ_k), and Euler–Maruyama on the
       reverse SDE runs to 0 (the EDM reverse SDE with β = 1, as ``Denoiser_EDM``)::

           x ← x + (ς_{i+1} − ς_i) · 2 (x − D(x, ς_i))/ς_i + √(2 ς_i (ς_i − ς_{i+1})) ε,

       no noise on the last step (to ς = 0, which gives ``2 D − x``); ``mode="ode"`` is the
       probability-flow version (factor 1, no noise).

    ``ρ_k = max(ρ · decay^k, ρ_min)``. Defaults: the official commands for the linear image
    tasks (``commands.sh``: ``mode=edm_sde rho=10 rho_decay_rate=0.9 rho_min=0.3``), 100
    iterations (``configs/sampler/pnp_edm.yaml``), 100 EDM levels from 80 to 0.002, ρ = 7;
    ``x`` starts at 0 (the ``initialize`` of the SR and blur operators). Each chain returns
    its last ``x`` (the official run keeps ``num_samples_per_run`` iterates after 40 burn-in
    iterations; with one sample, the last). NFE: ``Σ_k (100 − i₀(ρ_k))`` model calls
    (3,573 at the defaults), computed when tracing; the levels above ρ_k are skipped, not
    evaluated.

    Exact behaviour (``tests/test_inverse_pnpdm.py``): with a Gaussian prior both steps are
    affine, so the chain's law is computed by the float64 oracle and jaxir matches it; at a
    fixed ρ the exact Gibbs sampler targets the *relaxed posterior* — the posterior with
    noise covariance ``σ_y² I + ρ² AAᵀ`` (integrate ``z`` out) — and jaxir's chain at
    ``rho_decay=1`` reaches it up to the prior step's discretisation (checked there).

    Deviations: the model is evaluated at ``t(ς)`` (:func:`~jaxir.inverse._daps.time_of_sigma`)
    instead of the EDM network's ``round_sigma``; only operators with an SVD (``op.has_svd``)
    and ``sigma_y > 0`` (the official non-SVD operators — circular blur by FFT, phase
    retrieval by inner Langevin — are not ported).

    Args:
        key, model_fn, sde, op, y, shape: as :func:`~jaxir.inverse.dps_sample`; ``op`` needs
            ``has_svd``.
        sigma_y: the measurement noise std (> 0).
        rho, rho_decay, rho_min: the annealing of ρ. edm_steps, edm_sigma_max, edm_sigma_min,
            edm_rho: the prior step's levels (:func:`edm_grid`). mode: ``"sde"`` or ``"ode"``.
        **options: :data:`~jaxir.inverse.OPTIONS` (``num_steps`` = iterations, default 100;
            ``x_init`` replaces the zero start; ``timesteps`` is not supported).

    Returns:
        :class:`~jaxir.samplers.Samples` (``nfe`` as above).
    """
    require_svd(op, "pnpdm_sample")
    if not_positive(sigma_y):
        raise ValueError(f"pnpdm_sample: sigma_y must be > 0 (the likelihood step divides by "
                         f"it), got {sigma_y!r}")
    if mode not in MODES:
        raise ValueError(f"pnpdm_sample: mode must be one of {MODES}, got {mode!r}")
    if not (float(rho) > 0 and float(rho_min) > 0 and 0 < float(rho_decay) <= 1):
        raise ValueError(f"pnpdm_sample: need rho > 0, rho_min > 0, 0 < rho_decay <= 1, got "
                         f"{rho}, {rho_min}, {rho_decay}")
    if not isinstance(edm_steps, int) or edm_steps < 2:
        raise ValueError(f"pnpdm_sample: edm_steps must be an int >= 2, got {edm_steps!r}")
    n_iter = own_steps(options, "pnpdm_sample", 100, 1,
                       "PnP-DM sets its own ρ_k (num_steps, rho, rho_decay, rho_min)")
    rhos = pnpdm_rhos(n_iter, rho, rho_decay, rho_min)
    lv = edm_grid(edm_steps, edm_sigma_max, edm_sigma_min, edm_rho)
    # i₀(ρ): the first level strictly below ρ (the official torch.nonzero(σ < η).min())
    starts = np.array([int(np.argmax(lv < r)) for r in rhos])
    lam, noisy = (2.0, True) if mode == "sde" else (1.0, False)
    sy = sigma_y

    def grid(sde_, n):  # the ρ_k stand in for the driver's times; step reads them
        return rhos, np.concatenate([rhos[1:], [0.0]])

    def build(p):
        s_all = jnp.asarray(p.op.singular_values)
        uty = pad_to(p.batched("U_T")(p.y), s_all.shape[0])
        V, V_T = p.batched("V"), p.batched("V_T")
        lvj = jnp.asarray(lv, jnp.float32)
        t_lv = time_of_sigma(p.sde, lvj[:-1])  # the model's time at each EDM level
        a_lv = p.sde.marginal_coeffs(t_lv)[0]
        start_of = jnp.asarray(starts, jnp.int32)

        def likelihood(x, r, key):
            c = 1.0 / (s_all**2 / sy**2 + 1.0 / r**2)
            mean = c * (s_all * uty / sy**2 + V_T(x) / r**2)
            return V(mean + jnp.sqrt(c) * jax.random.normal(key, mean.shape, mean.dtype))

        def prior(z, i0, key):
            keys = jax.random.split(key, edm_steps)

            def move(i, x):
                sig, nxt = lvj[i], lvj[i + 1]
                x0 = p.denoise(a_lv[i] * x, t_lv[i])[0]
                x = x + (nxt - sig) * lam * (x - x0) / sig
                if noisy:
                    amp = jnp.where(i < edm_steps - 1, jnp.sqrt(2.0 * sig * (sig - nxt)), 0.0)
                    x = x + amp * jax.random.normal(keys[i], x.shape, x.dtype)
                return x

            def body(x, i):  # levels above ρ_k are skipped by a cond: no model call there
                return jax.lax.cond(i >= i0, move, lambda i, x: x, i, x), None

            return jax.lax.scan(body, z, jnp.arange(edm_steps))[0]

        def step(st, key):
            k_lik, k_pri = jax.random.split(key)
            z = likelihood(st.x, st.t, k_lik)
            return st._replace(x_next=prior(z, start_of[st.index], k_pri))

        return Sampler(Piece(step, True), init=lambda k: jnp.zeros(p.shape, p.y.dtype))

    out = sample(Method("pnpdm_sample", build, num_steps=100, grid=grid), key, model_fn, sde,
                 op, y, sigma_y, shape, **options)
    return out._replace(nfe=int(np.sum(edm_steps - starts)))
