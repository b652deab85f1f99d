"""FID and KID between two sets of images, on features from a pluggable network.

- FID (Heusel et al., NeurIPS 2017, eq. 6): the Fréchet (2-Wasserstein²) distance between
  Gaussians fitted to the two feature sets, ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}).
- KID (Bińkowski et al., ICLR 2018, "Demystifying MMD GANs", Sec. 3): the unbiased MMD²
  with the cubic polynomial kernel k(a, b) = (aᵀb / F + 1)³, averaged over random subsets.

Numbers depend on the feature network. Published FID/KID use the 2048-d pool3 features of the
"FID Inception" (TensorFlow's 2015-12-05 InceptionV3 graph, as ported by pytorch-fid). jaxir
builds that network (:class:`~jaxir.metrics.InceptionV3`, :func:`inception_features`,
:func:`inception_features_fn`), but no PyPI package ships its weights: convert pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` once with
``experiments/tools/convert_inception_weights.py`` and pass the ``.npz`` as ``weights=`` or set
``$JAXIR_INCEPTION_WEIGHTS``. Alternatively pass precomputed (N, F) features, or any
``features_fn(images) -> (N, F)``. For small offline data sets, `train_feature_net`
(:mod:`jaxir.metrics._featurenet`) trains a small classifier whose penultimate layer serves as
the feature space; FIDs measured with it are only comparable with each other (same file),
never with Inception FIDs in papers.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._inception import load_inception, resolve_weights

FeaturesFn = Callable[[jax.Array], jax.Array]


def _features(name, images, features_fn, batch_size):
    """(N, F) float64 features: ``images`` themselves if no ``features_fn``, else in batches."""
    if features_fn is None:
        feats = np.asarray(images, np.float64)
    else:
        n = len(images)
        feats = np.concatenate(
            [
                np.asarray(features_fn(images[i : i + batch_size]), np.float64)
                for i in range(0, n, batch_size)
            ]
        )
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(
            f"{name}: features must be (N, F) with N >= 2, got {feats.shape}; pass "
            "features_fn=... to embed images"
        )
    return feats


def feature_stats(features):
    """Mean (F,) and unbiased covariance (F, F) of (N, F) features, in float64."""
    feats = np.asarray(features, np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False, ddof=1).reshape(feats.shape[1], -1)


class FeatureMoments(NamedTuple):
    """Mergeable float64 moments of (N, F) features: ``count``, ``mean`` (F,) and ``m2`` (F, F),
    the sum of centred outer products ``Σ (f − mean)(f − mean)ᵀ``.

    For FID over data that no single host holds: each host accumulates the features of its own
    images (:meth:`of`, :meth:`add`), :func:`allreduce_feature_moments` merges the hosts', and
    :meth:`stats` gives the mean and the unbiased covariance ``m2 / (count − 1)`` for
    :func:`frechet_distance`. Two parts merge by the pairwise update of Chan, Golub & LeVeque
    (1979; "Updating formulae and a pairwise algorithm for computing sample variances", eq. 2.1
    in matrix form)::

        n = n_a + n_b,  δ = mean_b − mean_a,  mean = mean_a + δ n_b / n,
        m2 = m2_a + m2_b + δ δᵀ n_a n_b / n,

    which, unlike accumulating ``Σ f fᵀ``, does not cancel when ``‖mean‖² ≫`` the variance. Any
    split of the rows gives :func:`feature_stats` of all of them to float64 rounding.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, features) -> "FeatureMoments":
        """The moments of one (N, F) array (N ≥ 0), in float64."""
        f = np.asarray(features, np.float64)
        if f.ndim != 2:
            raise ValueError(f"features must be (N, F), got shape {f.shape}")
        if f.shape[0] == 0:
            return cls(0, np.zeros(f.shape[1]), np.zeros((f.shape[1], f.shape[1])))
        mean = f.mean(axis=0)
        c = f - mean
        return cls(int(f.shape[0]), mean, c.T @ c)

    def merge(self, other: "FeatureMoments") -> "FeatureMoments":
        """The moments of both parts' rows together (Chan et al.'s update above)."""
        if self.mean.shape != other.mean.shape:
            raise ValueError(f"feature dimensions differ: {self.mean.shape[0]} vs "
                             f"{other.mean.shape[0]}")
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.count * other.count / n)
        return FeatureMoments(n, mean, m2)

    def add(self, features) -> "FeatureMoments":
        """These moments with the rows of ``features`` (N, F) added."""
        return self.merge(FeatureMoments.of(features))

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, cov)``: as :func:`feature_stats` of every row added (``cov`` unbiased)."""
        if self.count < 2:
            raise ValueError(f"the covariance needs at least 2 feature rows, have {self.count}")
        cov = self.m2 / (self.count - 1)
        return self.mean, 0.5 * (cov + cov.T)


def _allgather_host(tree):
    """Every process's numpy ``tree`` (arrays of ndim ≥ 1) stacked on a new leading axis, in
    process order, on every process. 8-byte dtypes (float64, int64) travel bit for bit as
    pairs of uint32 (without x64, jax would narrow them to 32 bits)."""
    from jax.experimental import multihost_utils

    def pack(a):
        a = np.ascontiguousarray(a)
        return a.view(np.uint32) if a.dtype.itemsize == 8 else a

    got = multihost_utils.process_allgather(jax.tree.map(pack, tree))
    return jax.tree.map(lambda g, a: np.ascontiguousarray(np.asarray(g)).view(np.asarray(a).dtype)
                        if np.asarray(a).dtype.itemsize == 8 else np.asarray(g), got, tree)


def allreduce_feature_moments(moments: FeatureMoments) -> FeatureMoments:
    """The merge of every process's :class:`FeatureMoments` (each passes its own, all get the
    result; a collective). One process: ``moments`` itself. The moments travel bit for bit and
    the merge runs on the host in float64, in process order, so every process gets the same
    bits whatever the accelerator."""
    if jax.process_count() == 1:
        return moments
    parts = _allgather_host({"count": np.asarray([moments.count], np.int64),
                             "mean": np.asarray(moments.mean, np.float64),
                             "m2": np.asarray(moments.m2, np.float64)})
    out = FeatureMoments.of(np.zeros((0, moments.mean.shape[0])))
    for p in range(jax.process_count()):
        out = out.merge(FeatureMoments(int(parts["count"][p, 0]), parts["mean"][p],
                                       parts["m2"][p]))
    return out


def allgather_features(features) -> np.ndarray:
    """Every process's (N_p, F) features, concatenated in process order, on every process (a
    collective; ``N_p`` may differ). KID needs the rows themselves, not moments. One process:
    ``features`` as float64."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, F), got shape {f.shape}")
    if jax.process_count() == 1:
        return f
    counts = _allgather_host(np.asarray([f.shape[0]], np.int64))[:, 0]
    pad = np.zeros((int(counts.max()), f.shape[1]), np.float64)
    pad[: f.shape[0]] = f
    every = _allgather_host(pad)
    return np.concatenate([every[p, : int(c)] for p, c in enumerate(counts)])


