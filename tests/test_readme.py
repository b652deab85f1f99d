"""Every ```python block in README.md runs as written (``# slow:`` blocks with ``-m slow``)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


def _param(i):
    """Blocks whose first line starts with ``# slow:`` run only with ``-m slow``."""
    marks = [pytest.mark.slow] if BLOCKS[i].startswith("# slow:") else []
    return pytest.param(i, marks=marks, id=f"block{i}")


@pytest.mark.parametrize("i", [_param(i) for i in range(len(BLOCKS))])
def test_readme_block_runs(i, capsys):
    """A block that registers a learned-restoration family leaves the registry as it was."""
    from jaxir.training._registry import _REGISTRY

    before = dict(_REGISTRY)
    try:
        exec(compile(BLOCKS[i], f"README.md block {i}", "exec"), {"__name__": "__readme__"})
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(before)
