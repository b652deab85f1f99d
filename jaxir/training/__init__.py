"""Training (DESIGN.md, layer 9): losses, the train step, sharding, checkpoints, the loop.

- Losses: factories ``factory(sde, **options) -> loss_fn(model_fn, batch, key) -> (loss, aux)``
  (`denoising_loss`, `score_matching_loss`, `conditional_loss`, `classifier_loss`, the
  restoration losses `irsde_loss` … `resshift_loss` and the one-pass `regression_loss`; by
  name in `LOSSES` / `make_loss`; "latent" (SRLDM) via `jaxir.latent.latent_loss`).
  `LEARNED_RESTORATION_KINDS` lists the kinds `jaxir.restore.restore_learned` restores with;
  `make_degradation` makes their LQ on the fly ("sr:F", "blur:S", "noise:S", joined by "+").
- State and step: `TrainState`, `make_optimizer`, `ema_update`, `DynamicLossScale`,
  `make_train_step` (pure) and `jit_train_step` (sharded, donating).
- Sharding and multi-host: `make_mesh`, `batch_sharding`, `tree_shardings`, `param_spec`,
  `global_batch`, `initialize_distributed`.
- Checkpoints: `Checkpointer` (orbax), `CheckpointError`, `GracefulStop`.
- The loop and its configs: `train`, `TrainConfig` (+ sections), `load_config`, `override`;
  `load_model_fn(workdir)` for code that uses a trained model; `sample_workdir` draws
  unconditional / class-conditional samples from it (what ``jaxir sample`` runs).
"""

from ._checkpoint import Checkpointer as Checkpointer
from ._checkpoint import CheckpointError as CheckpointError
from ._checkpoint import GracefulStop as GracefulStop
from ._checkpoint import abstract_state as abstract_state
from ._checkpoint import tree_mismatch as tree_mismatch
from ._config import LEARNED_RESTORATION_KINDS as LEARNED_RESTORATION_KINDS
from ._config import RESTORATION_KINDS as RESTORATION_KINDS
from ._config import ConfigError as ConfigError
from ._config import DataConfig as DataConfig
from ._config import LossConfig as LossConfig
from ._config import OptimConfig as OptimConfig
from ._config import SDEConfig as SDEConfig
from ._config import TrainConfig as TrainConfig
from ._config import build_sde as build_sde
from ._config import config_diff as config_diff
from ._config import config_from_dict as config_from_dict
from ._config import config_to_dict as config_to_dict
from ._config import load_config as load_config
from ._config import override as override
from ._losses import LOSSES as LOSSES
from ._losses import TIME_SAMPLINGS as TIME_SAMPLINGS
from ._losses import WEIGHTINGS as WEIGHTINGS
from ._losses import LossFn as LossFn
from ._losses import classifier_loss as classifier_loss
from ._losses import conditional_loss as conditional_loss
from ._losses import denoising_loss as denoising_loss
from ._losses import make_loss as make_loss
from ._losses import sample_time as sample_time
from ._losses import score_matching_loss as score_matching_loss
from ._outputs import plot_metrics as plot_metrics
from ._outputs import save_image_grid as save_image_grid
from ._restoration_losses import ddbm_loss as ddbm_loss
from ._restoration_losses import flow_loss as flow_loss
from ._restoration_losses import goub_loss as goub_loss
from ._restoration_losses import i2sb_loss as i2sb_loss
from ._restoration_losses import irsde_loss as irsde_loss
from ._restoration_losses import regression_loss as regression_loss
from ._restoration_losses import resshift_loss as resshift_loss
from ._sample import SAMPLERS as SAMPLERS
from ._sample import sample_workdir as sample_workdir
from ._sharding import batch_sharding as batch_sharding
from ._sharding import global_batch as global_batch
from ._sharding import initialize_distributed as initialize_distributed
from ._sharding import make_mesh as make_mesh
from ._sharding import param_spec as param_spec
from ._sharding import replicated as replicated
from ._sharding import tree_shardings as tree_shardings
from ._state import DynamicLossScale as DynamicLossScale
from ._state import TrainState as TrainState
from ._state import all_finite as all_finite
from ._state import ema_decay_at as ema_decay_at
from ._state import ema_update as ema_update
from ._state import init_loss_scale as init_loss_scale
from ._state import make_lr_schedule as make_lr_schedule
from ._state import make_optimizer as make_optimizer
from ._state import update_loss_scale as update_loss_scale
from ._step import jit_train_step as jit_train_step
from ._step import make_apply_fn as make_apply_fn
from ._step import make_train_step as make_train_step
from ._trainer import build_loss as build_loss
from ._trainer import init_train_state as init_train_state
from ._trainer import make_degradation as make_degradation
from ._trainer import train as train
from ._workdir import load_config_from_workdir as load_config_from_workdir
from ._workdir import load_model_fn as load_model_fn

__all__ = [
    "LOSSES",
    "TIME_SAMPLINGS",
    "WEIGHTINGS",
    "CheckpointError",
    "Checkpointer",
    "ConfigError",
    "DataConfig",
    "DynamicLossScale",
    "GracefulStop",
    "LossConfig",
    "LEARNED_RESTORATION_KINDS",
    "LossFn",
    "RESTORATION_KINDS",
    "OptimConfig",
    "SDEConfig",
    "TrainConfig",
    "TrainState",
    "abstract_state",
    "all_finite",
    "batch_sharding",
    "build_loss",
    "build_sde",
    "classifier_loss",
    "conditional_loss",
    "config_diff",
    "config_from_dict",
    "config_to_dict",
    "ddbm_loss",
    "denoising_loss",
    "flow_loss",
    "goub_loss",
    "i2sb_loss",
    "irsde_loss",
    "regression_loss",
    "resshift_loss",
    "ema_decay_at",
    "ema_update",
    "global_batch",
    "init_loss_scale",
    "init_train_state",
    "initialize_distributed",
    "jit_train_step",
    "load_config",
    "load_config_from_workdir",
    "load_model_fn",
    "sample_workdir",
    "SAMPLERS",
    "make_apply_fn",
    "make_degradation",
    "make_loss",
    "make_lr_schedule",
    "make_mesh",
    "make_optimizer",
    "make_train_step",
    "override",
    "param_spec",
    "plot_metrics",
    "replicated",
    "sample_time",
    "save_image_grid",
    "score_matching_loss",
    "tree_mismatch",
    "tree_shardings",
    "train",
    "update_loss_scale",
]