def _clip_spectrum(w):
    """Eigenvalues below round-off (d · eps · max |λ|) set to 0, so that a singular covariance
    (N ≤ F) does not contribute sqrt(1e-16)-sized terms."""
    tol = w.shape[-1] * np.finfo(np.float64).eps * max(np.abs(w).max(initial=0.0), 1e-300)
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(c):
    w, v = np.linalg.eigh(0.5 * (c + c.T))
    return (v * np.sqrt(_clip_spectrum(w))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^{1/2}, in float64 numpy.

    tr (Σ1 Σ2)^{1/2} is computed as Σ_i sqrt(λ_i) over the eigenvalues of the symmetric PSD
    matrix Σ1^{1/2} Σ2 Σ1^{1/2} (similar to Σ1 Σ2, so same spectrum), with both square roots from
    ``np.linalg.eigh`` and eigenvalues below round-off (F · eps · λ_max) set to 0. This avoids ``scipy.linalg.sqrtm`` and its
    complex round-off parts and works for singular covariances (N ≤ F); it agrees with the
    sqrtm formula of pytorch-fid to round-off. ``metrics.gaussian_w2`` is the jnp version (its
    square equals this).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            "frechet_distance: need mu (F,) and sigma (F, F) for both sets, got "
            f"{mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}"
        )
    r1 = _psd_sqrt(s1)
    mid = r1 @ (0.5 * (s2 + s2.T)) @ r1
    cross = np.sqrt(_clip_spectrum(np.linalg.eigvalsh(0.5 * (mid + mid.T)))).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross)


