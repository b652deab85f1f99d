"""What a config builds: its loss, its network and initial train state, its preview sampler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from ..models import (
    Autoencoder,
    AutoencoderConfig,
    ClassifierConfig,
    NoisyClassifier,
    UNet,
    split_model,
)
from ._config import TrainConfig
from ._losses import make_loss
from ._sharding import replicated, tree_shardings
from ._state import TrainState, init_loss_scale, make_optimizer
from ._step import make_apply_fn

__all__ = ["build_loss", "init_train_state"]


def family_of(config: TrainConfig):
    """The learned-restoration `Family` of ``config.loss.kind``, or None."""
    from ._registry import FAMILIES

    return FAMILIES.get(config.loss.kind)


def build_loss(config: TrainConfig, sde):
    """The loss function a config names: a family's (`jaxir.training.families`) or one of the
    unconditional kinds ("denoising", "dsm", "classifier", "autoencoder")."""
    lc, model = config.loss, config.model
    family = family_of(config)
    if family is not None:
        return family.build_loss(config, sde)
    if lc.kind == "autoencoder":  # latent stage 1: reconstruction
        from ..latent import autoencoder_loss

        return autoencoder_loss(**lc.options)
    if lc.kind == "classifier":
        return make_loss("classifier", sde, time_sampling=lc.time_sampling)
    label = {}
    if getattr(model, "num_classes", None) is not None:
        label = {"label_key": "label", "null_label": model.num_classes}
    if lc.kind == "dsm":
        ts = "continuous" if lc.time_sampling == "auto" else lc.time_sampling
        return make_loss("dsm", sde, prediction=lc.prediction,
                         likelihood_weighting=lc.likelihood_weighting, time_sampling=ts,
                         cond_drop_prob=lc.cond_drop_prob, **label)
    return make_loss(lc.kind, sde, prediction=lc.prediction, weighting=lc.weighting,
                     time_sampling=lc.time_sampling, min_snr_gamma=lc.min_snr_gamma,
                     sigma_data=lc.sigma_data, cond_drop_prob=lc.cond_drop_prob, **label)


def model_class(config: TrainConfig):
    if isinstance(config.model, AutoencoderConfig):
        return Autoencoder
    return NoisyClassifier if isinstance(config.model, ClassifierConfig) else UNet


def apply_fn_of(config: TrainConfig, graphdef):
    """``apply_fn(params, dropout_key) -> model_fn`` of the config's network."""
    if config.loss.kind == "autoencoder":
        from ..latent import autoencoder_model_fn

        return lambda params, dropout_key=None: autoencoder_model_fn(graphdef, params)
    return make_apply_fn(graphdef, classifier=config.loss.kind == "classifier")


def init_train_state(config: TrainConfig, mesh: Mesh, total_steps: int | None = None):
    """``(graphdef, state, shardings, tx, lr_schedule)``: a fresh tree-layout state built
    directly in its sharding (the init is jitted with ``out_shardings``, so no host holds a full
    copy)."""
    total_steps = config.steps if total_steps is None else total_steps
    tx, schedule = make_optimizer(config.optim, total_steps)
    cls = model_class(config)
    graphdef, _ = split_model(nnx.eval_shape(lambda: cls(config.model, rngs=nnx.Rngs(0))))

    def init():
        params = nnx.state(cls(config.model, rngs=nnx.Rngs(config.seed)), nnx.Param)
        ema = jax.tree.map(lambda p: p + 0.0, params)
        rng = jax.random.key_data(jax.random.fold_in(jax.random.key(config.seed), 1))
        ls = init_loss_scale() if config.optim.loss_scaling else None
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params), ema_params=ema, rng=rng, loss_scale=ls)

    abstract = jax.eval_shape(init)
    shardings = tree_shardings(abstract, mesh, config.fsdp_min_size)
    state = jax.jit(init, out_shardings=shardings)()
    return graphdef, state, shardings, tx, schedule


def preview_sampler(config: TrainConfig, apply_fn, sde, shape, mesh, cond_batch):
    """jit(params, key) -> images: DDIM (η = 0) with x̂0 clipped to [-1, 1]; a conditional
    family's grid shows condition, sample and original side by side."""
    from ..operators import make_degradation
    from ..samplers import ddim_sample

    n = shape[0]
    model = config.model
    cond = None
    if cond_batch is not None:
        cond = make_degradation(config.loss.degradation)(jax.random.key(1), cond_batch)
    elif getattr(model, "num_classes", None) is not None:
        cond = {"label": jnp.arange(n, dtype=jnp.int32) % model.num_classes}

    def sample(params, key):
        out = ddim_sample(key, apply_fn(params, None), sde, shape,
                          prediction=config.loss.prediction, num_steps=config.sample_steps,
                          clip_x0=True, cond=cond)
        x = jnp.clip(out.x, -1.0, 1.0)
        return x if cond is None or isinstance(cond, dict) else jnp.concatenate(
            [cond, x, cond_batch])

    return jax.jit(sample, out_shardings=replicated(mesh))
