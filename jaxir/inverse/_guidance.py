"""Classifier guidance and classifier-free guidance as ``model_fn`` transformations."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import predictions
from .._utils import bcast


def classifier_guidance(model_fn, sde, log_prob_fn, scale: float = 1.0, prediction: str = "eps"):
    """Wrap ``model_fn`` with classifier guidance (Dhariwal & Nichol 2021, Alg. 2 / Eq. 14).

    The guided noise prediction is ``ε' = ε̂(x_t) − s σ_t ∇_{x_t} log p_φ(c | x_t)``, i.e. the
    score ``∇ log p_t(x) + s ∇ log p_φ(c | x_t)``; ``σ_t`` is the SDE's marginal std
    (``√(1 − ᾱ_t)`` for DDPM). With ``s = 1`` and the exact ``log p(c | x_t)`` this is the
    exact score of ``p_t(x | c)``, so every sampler then samples the class-conditional
    distribution; ``s > 1`` sharpens it.

    ``log_prob_fn(x, t, c) -> scalar`` works on ONE example (``x`` of the event shape, scalar
    ``t``, one label ``c``); it is differentiated with ``jax.grad`` and ``vmap``-ed over the
    batch. The returned ``model_fn(x, t, cond)`` takes the labels as ``cond`` (an array of
    shape ``()`` or ``(B,)``), passes ``cond`` on to the wrapped ``model_fn`` too, and returns
    the same prediction type as ``model_fn`` (``prediction``), so it plugs into every sampler.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxir import exact, sdes
        >>> sde = sdes.VPSDE()
        >>> prior = exact.Gaussian(jnp.zeros(2), jnp.eye(2))
        >>> log_p = lambda x, t, c: -jnp.sum((x - c) ** 2)
        >>> guided = classifier_guidance(prior.model_fn(sde), sde, log_p, scale=2.0)
        >>> guided(jnp.zeros((3, 2)), 0.5, jnp.ones(3)).shape
        (3, 2)
    """
    predictions._check(prediction)
    grad_log_p = jax.vmap(jax.grad(log_prob_fn))

    def guided(x, t, cond=None):
        if cond is None:
            raise ValueError("classifier_guidance: the guided model_fn needs the labels as cond")
        pred = model_fn(x, t, cond)
        eps = predictions.convert(pred, x, t, sde, prediction, "eps")
        batch = x.shape[:1]
        t_b = jnp.broadcast_to(jnp.asarray(t, x.dtype), batch)
        c_b = jnp.broadcast_to(jnp.asarray(cond), batch)
        g = grad_log_p(x, t_b, c_b)
        _, sig = sde.marginal_coeffs(t)
        eps = eps - scale * bcast(sig, x) * g
        return predictions.convert(eps, x, t, sde, "eps", prediction)

    return guided


def _like(c, n):
    c = jnp.asarray(c)
    return jnp.broadcast_to(jnp.asarray(n, c.dtype), c.shape)


def classifier_free_guidance(model_fn, guidance_scale: float, null_label):
    """Wrap a conditional ``model_fn`` with classifier-free guidance (Ho & Salimans 2021, Eq. 6).

    ``ε' = (1 + w) ε̂(x_t, c) − w ε̂(x_t, ∅)`` with ``w = guidance_scale``: ``w = 0`` is the
    plain conditional model, ``w > 0`` sharpens towards ``p(x | c)^{1+w} / p(x)^w``. Many
    codebases (Imagen, diffusers' ``guidance_scale``, Stable Diffusion) write
    ``ε̂(∅) + s (ε̂(c) − ε̂(∅))``, i.e. ``s = 1 + w``: pass ``w = s − 1`` here.

    The combination has weights summing to 1, so it is the same in every prediction space
    (ε, x̂_0, score, v, velocity are affine in ε̂ at fixed ``(x, t)``): the returned
    ``model_fn(x, t, cond)`` predicts whatever ``model_fn`` predicts. ``null_label`` is the
    unconditional label ``∅`` (e.g. the extra class index used for label dropout); it is
    broadcast to the shape of ``cond`` (leaf by leaf for a pytree ``cond``). The model is
    called twice, once with ``cond`` and once with the null label.

    Example:
        >>> import jax.numpy as jnp
        >>> mf = lambda x, t, c: x * jnp.where(c == -1, 0.0, 1.0)[:, None]
        >>> guided = classifier_free_guidance(mf, 2.0, null_label=-1)
        >>> guided(jnp.ones((2, 3)), 0.5, jnp.array([0, 1])).tolist()[0]
        [3.0, 3.0, 3.0]
    """
    w = guidance_scale

    def guided(x, t, cond=None):
        if cond is None:
            raise ValueError("classifier_free_guidance: the guided model_fn needs cond")
        if jax.tree_util.treedef_is_leaf(jax.tree.structure(null_label)):
            null = jax.tree.map(lambda c: _like(c, null_label), cond)
        else:
            null = jax.tree.map(_like, cond, null_label)
        return (1.0 + w) * model_fn(x, t, cond) - w * model_fn(x, t, null)

    return guided
