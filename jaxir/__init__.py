"""jaxir: diffusion-based image restoration in JAX.

Layers (see DESIGN.md): :mod:`jaxir.schedules` → :mod:`jaxir.sdes` →
:mod:`jaxir.bridges` → :mod:`jaxir.predictions` → :mod:`jaxir.samplers`, with exact
references in :mod:`jaxir.exact`, metrics in :mod:`jaxir.metrics` and data in :mod:`jaxir.data`.
"""

from . import bridges as bridges
from . import exact as exact
from . import models as models
from . import operators as operators
from . import predictions as predictions
from . import samplers as samplers
from . import schedules as schedules
from . import sdes as sdes
from . import training as training
from .bridges import Bridge as Bridge
from .exact import Gaussian as Gaussian
from .exact import GaussianMixture as GaussianMixture
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

__version__ = "0.1.0"
