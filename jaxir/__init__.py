"""jaxir: diffusion-based image restoration in JAX.

Layers (see DESIGN.md): :mod:`jaxir.schedules` → :mod:`jaxir.sdes` →
:mod:`jaxir.bridges` → :mod:`jaxir.predictions` → :mod:`jaxir.samplers`, with exact
references in :mod:`jaxir.exact`, metrics in :mod:`jaxir.metrics` and data in :mod:`jaxir.data`.

Subpackages and the names below load on first use (PEP 562 ``__getattr__``), so
``import jaxir`` is cheap and the ``jaxir`` command's ``--help`` imports no jax;
``from jaxir import ddim_sample`` and ``jaxir.samplers.ddim_sample`` work as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SUBMODULES = ("bridges", "data", "distributed", "exact", "images", "inverse", "latent", "metrics",
               "models", "operators", "plot", "precision", "predictions", "priors", "restore",
               "samplers", "schedules", "sdes", "training")
_NAMES = {
    "Bridge": "bridges",
    "Gaussian": "exact",
    "GaussianMixture": "exact",
    "exact_precision": "precision",
    "Samples": "samplers",
    "ddim_sample": "samplers",
    "ddpm_sample": "samplers",
    "dpm_solver_sample": "samplers",
    "log_likelihood": "samplers",
    "ode_sample": "samplers",
    "pc_sample": "samplers",
    "sde_sample": "samplers",
    "VESDE": "sdes",
    "VPSDE": "sdes",
    "DiscreteVPSDE": "sdes",
    "LinearSDE": "sdes",
    "MeanRevertingSDE": "sdes",
    "SubVPSDE": "sdes",
    "reverse": "sdes",
}

__all__ = [*_SUBMODULES, *_NAMES, "__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    mod = _NAMES.get(name)
    if mod is None:
        raise AttributeError(f"module 'jaxir' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers see the eager imports
    from . import bridges as bridges
    from . import data as data
    from . import distributed as distributed
    from . import exact as exact
    from . import images as images
    from . import inverse as inverse
    from . import latent as latent
    from . import metrics as metrics
    from . import models as models
    from . import operators as operators
    from . import plot as plot
    from . import precision as precision
    from . import predictions as predictions
    from . import priors as priors
    from . import restore as restore
    from . import samplers as samplers
    from . import schedules as schedules
    from . import sdes as sdes
    from . import training as training
    from .bridges import Bridge as Bridge
    from .exact import Gaussian as Gaussian
    from .exact import GaussianMixture as GaussianMixture
    from .precision import exact_precision as exact_precision
    from .samplers import Samples as Samples
    from .samplers import ddim_sample as ddim_sample
    from .samplers import ddpm_sample as ddpm_sample
    from .samplers import dpm_solver_sample as dpm_solver_sample
    from .samplers import log_likelihood as log_likelihood
    from .samplers import ode_sample as ode_sample
    from .samplers import pc_sample as pc_sample
    from .samplers import sde_sample as sde_sample
    from .sdes import VESDE as VESDE
    from .sdes import VPSDE as VPSDE
    from .sdes import DiscreteVPSDE as DiscreteVPSDE
    from .sdes import LinearSDE as LinearSDE
    from .sdes import MeanRevertingSDE as MeanRevertingSDE
    from .sdes import SubVPSDE as SubVPSDE
    from .sdes import reverse as reverse
