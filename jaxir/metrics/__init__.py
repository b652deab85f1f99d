"""Metrics (layer 10): image quality, data consistency, distances between distributions.

All are pure jnp functions that jit and vmap. Images are NHWC in [-1, 1] (data_range=2).
"""

from ._distances import gaussian_w2 as gaussian_w2
from ._distances import mmd as mmd
from ._distances import sliced_wasserstein as sliced_wasserstein
from ._image import consistency as consistency
from ._image import consistency_rmse as consistency_rmse
from ._image import psnr as psnr
from ._image import ssim as ssim
from ._stats import mean_ci as mean_ci

__all__ = [
    "consistency",
    "consistency_rmse",
    "gaussian_w2",
    "mean_ci",
    "mmd",
    "psnr",
    "sliced_wasserstein",
    "ssim",
]
