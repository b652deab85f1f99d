"""Sampling, restoration and statistics over many devices and hosts, reproducible per example.

DESIGN.md, "Scale": every function here computes a batch of *independent examples* — draws of
an unconditional sampler, one posterior sample per measurement, one restoration per degraded
image — split over the devices of a mesh, and gives example ``i`` its own key from its
**global index**::

    key_i = jax.random.fold_in(key, i),        out_i = fn(key_i, inputs_i)

so example ``i`` does not depend on how many devices or hosts run, how the work is cut into
blocks, or where a run starts (``start=``): 64 samples drawn on 8 devices are the first 64 of
128 drawn on one, and a pre-empted job that resumes at example 40 draws the same examples
40, 41, … it would have drawn.

How it runs (:func:`map_examples`, which the others call):

* the per-example function is traced once on one example (a batch of one for the samplers:
  shape ``(1, *example_shape)``) and mapped with ``jax.vmap`` over a *block* of
  ``G = per_device × D`` examples, ``D`` the number of devices on the mesh's batch axes;
* one ``jax.jit`` per block with `NamedSharding`s: the example indices and inputs are split
  over the batch axes (``P(("data", "fsdp"))`` on a `jaxir.training.make_mesh` mesh), the
  arrays the function closes over (network parameters, schedules, the operator) are passed as
  replicated arguments — not baked into the program as constants — and the outputs come back
  split like the inputs. Examples are independent, so the partitioned program has no
  collective at all; no ``shard_map`` is needed (each device runs the vmapped program on its
  ``per_device`` examples) and there is no ``pmap``;
* ``n`` not divisible by ``G``: the last block is padded (indices past the end, inputs
  repeating the last row), computed, and the padded rows are dropped — at most ``G − 1``
  wasted examples per call;
* several hosts (after `jaxir.training.initialize_distributed`): every process calls the
  same function with the same arguments; each computes only the rows of its own devices
  (its *addressable* shard) and reads only those rows of ``inputs``. ``gather=True`` returns
  every row on every process (``multihost_utils.process_allgather``), ``gather=False`` only
  the process's own rows with their global indices (:class:`LocalRows`) — e.g. to write
  them to files without moving them.

Reproducibility, measured in ``tests/test_distributed.py`` (8 fake CPU devices, meshes of
1/2/4/8 of them, and two processes): with the same ``per_device`` the outputs are bitwise
identical for DDIM, DDRM and a learned SR3 sampler, since every device runs the same program
on the same example. With a different ``per_device`` the network runs at another batch size,
which on some backends (cuDNN, oneDNN) chooses another kernel: expect equality to float
rounding only; ``per_device`` therefore has a fixed default (8) instead of depending on the
device count.

Statistics across hosts: :func:`feature_moments` computes FID feature statistics over a mesh,
each host accumulating its own rows in float64 (`jaxir.metrics.FeatureMoments`) before they are
merged across hosts (`jaxir.metrics.allreduce_feature_moments`): equal to
`jaxir.metrics.feature_stats` of all the features to float64 rounding. :func:`gather_rows`
brings per-image metric rows (PSNR, SSIM, LPIPS tables) to process 0.

Restoration and evaluation: :func:`restore_images` spreads the windows of patch-wise
restoration (`jaxir.restore.restore_images`) over the devices, window ``w`` from
``fold_in(key, w)``; :func:`evaluate` scores methods on a data set that way, one method per
resumable shard. Outputs by shard (:func:`run_shards`, :func:`sample_shards`): process 0
writes each finished shard atomically (:func:`atomic_write`), a manifest records the settings,
and a rerun skips the shards already written.

Modules: ``_mesh`` (meshes, keys, moving arrays), ``_map`` (:func:`map_examples`),
``_samplers``, ``_restore``, ``_evaluate``, ``_stats`` (across hosts), ``_shards`` (files).
The package sits above :mod:`jaxir.restore` in DESIGN's layers: it runs samplers
(:mod:`jaxir.samplers`), posterior samplers (:mod:`jaxir.inverse`), patch-wise and learned
restoration (:mod:`jaxir.restore`), importing them only when asked.
"""

from ._evaluate import evaluate as evaluate
from ._map import LocalRows as LocalRows
from ._map import map_examples as map_examples
from ._mesh import DEFAULT_PER_DEVICE as DEFAULT_PER_DEVICE
from ._mesh import as_mesh as as_mesh
from ._mesh import batch_axes as batch_axes
from ._mesh import example_keys as example_keys
from ._restore import restore_images as restore_images
from ._samplers import posterior_sample as posterior_sample
from ._samplers import restore_learned as restore_learned
from ._samplers import sample as sample
from ._samplers import sample_workdir as sample_workdir
from ._shards import MANIFEST as MANIFEST
from ._shards import SHARD_FILE as SHARD_FILE
from ._shards import atomic_write as atomic_write
from ._shards import check_manifest as check_manifest
from ._shards import load_shards as load_shards
from ._shards import run_shards as run_shards
from ._shards import sample_shards as sample_shards
from ._stats import feature_moments as feature_moments
from ._stats import gather_rows as gather_rows

__all__ = [
    # the mapping and its mesh
    "map_examples",
    "LocalRows",
    "as_mesh",
    "batch_axes",
    "example_keys",
    "DEFAULT_PER_DEVICE",
    # samplers over a mesh
    "sample",
    "posterior_sample",
    "restore_learned",
    "sample_workdir",
    "restore_images",
    "evaluate",
    # statistics across hosts
    "feature_moments",
    "gather_rows",
    # outputs by shard, resumable
    "sample_shards",
    "load_shards",
    "run_shards",
    "check_manifest",
    "atomic_write",
    "MANIFEST",
    "SHARD_FILE",
]
