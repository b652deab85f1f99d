"""Training (DESIGN.md, layer 9): configs, the loop, the train step, losses, families, sharding.

- Run: `train(config, workdir)` (resumable, any mesh, multi-host) from a `TrainConfig`
  (`load_config`, `override`, `config_to_dict` / `config_from_dict`); `load_model_fn(workdir)`
  and `load_config_from_workdir` read a trained run back (`sample_workdir` samples from it);
  `Checkpointer` / `CheckpointError` for orbax checkpoints; `ConfigError` for a config or
  workdir that cannot describe a run.
- Learned restoration: `families` — one `Family` record per method (typed options, process,
  loss, sampler, default steps) in one registry (`FAMILIES`, `register_family`,
  `get_family`); ``loss.kind`` names one (`LEARNED_RESTORATION_KINDS`).
- Losses: ``factory(sde, **options) -> loss_fn(model_fn, batch, key) -> (loss, aux)``
  (`denoising_loss`, `score_matching_loss`, `conditional_loss`, `classifier_loss` and the
  families' `irsde_loss` … `regression_loss`; by name with `make_loss`); `build_loss(config,
  sde)` is a config's.
- The step: `TrainState`, `make_optimizer`, `make_update` (the step's body, shared by every
  model), `make_train_step` (pure) / `jit_train_step` (sharded, donating), `make_apply_fn`,
  `init_train_state`, `FlatLayout` / `step_layout` (parameters, moments and EMA as single
  vectors: the trainer's layout without FSDP); `fit` trains on data in memory with the same
  step.
- Sharding and multi-host: `make_mesh`, `batch_sharding`, `tree_shardings`, `param_spec`,
  `global_batch`, `initialize_distributed`.
"""

from . import families as families
from ._build import build_loss as build_loss
from ._build import init_train_state as init_train_state
from ._checkpoint import Checkpointer as Checkpointer
from ._checkpoint import CheckpointError as CheckpointError
from ._config import ConfigError as ConfigError
from ._config import DataConfig as DataConfig
from ._config import LossConfig as LossConfig
from ._config import OptimConfig as OptimConfig
from ._config import SDEConfig as SDEConfig
from ._config import TrainConfig as TrainConfig
from ._config import build_sde as build_sde
from ._config import config_from_dict as config_from_dict
from ._config import config_to_dict as config_to_dict
from ._config import load_config as load_config
from ._config import override as override
from ._fit import FitResult as FitResult
from ._fit import fit as fit
from ._layout import FlatLayout as FlatLayout
from ._layout import step_layout as step_layout
from ._losses import LOSSES as LOSSES
from ._losses import LossFn as LossFn
from ._losses import classifier_loss as classifier_loss
from ._losses import conditional_loss as conditional_loss
from ._losses import denoising_loss as denoising_loss
from ._losses import make_loss as make_loss
from ._losses import score_matching_loss as score_matching_loss
from ._outputs import save_image_grid as save_image_grid
from ._sample import SAMPLERS as SAMPLERS
from ._sample import sample_workdir as sample_workdir
from ._sharding import batch_sharding as batch_sharding
from ._sharding import global_batch as global_batch
from ._sharding import initialize_distributed as initialize_distributed
from ._sharding import make_mesh as make_mesh
from ._sharding import param_spec as param_spec
from ._sharding import tree_shardings as tree_shardings
from ._state import TrainState as TrainState
from ._state import make_optimizer as make_optimizer
from ._step import jit_train_step as jit_train_step
from ._step import make_apply_fn as make_apply_fn
from ._step import make_train_step as make_train_step
from ._step import make_update as make_update
from ._trainer import train as train
from ._workdir import load_config_from_workdir as load_config_from_workdir
from ._workdir import load_model_fn as load_model_fn
from .families import FAMILIES as FAMILIES
from .families import Family as Family
from .families import ddbm_loss as ddbm_loss
from .families import flow_loss as flow_loss
from .families import get_family as get_family
from .families import goub_loss as goub_loss
from .families import i2sb_loss as i2sb_loss
from .families import irsde_loss as irsde_loss
from .families import register_family as register_family
from .families import regression_loss as regression_loss
from .families import resshift_loss as resshift_loss

LEARNED_RESTORATION_KINDS = FAMILIES.keys()
"""The loss kinds `jaxir.restore.restore_learned` restores with: the registered families' names
(a live view: a family registered later is in it)."""

__all__ = [
    "FAMILIES",
    "LEARNED_RESTORATION_KINDS",
    "LOSSES",
    "SAMPLERS",
    "CheckpointError",
    "Checkpointer",
    "ConfigError",
    "DataConfig",
    "Family",
    "FitResult",
    "FlatLayout",
    "LossConfig",
    "LossFn",
    "OptimConfig",
    "SDEConfig",
    "TrainConfig",
    "TrainState",
    "batch_sharding",
    "build_loss",
    "build_sde",
    "classifier_loss",
    "conditional_loss",
    "config_from_dict",
    "config_to_dict",
    "ddbm_loss",
    "denoising_loss",
    "families",
    "fit",
    "flow_loss",
    "get_family",
    "global_batch",
    "goub_loss",
    "i2sb_loss",
    "init_train_state",
    "initialize_distributed",
    "irsde_loss",
    "jit_train_step",
    "load_config",
    "load_config_from_workdir",
    "load_model_fn",
    "make_apply_fn",
    "make_loss",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "make_update",
    "override",
    "param_spec",
    "register_family",
    "regression_loss",
    "resshift_loss",
    "sample_workdir",
    "save_image_grid",
    "score_matching_loss",
    "step_layout",
    "train",
    "tree_shardings",
]

# Moved to jaxir.operators (the degradation specs); importable here as before.
from ..operators import make_degradation as make_degradation  # noqa: E402
