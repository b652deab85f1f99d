"""Samplers (layer 5): every one takes ``key, model_fn, sde, shape`` and returns :class:`Samples`.

All are pure functions that ``jax.jit`` (mark ``model_fn``, ``shape`` and option strings
static or close over them), ``jax.vmap`` over keys or initial states, and ``jax.grad``
(``sde_sample`` with its default ``brownian="step"`` or ``"virtual"``). No Python loop runs
over sampling steps: the discrete samplers are ``lax.scan`` loops, the continuous ones
diffrax solves.
"""

from ._ancestral import VARIANCES as VARIANCES
from ._ancestral import ddim_sample as ddim_sample
from ._ancestral import ddim_step as ddim_step
from ._ancestral import ddpm_sample as ddpm_sample
from ._ancestral import ddpm_step as ddpm_step
from ._bridge import ddbm_denoiser as ddbm_denoiser
from ._bridge import ddbm_sample as ddbm_sample
from ._bridge import ddbm_time_grid as ddbm_time_grid
from ._bridge import i2sb_sample as i2sb_sample
from ._bridge import i2sb_time_grid as i2sb_time_grid
from ._cddb import cddb_sample as cddb_sample
from ._cddb import measurement_residual as measurement_residual
from ._common import Samples as Samples
from ._common import check_timesteps as check_timesteps
from ._common import scan_steps as scan_steps
from ._common import sqrt_blocks as sqrt_blocks
from ._common import time_grid as time_grid
from ._diffrax import BROWNIAN as BROWNIAN
from ._diffrax import ODE_SOLVERS as ODE_SOLVERS
from ._diffrax import SDE_SOLVERS as SDE_SOLVERS
from ._diffrax import ode_sample as ode_sample
from ._diffrax import sde_sample as sde_sample
from ._dpm import dpm_solver_sample as dpm_solver_sample
from ._dpm import solver_time_grid as solver_time_grid
from ._flow import flow_sample as flow_sample
from ._irsde import INPUT_MODES as INPUT_MODES
from ._irsde import goub_eval_time as goub_eval_time
from ._irsde import goub_sample as goub_sample
from ._irsde import irsde_optimal_prev as irsde_optimal_prev
from ._irsde import irsde_sample as irsde_sample
from ._irsde import irsde_score as irsde_score
from ._irsde import reverse_step_mean as reverse_step_mean
from ._likelihood import LogLikelihood as LogLikelihood
from ._likelihood import bits_per_dim as bits_per_dim
from ._likelihood import log_likelihood as log_likelihood
from ._pc import CORRECTORS as CORRECTORS
from ._pc import PREDICTORS as PREDICTORS
from ._pc import langevin_correct as langevin_correct
from ._pc import pc_sample as pc_sample
from ._resshift import ResShift as ResShift
from ._resshift import resshift_eta_schedule as resshift_eta_schedule
from ._resshift import resshift_process as resshift_process
from ._resshift import resshift_sample as resshift_sample
from ._schedule import Schedule as Schedule
from ._schedule import load_schedule as load_schedule
from ._schedule import logits_from_timesteps as logits_from_timesteps
from ._schedule import save_schedule as save_schedule
from ._schedule import timesteps_from_logits as timesteps_from_logits

__all__ = [
    "bits_per_dim",
    "BROWNIAN",
    "cddb_sample",
    "check_timesteps",
    "CORRECTORS",
    "ddbm_denoiser",
    "ddbm_sample",
    "ddbm_time_grid",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "dpm_solver_sample",
    "flow_sample",
    "goub_eval_time",
    "goub_sample",
    "i2sb_sample",
    "i2sb_time_grid",
    "INPUT_MODES",
    "irsde_optimal_prev",
    "irsde_sample",
    "irsde_score",
    "langevin_correct",
    "load_schedule",
    "log_likelihood",
    "logits_from_timesteps",
    "LogLikelihood",
    "measurement_residual",
    "ode_sample",
    "ODE_SOLVERS",
    "pc_sample",
    "PREDICTORS",
    "ResShift",
    "resshift_eta_schedule",
    "resshift_process",
    "resshift_sample",
    "reverse_step_mean",
    "Samples",
    "save_schedule",
    "scan_steps",
    "Schedule",
    "sde_sample",
    "SDE_SOLVERS",
    "solver_time_grid",
    "sqrt_blocks",
    "time_grid",
    "timesteps_from_logits",
    "VARIANCES",
]