def fid(x, y, features_fn: FeaturesFn | None = None, batch_size: int = 256) -> float:
    """Fréchet distance between Gaussian fits of the features of ``x`` and ``y``.

    Args:
      x, y: images (N, H, W, C) in [-1, 1] with ``features_fn``, else features (N, F), (M, F).
      features_fn: maps a batch of images to (B, F) features; e.g. the function returned by
        :func:`inception_features_fn` (paper-comparable FID), :func:`train_feature_net` or
        :func:`load_feature_net`.
      batch_size: images per ``features_fn`` call.

    Returns:
      FID (a squared distance, ≥ 0 up to round-off) as a Python float.

    >>> import numpy as np
    >>> f = np.random.default_rng(0).normal(size=(500, 4))
    >>> round(fid(f, f + 1.0), 6)
    4.0
    """
    fx = _features("fid", x, features_fn, batch_size)
    fy = _features("fid", y, features_fn, batch_size)
    return frechet_distance(*feature_stats(fx), *feature_stats(fy))


def _poly_mmd2_unbiased(fx, fy):
    """Unbiased MMD² (Gretton et al., JMLR 2012, eq. 3) with k(a, b) = (aᵀb / F + 1)³."""
    m, n, d = fx.shape[0], fy.shape[0], fx.shape[1]
    kxx = (fx @ fx.T / d + 1.0) ** 3
    kyy = (fy @ fy.T / d + 1.0) ** 3
    kxy = (fx @ fy.T / d + 1.0) ** 3
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


