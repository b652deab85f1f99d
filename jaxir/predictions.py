"""The one place that converts among network parameterisations (layer 4).

With the marginal ``x_t = α x_0 + m + σ ε`` of a :class:`~jaxir.sdes.LinearSDE`, every
prediction a network can make is a linear function of the pair ``(x̂_0, ε̂)``:

===============  ==============================  =====================================
name             prediction                      reference
===============  ==============================  =====================================
``"eps"``        ε̂                               Ho et al. 2020
``"x0"``         x̂_0                             (data prediction)
``"score"``      ∇ log p_t = −ε̂/σ                Song et al. 2021 (Tweedie)
``"v"``          α ε̂ − σ x̂_0                     Salimans & Ho 2022, Eq. (Appendix D)
``"velocity"``   α' x̂_0 + σ' ε̂ + m'              flow matching: dx_t/dt along the path
===============  ==============================  =====================================

and ``x_t − m = α x̂_0 + σ ε̂`` closes the system, so any one prediction determines the
others. ``"v"`` is inverted with the general 2×2 solve (valid when α² + σ² ≠ 1 too).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxir import sdes, predictions
    >>> sde = sdes.VPSDE()
    >>> x, eps = jnp.ones((2, 3)), jnp.zeros((2, 3))
    >>> x0 = predictions.convert(eps, x, 0.5, sde, "eps", "x0")
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._utils import bcast

__all__ = [
    "PREDICTIONS",
    "to_x0_eps",
    "from_x0_eps",
    "convert",
    "score_fn_from_model",
    "x0_fn_from_model",
    "eps_fn_from_model",
    "denoiser_from_model",
]

PREDICTIONS = ("eps", "x0", "score", "v", "velocity")


def _check(prediction):
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def _coeffs(sde, t, x):
    a, s = sde.marginal_coeffs(t)
    return bcast(a, x), bcast(s, x), sde.marginal_offset(t, x)


def _coeff_derivs(sde, t, x):
    t = jnp.asarray(t, jnp.result_type(float))
    (a, s), (da, ds) = jax.jvp(sde.marginal_coeffs, (t,), (jnp.ones_like(t),))
    m, dm = jax.jvp(lambda u: sde.marginal_offset(u, x), (t,), (jnp.ones_like(t),))
    return bcast(a, x), bcast(s, x), m, bcast(da, x), bcast(ds, x), dm


def to_x0_eps(pred, x, t, sde, prediction):
    """Return ``(x̂_0, ε̂)`` from a prediction of type ``prediction`` at ``(x, t)``."""
    _check(prediction)
    if prediction == "velocity":
        a, s, m, da, ds, dm = _coeff_derivs(sde, t, x)
        xc, u = x - m, pred - dm
        det = a * ds - s * da
        return (ds * xc - s * u) / det, (a * u - da * xc) / det
    a, s, m = _coeffs(sde, t, x)
    xc = x - m
    if prediction == "eps":
        return (xc - s * pred) / a, pred
    if prediction == "x0":
        return pred, (xc - a * pred) / s
    if prediction == "score":
        eps = -s * pred
        return (xc - s * eps) / a, eps
    # "v": solve [a s; -s a][x0; eps] = [xc; v]
    n = a**2 + s**2
    return (a * xc - s * pred) / n, (s * xc + a * pred) / n


def from_x0_eps(x0, eps, x, t, sde, prediction):
    """The prediction of type ``prediction`` that corresponds to ``(x̂_0, ε̂)`` at ``(x, t)``."""
    _check(prediction)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "velocity":
        _, _, _, da, ds, dm = _coeff_derivs(sde, t, x)
        return da * x0 + ds * eps + dm
    a, s, _ = _coeffs(sde, t, x)
    if prediction == "score":
        return -eps / s
    return a * eps - s * x0


def convert(pred, x, t, sde, source: str, target: str):
    """Convert a prediction of type ``source`` into type ``target`` (see the module table)."""
    if source == target:
        _check(source)
        return pred
    x0, eps = to_x0_eps(pred, x, t, sde, source)
    return from_x0_eps(x0, eps, x, t, sde, target)


def _wrap(model_fn, sde, prediction, target):
    _check(prediction)

    def fn(x, t, cond=None):
        return convert(model_fn(x, t, cond), x, t, sde, prediction, target)

    return fn


def score_fn_from_model(model_fn, sde, prediction: str = "eps"):
    """``model_fn(x, t, cond)`` of type ``prediction`` → ``score_fn(x, t, cond)``."""
    return _wrap(model_fn, sde, prediction, "score")


def x0_fn_from_model(model_fn, sde, prediction: str = "eps"):
    """``model_fn`` → ``x0_fn(x, t, cond)`` (Tweedie's posterior mean E[x_0 | x_t])."""
    return _wrap(model_fn, sde, prediction, "x0")


def eps_fn_from_model(model_fn, sde, prediction: str = "eps"):
    """``model_fn`` → ``eps_fn(x, t, cond)``."""
    return _wrap(model_fn, sde, prediction, "eps")


def denoiser_from_model(model_fn, sde, prediction: str = "eps"):
    """``model_fn`` → ``fn(x, t, cond) -> (x̂_0, ε̂)``, the pair every sampler steps with."""
    _check(prediction)

    def fn(x, t, cond=None):
        return to_x0_eps(model_fn(x, t, cond), x, t, sde, prediction)

    return fn
