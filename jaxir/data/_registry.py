"""`get_source`: build a source from a short string, for configs and the CLI."""

from __future__ import annotations

from ._photos import photos
from ._sources import ImageFolder, Source, digits, faces
from ._tfds import tfds_source

SOURCE_SPECS = (
    "digits",
    "faces",
    "photos",
    "photos:train",
    "photos:test",
    "folder:PATH",
    "tfds:NAME",
    "tfds:NAME:SPLIT",
)
"""The forms `get_source` accepts."""


def get_source(spec: str, **kwargs) -> Source:
    """Build a source from a spec string; `kwargs` go to the source's constructor.

    Specs: "digits", "faces", "photos" (= "photos:train"), "photos:test", "folder:/a/path"
    (everything after the first colon is the path), "tfds:NAME" (split "train") and
    "tfds:NAME:SPLIT" (everything after the second colon is the split, so "tfds:mnist:test[:50%]"
    works).

    Example:
      >>> get_source("digits", size=16)[0]["image"].shape
      (16, 16, 1)

    Raises:
      ValueError: an unknown or malformed spec (the message lists the valid forms).
      TypeError: `spec` is not a string.
    """
    if not isinstance(spec, str):
        raise TypeError(f"source spec must be a string, got {type(spec).__name__}")
    kind, _, rest = spec.partition(":")
    if kind == "digits" and not rest:
        return digits(**kwargs)
    if kind == "faces" and not rest:
        return faces(**kwargs)
    if kind == "photos" and rest in ("", "train", "test"):
        return photos(split=rest or "train", **kwargs)
    if kind == "folder" and rest:
        return ImageFolder(rest, **kwargs)
    if kind == "tfds" and rest:
        name, _, split = rest.partition(":")
        if name:
            return tfds_source(name, split or "train", **kwargs)
    raise ValueError(f"unknown data source spec {spec!r}; valid forms: {', '.join(SOURCE_SPECS)}")
