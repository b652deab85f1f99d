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
    """Which loss and its options.

    ``kind``: "denoising" (ε/x0/v matching), "dsm" (score matching), "classifier" (noisy
    classifier), "autoencoder" (latent stage 1: reconstruction by an
    `jaxir.models.AutoencoderConfig` model, options ``{"loss": "l1" | "mse", "latent_weight":
    1e-6}``, see `jaxir.latent.autoencoder_loss`; the run exports ``workdir/autoencoder.npz``
    when it ends), or a learned-restoration family of `jaxir.training.families`
    ("conditional" for SR3/Palette, "irsde", "goub", "i2sb", "ddbm", "flow", "resshift",
    "latent", "regression", or one registered with `register_family`).

    ``options``: a family's options record (e.g. ``IRSDEOptions(lam=0.2)``) or a dict of its
    fields (``{"lam": 0.2}``, as ``config.json`` stores it): converted to the record here,
    unknown fields refused. ``degradation`` makes a family's LQ on the fly
    (`jaxir.operators.make_degradation`): "sr:F", "blur:S", "noise:S", "gray", "inpaint:P",
    "inpaint:box", "uncrop", "jpeg:Q", joined by "+" (e.g. "sr:4+noise:0.05").
    ``prediction``, ``weighting``, ``time_sampling``, ``min_snr_gamma``, ``sigma_data``:
    `jaxir.training.denoising_loss` (also SR3/Palette and latent diffusion);
    ``cond_drop_prob``: classifier-free-guidance dropout of the label / image condition.
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
    options: Any = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        from ._registry import FAMILIES

        family = FAMILIES.get(self.kind)
        if family is not None:
            object.__setattr__(self, "options", family.parse_options(self.options))


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
