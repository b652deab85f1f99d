"""Fixed-key regression cases: every sampler, posterior sampler, loss / train step, restoration
entry point and CLI command of jaxir on tiny inputs, each a function returning named arrays.

This module is the single definition of the cases. ``tests/test_regression.py`` recomputes
them and compares with the arrays stored in ``tests/data/regression/<group>.npz``;
``experiments/tools/record_regression.py`` computes them and (with ``--write``) stores them.
Both import :data:`GROUPS` from here, so the test and the recorder cannot disagree.

What is recorded is the *current behaviour* (numbers, not correctness: correctness is the job
of the exact tests elsewhere in ``tests/``). The inputs are small (vectors of dimension 2-4,
8×8×1 / 8×8×3 images, 16×16×3 for the learned families, whose "sr:4" configs take 32×32 or
8×8; batch ≤ 3; a few steps): exact Gaussian priors (`jaxir.exact.Gaussian.model_fn`) where a
score is needed, fixed smooth nonlinear "toy" networks where a learned network is needed
(every code path around the network is the library's; only the network is replaced, which
keeps each case to about one small XLA compilation), and randomly initialised U-Nets where
the CLI loads or trains one.

A case (`Case`) runs ``fn() -> pytree of arrays`` (under ``jax.jit`` unless ``jit=False``)
and flattens it to ``{"path/of/leaf": np.ndarray}``; it must be deterministic (fixed keys,
fixed initialisation, no timings). The CLI cases return the decoded pixels of every PNG they
write (``png:<name>``, uint8), the numbers they print (as printed) or write to CSV / JSON /
JSONL (timings removed), and the list of files they wrote (``files``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import json
import re
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxir import bridges, exact, inverse, operators, samplers, schedules, sdes

# ---- shared inputs -------------------------------------------------------------------------
DDPM = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))  # the 1000-step DDPM chain
VP = sdes.VPSDE()
VE = sdes.VESDE(sigma_min=0.01, sigma_max=5.0)
D = 4  # vector cases: R^4, batch 3
B = 3


def _key(i: int):
    return jax.random.key(i)


@functools.cache
def _gauss(d: int = D, seed: int = 0, scale: float = 0.6) -> exact.Gaussian:
    """A fixed non-diagonal Gaussian on R^d."""
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(d, d)) * scale
    with jax.ensure_compile_time_eval():  # cached: concrete arrays even if first built in a jit
        return exact.Gaussian(rng.normal(size=d) * 0.5, L @ L.T / d + 0.1 * np.eye(d))


def _image_model(prior: exact.Gaussian, sde, shape, prediction="eps"):
    """The exact model of ``prior`` (on R^prod(shape)) acting on (B, *shape) images."""
    f = prior.model_fn(sde, prediction)

    def model_fn(x, t, cond=None):
        b = x.shape[0]
        return f(x.reshape(b, -1), t, None).reshape(x.shape)

    return model_fn


IMG = (8, 8, 1)  # image cases: 8x8x1, batch 2
IB = 2


@functools.cache
def _img_prior():
    return _gauss(int(np.prod(IMG)), seed=1, scale=0.3)


def _toy_net(x, t, cond=None, w=0.7):
    """A fixed smooth nonlinear stand-in for a network: per-pixel, time- and cond-dependent."""
    tt = jnp.asarray(t, jnp.float32).reshape((-1,) + (1,) * (x.ndim - 1)) / 100.0
    out = w * x + 0.2 * jnp.tanh(1.5 * x) + 0.05 * jnp.sin(3.0 * tt) + 0.03 * tt
    if cond is not None:
        c = jnp.asarray(cond, jnp.float32)
        if c.shape[-1] != x.shape[-1]:
            c = jnp.mean(c, axis=-1, keepdims=True)
        out = out + 0.1 * jnp.tanh(c)
    return out


def to_arrays(tree) -> dict[str, np.ndarray]:
    """Flatten a case's output pytree (Samples, dicts, NamedTuples) into ``{path: array}``;
    ``None`` leaves (an absent trajectory) are dropped."""
    out = {}
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in leaves:
        out["/".join(_key_name(k) for k in path)] = np.asarray(leaf)
    return out


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey (NamedTuple fields), SequenceKey
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


GROUPS: dict[str, dict] = {}


class Case:
    """A registered case: ``fn`` returns a pytree of arrays; ``jit`` runs it under one
    ``jax.jit`` (one compilation instead of one per eager operation). ``adaptive`` marks a
    case whose step sequence an adaptive solver chooses (see `compare`)."""

    def __init__(self, fn, jit: bool, adaptive: bool = False):
        self.fn, self.jit, self.adaptive = fn, jit, adaptive

    def __call__(self) -> dict[str, np.ndarray]:
        out = jax.jit(self.fn)() if self.jit else self.fn()
        return to_arrays(out)

    def compare(self, got, want) -> list[str]:
        if self.adaptive:
            return compare(got, want, rtol=ADAPTIVE_RTOL, approx_ints=("nfe",))
        return compare(got, want)


def case(group: str, name: str | None = None, jit: bool = True, adaptive: bool = False):
    """Register ``fn`` as case ``name`` (default: the function name) of ``group``."""

    def deco(fn):
        GROUPS.setdefault(group, {})[name or fn.__name__] = Case(fn, jit, adaptive)
        return fn

    return deco


# ---- jaxir.samplers --------------------------------------------------------------------------
def _mf(sde=DDPM, prediction="eps", d=D):
    return _gauss(d).model_fn(sde, prediction)


def _register(group, name, fn, *args, **kw):
    case(group, name, **kw)(functools.partial(fn, *args))


def _ddpm(variance, clip, steps):
    return samplers.ddpm_sample(_key(1), _mf(), DDPM, (B, D), num_steps=steps,
                                variance=variance, clip_x0=clip)


_register("samplers", "ddpm_fixed_small", _ddpm, "fixed_small", False, 10)
_register("samplers", "ddpm_fixed_large", _ddpm, "fixed_large", False, 10)
_register("samplers", "ddpm_clip_full_chain", _ddpm, "fixed_small", True, None)


@case("samplers")
def ddpm_images_trajectory_known():
    """``save_every`` (trajectory) and ``known=`` (Palette's pasting) on 8x8x1 images."""
    mf = _image_model(_img_prior(), DDPM, IMG)
    mask = jnp.zeros(IMG).at[:, :4].set(1.0)
    vals = 0.3 * jnp.ones((IB, *IMG))
    return samplers.ddpm_sample(_key(3), mf, DDPM, (IB, *IMG), num_steps=8,
                                save_every=3, known=(vals, mask))


def _ddim(eta, spacing):
    return samplers.ddim_sample(_key(4), _mf(), DDPM, (B, D), num_steps=7, eta=eta,
                                spacing=spacing)


_register("samplers", "ddim_eta0_leading", _ddim, 0.0, "leading")
_register("samplers", "ddim_eta1_trailing", _ddim, 1.0, "trailing")
_register("samplers", "ddim_eta0_linspace", _ddim, 0.0, "linspace")


@case("samplers")
def ddim_v_prediction_continuous_trajectory():
    return samplers.ddim_sample(_key(5), _mf(VP, "v"), VP, (B, D), prediction="v",
                                num_steps=6, eta=1.0, save_every=2)


def _dpm(spacing, sde):
    return samplers.dpm_solver_sample(_key(7), _mf(sde), sde, (B, D), num_steps=6,
                                      spacing=spacing)


_register("samplers", "dpm_solver_logsnr_vp", _dpm, "logsnr", VP)
_register("samplers", "dpm_solver_leading_ddpm", _dpm, "leading", DDPM)


def _sde(solver, brownian):
    return samplers.sde_sample(_key(8), _mf(VP), VP, (B, D), num_steps=12, solver=solver,
                               brownian=brownian)


_register("samplers", "sde_euler_step", _sde, "euler", "step")
_register("samplers", "sde_heun_virtual", _sde, "heun", "virtual")


@case("samplers")
def sde_ve_score_unsafe_trajectory():
    return samplers.sde_sample(_key(9), _mf(VE, "score"), VE, (B, D), prediction="score",
                               num_steps=10, brownian="unsafe", save_every=5)


@case("samplers")
def ode_heun():
    return samplers.ode_sample(_key(10), _mf(VP), VP, (B, D), num_steps=8)


@case("samplers", adaptive=True)
def ode_tsit5_adaptive_x0_denoise():
    return samplers.ode_sample(_key(11), _mf(VP, "x0"), VP, (B, D), prediction="x0",
                               solver="tsit5", num_steps=None, rtol=1e-3, atol=1e-3,
                               denoise=True)


@case("samplers")
def pc_reverse_diffusion_langevin():
    return samplers.pc_sample(_key(12), _mf(VP), VP, (B, D), num_steps=8,
                              n_corrector_steps=2)


@case("samplers")
def pc_ve_euler_maruyama_trajectory():
    return samplers.pc_sample(_key(13), _mf(VE, "score"), VE, (B, D),
                              prediction="score", num_steps=6, predictor="euler_maruyama",
                              save_every=3)


def _flow(solver, steps):
    hq, lq = _gauss(3, seed=2), _gauss(3, seed=3)
    v = exact.interpolant_velocity(lq, hq)
    return samplers.flow_sample(_key(15), v, lq.sample(_key(14), B), num_steps=steps,
                                solver=solver, source_noise=0.05, rtol=1e-3, atol=1e-3,
                                save_every=2 if steps else None)


_register("samplers", "flow_euler_trajectory", _flow, "euler", 5)
_register("samplers", "flow_tsit5_adaptive", _flow, "tsit5", None, adaptive=True)

_MU = jnp.asarray(np.random.default_rng(4).normal(size=(B, D)) * 0.5, jnp.float32)


def _bridge_net(x, t, cond=None):
    return _toy_net(x, t, cond, w=0.4)


@case("samplers")
def irsde_sde_residual_trajectory():
    sde = sdes.MeanRevertingSDE(_MU, 0.3, T=12)
    return samplers.irsde_sample(_key(16), _bridge_net, sde, save_every=4)


@case("samplers")
def irsde_ode_plain_score():
    sde = sdes.MeanRevertingSDE(_MU, 0.3, T=10)
    return samplers.irsde_sample(_key(17), _bridge_net, sde, ode=True,
                                 prediction="score", input_mode="plain")


def _goub(mean_ode):
    return samplers.goub_sample(_key(18), _bridge_net, bridges.goub(_MU, lam=0.3, T=10),
                                mean_ode=mean_ode)


_register("samplers", "goub_mean_ode", _goub, True)
_register("samplers", "goub_stochastic", _goub, False)


def _i2sb(ot):
    return samplers.i2sb_sample(_key(19), _bridge_net, bridges.i2sb(_MU, beta_max=1.0),
                                num_steps=6, ot_ode=ot, cond=_MU, clip_x0=True,
                                save_every=3)


_register("samplers", "i2sb_posterior_chain", _i2sb, False)
_register("samplers", "i2sb_ot_ode", _i2sb, True)


def _ddbm(kind):
    b = bridges.ddbm_vp(_MU) if kind == "vp" else bridges.ddbm_ve(_MU)
    den = samplers.ddbm_denoiser(_bridge_net, b, sigma_data_end=0.6, cov_xy=0.1)
    return samplers.ddbm_sample(_key(20), den, b, num_steps=5, save_every=2)


_register("samplers", "ddbm_vp", _ddbm, "vp")
_register("samplers", "ddbm_ve", _ddbm, "ve")

_OP = operators.DenseMatrix(jnp.asarray(np.random.default_rng(5).normal(size=(2, D)) / 2,
                                        jnp.float32))


def _cddb(deep):
    y = jax.vmap(_OP.A)(_MU * 0.8)
    return samplers.cddb_sample(_key(21), _bridge_net, bridges.i2sb(_MU, beta_max=1.0),
                                _OP, y, num_steps=5, step_size=0.7, deep=deep)


_register("samplers", "cddb", _cddb, False)
_register("samplers", "cddb_deep", _cddb, True)


@case("samplers")
def resshift_trajectory():
    rs = samplers.resshift_process(6, 2.0)
    y0 = jnp.tanh(jax.random.normal(_key(22), (IB, *IMG)))
    return samplers.resshift_sample(_key(23), _toy_net, rs, y0, clip_x0=True,
                                    save_every=2)


@case("samplers")
def log_likelihood_hutchinson_heun():
    x = _gauss().sample(_key(26), B)
    return samplers.log_likelihood(_key(27), _mf(VP), VP, x, solver="heun",
                                   num_steps=10)


@case("samplers", adaptive=True)
def log_likelihood_exact_dequantized():
    x = jnp.clip(_gauss().sample(_key(28), B), -1, 1)
    return samplers.log_likelihood(_key(29), _mf(VP), VP, x, divergence="exact",
                                   solver="tsit5", rtol=1e-3, atol=1e-3,
                                   dequantize=True)


# ---- jaxir.inverse ---------------------------------------------------------------------------
def _vec_problem(sigma_y):
    """Dense 2x4 operator, a y from a prior draw (+ noise): (op, y (2,))."""
    x = _gauss().sample(_key(30), 1)[0]
    return _OP, _OP.A(x) + sigma_y * jax.random.normal(_key(31), (2,))


@functools.cache
def _img_x():
    """Two 8x8x1 'clean' images from the image prior."""
    with jax.ensure_compile_time_eval():
        return _img_prior().sample(_key(32), IB).reshape(IB, *IMG)


def _img_problem(kind, sigma_y):
    if kind == "sr":
        op = operators.SuperResolution(IMG, 2)
    else:
        op = operators.Inpainting(operators.random_mask(_key(33), IMG, 0.5))
    y = jax.vmap(op.A)(_img_x())
    y = y + sigma_y * jax.random.normal(_key(34), y.shape)
    return op, y


def _imf():
    return _image_model(_img_prior(), DDPM, IMG)


@case("inverse")
def dps_inpaint_images_trajectory():
    op, y = _img_problem("inpaint", 0.05)
    return inverse.dps_sample(_key(41), _imf(), DDPM, op, y, 0.05, (IB, *IMG),
                              num_steps=6, save_every=3)


@case("inverse")
def pigdm_sr_images():
    op, y = _img_problem("sr", 0.05)
    return inverse.pigdm_sample(_key(42), _imf(), DDPM, op, y, 0.05, (IB, *IMG),
                                num_steps=6, eta=0.5)


@case("inverse")
def ddrm_inpaint_images():
    op, y = _img_problem("inpaint", 0.05)
    return inverse.ddrm_sample(_key(43), _imf(), DDPM, op, y, 0.05, (IB, *IMG),
                               num_steps=5)


@case("inverse")
def ddnm_dense_noiseless():
    op, y = _vec_problem(0.0)
    return inverse.ddnm_sample(_key(45), _mf(), DDPM, op, y, 0.0, (B, D), num_steps=8)


@case("inverse")
def ddnm_plus_time_travel_sr_images():
    op, y = _img_problem("sr", 0.2)
    return inverse.ddnm_sample(_key(46), _imf(), DDPM, op, y, 0.2, (IB, *IMG),
                               num_steps=6, travel_length=2, travel_repeat=2)


@case("inverse")
def mcgdiff_dense_particles():
    """Resampling picks discrete indices; see the test module's note on flips."""
    op, y = _vec_problem(0.1)
    out = inverse.mcgdiff_sample(_key(47), _mf(), DDPM, op, y, 0.1, (2, D), num_particles=8,
                                 num_steps=6, return_particles=True)
    return {"samples": out, "x_mean": out.x.mean(0)}  # a smooth statistic beside the draws


@case("inverse")
def projection_inpaint_images():
    op, y = _img_problem("inpaint", 0.0)
    return inverse.projection_sample(_key(49), _imf(), DDPM, op, y, 0.0, (IB, *IMG),
                                     num_steps=6)


@case("inverse")
def ilvr_sr_images():
    op, y = _img_problem("sr", 0.0)
    return inverse.ilvr_sample(_key(50), _imf(), DDPM, op, y, 0.0, (IB, *IMG),
                               num_steps=6, t_stop=0.3)


@case("inverse")
def mcg_inpaint_images_squared():
    op, y = _img_problem("inpaint", 0.0)
    return inverse.mcg_sample(_key(51), _imf(), DDPM, op, y, 0.0, (IB, *IMG),
                              num_steps=6, scale=0.5, norm="squared")


@case("inverse")
def repaint_inpaint_images():
    op, y = _img_problem("inpaint", 0.0)
    return inverse.repaint_sample(_key(52), _imf(), DDPM, op, y, 0.0, (IB, *IMG),
                                  num_steps=6, jump_length=2, jump_n_sample=2,
                                  save_every=4)


def _gdp(guidance):
    op, y = _vec_problem(0.05)
    return inverse.gdp_sample(_key(53), _mf(), DDPM, op, y, 0.05, (B, D), scale=2.0,
                              guidance=guidance, num_steps=8, clip_x0=False)


_register("inverse", "gdp_x0_dense", _gdp, "x0")
_register("inverse", "gdp_xt_dense", _gdp, "xt")


@case("inverse")
def gdp_learned_degradation():
    import optax

    y = jnp.tanh(jax.random.normal(_key(54), (8, 8, 3))) * 0.5
    prior = _gauss(192, seed=6, scale=0.2)
    mf = _image_model(prior, DDPM, (8, 8, 3))
    return inverse.gdp_sample(_key(55), mf, DDPM, None, y, None, (IB, 8, 8, 3),
                              scale=5.0, learn_degradation=True,
                              optimizer=optax.sgd(1.0), num_steps=5)


@case("inverse")
def diffpir_dense():
    op, y = _vec_problem(0.05)
    return inverse.diffpir_sample(_key(56), _mf(), DDPM, op, y, 0.05, (B, D),
                                  num_steps=6, clip_x0=False)


@case("inverse")
def classifier_guidance_ddpm():
    mix = exact.GaussianMixture(jnp.array([0.6, 0.4]), jnp.array([[-1.0, 0.5], [1.0, -0.5]]),
                                jnp.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, 0.0], [0.0, 0.6]]]))

    def log_prob(x, t, c):  # one example: a smooth stand-in classifier, logits linear in x_t
        logits = jnp.stack([x @ jnp.array([1.0, -0.5]), x @ jnp.array([-1.0, 0.5])]) * (1 - t)
        return jax.nn.log_softmax(logits)[c]

    guided = inverse.classifier_guidance(mix.model_fn(DDPM), DDPM, log_prob, scale=2.0)
    return samplers.ddpm_sample(_key(58), guided, DDPM, (B, 2), num_steps=8,
                                clip_x0=False, cond=jnp.array([0, 1, 0]))


