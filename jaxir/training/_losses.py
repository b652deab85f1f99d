"""Training losses: factories that take an SDE and return ``loss(model_fn, batch, key)``.

**The contract** (every factory here, and every later one — IR-SDE, bridges, flow matching —
returns a function of this shape)::

    loss_fn(model_fn, batch, key) -> (loss, aux)

- ``model_fn(x, t, cond) -> prediction``: the jaxir model convention (`jaxir.models`); the
  train step builds it from ``(graphdef, params)`` so that ``jax.grad`` w.r.t. params flows
  through it, and tests pass exact references such as `jaxir.exact.Gaussian.model_fn`.
- ``batch``: a dict ``{"image": x_0 (B, ...), "label"?: (B,) int, "lq"?: (B, ...)}`` or a bare
  array ``x_0 (B, ...)``. Any trailing shape works (images, vectors).
- ``key``: a `jax.random` key; the loss draws t, the noise and condition dropout from it.
- ``loss``: a float32 scalar (the mean over the batch); ``aux``: a dict of scalar metrics.

`LOSSES` maps the names of these factories to them, and `make_loss(name, sde, **options)`
finds them and the learned-restoration families' factories (`jaxir.training.families`) by name.

**Weightings** of the denoising losses are defined on the x̂0 error, as in Min-SNR
(Hang et al. 2023, Sec. 3.2): with SNR = α²/σ², every prediction error is a multiple of the
x̂0 error at fixed x_t, ``‖pred − target‖² = c(t)‖x̂0 − x0‖²`` with c = 1 (x0), SNR (eps),
(α² + σ²)²/σ² (v; SNR + 1 for VP), α²/σ⁴ (score). A weighting ``w(t)`` gives the per-example
loss ``w(t)/c(t) · mean‖pred − target‖²``:

=============  ==================================================================
``"simple"``   w = c: the plain MSE on the predicted quantity (DDPM's L_simple for eps)
``"snr"``      w = SNR (the ε-MSE whatever the parameterisation)
``"min_snr"``  w = min(SNR, γ), γ = 5 (Hang et al. 2023, Eq. 9)
``"edm"``      w = (σ̃² + σ_d²)/(σ̃ σ_d)², σ̃ = σ_t/α_t, σ_d = 0.5 (Karras et al. 2022, Eq. 8,
               Table 1 λ(σ))
=============  ==================================================================

Reduction: mean over the non-batch dimensions, then over the batch (Score-SDE's
``reduce_mean=True``), so the loss scale does not depend on the image size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .. import predictions
from .._utils import bcast
from ..sdes import DiscreteVPSDE, LinearSDE

__all__ = [
    "LOSSES",
    "WEIGHTINGS",
    "TIME_SAMPLINGS",
    "LossFn",
    "classifier_loss",
    "conditional_loss",
    "denoising_loss",
    "make_loss",
    "sample_time",
    "score_matching_loss",
]

LossFn = Callable[[Callable, Any, jax.Array], tuple[jax.Array, dict]]
"""``loss_fn(model_fn, batch, key) -> (scalar loss, aux dict)``."""

WEIGHTINGS = ("simple", "snr", "min_snr", "edm")
TIME_SAMPLINGS = ("auto", "continuous", "discrete")
_DENOISING_PREDICTIONS = ("eps", "x0", "v", "score")


# ---- shared pieces ---------------------------------------------------------------------------
def _x0(batch) -> jax.Array:
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"batch must have an 'image' entry (x_0), got keys {sorted(batch)}")
        x0 = batch["image"]
    else:
        x0 = batch
    x0 = jnp.asarray(x0)
    if x0.ndim < 2:
        raise ValueError(f"x_0 must have shape (B, ...) with at least one data axis, got {x0.shape}")
    return x0.astype(jnp.float32) if not jnp.issubdtype(x0.dtype, jnp.floating) else x0


def sample_time(sde: LinearSDE, key: jax.Array, batch_size: int, time_sampling="auto"):
    """Training times ``t`` of shape (B,).

    ``"continuous"``: t ~ U(t_min, T) (Score-SDE). ``"discrete"`` (needs a `DiscreteVPSDE`):
    i ~ U{0, …, N−1} and ``t = sde.index_to_time(i)`` (DDPM, Ho et al. 2020 Alg. 1).
    ``"auto"``: discrete for a `DiscreteVPSDE`, else continuous. A callable
    ``(key, batch_size) -> t`` is used as is (e.g. a fixed t in tests, importance sampling).
    """
    if callable(time_sampling):
        return jnp.asarray(time_sampling(key, batch_size), jnp.float32)
    if time_sampling not in TIME_SAMPLINGS:
        raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS} or a callable, "
                         f"got {time_sampling!r}")
    discrete = isinstance(sde, DiscreteVPSDE)
    if time_sampling == "discrete" and not discrete:
        raise ValueError(f"time_sampling='discrete' needs a DiscreteVPSDE, got {type(sde).__name__}")
    if time_sampling == "discrete" or (time_sampling == "auto" and discrete):
        i = jax.random.randint(key, (batch_size,), 0, sde.num_steps)
        return sde.index_to_time(i).astype(jnp.float32)
    return jax.random.uniform(key, (batch_size,), jnp.float32, sde.t_min, sde.T)


def _perturb(sde, x0, t, key):
    """``x_t = α x0 + m + σ ε`` and ``ε``."""
    eps = jax.random.normal(key, x0.shape, x0.dtype)
    mean, std = sde.marginal(x0, t)
    return mean + bcast(std, x0) * eps, eps


def _per_example_mean(sq):
    return jnp.mean(sq.reshape(sq.shape[0], -1), axis=-1)


def _error_factor(prediction, a, s):
    """c(t) with ``‖pred − target‖² = c ‖x̂0 − x0‖²`` at fixed x_t (module docstring)."""
    if prediction == "x0":
        return jnp.ones_like(a)
    if prediction == "eps":
        return a**2 / s**2
    if prediction == "v":
        return (a**2 + s**2) ** 2 / s**2
    return a**2 / s**4  # score


def _x0_weight(weighting, a, s, min_snr_gamma, sigma_data):
    snr = a**2 / s**2
    if weighting == "snr":
        return snr
    if weighting == "min_snr":
        return jnp.minimum(snr, min_snr_gamma)
    sig = s / a  # "edm": the EDM noise level of the scaled x_t / α
    return (sig**2 + sigma_data**2) / (sig * sigma_data) ** 2


class _Conditioning:
    """What the model is conditioned on, and condition dropout for classifier-free guidance."""

    def __init__(self, image_key, label_key, null_label, drop_prob, degrade_fn):
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1], got {drop_prob}")
        if label_key is not None and drop_prob > 0 and null_label is None:
            raise ValueError("label conditioning with cond_drop_prob > 0 needs null_label "
                             "(the model's num_classes, its 'no class' index)")
        self.image_key, self.label_key = image_key, label_key
        self.null_label, self.drop_prob, self.degrade_fn = null_label, drop_prob, degrade_fn

    def __call__(self, batch, x0, key):
        if self.image_key is None and self.label_key is None:
            return None
        if not isinstance(batch, dict):
            raise ValueError("a conditional loss needs a dict batch, got a bare array")
        k_deg, k_drop = jax.random.split(key)
        b = x0.shape[0]
        keep = jax.random.uniform(k_drop, (b,)) >= self.drop_prob
        cond = {}
        if self.image_key is not None:
            if self.image_key in batch:
                lq = jnp.asarray(batch[self.image_key], x0.dtype)
            elif self.degrade_fn is not None:
                lq = self.degrade_fn(k_deg, x0)
            else:
                raise ValueError(f"batch has no {self.image_key!r} entry (the low-quality "
                                 "condition) and no degrade_fn was given to make it")
            if lq.shape[0] != b:
                raise ValueError(f"condition {self.image_key!r} has batch {lq.shape[0]}, x_0 {b}")
            cond["image"] = jnp.where(bcast(keep, lq), lq, jnp.zeros_like(lq))
        if self.label_key is not None:
            if self.label_key not in batch:
                raise ValueError(f"batch has no {self.label_key!r} entry for label conditioning")
            label = jnp.asarray(batch[self.label_key], jnp.int32)
            if self.null_label is not None:
                label = jnp.where(keep, label, self.null_label)
            cond["label"] = label
        return cond["image"] if set(cond) == {"image"} else cond


# ---- the factories -------------------------------------------------------------------------
def _noised(sde, batch, key, time_sampling, conditioning):
    """The batch's x_0, a time t per example (`sample_time`), x_t = a x_0 + σ ε and the model's
    condition, from one key split three ways (t, ε, condition)."""
    x0 = _x0(batch)
    k_t, k_eps, k_cond = jax.random.split(key, 3)
    t = sample_time(sde, k_t, x0.shape[0], time_sampling)
    x_t, eps = _perturb(sde, x0, t, k_eps)
    return x0, t, x_t, eps, conditioning(batch, x0, k_cond)


def denoising_loss(
    sde: LinearSDE,
    *,
    prediction: str = "eps",
    weighting: str = "simple",
    time_sampling="auto",
    min_snr_gamma: float = 5.0,
    sigma_data: float = 0.5,
    image_cond_key: str | None = None,
    label_key: str | None = None,
    null_label: int | None = None,
    cond_drop_prob: float = 0.0,
    degrade_fn: Callable | None = None,
) -> LossFn:
    """ε / x̂0 / v (or score) matching for any `LinearSDE` (Ho et al. 2020 Eq. 14 for eps).

    Draws t (see `sample_time`), ε ~ N(0, I), ``x_t = α x0 + m + σ ε``, and regresses
    ``model_fn(x_t, t, cond)`` on the target of type ``prediction`` computed from (x0, ε) by
    `jaxir.predictions.from_x0_eps`, weighted by ``weighting`` (module docstring).

    Conditioning (all optional): ``label_key`` passes ``batch[label_key]`` as the class label,
    replaced by ``null_label`` with probability ``cond_drop_prob`` (classifier-free guidance,
    Ho & Salimans 2022); ``image_cond_key`` passes an image condition (see `conditional_loss`).

    Returns ``loss_fn(model_fn, batch, key) -> (loss, {"mse": plain MSE of the prediction})``.

    >>> import jax, jax.numpy as jnp
    >>> from jaxir import exact, sdes
    >>> sde = sdes.VPSDE()
    >>> prior = exact.Gaussian(jnp.zeros(2), jnp.eye(2))
    >>> loss_fn = denoising_loss(sde)
    >>> loss, aux = loss_fn(prior.model_fn(sde), jnp.ones((8, 2)), jax.random.key(0))
    >>> loss.shape
    ()
    """
    if prediction not in _DENOISING_PREDICTIONS:
        raise ValueError(f"prediction must be one of {_DENOISING_PREDICTIONS}, got {prediction!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    conditioning = _Conditioning(image_cond_key, label_key, null_label, cond_drop_prob, degrade_fn)

    def loss_fn(model_fn, batch, key):
        x0, t, x_t, eps, cond = _noised(sde, batch, key, time_sampling, conditioning)
        pred = model_fn(x_t, t, cond)
        if pred.shape != x0.shape:
            raise ValueError(f"model_fn returned shape {pred.shape}, expected x_0's {x0.shape}")
        target = predictions.from_x0_eps(x0, eps, x_t, t, sde, prediction)
        mse = _per_example_mean((pred.astype(jnp.float32) - target) ** 2)
        if weighting == "simple":
            per_example = mse
        else:
            a, s = sde.marginal_coeffs(t)
            w = _x0_weight(weighting, a, s, min_snr_gamma, sigma_data)
            per_example = w / _error_factor(prediction, a, s) * mse
        return jnp.mean(per_example), {"mse": jnp.mean(mse)}

    return loss_fn


def conditional_loss(
    sde: LinearSDE,
    *,
    cond_key: str = "lq",
    degrade_fn: Callable | None = None,
    cond_drop_prob: float = 0.0,
    **options,
) -> LossFn:
    """Conditional direct diffusion (CDDM): SR3 (Saharia et al. 2021, Eq. 5) / Palette
    (Saharia et al. 2022, Eq. 1). The model sees ``cond = batch[cond_key]``, the low-quality
    image at the target resolution (for SR: the upsampled LQ), concatenated to x_t.

    If the batch has no ``cond_key``, ``degrade_fn(key, x0) -> lq`` makes it on the fly (pass a
    `jaxir.operators` degradation plus noise). With ``cond_drop_prob`` the condition is replaced by
    zeros per example (classifier-free guidance on the image). ``options`` go to
    `denoising_loss` (``prediction``, ``weighting``, ``label_key``, ...).
    """
    return denoising_loss(sde, image_cond_key=cond_key, degrade_fn=degrade_fn,
                          cond_drop_prob=cond_drop_prob, **options)


def score_matching_loss(
    sde: LinearSDE,
    *,
    prediction: str = "score",
    likelihood_weighting: bool = False,
    time_sampling="continuous",
    reduce: str = "mean",
    label_key: str | None = None,
    null_label: int | None = None,
    cond_drop_prob: float = 0.0,
) -> LossFn:
    """Continuous-time denoising score matching (Song et al. 2021, Eq. 7), t ~ U(t_min, T).

    With ``s = model_fn`` converted to a score (`jaxir.predictions`) and the DSM target
    ``∇ log p(x_t | x_0) = −ε/σ``, the per-example loss is ``λ(t) ‖s + ε/σ‖²`` with
    ``λ = σ²`` (default, i.e. ``‖σ s + ε‖²``) or ``λ = g(t)²`` (``likelihood_weighting``,
    Song et al. 2021b, Thm. 1: the weighted loss bounds the negative log-likelihood).
    ``reduce``: "mean" or "sum" over the data dimensions (Score-SDE's ``reduce_mean``).
    Works for every `LinearSDE` (its transition kernel gives the target).
    """
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    predictions._check(prediction)
    conditioning = _Conditioning(None, label_key, null_label, cond_drop_prob, None)

    def loss_fn(model_fn, batch, key):
        x0, t, x_t, eps, cond = _noised(sde, batch, key, time_sampling, conditioning)
        score = predictions.convert(model_fn(x_t, t, cond).astype(jnp.float32), x_t, t, sde,
                                    prediction, "score")
        _, std = sde.marginal_coeffs(t)
        std = bcast(std, x0)
        if likelihood_weighting:
            sq = (score + eps / std) ** 2 * bcast(sde.diffusion(t) ** 2, x0)
        else:
            sq = (score * std + eps) ** 2
        flat = sq.reshape(sq.shape[0], -1)
        per_example = jnp.mean(flat, -1) if reduce == "mean" else jnp.sum(flat, -1)
        return jnp.mean(per_example), {"eps_mse": jnp.mean((score * std + eps) ** 2)}

    return loss_fn


def classifier_loss(sde: LinearSDE, *, label_key: str = "label", time_sampling="auto") -> LossFn:
    """Cross-entropy of a noisy classifier p(y | x_t) at random t (Dhariwal & Nichol 2021,
    Sec. 4: the classifier is trained on the same noise distribution as the diffusion model).

    ``model_fn(x_t, t, None)`` returns logits (B, num_classes), e.g. a `NoisyClassifier`.
    ``aux`` has the batch ``accuracy``.
    """

    def loss_fn(model_fn, batch, key):
        x0 = _x0(batch)
        if not isinstance(batch, dict) or label_key not in batch:
            raise ValueError(f"classifier_loss needs a dict batch with a {label_key!r} entry")
        labels = jnp.asarray(batch[label_key], jnp.int32)
        k_t, k_eps = jax.random.split(key)
        t = sample_time(sde, k_t, x0.shape[0], time_sampling)
        x_t, _ = _perturb(sde, x0, t, k_eps)
        logits = model_fn(x_t, t, None).astype(jnp.float32)
        if logits.ndim != 2 or logits.shape[0] != x0.shape[0]:
            raise ValueError(f"classifier must return logits (B, K), got shape {logits.shape}")
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        acc = jnp.mean(jnp.argmax(logits, -1) == labels)
        return jnp.mean(ce), {"accuracy": acc}

    return loss_fn


LOSSES: dict[str, Callable[..., LossFn]] = {
    "denoising": denoising_loss,
    "conditional": conditional_loss,
    "dsm": score_matching_loss,
    "classifier": classifier_loss,
}
"""Loss factories by name: each is ``factory(sde, **options) -> loss_fn``."""


def make_loss(name: str, sde: LinearSDE, **options) -> LossFn:
    """``LOSSES[name](sde, **options)``, or the loss factory of the learned-restoration family
    ``name`` (`jaxir.training.families`), with a clear error for an unknown name."""
    from ._registry import FAMILIES

    if name in LOSSES:
        return LOSSES[name](sde, **options)
    family = FAMILIES.get(name)
    if family is None or family.factory is None:
        known = sorted([*LOSSES, *(k for k, f in FAMILIES.items() if f.factory is not None)])
        raise ValueError(f"unknown loss {name!r}; choose one of {known}")
    return family.factory(sde, **options)
