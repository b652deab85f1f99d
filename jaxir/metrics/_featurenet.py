"""A small feature network for FID / KID on small offline data sets (`train_feature_net`).

Without the FID Inception weights, :func:`train_feature_net` trains a small classifier on a
labelled `jaxir.data` source (through `jaxir.training.fit`, the trainer's step) and its
penultimate layer serves as the feature space; FIDs measured with it compare methods with each
other (same file), never with Inception FIDs in papers.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ..precision import hconv_general_dilated, hdot_general
from ._fid import FeaturesFn


class FeatureNet(nnx.Module):
    """Small CNN classifier; its penultimate ReLU layer (``features``) is the feature space.

    conv3×3(16) → ReLU → avgpool 2 → conv3×3(32) → ReLU → avgpool 2 → dense(F) → ReLU → dense.
    Input (B, S, S, C) in [-1, 1] at the training size S (other sizes are resized bilinearly).
    """

    def __init__(self, image_size, channels, num_classes, dim=64, *, rngs: nnx.Rngs):
        self.image_size = image_size
        # exact products (jaxir.precision): FIDs on its features must not depend on the backend
        conv = dict(conv_general_dilated=hconv_general_dilated, rngs=rngs)
        self.conv1 = nnx.Conv(channels, 16, (3, 3), **conv)
        self.conv2 = nnx.Conv(16, 32, (3, 3), **conv)
        flat = 32 * (image_size // 4) ** 2
        self.hidden = nnx.Linear(flat, dim, dot_general=hdot_general, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, dot_general=hdot_general, rngs=rngs)

    def features(self, x):
        s = self.image_size
        if x.shape[1:3] != (s, s):
            x = jax.image.resize(x, (x.shape[0], s, s, x.shape[3]), "bilinear")
        x = nnx.avg_pool(nnx.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        return nnx.relu(self.hidden(x.reshape(x.shape[0], -1)))

    def __call__(self, x):
        return self.head(self.features(x))


class TrainedFeatureNet(NamedTuple):
    features_fn: FeaturesFn
    test_accuracy: float
    path: Path | None


def _classifier_loss(model_fn, batch, key):
    """Cross-entropy of the logits (the `jaxir.training` loss contract)."""
    del key
    logits = model_fn(batch["image"], None)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, {}


def _make_features_fn(model: FeatureNet, logits: bool = False) -> FeaturesFn:
    graphdef, state = nnx.split(model)

    @jax.jit
    def features_fn(images):
        net = nnx.merge(graphdef, state)
        x = jnp.asarray(images, jnp.float32)
        return net(x) if logits else net.features(x)

    return features_fn


def _flat_params(model):
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves}


def train_feature_net(
    source: str = "digits",
    path: str | Path | None = None,
    image_size: int = 16,
    steps: int = 600,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
) -> TrainedFeatureNet:
    """Train :class:`FeatureNet` to classify a labelled ``jaxir.data`` source; save it as npz.

    The source (default: the 1797 scikit-learn digits, resized to ``image_size``) is split
    80/20 with a seeded permutation; Adam on cross-entropy for ``steps`` steps (about 20 s on
    2 CPU cores with the defaults; test accuracy ~0.97 on digits).

    Returns:
      ``TrainedFeatureNet(features_fn, test_accuracy, path)``; reload with
      :func:`load_feature_net`.
    """
    from jaxir.data import get_source, images_to_float

    src = get_source(source, size=image_size)
    if getattr(src, "labels", None) is None:
        raise ValueError(f"train_feature_net: source {source!r} has no labels")
    images, labels = images_to_float(src.images), np.asarray(src.labels)
    perm = np.random.default_rng(seed).permutation(len(labels))
    n_test = len(labels) // 5
    test, train = perm[:n_test], perm[n_test:]
    num_classes = int(labels.max()) + 1

    from ..training._fit import fit  # the trainer's step (jaxir.training.make_update)

    model = FeatureNet(image_size, images.shape[-1], num_classes, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(seed + 1)
    batches = ({"image": images[idx], "label": labels[idx]}
               for idx in (rng.choice(train, batch_size, replace=False) for _ in range(steps)))
    apply = lambda p, dropout_key=None: lambda x, t=None, cond=None: nnx.merge(graphdef, p)(x)
    params = fit(_classifier_loss, apply, params, optax.adam(lr), batches, steps=steps).params
    model = nnx.merge(graphdef, params)
    logits = _make_features_fn(model, logits=True)(images[test])
    accuracy = float(np.mean(np.asarray(logits).argmax(-1) == labels[test]))

    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = np.array([image_size, images.shape[-1], num_classes, model.hidden.out_features])
        np.savez(path, config=config, source=np.array(source), **_flat_params(model))
    return TrainedFeatureNet(_make_features_fn(model), accuracy, path)


def load_feature_net(path: str | Path) -> FeaturesFn:
    """The ``features_fn`` of a :class:`FeatureNet` saved by :func:`train_feature_net`."""
    with np.load(path, allow_pickle=False) as data:
        image_size, channels, num_classes, dim = (int(v) for v in data["config"])
        model = FeatureNet(image_size, channels, num_classes, dim, rngs=nnx.Rngs(0))
        state = nnx.state(model, nnx.Param)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
        new = [jnp.asarray(data[jax.tree_util.keystr(k)]) for k, _ in leaves]
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))
    return _make_features_fn(model)