@case("inverse")
def classifier_free_guidance_ddim():
    g0, g1, gm = _gauss(D, 7).model_fn(DDPM), _gauss(D, 8).model_fn(DDPM), _mf()

    def model(x, t, c):
        cond = jnp.where((c == 0)[:, None], g0(x, t), g1(x, t))
        return jnp.where((c < 0)[:, None], gm(x, t), cond)

    guided = inverse.classifier_free_guidance(model, 1.5, null_label=-1)
    return samplers.ddim_sample(_key(59), guided, DDPM, (B, D), num_steps=6, eta=0.5,
                                cond=jnp.array([0, 1, 1]))


# ---- jaxir.training: loss value and one train step per loss kind ------------------------------
def _toy_params(c: int, k: int | None = None):
    """Fixed 'network' parameters: per-channel gains (a classifier head when ``k``)."""
    base = jnp.linspace(0.0, 1.0, c, dtype=jnp.float32)
    if k is not None:
        return {"W": jnp.outer(base - 0.5, jnp.linspace(-1.0, 1.0, k)) + 0.3 * jnp.eye(c, k),
                "u": jnp.linspace(-0.2, 0.2, k)}
    return {"w": 0.6 + 0.2 * base, "b": 0.2 - 0.1 * base, "v": 0.1 + 0.05 * base}


