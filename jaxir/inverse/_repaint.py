"""RePaint (Lugmayr et al., CVPR 2022): inpainting by replacement with resampling ("jumps")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._utils import bcast
from ..samplers import Samples
from ._common import require_svd
from ._driver import Method, Piece, Sampler, chain, ddpm, denoise, observed_replacer, replace, sample


def repaint_schedule(num_steps: int = 250, jump_length: int = 10, jump_n_sample: int = 10):
    """The RePaint walk over level indices (Lugmayr et al. 2022, Sec. 4.2 and Fig. 3).

    Returns an ``int`` numpy array of levels ``k ∈ {−1, …, n−1}`` (``n = num_steps``; ``n−1``
    is pure noise, ``−1`` the data), starting at ``n − 1`` and ending at ``−1``, consecutive
    entries differing by exactly 1: a decrease is a reverse (denoising) step, an increase an
    "undo" (forward noising) step. Going down, on reaching a level ``j`` that is a multiple of
    ``jump_length`` with ``j < n − jump_length`` the walk goes back up ``jump_length`` levels,
    ``jump_n_sample − 1`` times per such ``j``; so every block of ``jump_length`` levels is
    denoised ``jump_n_sample`` times. With the paper's values (250, 10, 10) that is 4,570
    transitions of which 2,410 are reverse steps.

    Example:
        >>> repaint_schedule(6, 2, 2).tolist()
        [5, 4, 3, 2, 3, 4, 3, 2, 1, 0, 1, 2, 1, 0, -1]
    """
    n, L, r = int(num_steps), int(jump_length), int(jump_n_sample)
    if n < 1 or L < 1 or r < 1:
        raise ValueError(
            "repaint_schedule: num_steps, jump_length and jump_n_sample must be positive ints, "
            f"got {num_steps}, {jump_length}, {jump_n_sample}"
        )
    left = {j: r - 1 for j in range(0, max(n - L, 0), L)}  # jumps still to make at level j
    k, walk = n - 1, [n - 1]
    while k >= 0:
        k -= 1
        walk.append(k)
        if left.get(k, 0) > 0:
            left[k] -= 1
            walk.extend(range(k + 1, k + L + 1))
            k += L
    return np.asarray(walk, np.int64)


def repaint_sample(key, model_fn, sde, op, y, sigma_y=None, shape=None, *, jump_length: int = 10,
                   jump_n_sample: int = 10, clip_x0=True, **options) -> Samples:
    """RePaint (Lugmayr et al. 2022, Alg. 1 with the jump schedule of Sec. 4.2).

    A DDPM chain respaced to ``num_steps`` levels ``t_{n−1} > … > t_0`` (``t_{−1} = 0``) is
    walked along :func:`repaint_schedule`. A reverse step at level ``k`` first replaces the
    known part of ``x`` by the forward marginal of the observed image,
    ``x^known = √ᾱ_k y + √(1 − ᾱ_k) ε`` (its observed spectral coefficients; for
    :class:`~jaxir.operators.Inpainting` the pixels where the mask is 1), then takes the
    ancestral step ``x_k → x_{k−1}`` with the model (this is Alg. 1's
    ``x_{t−1} = m ⊙ x^known_{t−1} + (1 − m) ⊙ x^unknown_{t−1}`` with the blend done at the start
    of the next step, as the official code). An up step ("undo") resamples the forward
    transition ``x_{k+1} = √(ᾱ_{k+1}/ᾱ_k) x_k + √(1 − ᾱ_{k+1}/ᾱ_k) ε`` (``√(1−β) x + √β ε`` of
    the respaced chain). The output gets a final blend with ``y`` itself (Alg. 1 at
    ``t = 1``), so ``A x = y`` exactly; the official code returns the last reverse step
    without that blend.

    What it needs from ``op``: the known region. Any linear operator with an SVD works (the
    known part is ``{i: s_i > 0}`` of ``Vᵀx``); RePaint proper is
    :class:`~jaxir.operators.Inpainting` with a binary mask, where this is exactly the paper's
    pixel blend. ``y`` is the masked image (``op.A(x0)``) and is treated as noiseless
    (``sigma_y`` is unused, as in the paper).

    Defaults are the paper's / official: 250 respaced steps of a 1000-step linear model
    (``"linspace"`` respacing = guided-diffusion's ``timestep_respacing="250"`` for a
    :class:`~jaxir.sdes.DiscreteVPSDE`), jump length 10, 10 resamplings, β̃ variance,
    ``clip_denoised=True`` (``clip_x0``; pass ``False`` for non-image data). The schedule is
    built at trace time with numpy and the walk is one ``lax.scan`` (up steps skip the model
    through ``lax.cond``).

    Args:
        key: PRNG key.
        model_fn: ``model_fn(x, t, cond)`` on batches ``(B, *op.x_shape)``.
        sde: a :class:`~jaxir.sdes.LinearSDE` (a 1000-step ``DiscreteVPSDE`` for the original).
        op: a linear operator with ``has_svd`` (normally ``Inpainting``).
        y: ``op.y_shape`` (shared by the batch) or ``(B, *op.y_shape)``.
        sigma_y: unused.
        shape: ``(B, *op.x_shape)``, or give ``x_init`` (the state at the top level).
        jump_length, jump_n_sample: with ``num_steps`` the schedule (:func:`repaint_schedule`);
            ``jump_n_sample = 1`` is plain replacement (no resampling).
        clip_x0: ``True``, ``(lo, hi)`` or ``False``.
        **options: :data:`~jaxir.inverse.OPTIONS` (``num_steps`` default 250, ``spacing``
            default ``"linspace"`` for a discrete SDE).

    Returns:
        :class:`~jaxir.samplers.Samples` (``nfe``: reverse steps = model calls per sample).

    Example (the setup of :mod:`jaxir.inverse`):
        >>> out = repaint_sample(key, model_fn, sde, op, y, 0.0, (8, 4), num_steps=20,
        ...                      jump_length=5, jump_n_sample=2, clip_x0=False)
        >>> out.nfe  # 20 reverse steps, and 15 more after the jumps back up
        35
    """
    require_svd(op, "repaint_sample")

    def build(p):
        known = observed_replacer(p)

        def undo(st, k):  # the forward transition x_t -> x_s, t < s
            x = st.x
            scale, std = p.sde.transition_coeffs(st.t, st.s)
            m_t, m_s = p.sde.marginal_offset(st.t, x), p.sde.marginal_offset(st.s, x)
            z = jax.random.normal(k, x.shape, x.dtype)
            return st._replace(x_next=bcast(scale, x) * (x - m_t) + m_s + bcast(std, x) * z)

        def finish(x, state, k):  # Alg. 1 at t = 1: the known part is y itself
            return known(k, x, jnp.asarray(0.0)), None

        return Sampler(chain(replace(p, before=True), denoise(p, clip_x0), ddpm(p)),
                       up=Piece(undo, draws=True), finish=finish)

    method = Method("repaint_sample", build, num_steps=250, keys=("init", "steps", "finish"),
                    walk=lambda n: repaint_schedule(n, jump_length, jump_n_sample),
                    spacing="linspace" if hasattr(sde, "num_steps") else None)
    return sample(method, key, model_fn, sde, op, y, sigma_y, shape, **options)
