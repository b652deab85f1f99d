"""The architecture of DESIGN.md, checked: every module imports on its own, the import graph
has no cycle, every import goes down DESIGN's layer order, and no library module imports
`jaxir.cli`.

What counts as an import. Every ``import`` / ``from ... import`` statement anywhere in a module
— at module level *and inside functions* (a lazy import is still a dependency: it runs, and a
cycle through it is the tangle DESIGN forbids) — plus ``importlib.import_module`` with a
literal name. Relative imports are resolved against the module's package; ``from P import n``
is an import of ``P.n`` when that is a module, else of ``P``. Importing ``a.b.c`` also runs
``a/__init__`` and ``a/b/__init__``, so those packages are dependencies too (except the
importing module's own ancestors, which are already being imported). Two things are not
counted, and why:

- imports under ``if TYPE_CHECKING:`` never run (they exist for static analysers);
- PEP 562 tables (``__getattr__`` importing a name computed from a dict: ``jaxir/__init__``,
  ``jaxir.restore`` through `jaxir._lazy`, ``jaxir.latent``) import a package's *own*
  submodules by name on attribute access; the test checks that every name of those tables
  resolves instead. One of them crosses
  layers: ``jaxir.latent`` re-exports ``train_autoencoder`` / ``train_latent_diffusion`` /
  ``latent_loss`` from ``jaxir.latent._train``, which trains through `jaxir.training` and so sits
  in the training layer (``MOVED`` below), although its file lives with the codec.

The layer order (``LAYERS``) is DESIGN's eleven layers with the modules DESIGN does not list
placed where their imports put them; a module's layer is the longest prefix of its name in
``LAYERS`` (or ``MOVED``). An import from layer i to layer j is allowed only for j <= i.

Time: the static part ~1 s; the run-time part imports each of the ~140 modules in one
subprocess after removing ``jaxir`` from ``sys.modules`` (jax, flax, optax stay loaded): ~10 s
of CPU time.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "jaxir"

# Bottom to top. The numbered entries are DESIGN.md's layers 1-11.
LAYERS = (
    "jaxir._lazy",  # PEP 562 lazy attributes for package __init__s (no jax)
    "jaxir._utils",  # small helpers with no jaxir import: usable by every layer
    "jaxir.precision",  # Precision.HIGHEST for exact computations (DESIGN: Conventions)
    "jaxir.schedules",  # 1
    "jaxir.sdes",  # 2
    "jaxir.bridges",  # 3
    "jaxir.predictions",  # 4
    "jaxir.exact",  # the exact references (Gaussian / GMM), through predictions
    "jaxir.samplers",  # 5
    "jaxir.operators",  # 6
    "jaxir.images",  # value ranges and exact priors over image shapes
    "jaxir.inverse",  # 7
    "jaxir.models",  # 8
    "jaxir.data",  # data pipelines (DESIGN puts them in 9; below the latent codec's loader)
    "jaxir.latent",  # latent diffusion: codec, autoencoder files, sampling
    "jaxir.training",  # 9
    "jaxir.metrics",  # 10 (the FID feature network trains through jaxir.training)
    "jaxir.priors",  # a trained workdir as a model_fn (training's checkpoints)
    "jaxir.plot",  # figures with metric captions
    "jaxir.report",  # the HTML report
    "jaxir.restore",  # tasks, methods, patches, evaluation, learned restoration
    "jaxir.distributed",  # sharded sampling / restoration over devices and hosts
    "jaxir.bench",  # benchmarks (exact GMM posteriors, performance)
    "jaxir.restore._demo",  # the `jaxir demo` report: restoration and the benchmarks
    "jaxir.cli",  # 11: argparse and entry points; nothing below imports it
)
# modules whose layer is not the one of their folder (see the module docstring)
MOVED = {"jaxir.latent._train": "jaxir.training"}
# folders of non-module files: config files loaded by path (`jaxir.training.load_config`)
NOT_MODULES = ("configs",)


def _modules() -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (path, is_package)}`` for every importable module of jaxir."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[1] in NOT_MODULES or not all(
                (ROOT.joinpath(*parts[:i]) / "__init__.py").is_file()
                for i in range(1, len(parts))):
            continue
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


MODULES = _modules()


def _raw_imports(name: str) -> set[str]:
    """The jaxir modules (or packages) named by the import statements of ``name``."""
    path, is_pkg = MODULES[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            if getattr(t, "id", getattr(t, "attr", None)) == "TYPE_CHECKING":
                skip.update(id(d) for c in node.body for d in ast.walk(c))
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.add(sub if sub in MODULES else mod)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            target = node.args[0].value
            if target.startswith("."):  # relative to the `package` argument: this package
                level = len(target) - len(target.lstrip("."))
                base = package.split(".")
                target = ".".join(base[: len(base) - (level - 1)] + [target.lstrip(".")])
            found.add(target.rstrip("."))
    return {m for m in found if m == "jaxir" or m.startswith("jaxir.")}


def _graph() -> dict[str, set[str]]:
    """Module → the jaxir modules importing it runs (packages on the way included)."""
    graph = {}
    for name in MODULES:
        deps = set()
        for target in _raw_imports(name):
            while target not in MODULES:  # `import jaxir.x.attr` style: the module part
                target = target.rpartition(".")[0]
            parts = target.split(".")
            for i in range(2, len(parts) + 1):
                anc = ".".join(parts[:i])
                if anc in MODULES and not (name == anc or name.startswith(anc + ".")):
                    deps.add(anc)
        graph[name] = deps - {"jaxir"}
    return graph


GRAPH = _graph()


def layer_of(name: str) -> int:
    """Index in ``LAYERS`` of the longest prefix of ``name`` (after ``MOVED``)."""
    for moved, to in MOVED.items():
        if name == moved or name.startswith(moved + "."):
            return LAYERS.index(to)
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len,
               default=None)
    if best is None:
        raise AssertionError(f"{name} is in no layer of LAYERS: place it in the test")
    return LAYERS.index(best)


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_checker_sees_what_it_should():
    """The analysis itself, on facts that hold by construction: relative, lazy (in-function)
    and package-parent imports are found; TYPE_CHECKING imports are not; a planted cycle and a
    planted upward import are reported."""
    assert "jaxir.schedules" in GRAPH["jaxir.sdes"]  # `from . import schedules`
    assert "jaxir.inverse" in GRAPH["jaxir.restore._methods"]  # in-function `from .. import`
    assert "jaxir.training" in GRAPH["jaxir.priors"]  # in-function, via its package
    assert "jaxir.bridges" not in GRAPH["jaxir"]  # root: TYPE_CHECKING only
    assert len(MODULES) > 100 and "jaxir.cli" in MODULES and "jaxir.cli.__main__" in MODULES
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("jaxir.samplers._ancestral") < layer_of("jaxir.inverse._dps")
    assert layer_of("jaxir.latent._train") == layer_of("jaxir.training._fit")
    assert layer_of("jaxir.restore._demo") > layer_of("jaxir.bench.gmm") > layer_of(
        "jaxir.restore._methods")


def test_import_graph_has_no_cycle():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles (lazy imports included):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_imports_follow_the_layer_order():
    """Every module is in a layer, and each import goes to its own layer or one below."""
    bad = sorted(f"{m} (layer {LAYERS[layer_of(m)]}) imports {t} (layer {LAYERS[layer_of(t)]})"
                 for m, deps in GRAPH.items() if m != "jaxir" for t in deps
                 if layer_of(t) > layer_of(m))
    assert not bad, "imports that go up DESIGN's layer order:\n" + "\n".join(bad)
    # DESIGN's own order is kept by LAYERS
    design = ["schedules", "sdes", "bridges", "predictions", "samplers", "operators", "inverse",
              "models", "training", "metrics", "cli"]
    assert sorted(design, key=lambda n: LAYERS.index(f"jaxir.{n}")) == design


def test_no_library_module_imports_the_cli():
    bad = sorted(m for m, deps in GRAPH.items() if not m.startswith("jaxir.cli")
                 for t in deps if t == "jaxir.cli" or t.startswith("jaxir.cli."))
    assert not bad, f"library modules importing jaxir.cli: {bad}"


def test_lazy_tables_resolve():
    """The PEP 562 tables name only real attributes (the edges the graph leaves out)."""
    import importlib

    for pkg in ("jaxir", "jaxir.restore", "jaxir.latent"):
        mod = importlib.import_module(pkg)
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, f"{pkg}.__all__ names that do not resolve: {missing}"


_IMPORT_EACH = """
import importlib, json, sys
import jax, flax.nnx, optax, diffrax, numpy  # third-party stays loaded: only jaxir is re-run
out = {}
for name in json.loads(sys.argv[1]):
    for k in [k for k in sys.modules if k == "jaxir" or k.startswith("jaxir.")]:
        del sys.modules[k]
    try:
        importlib.import_module(name)
        out[name] = sorted(k for k in sys.modules if k.startswith("jaxir."))
    except BaseException as e:  # noqa: BLE001 - reported by the test
        out[name] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def test_every_module_imports_on_its_own():
    """Each module imported with no jaxir module loaded before it (one subprocess, jaxir
    removed from ``sys.modules`` between modules): it imports, and what it loads at import
    time (its eager imports, followed at run time: dynamic ones too) lies in its layer or
    below. ``jaxir.cli.__main__`` is the command itself (it runs ``main()``) and is left out."""
    names = [m for m in MODULES if m != "jaxir.cli.__main__"]
    res = subprocess.run([sys.executable, "-c", _IMPORT_EACH, json.dumps(names)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900,
                         env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    failed = {m: v for m, v in loaded.items() if isinstance(v, str)}
    assert not failed, f"modules that do not import on their own: {failed}"
    up = sorted(f"{m} loads {t}" for m, ts in loaded.items() for t in ts
                if t in MODULES and layer_of(t) > layer_of(m))
    assert not up, "importing these loads modules of a higher layer:\n" + "\n".join(up)


@pytest.mark.parametrize("name", ["jaxir.inverse", "jaxir.metrics", "jaxir.training",
                                  "jaxir.restore", "jaxir.operators", "jaxir.samplers"])
def test_packages_reachable_from_jaxir(name):
    import importlib

    import jaxir

    sub = name.split(".")[1]
    assert sub in jaxir.__all__ and getattr(jaxir, sub) is importlib.import_module(name)


PACKAGES = sorted(m for m, (_, is_pkg) in MODULES.items() if is_pkg)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_has_a_curated_all(name):
    """Each package states its public names (``__all__``): public spellings only, no
    duplicates, and each resolves (an attribute, or a submodule of the package)."""
    import importlib

    mod = importlib.import_module(name)
    names = getattr(mod, "__all__", None)
    assert isinstance(names, (list, tuple)) and names, f"{name} has no __all__"
    assert len(set(names)) == len(names), f"{name}.__all__ repeats names"
    assert not [n for n in names if n.startswith("_") and n != "__version__"], names
    unresolved = [n for n in names if not hasattr(mod, n)
                  and f"{name}.{n}" not in MODULES]
    assert not unresolved, f"{name}.__all__ names that resolve to nothing: {unresolved}"


MAX_LINES = 400  # issue 13's bound on a module's length
# modules over the bound, each with who is splitting it; an entry must go when its file fits
OVERSIZE: dict = {}


def test_modules_fit_the_length_bound():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
             for p, _ in MODULES.values()}
    over = {f: n for f, n in sizes.items() if n > MAX_LINES}
    assert set(over) <= set(OVERSIZE), f"modules over {MAX_LINES} lines: {over}"
    stale = sorted(set(OVERSIZE) - set(over))
    assert not stale, f"OVERSIZE entries that now fit (remove them): {stale}"