def _toy_apply(params, dropout_key=None):
    """``apply_fn(params, dropout_key) -> model_fn``: `_toy_net` with learnable gains."""

    def model_fn(x, t, cond=None):
        tt = jnp.asarray(t, jnp.float32).reshape((-1,) + (1,) * (x.ndim - 1))
        out = params["w"] * x + params["b"] * jnp.tanh(1.5 * x) + 0.05 * jnp.sin(0.03 * tt)
        if cond is not None:
            c = jnp.asarray(cond, x.dtype)
            c = c if c.shape[-1] == x.shape[-1] else jnp.mean(c, -1, keepdims=True)
            out = out + params["v"] * jnp.tanh(c)
        return out

    return model_fn


def _toy_classifier_apply(params, dropout_key=None):
    def model_fn(x, t, cond=None):
        tt = jnp.asarray(t, jnp.float32).reshape(-1, 1)
        return jnp.mean(x, axis=(1, 2)) @ params["W"] + params["u"] * jnp.cos(tt)

    return model_fn


def _toy_autoencoder_apply(params, dropout_key=None):
    """``model_fn(x) -> (D(E(x)), E(x))``: 2x2 average pooling and nearest upsampling."""

    def model_fn(x, t=None, cond=None):
        b, h, w, c = x.shape
        z = params["w"] * x.reshape(b, h // 2, 2, w // 2, 2, c).mean((2, 4))
        up = jnp.repeat(jnp.repeat(z, 2, 1), 2, 2)
        return up + params["b"] * jnp.tanh(x), z

    return model_fn


@functools.cache
def _autoencoder_file() -> str:
    """A tiny randomly initialised autoencoder (f = 4) saved with `jaxir.latent.save_autoencoder`
    in a temporary folder kept for the life of the process."""
    from flax import nnx

    from jaxir.latent import save_autoencoder
    from jaxir.models import Autoencoder, AutoencoderConfig, split_model

    cfg = AutoencoderConfig(in_channels=3, base_channels=8, factor=4, latent_channels=4,
                            num_groups=4)
    with jax.ensure_compile_time_eval():
        _, params = split_model(Autoencoder(cfg, rngs=nnx.Rngs(1)))
    return str(save_autoencoder(Path(_tmpdir()) / "ae.npz", cfg, params, latent_scale=1.3))


@functools.cache
def _tmpdir() -> str:
    d = tempfile.TemporaryDirectory(prefix="jaxir_regression_")
    _KEEP.append(d)  # removed when the process exits
    return d.name


_KEEP: list = []


def _train_config(name: str):
    """A training config of the cases: ``name`` is a file of ``experiments/configs`` or one of
    the extra ones below (built from `digits_tiny` / the photos configs)."""
    from jaxir.models import ClassifierConfig
    from jaxir.training import LossConfig, SDEConfig, load_config

    if name == "denoising_v_min_snr_ddpm":
        cfg = load_config("digits_tiny")
        return dataclasses.replace(cfg, sde=SDEConfig(name="ddpm_linear"), loss=LossConfig(
            prediction="v", weighting="min_snr"))
    if name == "dsm_likelihood_subvp":
        cfg = load_config("digits_tiny")
        return dataclasses.replace(cfg, sde=SDEConfig(name="subvp"), loss=LossConfig(
            kind="dsm", prediction="score", likelihood_weighting=True, cond_drop_prob=0.2))
    if name == "classifier":
        cfg = load_config("digits_tiny")
        return dataclasses.replace(cfg, model=ClassifierConfig(num_classes=3, in_channels=1),
                                   loss=LossConfig(kind="classifier"))
    cfg = load_config(name)
    if name == "latent_photos":  # the stage-1 autoencoder of the cases
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(
            cfg.loss, options={"autoencoder": _autoencoder_file()}))
    return cfg


