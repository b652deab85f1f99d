"""TensorFlow Datasets as a random-access source, through `tfds.data_source` (no TensorFlow).

`tfds.data_source` reads ArrayRecord files that must already be prepared in TFDS's data dir.
Preparing a dataset needs TensorFlow and the internet, so it is a one-off step for the user:

    pip install tensorflow tensorflow-datasets
    tfds build NAME --file_format=array_record [--data_dir DIR]

This module never downloads or prepares anything (`download=False`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._image import _as_hwc_uint8, _check_index, _check_size, _fit_square


def _how_to_prepare(name: str, data_dir) -> str:
    where = f" --data_dir {data_dir}" if data_dir is not None else ""
    return (
        f"Prepare it once, on a machine with internet and TensorFlow:\n"
        f"    pip install tensorflow tensorflow-datasets\n"
        f"    tfds build {name} --file_format=array_record{where}\n"
        f"then copy the data dir here (or set TFDS_DATA_DIR / pass data_dir=)."
    )


class TfdsSource:
    """A prepared TFDS dataset split: `src[i] = {"image": uint8 (H, W, C), "label": int}`.

    Build it with `tfds_source(...)`. `label` is present when the dataset has the label feature.
    `dataset` is the underlying `tfds` data source.
    """

    def __init__(
        self,
        dataset,
        *,
        name: str,
        image_key: str,
        label_key: str | None,
        size: int | None,
        resample: str,
    ):
        self.dataset = dataset
        self.name = name
        self.image_key = image_key
        self.label_key = label_key
        self.size = size
        self.resample = resample
        self._len = len(dataset)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index) -> dict[str, Any]:
        # Check bounds here: tfds data sources do not raise for an index past the end.
        record = self.dataset[_check_index(index, self._len)]
        image = _as_hwc_uint8(record[self.image_key], f"{self.name} feature {self.image_key!r}")
        if self.size is not None:
            image = _fit_square(image, self.size, self.resample)
        example: dict[str, Any] = {"image": image}
        if self.label_key is not None:
            example["label"] = int(np.asarray(record[self.label_key]))
        return example

    def __repr__(self) -> str:
        return f"TfdsSource(name={self.name!r}, n={len(self)})"


def tfds_source(
    name: str,
    split: str = "train",
    *,
    data_dir: str | None = None,
    size: int | None = None,
    image_key: str = "image",
    label_key: str | None = "label",
    resample: str = "bilinear",
) -> TfdsSource:
    """A TFDS dataset as a random-access source, read with `tfds.data_source` (ArrayRecord).

    Works without TensorFlow; needs the dataset already prepared in ArrayRecord format under
    `data_dir` (default: TFDS's, `~/tensorflow_datasets` or `$TFDS_DATA_DIR`). Nothing is
    downloaded. Under `tfds.testing.mock_data(num_examples=N)` it returns N random examples.

    Args:
      name: TFDS name, optionally with config/version ("mnist", "cifar10", "celeb_a/2.1.0").
      split: TFDS split string, slicing included ("train", "test[:10%]").
      data_dir: TFDS data dir.
      size: `None` keeps the stored size; an int resizes the shorter side to `size` and
        center-crops to `size` x `size`.
      image_key: the image feature (uint8 (H, W, C)).
      label_key: the label feature; used only if the dataset has it. `None`: no labels.

    Raises:
      ValueError: unknown dataset, or no `image_key` feature.
      FileNotFoundError: the dataset is not prepared under `data_dir` (the message says how).
    """
    import tensorflow_datasets as tfds

    size = _check_size(size)
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a TFDS split string such as 'train', got {split!r}")
    try:
        dataset = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"unknown TFDS dataset {name!r}: {str(e).splitlines()[0]}") from e
    except Exception as e:
        if not tfds.builder(name, data_dir=data_dir).is_prepared():
            raise FileNotFoundError(
                f"TFDS dataset {name!r} (split {split!r}) is not prepared"
                f"{'' if data_dir is None else f' in {data_dir!r}'}. "
                + _how_to_prepare(name, data_dir)
            ) from e
        raise ValueError(
            f"cannot open TFDS dataset {name!r} split {split!r} for random access "
            f"(it must be prepared as ArrayRecord): {e}\n" + _how_to_prepare(name, data_dir)
        ) from e
    features = dataset.dataset_info.features
    keys = list(features.keys()) if hasattr(features, "keys") else []
    if keys and image_key not in keys:
        raise ValueError(f"TFDS dataset {name!r} has no feature {image_key!r}; features: {keys}")
    if label_key is not None and keys and label_key not in keys:
        label_key = None
    return TfdsSource(
        dataset,
        name=f"tfds:{name}:{split}",
        image_key=image_key,
        label_key=label_key,
        size=size,
        resample=resample,
    )
