"""Image restoration for users: tasks, methods, patch-wise restoration, evaluation, the demo.

- `TASKS` / `get_task`: ``denoise``, ``sr4``, ``deblur``, ``inpaint``, ``inpaint_box``,
  ``colorize`` as operators and noise levels in [-1, 1] units; `degrade_images`.
- `METHODS` / `get_method`: the training-free diffusion samplers of :mod:`jaxir.inverse`
  (official defaults, ``steps`` overridable) and classical baselines; `default_settings`
  (per task, where the held-out evaluation showed other settings better) and `best_baseline`.
- `restore_images` / `restore_image`: any image size with a fixed-size prior, by overlapping
  patches blended with a raised-cosine window (see their docstrings for the limitation);
  ``samples=K`` averages K posterior samples per patch (a Monte-Carlo posterior mean).
- `evaluate`: PSNR / SSIM / LPIPS / consistency with 95% confidence intervals, NFE and time per image;
  `read_results` / `merge_results` add rows to an existing table.
- `load_learned` / `restore_learned`: a trained paired-restoration workdir (SR3, IR-SDE, GOUB,
  I2SB, DDBM, flow, ResShift, latent, L1 regression) run on LQ images with its family's sampler.
- `run_demo`: the offline ``jaxir demo`` report.

The names load lazily (PEP 562): ``import jaxir.restore`` imports no jax until a function is
used, so the command line's ``--help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_LAZY = {
    "run_demo": "_demo",
    "evaluate": "_evaluate",
    "image_metrics": "_evaluate",
    "load_eval_images": "_evaluate",
    "markdown_table": "_evaluate",
    "merge_results": "_evaluate",
    "method_label": "_evaluate",
    "read_results": "_evaluate",
    "summarize": "_evaluate",
    "write_results": "_evaluate",
    "compare_path": "_io",
    "comparison_image": "_io",
    "load_image": "_io",
    "load_mask": "_io",
    "read_image": "_io",
    "save_image": "_io",
    "to_uint8": "_io",
    "LearnedModel": "_learned",
    "load_learned": "_learned",
    "prepare_lq": "_learned",
    "restore_learned": "_learned",
    "DIFFUSION_METHODS": "_methods",
    "METHODS": "_methods",
    "BEST_BASELINES": "_methods",
    "TASK_SETTINGS": "_methods",
    "best_baseline": "_methods",
    "default_settings": "_methods",
    "Method": "_methods",
    "get_method": "_methods",
    "blend_patches": "_patches",
    "blend_weights": "_patches",
    "blend_window": "_patches",
    "extract_patches": "_patches",
    "patch_positions": "_patches",
    "restore_image": "_restore",
    "restore_images": "_restore",
    "TASKS": "_tasks",
    "Task": "_tasks",
    "degrade_images": "_tasks",
    "get_task": "_tasks",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


if TYPE_CHECKING:  # static analysers see the eager imports
    from ._demo import run_demo as run_demo
    from ._evaluate import evaluate as evaluate
    from ._evaluate import image_metrics as image_metrics
    from ._evaluate import load_eval_images as load_eval_images
    from ._evaluate import markdown_table as markdown_table
    from ._evaluate import merge_results as merge_results
    from ._evaluate import method_label as method_label
    from ._evaluate import read_results as read_results
    from ._evaluate import summarize as summarize
    from ._evaluate import write_results as write_results
    from ._io import compare_path as compare_path
    from ._io import comparison_image as comparison_image
    from ._io import load_image as load_image
    from ._io import load_mask as load_mask
    from ._io import read_image as read_image
    from ._io import save_image as save_image
    from ._io import to_uint8 as to_uint8
    from ._learned import LearnedModel as LearnedModel
    from ._learned import load_learned as load_learned
    from ._learned import prepare_lq as prepare_lq
    from ._learned import restore_learned as restore_learned
    from ._methods import BEST_BASELINES as BEST_BASELINES
    from ._methods import DIFFUSION_METHODS as DIFFUSION_METHODS
    from ._methods import METHODS as METHODS
    from ._methods import TASK_SETTINGS as TASK_SETTINGS
    from ._methods import Method as Method
    from ._methods import best_baseline as best_baseline
    from ._methods import default_settings as default_settings
    from ._methods import get_method as get_method
    from ._patches import blend_patches as blend_patches
    from ._patches import blend_weights as blend_weights
    from ._patches import blend_window as blend_window
    from ._patches import extract_patches as extract_patches
    from ._patches import patch_positions as patch_positions
    from ._restore import restore_image as restore_image
    from ._restore import restore_images as restore_images
    from ._tasks import TASKS as TASKS
    from ._tasks import Task as Task
    from ._tasks import degrade_images as degrade_images
    from ._tasks import get_task as get_task
