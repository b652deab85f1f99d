"""Metrics (layer 10): image quality, data consistency, distances between distributions.

All are pure jnp functions that jit and vmap. Images are NHWC in [-1, 1] (data_range=2).
Exceptions: ``fid`` / ``kid`` / ``frechet_distance`` are host-side float64 numpy on (N, F)
features; ``lpips`` is a Flax NNX network (jit/vmap work, weights are loaded once and cached);
``inception_features`` runs the FID InceptionV3 (NNX, user-converted weights) and returns numpy.
Across hosts, ``FeatureMoments`` (float64, mergeable) and ``allreduce_feature_moments`` give the
FID statistics of data no host holds alone; ``allgather_features`` brings KID's rows together.
"""

from ._distances import gaussian_w2 as gaussian_w2
from ._distances import mmd as mmd
from ._distances import sliced_wasserstein as sliced_wasserstein
from ._featurenet import FeatureNet as FeatureNet
from ._featurenet import load_feature_net as load_feature_net
from ._featurenet import train_feature_net as train_feature_net
from ._fid import FeatureMoments as FeatureMoments
from ._fid import allgather_features as allgather_features
from ._fid import allreduce_feature_moments as allreduce_feature_moments
from ._fid import feature_stats as feature_stats
from ._fid import fid as fid
from ._fid import frechet_distance as frechet_distance
from ._fid import inception_features as inception_features
from ._fid import inception_features_fn as inception_features_fn
from ._fid import kid as kid
from ._image import consistency as consistency
from ._image import consistency_rmse as consistency_rmse
from ._image import psnr as psnr
from ._image import ssim as ssim
from ._inception import InceptionV3 as InceptionV3
from ._inception import load_inception as load_inception
from ._lpips import LPIPSNet as LPIPSNet
from ._lpips import load_lpips as load_lpips
from ._lpips import lpips as lpips
from ._stats import mean_ci as mean_ci

__all__ = [
    "FeatureMoments",
    "allgather_features",
    "allreduce_feature_moments",
    "consistency",
    "consistency_rmse",
    "feature_stats",
    "FeatureNet",
    "fid",
    "frechet_distance",
    "gaussian_w2",
    "inception_features",
    "inception_features_fn",
    "InceptionV3",
    "kid",
    "load_feature_net",
    "load_inception",
    "load_lpips",
    "lpips",
    "LPIPSNet",
    "mean_ci",
    "mmd",
    "psnr",
    "sliced_wasserstein",
    "ssim",
    "train_feature_net",
]