def kid(
    x,
    y,
    features_fn: FeaturesFn | None = None,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased polynomial-kernel MMD² averaged over subsets.

    Each of ``num_subsets`` rounds draws ``s = min(subset_size, N, M)`` rows of each feature
    set without replacement (``np.random.default_rng(seed)``) and computes the unbiased MMD²
    with k(a, b) = (aᵀb / F + 1)³, as torch-fidelity and clean-fid do (torch-fidelity
    defaults: 100 subsets of 1000). Unbiased, so it can be slightly negative and is ≈ 0 for
    two samples of one distribution.

    Args:
      x, y, features_fn, batch_size: as for :func:`fid`.
      num_subsets, subset_size: subset sampling as above.
      seed: seed of the subset sampler.

    Returns:
      (mean, std) over the subsets (std with ddof=0, as the reference tools report it). The
      subsets overlap, so std is not the standard error of the mean.
    """
    fx = _features("kid", x, features_fn, batch_size)
    fy = _features("kid", y, features_fn, batch_size)
    if fx.shape[1] != fy.shape[1]:
        raise ValueError(f"kid: feature dimensions differ: {fx.shape} vs {fy.shape}")
    s = min(subset_size, fx.shape[0], fy.shape[0])
    rng = np.random.default_rng(seed)
    vals = [
        _poly_mmd2_unbiased(
            fx[rng.choice(len(fx), s, replace=False)], fy[rng.choice(len(fy), s, replace=False)]
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(vals)), float(np.std(vals))


# --- InceptionV3 (FID network) features ----------------------------------------------------


@functools.lru_cache(maxsize=2)
def _inception_split(path: str):
    """(graphdef, state) of the InceptionV3 loaded from ``path``, once per path."""
    return nnx.split(load_inception(path))


@functools.partial(jax.jit, static_argnums=0)
def _inception_apply(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)


_RANGE_SLACK = 1e-3  # round-off allowance of the [-1, 1] check


def _check_inception_images(images):
    """``images`` (a jax or numpy array, kept where it is) if it is (N, H, W, 3) floats in
    [-1, 1] (NaN fails the range check), else ValueError saying what is wrong."""
    x = images if isinstance(images, jax.Array) else np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1:
        hint = "; repeat grayscale to RGB first (x.repeat(3, -1))" if x.ndim == 4 else ""
        raise ValueError(
            f"inception_features: images must be (N, H, W, 3) with N >= 1, got shape "
            f"{x.shape}{hint}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"inception_features: images must be floats in [-1, 1], got dtype {x.dtype} "
            "(convert uint8 with jaxir.data.images_to_float)"
        )
    xp = jnp if isinstance(x, jax.Array) else np
    lo, hi = float(xp.min(x)), float(xp.max(x))
    if not (lo >= -1.0 - _RANGE_SLACK and hi <= 1.0 + _RANGE_SLACK):
        raise ValueError(
            f"inception_features: images must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]"
            " (pytorch-fid's [0, 1] images correspond to 2 x - 1)"
        )
    return x


def _inception_batches(graphdef, state, x, batch_size):
    """(N, 2048) float32 numpy features of checked images, ``batch_size`` per forward pass.

    For N > ``batch_size`` the last batch is padded with copies of its last image, so that one
    compilation serves every batch of an image size."""
    n = x.shape[0]
    if n <= batch_size:
        return np.asarray(_inception_apply(graphdef, state, x), np.float32)
    out = []
    for i in range(0, n, batch_size):
        chunk = jnp.asarray(x[i : i + batch_size])
        m = chunk.shape[0]
        if m < batch_size:
            chunk = jnp.concatenate([chunk, jnp.repeat(chunk[-1:], batch_size - m, axis=0)])
        out.append(np.asarray(_inception_apply(graphdef, state, chunk), np.float32)[:m])
    return np.concatenate(out)


def _loaded_inception(weights, batch_size):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return _inception_split(str(resolve_weights(weights).resolve()))


def inception_features_fn(
    weights: str | os.PathLike | None = None, batch_size: int = 50
) -> FeaturesFn:
    """A ``features_fn`` for :func:`fid` / :func:`kid`: FID-Inception pool3 features.

    Loads the weights now (so a missing file fails here), once per path: the loaded model is
    cached by resolved path (``functools.lru_cache``; a file changed on disk is not re-read).
    The returned function maps images (N, H, W, 3) in [-1, 1] to (N, 2048) float32 numpy
    features that pytorch-fid's ``InceptionV3([3])`` gives for the same images in [0, 1] (up to
    float32 round-off; bilinear resize to 299×299 with ``align_corners=False`` included). Batches of ``batch_size`` run
    through one jitted forward pass; when N > ``batch_size`` the last batch is padded, so one
    compilation serves all batches of an image size (and one per image size and N ≤
    ``batch_size``).

    Args:
      weights: ``.npz`` from ``experiments/tools/convert_inception_weights.py``; default
        ``$JAXIR_INCEPTION_WEIGHTS``.
      batch_size: images per forward pass.

    >>> fn = inception_features_fn("inception_fid.npz")  # doctest: +SKIP
    >>> fid(real_images, fake_images, features_fn=fn)  # doctest: +SKIP
    """
    graphdef, state = _loaded_inception(weights, batch_size)

    def features_fn(images):
        return _inception_batches(graphdef, state, _check_inception_images(images), batch_size)

    return features_fn


def inception_features(
    images, weights: str | os.PathLike | None = None, batch_size: int = 50
) -> np.ndarray:
    """FID-Inception pool3 features (N, 2048), float32, of images (N, H, W, 3) in [-1, 1].

    The network is pytorch-fid's (see :mod:`jaxir.metrics._inception`); weights come from
    ``weights`` or ``$JAXIR_INCEPTION_WEIGHTS`` (an ``.npz`` written by
    ``experiments/tools/convert_inception_weights.py``). With them, ``fid(inception_features(x),
    inception_features(y))`` is the FID that pytorch-fid reports for the same images (up to
    float32 round-off).

    Raises:
      ValueError: images not (N, H, W, 3) floats in [-1, 1].
      FileNotFoundError: no weight file (the message says how to make one).
    """
    x = _check_inception_images(images)
    graphdef, state = _loaded_inception(weights, batch_size)
    return _inception_batches(graphdef, state, x, batch_size)
