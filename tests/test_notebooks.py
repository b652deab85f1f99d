"""Execute every teaching notebook in ``notebooks/`` and check that git holds them as built and
executed (with their outputs).

The notebooks run with their small settings (``QUICK = True``) in a kernel that is this very
Python (a kernelspec written to a temporary ``JUPYTER_PATH`` entry whose ``argv`` is
``sys.executable``), so the test works in any fresh virtual environment with the ``test``
extra installed (``nbclient``, ``nbformat``, ``ipykernel``), whatever other Jupyter kernels
the machine has.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9]*.ipynb"))
KERNEL = "jaxir-test-python"
CELL_TIMEOUT = 300  # seconds for one cell
# each notebook takes under a minute on 2 idle CPU cores (about 35 s of CPU time); the bound
# leaves room for a busy machine and catches a notebook whose settings stopped being small
NOTEBOOK_BUDGET = 300


def test_notebooks_exist():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_ddpm_and_vp_sde", "02_posterior_sampling", "03_irsde_and_bridges",
                     "04_training_and_gradients"], names


def _built_cells(name: str) -> list:
    sys.path.insert(0, str(NB_DIR))
    try:
        import _build
    finally:
        sys.path.remove(str(NB_DIR))
    return _build.NOTEBOOKS[name]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_built_and_executed(path):
    """Git holds each notebook as ``notebooks/_build.py`` generates it, *with* the outputs of
    a run (plots visible when browsing): same cells as the build script, every code cell run
    once in order, no error output, at least one figure."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    built = _built_cells(path.stem)
    assert [(c.cell_type, c.source) for c in nb.cells] == \
        [(c.cell_type, c.source) for c in built], (
        f"{path.name} differs from notebooks/_build.py: rebuild it (python notebooks/_build.py)")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        f"{path.name} is not executed in order: rebuild it (python notebooks/_build.py)")
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert images >= 1, f"{path.name} holds no figure"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec running ``sys.executable``, found first through ``JUPYTER_PATH``."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jaxir tests", "language": "python"}))
    old = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "MPLBACKEND")}
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), old["JUPYTER_PATH"]]))
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# pytest-timeout, when installed, kills a hung notebook; nbclient's per-cell timeout and the
# budget check below bound the time without it
_timeout = (pytest.mark.timeout(NOTEBOOK_BUDGET + 60) if importlib.util.find_spec("pytest_timeout")
            else lambda f: f)


@_timeout
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel_env, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError with the cell's traceback on failure
    seconds = time.perf_counter() - t0
    assert seconds < NOTEBOOK_BUDGET, f"{path.name} took {seconds:.0f} s"
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.outputs)
    assert images >= 1, f"{path.name} drew no figure"
