"""Training configuration: plain frozen dataclasses, JSON round trip, loading by path.

A config file (``experiments/configs/*.py``) is a Python module with ``get_config() ->
TrainConfig``. `load_config` imports it by path (or by name from ``experiments/configs``),
`config_to_dict` / `config_from_dict` round-trip it through JSON (the trainer writes
``workdir/config.json`` and stores it in every checkpoint), and `override` applies
``"section.field=value"`` strings from the command line.

Sections: ``model`` (a `jaxir.models.UNetConfig` or `ClassifierConfig`), ``sde`` (`SDEConfig`),
``loss`` (`LossConfig`), ``optim`` (`OptimConfig`), ``data`` (`DataConfig`); the top level
holds the run: steps, seed, mesh, logging, checkpoint and sampling intervals.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
import typing
from pathlib import Path
from typing import Any

from ..models import AutoencoderConfig, ClassifierConfig, UNetConfig
from ..sdes import VESDE, VPSDE, DiscreteVPSDE, LinearSDE, SubVPSDE

__all__ = [
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "SDEConfig",
    "TrainConfig",
    "build_sde",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "override",
]



class ConfigError(ValueError):
    """A config that cannot describe a run (an unknown key, inconsistent sections, a data
    source or mesh that does not fit)."""


SDE_NAMES = ("vp", "subvp", "ve", "ddpm_linear", "ddpm_cosine")


@dataclasses.dataclass(frozen=True)
class SDEConfig:
    """Which SDE: "vp", "subvp", "ve" (continuous, Song et al. 2021) or "ddpm_linear" /
    "ddpm_cosine" (a `DiscreteVPSDE` with ``num_train_steps`` β's, Ho et al. 2020 / Nichol &
    Dhariwal 2021)."""

    name: str = "vp"
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    num_train_steps: int = 1000

    def __post_init__(self):
        if self.name not in SDE_NAMES:
            raise ValueError(f"sde.name must be one of {SDE_NAMES}, got {self.name!r}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Which loss (a name of `jaxir.training.LOSSES`) and its options.

    ``kind``: "denoising" (ε/x0/v matching), "dsm" (score matching), "conditional"
    (SR3/Palette; needs ``degradation``), "classifier" (noisy classifier), "latent" (SRLDM:
    ε matching on the latents of a pre-trained autoencoder, ``options={"autoencoder":
    "ae.npz"}`` from `jaxir.latent.save_autoencoder`; the model is a U-Net on latents with
    ``cond_channels`` = the image channels; ``"autoencoder"`` may also name the workdir of an
    autoencoder run), "autoencoder" (latent stage 1: reconstruction of the images by an
    `jaxir.models.AutoencoderConfig` model, options ``{"loss": "l1" | "mse",
    "latent_weight": 1e-6}``, see `jaxir.latent.autoencoder_loss`; the run exports
    ``workdir/autoencoder.npz`` when it ends). ``degradation`` makes the LQ condition on the
    fly: "sr:F" (F×F block average, nearest upsampling back), "noise:S" (additive Gaussian
    noise of std S in [-1, 1] units), "blur:S" (Gaussian blur of std S pixels), Palette's
    "gray", "inpaint:P", "inpaint:box", "uncrop" and "jpeg:Q", joined by "+" (e.g.
    "sr:F+noise:S"); see `jaxir.training.make_degradation`.
    ``cond_drop_prob``: classifier-free-guidance dropout of the label / image condition.

    Restoration kinds (`jaxir.training.RESTORATION_KINDS`): "irsde", "goub", "i2sb", "ddbm",
    "flow", "resshift", and "regression" (the one-pass L1 baseline) — the degraded image (made by ``degradation``) is the process's end point; their
    method options (e.g. ``{"lam": 30/255, "input_mode": "plain"}`` for IR-SDE,
    ``{"beta_max": 1.0}`` for I2SB, ``{"bridge": "ve"}`` for DDBM, ``{"source_noise": 0.05}``
    for flow) go in ``options``, passed to the loss factory as keywords.
    """

    kind: str = "denoising"
    prediction: str = "eps"
    weighting: str = "simple"
    time_sampling: str = "auto"
    likelihood_weighting: bool = False
    min_snr_gamma: float = 5.0
    sigma_data: float = 0.5
    cond_drop_prob: float = 0.0
    degradation: str | None = None
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up + cosine decay, global-norm clipping, EMA, mixed precision.

    ``decay_steps=None`` decays over the whole run (``TrainConfig.steps``) to
    ``lr * end_lr_factor``. ``grad_clip=None`` disables clipping. ``ema_decay``: 0.9999 for
    long accelerator runs (DDPM), ~0.999 for short CPU runs; ``ema_warmup`` uses
    min(decay, (1 + n)/(10 + n)) (TF's ExponentialMovingAverage num_updates). ``compute_dtype``
    "bfloat16"/"float16" casts params and inputs for the forward/backward pass (master weights
    stay float32); ``loss_scaling`` turns on dynamic loss scaling (needed for float16, harmless
    for bfloat16).
    """

    lr: float = 2e-4
    warmup_steps: int = 100
    decay_steps: int | None = None
    end_lr_factor: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    ema_decay: float = 0.9999
    ema_warmup: bool = False
    compute_dtype: str = "float32"
    loss_scaling: bool = False

    def __post_init__(self):
        if self.compute_dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"optim.compute_dtype must be float32, bfloat16 or float16, got "
                             f"{self.compute_dtype!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A `jaxir.data.get_source` spec and the loader options. ``batch_size`` is global;
    ``source_kwargs`` go to the source's constructor (e.g. ``{"crops_per_image": 4096}`` for
    ``photos``)."""

    source: str = "digits"
    image_size: int | None = 16
    batch_size: int = 64
    random_flip: bool = False
    random_crop: int | None = None
    prefetch: int = 2
    use_labels: bool = False
    source_kwargs: dict = dataclasses.field(default_factory=dict, hash=False)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs. ``mesh``: ``{"data": n, "fsdp": m}``, -1 meaning "all devices
    left"; ``fsdp_min_size``: arrays with fewer elements are replicated. Intervals of 0
    disable: ``log_every``, ``save_every`` (checkpoints, plus one at the end and on SIGTERM /
    Ctrl-C), ``sample_every`` (DDIM grid with EMA params, plus one at the end).
    ``async_save``: write checkpoints in a background thread (orbax's default). A crash then
    loses at most ``2 * save_every`` steps (the save in flight may not have committed); with
    ``async_save=False`` each save commits before training goes on and at most ``save_every``
    steps are lost."""

    model: UNetConfig | ClassifierConfig | AutoencoderConfig = dataclasses.field(
        default_factory=UNetConfig)
    sde: SDEConfig = dataclasses.field(default_factory=SDEConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    steps: int = 1000
    seed: int = 0
    mesh: dict = dataclasses.field(default_factory=lambda: {"data": -1, "fsdp": 1})
    fsdp_min_size: int = 2**16
    log_every: int = 50
    save_every: int = 500
    keep: int = 3
    async_save: bool = True
    sample_every: int = 0
    num_samples: int = 16
    sample_steps: int = 50
    name: str = ""


# ---- JSON round trip -----------------------------------------------------------------------
def config_to_dict(config: TrainConfig) -> dict:
    """A JSON-ready dict (the model section records its class in ``"_class"``)."""
    d = dataclasses.asdict(config)
    d["model"]["_class"] = type(config.model).__name__
    return json.loads(json.dumps(d))  # tuples -> lists, a plain copy


_MODEL_CLASSES = {"UNetConfig": UNetConfig, "ClassifierConfig": ClassifierConfig,
                  "AutoencoderConfig": AutoencoderConfig}


def _build(cls, values: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} in config section {where!r}; "
                         f"fields: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kw = {}
    for name, v in values.items():
        if isinstance(v, list) and "tuple" in str(hints.get(name, "")):
            v = tuple(v)
        kw[name] = v
    return cls(**kw)


def config_from_dict(d: dict) -> TrainConfig:
    """Inverse of `config_to_dict`."""
    d = dict(d)
    sections = {}
    model = dict(d.pop("model", {}))
    cls = _MODEL_CLASSES.get(model.pop("_class", "UNetConfig"))
    if cls is None:
        raise ValueError(f"unknown model config class in {model}")
    sections["model"] = _build(cls, model, "model")
    for name, cls in (("sde", SDEConfig), ("loss", LossConfig), ("optim", OptimConfig),
                      ("data", DataConfig)):
        sections[name] = _build(cls, d.pop(name, {}), name)
    return _build(TrainConfig, {**d, **sections}, "top level")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "mesh":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    """``[(dotted key, value in a, value in b)]`` for every key whose values differ."""
    fa, fb = _flatten(a), _flatten(b)
    missing = object()
    out = []
    for k in sorted(set(fa) | set(fb)):
        va, vb = fa.get(k, missing), fb.get(k, missing)
        if va != vb:
            out.append((k, None if va is missing else va, None if vb is missing else vb))
    return out


# ---- overrides and loading -----------------------------------------------------------------
def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def override(config: TrainConfig, assignments) -> TrainConfig:
    """Apply ``["optim.lr=1e-3", "model.base_channels=32", "steps=10"]`` (values parsed as
    JSON where possible, so ``model.channel_mults=[1,2]`` and ``loss.degradation=sr:4`` work)."""
    d = config_to_dict(config)
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override must look like section.field=value, got {item!r}")
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"unknown config key {key!r} (no section {p!r})")
            node = node[p]
        if parts[-1] not in node and not (len(parts) == 2 and parts[0] == "mesh"):
            raise ValueError(f"unknown config key {key!r}; keys here: "
                             f"{sorted(k for k in node if k != '_class')}")
        node[parts[-1]] = _parse_value(text.strip())
    return config_from_dict(d)


def _configs_dir() -> Path:
    """The named configs: ``jaxir/configs`` (package data in an installed wheel; in the source
    tree a link to ``experiments/configs``), else ``experiments/configs`` beside the package."""
    here = Path(__file__).resolve().parents[1]
    shipped = here / "configs"
    return shipped if shipped.is_dir() else here.parent / "experiments" / "configs"


def load_config(path_or_name: str) -> TrainConfig:
    """Import a config file and call its ``get_config()``.

    Accepts a path to a ``.py`` file, or a bare name looked up as ``jaxir/configs/NAME.py``
    (shipped with the package; the same files as ``experiments/configs``, e.g. "digits_small").
    While it runs, the file's folder is on ``sys.path``, so a config can import shared helpers
    that sit beside it (e.g. ``from _photos32 import photos32_config``).
    """
    p = Path(path_or_name)
    if not p.exists() and p.suffix != ".py":
        candidate = _configs_dir() / f"{path_or_name}.py"
        if candidate.exists():
            p = candidate
    if not p.is_file():
        available = sorted(f.stem for f in _configs_dir().glob("*.py")
                           if not f.stem.startswith("_"))
        raise FileNotFoundError(f"config {path_or_name!r} not found (a .py path, or one of "
                                f"{available})")
    mod_name = f"_jaxir_config_{p.stem}_{abs(hash(str(p.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    folder = str(p.resolve().parent)  # a config may import helpers that sit beside it
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(mod_name, None)
        sys.path.remove(folder)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {str(p)!r} has no get_config() function")
    config = module.get_config()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"{str(p)!r}: get_config() must return a TrainConfig, "
                         f"got {type(config).__name__}")
    return config


def build_sde(cfg: SDEConfig) -> LinearSDE:
    """The `jaxir.sdes` object an `SDEConfig` names."""
    from .. import schedules

    if cfg.name == "vp":
        return VPSDE(beta_min=cfg.beta_min, beta_max=cfg.beta_max)
    if cfg.name == "subvp":
        return SubVPSDE(beta_min=cfg.beta_min, beta_max=cfg.beta_max)
    if cfg.name == "ve":
        return VESDE(sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max)
    n = cfg.num_train_steps
    if cfg.name == "ddpm_linear":
        scale = 1000.0 / n  # keep the DDPM β range for other N (improved-DDPM convention)
        return DiscreteVPSDE(schedules.linear_beta_schedule(n, 1e-4 * scale, 0.02 * scale))
    return DiscreteVPSDE(schedules.cosine_beta_schedule(n))


RESTORATION_KINDS = ("irsde", "goub", "i2sb", "ddbm", "flow", "resshift", "regression")
"""Loss kinds whose process runs between the clean and the degraded image (and "regression",
the one-pass L1 baseline): their options configure the loss, not ``config.sde``."""

LEARNED_RESTORATION_KINDS = ("conditional", *RESTORATION_KINDS, "latent")
"""Every kind trained on (LQ, HQ) pairs made by ``loss.degradation``: what
`jaxir.restore.restore_learned` and ``jaxir sample --lq`` restore with."""


def _validate_restoration(config: TrainConfig) -> None:
    lc, kind = config.loss, config.loss.kind
    if lc.degradation is None:
        raise ValueError(f"loss.kind={kind!r} needs loss.degradation (e.g. 'sr:4', 'noise:0.2')")
    if not isinstance(lc.options, dict):
        raise ValueError(f"loss.options must be a dict, got {type(lc.options).__name__}")
    conditioned = kind in ("irsde", "goub", "ddbm") or (
        kind != "regression" and lc.options.get("condition", kind in ("flow", "resshift")))
    want = config.model.in_channels if conditioned else 0
    if config.model.cond_channels != want:
        raise ValueError(f"loss.kind={kind!r} needs model.cond_channels == {want} "
                         f"({'the degraded image is concatenated' if want else 'no condition'}),"
                         f" got {config.model.cond_channels}")
    if config.sample_every:
        raise ValueError(f"sample_every > 0 is not supported for loss.kind={kind!r} (the "
                         "trainer's preview sampler is DDIM); set it to 0 and sample with "
                         "jaxir.samplers")


def _validate_latent(config: TrainConfig) -> None:
    lc = config.loss
    if lc.degradation is None:
        raise ValueError("loss.kind='latent' needs loss.degradation (e.g. 'sr:4')")
    if not isinstance(lc.options, dict) or not lc.options.get("autoencoder"):
        raise ValueError("loss.kind='latent' needs loss.options['autoencoder']: the .npz of a "
                         "trained autoencoder (stage 1: jaxir.latent.train_autoencoder + "
                         "save_autoencoder)")
    unknown = sorted(set(lc.options) - {"autoencoder"})
    if unknown:
        raise ValueError(f"loss.kind='latent' takes only options['autoencoder'], got {unknown}")
    if config.model.cond_channels < 1:
        raise ValueError("loss.kind='latent' needs model.cond_channels = the image channels "
                         "(the LQ at latent resolution is concatenated)")
    if config.sample_every:
        raise ValueError("sample_every > 0 is not supported for loss.kind='latent'; set it to 0 "
                         "and restore with jaxir.restore.restore_learned")


def _validate_autoencoder(config: TrainConfig) -> None:
    lc = config.loss
    if not isinstance(lc.options, dict):
        raise ValueError(f"loss.options must be a dict, got {type(lc.options).__name__}")
    unknown = sorted(set(lc.options) - {"loss", "latent_weight"})
    if unknown:
        raise ValueError(f"loss.kind='autoencoder' takes options 'loss' and 'latent_weight', "
                         f"got {unknown}")
    if lc.degradation is not None:
        raise ValueError("loss.kind='autoencoder' reconstructs clean images; loss.degradation "
                         f"must be None, got {lc.degradation!r}")
    if config.sample_every:
        raise ValueError("sample_every > 0 is not supported for loss.kind='autoencoder'; set it "
                         "to 0 (the exported autoencoder.npz is the result)")


def _check_positive(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def validate(config: TrainConfig) -> None:
    """Cross-section checks that the dataclasses cannot do alone (raise `ValueError`)."""
    _check_positive("steps", config.steps)
    _check_positive("data.batch_size", config.data.batch_size)
    for name in ("log_every", "save_every", "sample_every"):
        v = getattr(config, name)
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    if set(config.mesh) - {"data", "fsdp"}:
        raise ValueError(f"mesh keys must be 'data' and 'fsdp', got {sorted(config.mesh)}")
    is_clf = isinstance(config.model, ClassifierConfig)
    if is_clf != (config.loss.kind == "classifier"):
        raise ValueError("loss.kind='classifier' goes with a ClassifierConfig model and only "
                         f"with one; got loss.kind={config.loss.kind!r} and "
                         f"{type(config.model).__name__}")
    is_ae = isinstance(config.model, AutoencoderConfig)
    if is_ae != (config.loss.kind == "autoencoder"):
        raise ValueError("loss.kind='autoencoder' goes with an AutoencoderConfig model and only "
                         f"with one; got loss.kind={config.loss.kind!r} and "
                         f"{type(config.model).__name__}")
    if is_ae:
        _validate_autoencoder(config)
    if config.loss.kind in RESTORATION_KINDS:
        _validate_restoration(config)
    if config.loss.kind == "latent":
        _validate_latent(config)
    if config.loss.kind == "conditional":
        if config.loss.degradation is None:
            raise ValueError("loss.kind='conditional' needs loss.degradation (e.g. 'sr:4')")
        if config.model.cond_channels != config.model.in_channels:
            raise ValueError("a conditional model needs model.cond_channels == in_channels "
                             f"(the LQ image), got {config.model.cond_channels}")
    if not math.isfinite(config.optim.lr) or config.optim.lr <= 0:
        raise ValueError(f"optim.lr must be positive, got {config.optim.lr}")
