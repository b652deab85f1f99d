"""`DataLoader`: deterministic, resumable, per-host-sharded batches from a source (numpy, host).

Everything random is a pure function of the seed:

- the order of epoch `e` is `Generator(PCG64(SeedSequence([seed, 0, e]))).permutation(N)`
  (or `arange(N)` with `shuffle=False`);
- the augmentation of source example `i` in epoch `e` (crop position, flip) is drawn from
  `Generator(PCG64(SeedSequence([seed, 1, e, i])))`.

So the stream depends only on (seed, source, batch_size, options) and on where it starts, which is
the whole state: `{"epoch": e, "position": p}` with `p` the number of examples of epoch `e`'s order
already consumed (by all hosts together). Neither the number of hosts nor prefetching changes it.
"""

from __future__ import annotations

import dataclasses
import operator
import queue
import threading
import weakref
from typing import Any

import numpy as np

from ._image import _as_hwc_uint8, _check_size, _fit_square
from ._sources import Source


def images_to_float(images) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]: `x / 127.5 - 1` (0 -> -1, 255 -> 1 exactly). Any shape."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def images_to_uint8(images) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255] (rounded, clipped): the inverse of `images_to_float`."""
    x = (np.asarray(images, np.float32) + 1.0) * 127.5
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _rng(*words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))


