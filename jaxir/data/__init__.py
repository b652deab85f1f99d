"""Data sources and a deterministic, resumable, per-host input pipeline (numpy, on the host).

Sources are random-access: `len(src)`, `src[i] -> {"image": uint8 (H, W, C), "label"?: int}`,
`src.name`. `DataLoader` turns one into batches `{"image": (b, H, W, C) float32 in [-1, 1],
"label"?: (b,) int32}`. Nothing in this package downloads anything: digits / faces / photos ship
inside scikit-learn and scikit-image, folders are local, TFDS datasets must already be prepared.
"""

from ._loader import DataLoader as DataLoader
from ._loader import images_to_float as images_to_float
from ._loader import images_to_uint8 as images_to_uint8
from ._photos import PHOTO_SPLITS as PHOTO_SPLITS
from ._photos import PhotoCrops as PhotoCrops
from ._photos import photos as photos
from ._registry import SOURCE_SPECS as SOURCE_SPECS
from ._registry import get_source as get_source
from ._sources import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from ._sources import ArraySource as ArraySource
from ._sources import ImageFolder as ImageFolder
from ._sources import Source as Source
from ._sources import digits as digits
from ._sources import faces as faces
from ._tfds import TfdsSource as TfdsSource
from ._tfds import tfds_source as tfds_source

__all__ = [
    "IMAGE_EXTENSIONS",
    "PHOTO_SPLITS",
    "SOURCE_SPECS",
    "ArraySource",
    "DataLoader",
    "ImageFolder",
    "PhotoCrops",
    "Source",
    "TfdsSource",
    "digits",
    "faces",
    "get_source",
    "images_to_float",
    "images_to_uint8",
    "photos",
    "tfds_source",
]
