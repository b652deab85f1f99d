"""Learned-restoration families: one record per method, one file per family, one registry.

A family (:class:`Family`) is everything ``jaxir train`` and `jaxir.restore.restore_learned`
need to know about a method trained on (LQ, HQ) pairs: its typed options (a frozen dataclass
whose defaults are the official ones), the process it runs between the clean and the degraded
image, its loss, its sampler and default step count, and how a config names it (the
``loss.kind``). :func:`register_family` adds one; a config with that kind then trains and
restores. The built-in families are the modules of this package (each registers itself when
the package is imported; a new module here is a new family):

==============  ==============================================  ===============================
kind            sampler                                          default steps → NFE
==============  ==============================================  ===============================
conditional     ``ddpm_sample``, LQ concatenated, x̂0 clipped    100 respaced (SR3's inference)
irsde           ``irsde_sample`` (reverse SDE from μ + λε)       T (100) — the chain is fixed
goub            ``goub_sample`` (Mean-ODE)                       T (100) — the chain is fixed
i2sb            ``i2sb_sample`` (OT-ODE if trained so)           100
ddbm            ``ddbm_sample`` (Heun, churn 0.33)               40 → 119 NFE
flow            ``flow_sample`` (Euler)                          10
resshift        ``resshift_sample`` (x̂0 clipped)                T (15) — the chain is fixed
latent          ``jaxir.latent.latent_restore`` (DDIM, decode)   50
regression      one forward pass ``model(LQ, 0)``                1
==============  ==============================================  ===============================

``loss.options`` in a config is the family's options record, or a dict of its fields (as in
``config.json``), converted and checked when the `LossConfig` is made.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .._registry import FAMILIES as FAMILIES
from .._registry import Family as Family
from .._registry import FamilyOptions as FamilyOptions
from .._registry import check_paired as check_paired
from .._registry import get_family as get_family
from .._registry import register_family as register_family

for _m in _pkgutil.iter_modules(__path__):  # every built-in family registers itself
    if not _m.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_m.name}")

from .conditional import ConditionalOptions as ConditionalOptions  # noqa: E402
from .ddbm import DDBMOptions as DDBMOptions  # noqa: E402
from .ddbm import ddbm_loss as ddbm_loss  # noqa: E402
from .flow import FlowOptions as FlowOptions  # noqa: E402
from .flow import flow_loss as flow_loss  # noqa: E402
from .goub import GOUBOptions as GOUBOptions  # noqa: E402
from .goub import goub_loss as goub_loss  # noqa: E402
from .i2sb import I2SBOptions as I2SBOptions  # noqa: E402
from .i2sb import i2sb_loss as i2sb_loss  # noqa: E402
from .irsde import IRSDEOptions as IRSDEOptions  # noqa: E402
from .irsde import irsde_loss as irsde_loss  # noqa: E402
from .latent import LatentOptions as LatentOptions  # noqa: E402
from .regression import RegressionOptions as RegressionOptions  # noqa: E402
from .regression import regression_loss as regression_loss  # noqa: E402
from .resshift import ResShiftOptions as ResShiftOptions  # noqa: E402
from .resshift import resshift_loss as resshift_loss  # noqa: E402

__all__ = [
    "FAMILIES",
    "ConditionalOptions",
    "DDBMOptions",
    "Family",
    "FamilyOptions",
    "FlowOptions",
    "GOUBOptions",
    "I2SBOptions",
    "IRSDEOptions",
    "LatentOptions",
    "RegressionOptions",
    "ResShiftOptions",
    "check_paired",
    "ddbm_loss",
    "flow_loss",
    "get_family",
    "goub_loss",
    "i2sb_loss",
    "irsde_loss",
    "register_family",
    "regression_loss",
    "resshift_loss",
]