TRAIN_CONFIGS = ("digits_tiny", "denoising_v_min_snr_ddpm", "dsm_likelihood_subvp", "classifier", "sr3_photos", "palette_photos",
                 "irsde_photos", "goub_photos", "i2sb_photos", "ddbm_photos", "flow_photos",
                 "resshift_photos", "regression_photos", "latent_photos", "autoencoder_photos")


def _train_step_case(name: str):
    """The config's loss (`build_loss`), optimizer (`make_optimizer`) and one `make_train_step`
    step from fixed toy parameters on a fixed 2-image 8x8 batch: the metrics (the loss value
    at the step's key, grad norm, lr, aux) and the updated params and EMA."""
    from jaxir.models import AutoencoderConfig, ClassifierConfig
    from jaxir.training import TrainState, build_loss, build_sde, make_optimizer, make_train_step

    cfg = _train_config(name)
    m = cfg.model
    c = m.cond_channels if cfg.loss.kind == "latent" else m.in_channels
    x0 = jnp.tanh(1.5 * jax.random.normal(_key(60), (2, 8, 8, c)))
    batch = {"image": x0}
    if isinstance(m, ClassifierConfig):
        params, apply = _toy_params(c, m.num_classes), _toy_classifier_apply
        batch["label"] = jnp.array([0, 2])
    elif isinstance(m, AutoencoderConfig):
        params, apply = _toy_params(c), _toy_autoencoder_apply
    else:
        params, apply = _toy_params(m.in_channels), _toy_apply
    loss_fn = build_loss(cfg, build_sde(cfg.sde))
    tx, schedule = make_optimizer(cfg.optim, cfg.steps)
    step = jax.jit(make_train_step(loss_fn, apply, tx, ema_decay=cfg.optim.ema_decay,
                                   ema_warmup=cfg.optim.ema_warmup, lr_schedule=schedule))
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params),
                       jax.tree.map(jnp.copy, params), jax.random.key_data(_key(61)))
    state, m1 = step(state, batch)
    state, m2 = step(state, batch)  # a second step: Adam's moments and the EMA in use
    return {"metrics1": m1, "metrics2": m2, "params": state.params, "ema": state.ema_params,
            "rng": state.rng}