def _check_state(state, n: int) -> tuple[int, int]:
    if not isinstance(state, dict) or set(state) != {"epoch", "position"}:
        raise ValueError(f"state must be a dict with keys 'epoch' and 'position', got {state!r}")
    try:
        epoch, position = operator.index(state["epoch"]), operator.index(state["position"])
    except TypeError:
        raise ValueError(f"state values must be ints, got {state!r}") from None
    if epoch < 0 or not 0 <= position <= n:
        raise ValueError(f"state out of range for a source of {n} examples: {state!r}")
    return epoch, position


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything that defines the stream; shared with the prefetch thread (no loader reference)."""

    source: Any
    n: int
    batch_size: int
    local_batch_size: int
    process_index: int
    seed: int
    shuffle: bool
    drop_remainder: bool
    random_crop: tuple[int, int] | None
    random_flip: bool
    size: int | None
    resample: str
    num_epochs: int | None

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return _rng(self.seed, 0, epoch).permutation(self.n)

    def normalize(self, epoch: int, position: int) -> tuple[int, int]:
        """Move a position at which no further batch fits to the start of the next epoch."""
        fits = position + self.batch_size <= self.n if self.drop_remainder else position < self.n
        return (epoch, position) if fits else (epoch + 1, 0)

    def example(self, epoch: int, index: int) -> dict[str, Any]:
        item = self.source[index]
        image = _as_hwc_uint8(item["image"], f"{getattr(self.source, 'name', 'source')}[{index}]")
        if self.size is not None:
            image = _fit_square(image, self.size, self.resample)
        if self.random_crop is not None or self.random_flip:
            rng = _rng(self.seed, 1, epoch, index)
            if self.random_crop is not None:
                ch, cw = self.random_crop
                h, w = image.shape[:2]
                if h < ch or w < cw:
                    raise ValueError(
                        f"random_crop {self.random_crop} is larger than example {index}'s image "
                        f"{image.shape[:2]}; pass a larger size= or a smaller crop"
                    )
                top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                image = image[top : top + ch, left : left + cw]
            if self.random_flip and rng.random() < 0.5:
                image = image[:, ::-1]
        out = {"image": image}
        if "label" in item:
            out["label"] = item["label"]
        return out

    def batch(self, epoch: int, indices: np.ndarray) -> dict[str, np.ndarray]:
        examples = [self.example(epoch, int(i)) for i in indices]
        shapes = {e["image"].shape for e in examples}
        if len(shapes) > 1:
            raise ValueError(
                f"images in a batch have different shapes {sorted(shapes)}; "
                "pass DataLoader(size=...) or random_crop=... to make them equal"
            )
        batch = {"image": images_to_float(np.stack([e["image"] for e in examples]))}
        has_label = ["label" in e for e in examples]
        if any(has_label):
            if not all(has_label):
                raise ValueError("some examples have a 'label' and some do not")
            batch["label"] = np.asarray([int(e["label"]) for e in examples], np.int32)
        return batch

    def stream(self, epoch: int, position: int):
        """Yield (local batch, state after it) from (epoch, position), epoch after epoch."""
        epoch, position = self.normalize(epoch, position)
        order_epoch, order = None, None
        while self.num_epochs is None or epoch < self.num_epochs:
            if order_epoch != epoch:
                order_epoch, order = epoch, self.order(epoch)
            rows = order[position : position + self.batch_size]
            if len(rows) == self.batch_size:  # a full global batch: take this host's block
                start = self.process_index * self.local_batch_size
                rows = rows[start : start + self.local_batch_size]
            batch = self.batch(epoch, rows)
            epoch, position = self.normalize(epoch, position + self.batch_size)
            yield batch, {"epoch": epoch, "position": position}


_END = object()


class DataLoader:
    """Deterministic, resumable batches `{"image": (b, H, W, C) float32 in [-1, 1], "label": (b,)
    int32}` from a source, for one host of a (possibly multi-host) job. Numpy on the host.

    **Global batches and hosts.** `batch_size` is the GLOBAL batch size: global batch `k` of epoch
    `e` is `order(e)[k * batch_size : (k + 1) * batch_size]`, the same for any number of hosts.
    Host `process_index` gets the contiguous block of `batch_size // process_count` rows
    starting at `process_index * batch_size // process_count` (hosts' blocks are disjoint and
    their concatenation in host order is the global batch), so a run gives the same training
    data on 1 host or on 64, and can be resumed on a different number of hosts. For JAX:
    `jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), batch["image"])`,
    with `process_index=jax.process_index()` and `process_count=jax.process_count()`.

    **Epochs.** With `drop_remainder=True` an epoch has `len(source) // batch_size` batches and
    the rest of the order is skipped; with `False` the last batch is short (only with one host:
    a short batch cannot be split evenly). Iteration runs epoch after epoch, forever or for
    `num_epochs`.

    **Resume.** `loader.state` is `{"epoch": int, "position": int}` (plain ints, JSON-ready):
    where the NEXT batch starts, `position` counting examples of the epoch's order consumed by
    all hosts. `DataLoader(..., state=s)` or `loader.restore(s)` continues exactly as the
    uninterrupted stream, augmentation included (it is drawn from (seed, epoch, example index)).

    **Pre-processing**, per example, in this order: `size` (shorter side resized to `size`,
    central `size` x `size` crop; for sources whose images differ in size), `random_crop`
    (`int` or `(h, w)`, uniform position), `random_flip` (horizontal, probability 1/2); then
    uint8 -> float32 via `x / 127.5 - 1`.

    **Prefetch.** `prefetch=k > 0` prepares up to `k` batches in a background thread (a bounded
    queue); the batches and `state` are the same as without. Call `close()` (or use `with`) to
    stop the thread early.

    Args:
      source: a `Source` (`len`, `source[i] -> {"image": uint8 (H, W, C), "label"?: int}`).
      batch_size: global batch size, divisible by `process_count`.
      seed: non-negative int; the only source of randomness.
      shuffle, drop_remainder, random_crop, random_flip, size: see above.
      process_index, process_count: this host and the number of hosts.
      num_epochs: stop after this many epochs (`None`: never stop).
      prefetch: batches prepared ahead in a thread (0: none).
      state: a `state` to start from (default the start of epoch 0).
      resample: Pillow filter used by `size`.

    Example:
      >>> from jaxir.data import digits
      >>> loader = DataLoader(digits(size=16), batch_size=8, seed=0)
      >>> batch = next(loader)
      >>> batch["image"].shape, batch["image"].dtype, batch["label"].shape
      ((8, 16, 16, 1), dtype('float32'), (8,))
      >>> saved = loader.state  # {'epoch': 0, 'position': 8}
      >>> again = DataLoader(digits(size=16), batch_size=8, seed=0, state=saved)
      >>> bool((next(again)["image"] == next(loader)["image"]).all())
      True
    """

    def __init__(
        self,
        source: Source,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        drop_remainder: bool = True,
        process_index: int = 0,
        process_count: int = 1,
        random_crop: int | tuple[int, int] | None = None,
        random_flip: bool = False,
        size: int | None = None,
        num_epochs: int | None = None,
        prefetch: int = 0,
        state: dict[str, int] | None = None,
        resample: str = "bilinear",
    ):
        n = len(source)
        batch_size, seed = operator.index(batch_size), operator.index(seed)
        process_index, process_count = operator.index(process_index), operator.index(process_count)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        if process_count <= 0 or not 0 <= process_index < process_count:
            raise ValueError(
                f"need 0 <= process_index < process_count, got {process_index}, {process_count}"
            )
        if batch_size % process_count:
            raise ValueError(
                f"batch_size (global) {batch_size} must be divisible by process_count "
                f"{process_count}"
            )
        if not drop_remainder and process_count > 1:
            raise ValueError(
                "drop_remainder=False needs process_count == 1 (a short final "
                "batch cannot be split evenly across hosts)"
            )
        if n == 0:
            raise ValueError(f"source {getattr(source, 'name', source)!r} is empty")
        if drop_remainder and n < batch_size:
            raise ValueError(
                f"source has {n} examples, fewer than batch_size {batch_size}, and "
                "drop_remainder=True: an epoch would have no batch"
            )
        if random_crop is not None:
            crop = (random_crop, random_crop) if np.ndim(random_crop) == 0 else tuple(random_crop)
            if len(crop) != 2 or any(_check_size(c, "random_crop") is None for c in crop):
                raise ValueError(f"random_crop must be an int or (h, w), got {random_crop!r}")
            random_crop = (int(crop[0]), int(crop[1]))
        if num_epochs is not None and operator.index(num_epochs) < 0:
            raise ValueError(f"num_epochs must be >= 0 or None, got {num_epochs}")
        prefetch = operator.index(prefetch)
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self._plan = _Plan(
            source=source,
            n=n,
            batch_size=batch_size,
            local_batch_size=batch_size // process_count,
            process_index=process_index,
            seed=seed,
            shuffle=bool(shuffle),
            drop_remainder=bool(drop_remainder),
            random_crop=random_crop,
            random_flip=bool(random_flip),
            size=_check_size(size),
            resample=resample,
            num_epochs=None if num_epochs is None else int(num_epochs),
        )
        self.source = source
        self.process_count = process_count
        self.prefetch = prefetch
        self._stream = None
        self._worker: tuple[threading.Thread, threading.Event, queue.Queue] | None = None
        self._finalizer = None
        self._state = (0, 0)
        self.restore(state if state is not None else {"epoch": 0, "position": 0})

    # ---- public -------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Global batch size (all hosts)."""
        return self._plan.batch_size

    @property
    def local_batch_size(self) -> int:
        """Rows of each batch this host yields (`batch_size // process_count`)."""
        return self._plan.local_batch_size

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch (from the start of an epoch)."""
        n, b = self._plan.n, self._plan.batch_size
        return n // b if self._plan.drop_remainder else -(-n // b)

    @property
    def state(self) -> dict[str, int]:
        """Where the next batch starts: `{"epoch": int, "position": int}` (a fresh dict)."""
        return {"epoch": int(self._state[0]), "position": int(self._state[1])}

    def restore(self, state: dict[str, int]) -> None:
        """Continue from a `state` (from this or another loader with the same settings)."""
        epoch, position = _check_state(state, self._plan.n)
        self.close()
        self._state = self._plan.normalize(epoch, position)

    def order(self, epoch: int) -> np.ndarray:
        """The example order of `epoch` (int64 (N,)): global batches are consecutive slices."""
        return self._plan.order(operator.index(epoch))

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.prefetch == 0:
            if self._stream is None:
                self._stream = self._plan.stream(*self._state)
            batch, state = next(self._stream)  # StopIteration ends the loop
        else:
            if self._worker is None:
                self._start_worker()
            item = self._worker[2].get()
            if item is _END:
                self._worker[2].put(_END)  # keep answering StopIteration
                raise StopIteration
            if isinstance(item, BaseException):
                self.close()
                raise item
            batch, state = item
        self._state = (state["epoch"], state["position"])
        return batch

    def close(self) -> None:
        """Stop the prefetch thread (if any). Iterating again restarts from `state`."""
        self._stream = None
        if self._worker is not None:
            self._finalizer()
            self._worker = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        p = self._plan
        return (
            f"DataLoader(source={getattr(p.source, 'name', p.source)!r}, batch_size={p.batch_size},"
            f" local={p.local_batch_size}, seed={p.seed}, state={self.state})"
        )

    # ---- prefetch thread ----------------------------------------------------------------------
    def _start_worker(self) -> None:
        stop = threading.Event()
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        thread = threading.Thread(
            target=_work,
            args=(self._plan, self._state, q, stop),
            daemon=True,
            name="jaxir-data-prefetch",
        )
        thread.start()
        self._worker = (thread, stop, q)
        # Stops the thread on close() or when the loader is garbage collected.
        self._finalizer = weakref.finalize(self, _stop, thread, stop)


def _put(q: queue.Queue, stop: threading.Event, item) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            pass
    return False


def _work(plan: _Plan, state: tuple[int, int], q: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in plan.stream(*state):
            if not _put(q, stop, item):
                return
        _put(q, stop, _END)
    except Exception as e:  # noqa: BLE001 -- handed to the consumer and raised there
        _put(q, stop, e)


def _stop(thread: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    if thread is not threading.current_thread():
        thread.join()
