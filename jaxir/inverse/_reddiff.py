"""RED-diff: variational posterior sampling by regularisation by denoising (Mardani, Song, Kautz &
Vahdat, ICLR 2024)."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..samplers import Samples
from ._driver import Method, Piece, Sampler, sample

#: The official ``denoise_term_weight`` options: the weight ``w_t`` as a function of
#: ``1/SNR_t = σ_t/α_t`` (``algos/reddiff.py``).
WEIGHTINGS = {
    "linear": lambda r: r,
    "sqrt": jnp.sqrt,
    "square": jnp.square,
    "log": lambda r: jnp.log(r + 1.0),
    "trunc_linear": lambda r: jnp.minimum(r, 1.0),
    "power2over3": lambda r: r ** (2.0 / 3.0),
    "const": lambda r: jnp.ones_like(r),
}


class _State(NamedTuple):
    opt: object  # the optimiser's state
    before: jax.Array  # μ before the latest update (what the official code returns)


def _num_observed(op) -> int:
    """Entries of ``y`` the official per-element mean runs over: ``op.y_size``, or the observed
    entries of an :class:`~jaxir.operators.Inpainting` (whose ``y`` holds zeros off the mask;
    the official ``H`` returns the kept entries only)."""
    from ..operators import Inpainting

    if isinstance(op, Inpainting):
        return jnp.sum(jnp.broadcast_to(op.mask, op.x_shape) != 0)
    return op.y_size


def reddiff_sample(key, model_fn, sde, op, y, sigma_y=None, shape=None, *, lr: float = 0.1,
                   lam: float = 0.25, weighting: str = "linear", obs_weight: float = 1.0,
                   optimizer: optax.GradientTransformation | None = None, num_observed=None,
                   **options) -> Samples:
    """RED-diff: fit ``μ`` by an optimiser on a data term plus a denoising regulariser, with t
    descending.

    The variational objective (Mardani et al. 2024; official NVlabs ``RED-diff``
    ``algos/reddiff.py`` with ``awd=True``, ``sigma_x0 = 0``) at each grid time ``t`` (high
    to low), with ``ε ~ N(0, I)`` fresh and ``x_t = α_t μ + σ_t ε``::

        loss(μ) = λ w_t · mean(sg[ε̂(x_t, t) − ε] ⊙ μ) + v · mean((y − A(μ))²)/2,
        w_t = weighting(σ_t/α_t),

    means over the example's ``D`` entries of ``x`` and its ``num_observed`` entries of ``y``
    (the official code's ``.mean()``, so the data term weighs ``1/num_observed`` against the
    regulariser's ``1/D``), then one optimiser step on ``μ`` (Adam, β = (0.9, 0.99),
    ``eps`` 1e-8; the gradient is ``λ w_t (ε̂ − ε)/D − v ∇‖y − A(μ)‖²/(2 num_observed)``).
    ``μ`` starts at ``A⁺y`` (official ``initialize``; an operator without ``A_pinv`` starts at
    0, as InverseBench's port). Returned: ``μ`` *before* the last update — the official code
    returns ``x0_pred``, computed from ``μ`` at the start of the last iteration, so the last
    step's update is discarded (the paper returns ``μ``).

    Defaults (official ``_configs/algo/reddiff.yaml``): λ (``grad_term_weight``) 0.25,
    ``weighting="linear"`` (``w_t = σ_t/α_t``), ``obs_weight`` v = 1, ``lr`` 0.1; 1000 steps
    (the paper's and ``sample_batch.sh``'s; the config's ``exp.num_steps`` is 50 and the
    README's example 100 with ``lr`` 0.5); ``"leading"`` grid (``range(0, 1000, 1000 // n)``).
    Deviations: the official mean also runs over the batch, which scales every gradient by
    ``1/B`` and so only moves Adam's ``eps`` (1e-8) relative to the gradient; here each
    example is its own problem (the result does not depend on the batch).

    ``optimizer``: any optax transformation instead of Adam (e.g. ``optax.sgd(lr)``: with it
    and a Gaussian prior every step is affine, and ``tests/test_inverse_reddiff.py`` checks
    the exact law; Adam is checked draw for draw against a float64 NumPy transcription).
    RED-diff is not a posterior sampler: on the test's R^6 problem (dense 3 × 6 ``A``,
    σ_y = 0.1, defaults; 4,000 chains of the float64 transcription) its mean is within 0.08
    posterior standard deviations of the posterior mean per coordinate, but its spread is
    0.32–0.34 of the posterior's (the only randomness is the regulariser's noise).

    Args:
        key, model_fn, sde, op, y, shape: as :func:`~jaxir.inverse.dps_sample` (``op.A``;
            ``op.A_pinv`` for the start when it has one).
        sigma_y: unused (the data term has no noise level, as the official code); accepted
            for the common interface.
        lr, lam, weighting, obs_weight: as above (:data:`WEIGHTINGS`).
        optimizer: an optax ``GradientTransformation`` (default ``adam(lr, 0.9, 0.99)``).
        num_observed: overrides the count of ``y`` entries in the data term's mean.
        **options: :data:`~jaxir.inverse.OPTIONS` (``num_steps`` default 1000; ``x_init``
            replaces the start ``A⁺y``).

    Returns:
        :class:`~jaxir.samplers.Samples` (``nfe`` = steps: one forward pass, no VJP of the
        network; the data term's gradient goes through ``op.A`` only).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"reddiff_sample: weighting must be one of {sorted(WEIGHTINGS)}, "
                         f"got {weighting!r}")
    if optimizer is None:
        if not float(lr) > 0:
            raise ValueError(f"reddiff_sample: lr must be > 0, got {lr}")
        optimizer = optax.adam(lr, b1=0.9, b2=0.99, eps=1e-8)
    w_fn = WEIGHTINGS[weighting]

    def build(p):
        A = p.batched("A")
        d = math.prod(p.shape[1:])
        n_obs = _num_observed(p.op) if num_observed is None else num_observed

        def loss(mu, reg):  # Σ over the batch of each example's loss: per-example gradients
            return (jnp.sum(reg * mu) / d
                    + obs_weight * jnp.sum((p.y - A(mu)) ** 2) / (2.0 * n_obs))

        def step(st, key):
            mu, t = st.x, st.t
            a, s = p.sde.marginal_coeffs(t)
            eps = jax.random.normal(key, mu.shape, mu.dtype)
            _, eps_hat = p.denoise(a * mu + s * eps, t)
            reg = jax.lax.stop_gradient(lam * w_fn(s / a) * (eps_hat - eps))
            g = jax.grad(loss)(mu, reg)
            upd, opt = optimizer.update(g, st.state.opt, mu)
            return st._replace(x_next=optax.apply_updates(mu, upd), state=_State(opt, mu))

        def init(k):
            if hasattr(p.op, "A_pinv"):
                return p.batched("A_pinv")(p.y)
            return jnp.zeros(p.shape, p.y.dtype)

        return Sampler(Piece(step, True), init=init,
                       state=lambda k, x: _State(optimizer.init(x), x),
                       finish=lambda x, state, k: (state.before, None))

    return sample(Method("reddiff_sample", build, num_steps=1000), key, model_fn, sde, op, y,
                  sigma_y, shape, **options)