for _name in TRAIN_CONFIGS:  # one jitted step, called twice (one compilation)
    case("training", _name, jit=False)(functools.partial(_train_step_case, _name))


# ---- jaxir.restore -----------------------------------------------------------------------------
def _exact_prior(size: int = 8, channels: int = 3):
    """A `jaxir.priors.Prior` whose model is the exact ε of a Gaussian on size² · channels
    pixels (no network: ``graphdef=None``)."""
    from jaxir.priors import Prior

    shape = (size, size, channels)
    g = _gauss(int(np.prod(shape)), seed=9, scale=0.25)
    return Prior(_image_model(g, DDPM, shape), DDPM, "eps", size, channels, None, None, None)


def _clean_image(h, w, c=3, seed=0):
    """A smooth fixed image in [-1, 1]."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [np.sin(3 * xx + k) * np.cos(2 * yy - k) * 0.8 for k in range(c)]
    return np.stack(chans, -1).astype(np.float32)


def _restore_case(task, method, h, w, steps=None, samples=1):
    from jaxir.restore import degrade_images, get_task, restore_image

    t = get_task(task)
    x = _clean_image(h, w)
    y, m = degrade_images(_key(70), t, x[None])
    mask = None if m is None else np.asarray(m[0])
    out = restore_image(np.asarray(y[0]), task, method, prior=_exact_prior(), mask=mask,
                        steps=steps, seed=3, samples=samples, batch_size=4)
    return {"y": y[0], "x_hat": out}


case("restore", "restore_image_ddrm_denoise_samples2", jit=False)(
    functools.partial(_restore_case, "denoise", "ddrm", 12, 10, 3, 2))
case("restore", "restore_image_repaint_inpaint", jit=False)(
    functools.partial(_restore_case, "inpaint", "repaint", 8, 8, 4))

_LEARNED_CONFIG = {"conditional": "sr3_photos", "latent": "latent_photos"}
_LEARNED_STEPS = {"conditional": 3, "i2sb": 3, "ddbm": 3, "flow": 3, "latent": 3}


def _learned_case(kind: str, mask: bool = False):
    """`restore_learned` on a fixed 2x16x16x3 LQ with the kind's example config and the toy
    network (its gains for 3 channels; a latent model sees 4-channel latents)."""
    from jaxir.restore import LearnedModel, restore_learned
    from jaxir.training import build_sde

    name = "palette_photos" if mask else _LEARNED_CONFIG.get(kind, f"{kind}_photos")
    cfg = _train_config(name)
    codec = None
    if kind == "latent":
        from jaxir.latent import load_autoencoder

        codec = load_autoencoder(_autoencoder_file()).codec()
    model = LearnedModel(_toy_apply(_toy_params(cfg.model.in_channels)), build_sde(cfg.sde), cfg,
                         codec)
    lq = jnp.tanh(jax.random.normal(_key(71), (2, 16, 16, 3)))
    m = jnp.zeros((16, 16)).at[:, :8].set(1.0) if mask else None
    return restore_learned(model, lq, _key(72), steps=_LEARNED_STEPS.get(kind), mask=m)


for _kind in ("conditional", "irsde", "goub", "i2sb", "ddbm", "flow", "resshift", "latent",
              "regression"):
    _register("restore", f"restore_learned_{_kind}", _learned_case, _kind)
_register("restore", "restore_learned_palette_mask", _learned_case, "conditional", True)


# ---- the jaxir command line --------------------------------------------------------------------
def _write_tiny_prior(path, size: int = 16) -> str:
    """A randomly initialised one-level U-Net (8 channels) in the jaxir prior format."""
    from flax import nnx

    from jaxir.models import UNet, UNetConfig, split_model
    from jaxir.training import DataConfig, LossConfig, SDEConfig, TrainConfig, config_to_dict

    cfg = TrainConfig(
        name="tiny",
        model=UNetConfig(in_channels=3, out_channels=3, base_channels=8, channel_mults=(1,),
                         num_res_blocks=1, attention_resolutions=(), image_size=size,
                         num_groups=4),
        sde=SDEConfig(name="ddpm_linear", num_train_steps=1000),
        loss=LossConfig(prediction="eps"),
        data=DataConfig(source="photos", image_size=size, batch_size=4))
    _, params = split_model(UNet(cfg.model, rngs=nnx.Rngs(0)))
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    arrays = {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}
    arrays["__config__"] = np.frombuffer(json.dumps(config_to_dict(cfg)).encode(), np.uint8)
    np.savez(path, **arrays)
    return str(path)


@functools.cache
def _tiny_prior() -> str:
    return _write_tiny_prior(Path(_tmpdir()) / "tiny16.npz")


def _png(path, h, w, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = (127.5 * (_clean_image(h, w) + 1.0) + rng.integers(-20, 21, (h, w, 3))).clip(0, 255)
    Image.fromarray(img.astype(np.uint8)).save(path)
    return str(path)


def _cli(argv) -> str:
    """Run ``jaxir ARGV`` in-process; its stdout (an error if the exit code is not 0)."""
    from jaxir.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    if code != 0:
        raise RuntimeError(f"jaxir {' '.join(map(str, argv))} exited {code}: {err.getvalue()}")
    return out.getvalue()


def _files(root: Path) -> dict[str, np.ndarray]:
    """The files written under ``root`` (``files``: sorted relative paths; orbax checkpoint
    folders are listed, not their contents) and the decoded pixels of every PNG."""
    from PIL import Image

    names, out = [], {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if ("checkpoints" in rel.parts[:-2] or rel.name.startswith(".")):
            continue  # inside one orbax checkpoint (orbax's layout), or a lock file
        names.append(str(rel) + ("/" if p.is_dir() else ""))
        if p.suffix == ".png":
            out[f"png:{rel}"] = np.asarray(Image.open(p))
    out["files"] = np.array(names)
    return out


_NUM = r"(-?\d+\.\d+|-?\d+)"


def _printed_metrics(text: str) -> np.ndarray:
    """The PSNR / SSIM figures ``jaxir restore`` prints, as the printed strings."""
    return np.array(re.findall(rf"PSNR\s+{_NUM} dB\s+SSIM\s+{_NUM}", text)).reshape(-1)


def _no_timing(d: dict) -> dict:
    return {k: v for k, v in d.items() if not any(s in k for s in ("sec", "time"))}


def _scalar_fields(rows) -> list[dict]:
    """JSON rows without their list / dict fields (the nested parts of a benchmark row)."""
    return [{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows]


def _records(prefix: str, rows) -> dict[str, np.ndarray]:
    """A list of flat dicts (CSV / JSON rows) as one array per field (timings removed)."""
    out = {}
    rows = [_no_timing(r) for r in rows]
    for k in dict.fromkeys(k for r in rows for k in r):
        vals = [r.get(k) for r in rows]
        try:
            out[f"{prefix}.{k}"] = np.array([float(v) for v in vals], np.float64)
        except (TypeError, ValueError):
            out[f"{prefix}.{k}"] = np.array([str(v) for v in vals])
    return out


def _fresh(name: str) -> Path:
    d = Path(_tmpdir()) / name
    if d.exists():
        import shutil

        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


@case("cli", jit=False)
def restore_gaussian_baseline():
    d = _fresh("restore_gaussian")
    src = _png(d / "in.png", 24, 20)
    text = _cli(["restore", "--method", "gaussian", "--task", "denoise", src, "--degrade",
                 "-o", d / "out" / "out.png"])
    return {**_files(d), "printed": _printed_metrics(text)}


@case("cli", jit=False)
def restore_ddrm_tiny_unet_prior():
    d = _fresh("restore_ddrm")
    src = _png(d / "in.png", 16, 16, seed=1)
    text = _cli(["restore", "--method", "ddrm", "--task", "sr4", src, "--degrade", "-o",
                 d / "out.png", "--prior", _tiny_prior(), "--steps", "2", "--samples", "2"])
    return {**_files(d), "printed": _printed_metrics(text)}


@case("cli", jit=False)
def evaluate_two_crops():
    d = _fresh("evaluate")
    _cli(["evaluate", "--method", "ddrm,gaussian", "--task", "denoise", "--n", "2", "--steps",
          "2", "--prior", _tiny_prior(), "--out", d])
    with open(d / "evaluate_denoise.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {"files": _files(d)["files"], **_records("csv", rows)}


@case("cli", jit=False)
def bench_gmm_smallest():
    text = _cli(["bench", "gmm", "--json", "--dim", "4", "--dy", "1", "--problems", "1",
                 "--samples", "64", "--steps", "5", "--methods", "mcgdiff-32"])
    return _records("rows", _scalar_fields(json.loads(text)["rows"]))


@case("cli", jit=False)
def train_then_sample():
    """``jaxir train`` (digits_tiny with a one-level 8-channel U-Net, 3 steps on 8x8 digits,
    checkpoints at 2 and 3) then ``jaxir sample`` (DDIM, 3 steps, 4 images) from its EMA
    params."""
    d = _fresh("train")
    wd = d / "run"
    _cli(["train", "--config", "digits_tiny", "--workdir", wd, "--steps", "3", "--data",
          "digits", "--mesh", "data=1,fsdp=1", "--no-progress", "--set", "model.channel_mults=[1]",
          "--set", "model.base_channels=8", "--set", "model.num_groups=4", "--set",
          "save_every=2"])
    _cli(["sample", "--workdir", wd, "--sampler", "ddim", "--n", "4", "--steps", "3",
          "--output", d / "grid.png"])
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    files = _files(d)
    files.pop("png:run/loss.png", None)  # a matplotlib plot: its pixels depend on the fonts
    return {**files, **_records("metrics", rows)}


@case("cli", jit=False)
def train_irsde_then_sample_lq():
    """``jaxir train`` of a learned restoration family (IR-SDE denoising, a one-level 8-channel
    U-Net, 2 steps at batch 2 on 32x32 photo crops) then ``jaxir sample --lq`` (its own
    fixed 100-step reverse SDE) on a noisy PNG: the family record, the trainer and the learned
    sampler through the CLI."""
    d = _fresh("irsde")
    wd = d / "run"
    _cli(["train", "--config", "irsde_photos", "--workdir", wd, "--steps", "2", "--data",
          "photos", "--mesh", "data=1,fsdp=1", "--no-progress", "--set", "model.channel_mults=[1]",
          "--set", "model.base_channels=8", "--set", "model.num_groups=4", "--set",
          "data.batch_size=2", "--set", "save_every=2"])
    lq = _png(d / "lq.png", 32, 32, seed=2)
    text = _cli(["sample", "--workdir", wd, "--lq", lq, "--output",
                 d / "restored.png"])
    rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    files = _files(d)
    files.pop("png:run/loss.png", None)  # a matplotlib plot: its pixels depend on the fonts
    return {**files, **_records("metrics", rows),
            "printed_nfe": np.array(re.findall(r"NFE (\d+)", text))}


@case("cli", jit=False)
def bench_gaussian_small():
    """``jaxir bench gaussian`` (every sampler against an exact Gaussian) at d = 2, 256
    samples, 100 steps (at 20 the predictor-corrector rows fail their 5-SE check and the
    command exits 1): the errors it reports (``_records`` drops the wall clock)."""
    text = _cli(["bench", "gaussian", "--json", "--dim", "2", "--samples", "256", "--steps",
                 "100"])
    return _records("rows", _scalar_fields(json.loads(text)))


# ---- storage and comparison (shared by the test and the recorder) ------------------------------
DATA_DIR = Path(__file__).resolve().parent / "data" / "regression"
SEP = "::"  # npz key = f"{case}{SEP}{array name}"
RTOL = 1e-5
"""Relative tolerance of float arrays; the absolute one is ``RTOL * max|stored array|``."""
ADAPTIVE_RTOL = 1e-2
"""The same for cases run by an adaptive solver (its rtol = atol = 1e-3): a reordering can flip
one accept / reject decision, which changes the step sequence, so the result moves by about
the solver's tolerance (measured 1.3e-4 relative when XLA fused a case differently) and the
NFE by a few steps (55 → 61); NFE is then compared within 25 %."""
APPROX_INT_REL = 0.25


def group_path(group: str) -> Path:
    return DATA_DIR / f"{group}.npz"


def load_group(group: str) -> dict[str, dict[str, np.ndarray]]:
    """``{case: {name: array}}`` as stored (no pickle)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(group_path(group), allow_pickle=False) as f:
        for k in f.files:
            c, _, name = k.partition(SEP)
            out.setdefault(c, {})[name] = f[k]
    return out


