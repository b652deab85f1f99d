"""The family record and its registry (see the package docstring)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FAMILIES", "Family", "FamilyOptions", "get_family", "register_family"]


class FamilyOptions(Mapping):
    """Base of the built-in options records (frozen dataclasses): they also read like the
    dicts they replace (``opts["lam"]``, ``{**opts, "T": 4}``, ``dict(opts)``)."""

    def __getitem__(self, name):
        if name in self.__dataclass_fields__:
            return getattr(self, name)
        raise KeyError(name)

    def __iter__(self):
        return iter(self.__dataclass_fields__)

    def __len__(self):
        return len(self.__dataclass_fields__)


@dataclasses.dataclass(frozen=True)
class Family:
    """One learned-restoration method: what ``jaxir train`` and `restore_learned` need.

    Attributes:
      name: the loss kind a config names (``LossConfig(kind=name, options=...)``).
      options: a frozen dataclass of the method's options, its defaults the official ones
        (``loss.options`` is parsed into it: a dict from JSON / old configs, or an instance).
      factory: the loss factory ``factory(sde, *, degrade_fn, **options) -> loss_fn(model_fn,
        batch, key)`` (`jaxir.training.make_loss` finds it by the family's name); the config's
        loss is ``factory(None, degrade_fn=<loss.degradation>, **options)`` unless ``loss``.
      loss: ``loss(config, options, sde) -> loss_fn`` where the factory call above does not
        do (``sde`` is ``build_sde(config.sde)``, used by families with ``uses_sde``).
      sample: ``sample(model, lq, key, steps, options, known) -> jaxir.samplers.Samples``;
        ``model`` has ``model_fn``, ``sde``, ``config``, ``codec`` (`jaxir.restore.LearnedModel`),
        ``lq`` is (B, H, W, C) at the output size, ``steps`` the resolved step count (None for a
        one-pass family), ``known`` Palette's ``(values, mask)`` or None.
      process: ``process(options, lq)`` -> the SDE / bridge / chain the family runs between
        the clean and the degraded image (None where the process is ``config.sde`` or none).
      default_steps: the sampler's default step count, None for a one-pass model.
      fixed_chain: the chain length is the network's time grid (``options.T`` steps): any
        other ``steps`` is a `ValueError`.
      conditioned: ``conditioned(options) -> bool``: the network also sees the LQ image
        (``model.cond_channels == model.in_channels``, else 0).
      uses_sde: ``config.sde`` is the family's process (SR3 / Palette, latent diffusion);
        other families carry their process in their options.
      masks: `restore_learned` takes a mask of observed pixels (Palette inpainting).
      preview: the trainer's DDIM preview grid (``sample_every``) works for it.
      validate: the config checks ``validate(config, options)`` (raise `ValueError`); None:
        `check_paired` (a degradation, the condition channels, no preview grid).
      check_files: checks at the start of a run that read files (raise `ValueError`).
      prepare_workdir: ``prepare_workdir(config, options, workdir)`` copies what restoring
        needs into the workdir (process 0 only).
      load: ``load(workdir, config, options)`` -> what `load_learned` keeps beside the network
        (the latent family's codec), or None.
      image_channels: ``image_channels(config)`` -> channels of the LQ / HQ images.
    """

    name: str
    options: type
    sample: Callable
    factory: Callable | None = None
    loss: Callable | None = None
    process: Callable | None = None
    default_steps: int | None = None
    fixed_chain: bool = False
    conditioned: Callable[[Any], bool] = lambda o: True
    uses_sde: bool = False
    masks: bool = False
    preview: bool = False
    validate: Callable | None = None
    check_files: Callable | None = None
    prepare_workdir: Callable | None = None
    load: Callable | None = None
    image_channels: Callable = lambda config: int(config.model.in_channels)

    def __post_init__(self):
        if not dataclasses.is_dataclass(self.options) or not isinstance(self.options, type):
            raise ValueError(f"family {self.name!r}: options must be a dataclass type, got "
                             f"{self.options!r}")
        if self.factory is None and self.loss is None:
            raise ValueError(f"family {self.name!r} needs a loss factory or a loss builder")

    def build_loss(self, config, sde=None):
        """The loss function of ``config`` (a config of this family)."""
        options = self.parse_options(config.loss.options)
        if self.loss is not None:
            return self.loss(config, options, sde)
        from ..operators import make_degradation

        return self.factory(None, degrade_fn=make_degradation(config.loss.degradation),
                            **dataclasses.asdict(options))

    def parse_options(self, options) -> Any:
        """``options`` as this family's options record: an instance passes through; a dict
        (a config file, ``config.json``) is checked key by key (`ValueError` naming unknown
        ones) and converted; JSON lists become tuples where the field is a tuple."""
        if isinstance(options, self.options):
            return options
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ValueError(f"loss.options for kind {self.name!r} must be a dict or a "
                             f"{self.options.__name__}, got {type(options).__name__}")
        fields = {f.name for f in dataclasses.fields(self.options)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ValueError(f"loss.options: unknown option(s) {unknown} for kind "
                             f"{self.name!r}; its options: {sorted(fields)}")
        hints = typing.get_type_hints(self.options)
        kw = {k: tuple(v) if isinstance(v, list) and "tuple" in str(hints.get(k, "")) else v
              for k, v in options.items()}
        return self.options(**kw)

    def steps(self, options, steps: int | None) -> int | None:
        """The step count to sample with: ``steps`` or the default; for a fixed chain,
        ``options.T`` (`ValueError` for any other ``steps``)."""
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool)
                                  or steps < 1):
            raise ValueError(f"steps must be a positive int or None, got {steps!r}")
        if self.fixed_chain:
            n = int(options.T)
            if steps is not None and steps != n:
                raise ValueError(f"a {self.name} model runs its fixed {n}-step chain (the step "
                                 f"is the network's time input); steps={steps} is not possible")
            return n
        return steps or self.default_steps

    def check(self, config) -> Any:
        """Validate ``config`` for this family; returns its parsed options."""
        options = self.parse_options(config.loss.options)
        if self.validate is not None:
            self.validate(config, options)
        else:
            check_paired(config, options, self)
        return options


_REGISTRY: dict[str, Family] = {}

FAMILIES = types.MappingProxyType(_REGISTRY)
"""Every registered family by name (read-only, live: a family registered later appears)."""

_RESERVED = ("denoising", "dsm", "classifier", "autoencoder")


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Add ``family`` to the registry under ``family.name``; a config with that
    ``loss.kind`` then trains (``jaxir.training.train``) and restores
    (`jaxir.restore.restore_learned`). Returns it (usable as a module-level statement).
    `ValueError` for a name taken (unless ``replace``) or reserved for the unconditional
    kinds."""
    if not isinstance(family, Family):
        raise ValueError(f"register_family takes a Family, got {type(family).__name__}")
    if family.name in _RESERVED:
        raise ValueError(f"{family.name!r} is a built-in loss kind, not a family name")
    if family.name in _REGISTRY and not replace and _REGISTRY[family.name] is not family:
        raise ValueError(f"a family named {family.name!r} is already registered (pass "
                         "replace=True to replace it)")
    _REGISTRY[family.name] = family
    return family


def get_family(kind: str) -> Family:
    """The family called ``kind``; `ValueError` listing the registered ones otherwise."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"{kind!r} is not a learned-restoration family; registered: "
                         f"{sorted(_REGISTRY)}") from None


# ---- checks shared by the families ---------------------------------------------------------
def check_paired(config, options, family: Family) -> None:
    """The checks every family shares: a valid degradation spec, the condition channels, no
    preview grid unless the family has one."""
    from ..operators import Degradation

    kind, lc = family.name, config.loss
    if lc.degradation is None:
        raise ValueError(f"loss.kind={kind!r} needs loss.degradation (e.g. 'sr:4', 'noise:0.2')")
    Degradation.parse(lc.degradation)
    want = config.model.in_channels if family.conditioned(options) else 0
    if config.model.cond_channels != want:
        raise ValueError(f"loss.kind={kind!r} needs model.cond_channels == {want} "
                         f"({'the degraded image is concatenated' if want else 'no condition'}),"
                         f" got {config.model.cond_channels}")
    if config.sample_every and not family.preview:
        raise ValueError(f"sample_every > 0 is not supported for loss.kind={kind!r} (the "
                         "trainer's preview sampler is DDIM); set it to 0 and restore with "
                         "jaxir.restore.restore_learned")
