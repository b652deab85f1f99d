"""Training-free posterior samplers and guidance (layer 7).

Every sampler takes ``key, model_fn, sde, op, y, sigma_y`` and a shape or ``x_init``, uses an
unconditional ``model_fn`` and a degradation from :mod:`jaxir.operators`, and returns
:class:`jaxir.samplers.Samples`. Defaults are the official ones (see each docstring for where
the official code and the paper differ).

- DPS, ΠGDM, DDRM, DDNM / DDNM+ (time travel), MCGdiff (particles; exact as they grow);
- projection / replacement, ILVR, MCG, RePaint, GDP (x_t / x̂0, learned degradation), DiffPIR;
- DAPS, RED-diff, PnP-DM, EnKG, DCPS (their own grids), the particle filters FPS / FPS-SMC, TDS;
- classifier and classifier-free guidance as ``model_fn`` transformations for every sampler.

All but the particle filters FPS and TDS (their own loop in the SVD basis) run on one
driver, :func:`sample`: a :class:`Method` builds a reverse step from
:class:`Piece` s — a base step (:func:`ddpm`, :func:`ddim`) after :func:`denoise`, composed by
:func:`chain` with corrections (:func:`guide`, :func:`replace`, :func:`correct`) — and the
driver checks shapes, batches ``y``, builds the grid, splits the keys and runs one
``lax.scan``. Every sampler on it therefore takes the keyword :data:`OPTIONS` (``prediction``,
``num_steps``, ``spacing``, ``timesteps``, ``cond``, ``x_init``, ``save_every``,
``checkpoint``). README, "Add a posterior sampler", writes a new method as one function.

The examples in the samplers' docstrings start from this small problem (a standard normal
prior on R⁴, its first two coordinates observed)::

    >>> import jax, jax.numpy as jnp
    >>> from jaxir import exact, operators, schedules, sdes
    >>> sde = sdes.DiscreteVPSDE(schedules.linear_beta_schedule(1000))
    >>> model_fn = exact.Gaussian(jnp.zeros(4), jnp.eye(4)).model_fn(sde)
    >>> op = operators.Inpainting(jnp.array([1.0, 1.0, 0.0, 0.0]))
    >>> y, key = jnp.array([0.5, -0.5, 0.0, 0.0]), jax.random.key(0)
"""

from ._common import x0_and_vjp as x0_and_vjp
from ._daps import daps_sample as daps_sample
from ._dcps import dcps_sample as dcps_sample
from ._ddnm import ddnm_sample as ddnm_sample
from ._ddnm import time_travel_schedule as time_travel_schedule
from ._ddrm import ddrm_sample as ddrm_sample
from ._driver import OPTIONS as OPTIONS
from ._driver import Method as Method
from ._driver import Piece as Piece
from ._driver import Problem as Problem
from ._driver import Sampler as Sampler
from ._driver import Step as Step
from ._driver import chain as chain
from ._driver import correct as correct
from ._driver import ddim as ddim
from ._driver import ddpm as ddpm
from ._driver import denoise as denoise
from ._driver import guide as guide
from ._driver import observed_replacer as observed_replacer
from ._driver import replace as replace
from ._driver import sample as sample
from ._diffpir import SKIP_TYPES as SKIP_TYPES
from ._diffpir import diffpir_sample as diffpir_sample
from ._dps import dps_sample as dps_sample
from ._enkg import enkg_sample as enkg_sample
from ._fps import fps_sample as fps_sample
from ._gdp import GDP_SCALES as GDP_SCALES
from ._gdp import GUIDANCES as GUIDANCES
from ._gdp import gdp_sample as gdp_sample
from ._guidance import classifier_free_guidance as classifier_free_guidance
from ._guidance import classifier_guidance as classifier_guidance
from ._ilvr import UPSAMPLINGS as UPSAMPLINGS
from ._ilvr import ilvr_sample as ilvr_sample
from ._mcg import NORMS as NORMS
from ._mcg import mcg_sample as mcg_sample
from ._pigdm import pigdm_sample as pigdm_sample
from ._pnpdm import pnpdm_sample as pnpdm_sample
from ._projection import projection_sample as projection_sample
from ._reddiff import WEIGHTINGS as REDDIFF_WEIGHTINGS
from ._reddiff import reddiff_sample as reddiff_sample
from ._repaint import repaint_sample as repaint_sample
from ._repaint import repaint_schedule as repaint_schedule
from ._smc import RESAMPLING as RESAMPLING
from ._smc import mcgdiff_sample as mcgdiff_sample
from ._tds import TDS_TAUSQ as TDS_TAUSQ
from ._tds import tds_sample as tds_sample

__all__ = [
    # posterior samplers: key, model_fn, sde, op, y, sigma_y, shape, **options
    "daps_sample",
    "dcps_sample",
    "ddnm_sample",
    "ddrm_sample",
    "diffpir_sample",
    "dps_sample",
    "enkg_sample",
    "fps_sample",
    "gdp_sample",
    "ilvr_sample",
    "mcg_sample",
    "mcgdiff_sample",
    "pigdm_sample",
    "pnpdm_sample",
    "projection_sample",
    "reddiff_sample",
    "repaint_sample",
    "tds_sample",
    # their schedules and choices
    "GDP_SCALES",
    "GUIDANCES",
    "NORMS",
    "REDDIFF_WEIGHTINGS",
    "RESAMPLING",
    "SKIP_TYPES",
    "TDS_TAUSQ",
    "UPSAMPLINGS",
    "repaint_schedule",
    "time_travel_schedule",
    # guidance: model_fn transformations for every sampler
    "classifier_free_guidance",
    "classifier_guidance",
    # the driver: a new method as one short function
    "Method",
    "OPTIONS",
    "Piece",
    "Problem",
    "Sampler",
    "Step",
    "chain",
    "correct",
    "ddim",
    "ddpm",
    "denoise",
    "guide",
    "observed_replacer",
    "replace",
    "sample",
    "x0_and_vjp",
]