def save_group(group: str, results: dict[str, dict[str, np.ndarray]]) -> Path:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    flat = {f"{c}{SEP}{name}": a for c, arrays in results.items() for name, a in arrays.items()}
    path = group_path(group)
    np.savez_compressed(path, **flat)
    return path


def pixel_digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def cli_summary(results: dict[str, dict[str, np.ndarray]]) -> dict:
    """The human-readable mirror ``cli.json`` of the CLI cases: the numbers they print or
    write (timings removed), the files they write, and for every PNG the shape and the SHA-256
    of its decoded pixels (not of the PNG bytes)."""
    out = {}
    for c, arrays in sorted(results.items()):
        d = {}
        for name, a in sorted(arrays.items()):
            if name.startswith("png:"):
                d[name] = {"shape": list(a.shape), "sha256": pixel_digest(a)}
            else:
                d[name] = a.tolist()
        out[c] = d
    return out


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def compare(got: dict[str, np.ndarray], want: dict[str, np.ndarray], *, rtol: float = RTOL,
            approx_ints=()) -> list[str]:
    """Every difference between a recomputed case and its stored arrays (empty if none).

    - floats: ``|got − want| ≤ rtol·|want| + rtol·max|want|`` (float32 rounding of a
      refactoring that reorders operations), same shape and dtype, non-finite entries identical;
    - uint8 (decoded PNG pixels): within 1 grey level (a float that rounds the other way);
    - strings that are printed numbers: within one unit of the last printed digit; other
      strings: exactly equal;
    - ints and bools: exactly equal (any integer width: an NFE may be a Python int or an int32
      array), except the names in ``approx_ints`` (last path component): within 25 %.
    """
    problems = []
    for name in sorted(set(got) | set(want)):
        if name not in want:
            problems.append(f"{name}: new output (not stored)")
            continue
        if name not in got:
            problems.append(f"{name}: stored but no longer produced")
            continue
        g, w = np.asarray(got[name]), np.asarray(want[name])
        ints = g.dtype.kind in "iu" and w.dtype.kind in "iu" and w.dtype != np.uint8
        if g.shape != w.shape or (g.dtype != w.dtype and not ints):
            problems.append(f"{name}: shape/dtype {g.shape} {g.dtype} != stored "
                            f"{w.shape} {w.dtype}")
            continue
        if w.dtype.kind == "f":
            fin = np.isfinite(w)
            if not np.array_equal(fin, np.isfinite(g)) or not np.array_equal(g[~fin], w[~fin], equal_nan=True):
                problems.append(f"{name}: non-finite entries differ")
                continue
            scale = float(np.max(np.abs(w[fin]))) if fin.any() else 0.0
            tol = rtol * np.abs(w[fin]) + rtol * scale
            err = np.abs(g[fin].astype(np.float64) - w[fin])
            if np.any(err > tol):
                i = int(np.argmax(err - tol))
                problems.append(f"{name}: max |diff| {err.max():.3g} (at flat index {i}: got "
                                f"{g[fin][i]!r}, stored {w[fin][i]!r}; tolerance {tol[i]:.3g})")
        elif w.dtype == np.uint8:
            d = np.abs(g.astype(np.int16) - w.astype(np.int16))
            if d.max(initial=0) > 1:
                problems.append(f"{name}: pixels differ by up to {d.max()} grey levels "
                                f"({int((d > 1).sum())} pixels > 1)")
        elif w.dtype.kind == "U":
            for i, (a, b) in enumerate(zip(g.reshape(-1), w.reshape(-1))):
                if a == b:
                    continue
                try:
                    ok = abs(float(a) - float(b)) <= 1.0001 * 10.0 ** -_decimals(b)
                except ValueError:
                    ok = False
                if not ok:
                    problems.append(f"{name}[{i}]: {a!r} != stored {b!r}")
        elif ints and name.rsplit("/", 1)[-1] in approx_ints:
            if np.any(np.abs(g.astype(np.int64) - w) > APPROX_INT_REL * np.abs(w)):
                problems.append(f"{name}: {g.reshape(-1)[:8]} not within 25 % of stored "
                                f"{w.reshape(-1)[:8]}")
        elif not np.array_equal(g, w):
            problems.append(f"{name}: {g.reshape(-1)[:8]} != stored {w.reshape(-1)[:8]}")
    return problems
