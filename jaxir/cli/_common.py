"""What every subcommand shares: the one-line `UsageError`, argparse types, output checks.

Nothing here imports jax: building the parser and printing ``--help`` stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class UsageError(Exception):
    """A mistake in how the command was called: ``main`` prints it as one
    ``jaxir: error: ...`` line and exits with code 2."""


class Parser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one ``jaxir: error: ...`` line.

    argparse prints the usage block and ``jaxir restore: error: ...``; the usage is one
    ``--help`` away, so only the message (with the subcommand named) goes to stderr.
    """

    def error(self, message: str):  # noqa: D401 - argparse's signature
        sub = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f"{sub}: " if sub else ""
        hint = f" (see {self.prog} --help)"
        self.exit(2, f"jaxir: error: {where}{message}{hint}\n")


def _int_type(minimum: int, expected: str, name: str, doc: str):
    """An argparse type: an int ``>= minimum``, else "expected EXPECTED, got 'S'"."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            v = None
        if v is None or v < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}")
        return v

    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = doc
    return parse


positive_int = _int_type(1, "a positive integer", "positive_int",
                         "argparse type for the positive integer options of every subcommand.")
nonnegative_int = _int_type(0, "an integer >= 0", "nonnegative_int",
                            "argparse type for seeds (0 or more).")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists():
        p = p.parent
    return p


def _check_creatable(path: Path, what: str) -> None:
    """``path`` does not exist yet: every existing ancestor must be a writable folder."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise UsageError(f"{what} {str(path)!r}: {str(base)!r} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {str(path)!r}: cannot write in {str(base)!r} "
                         f"(permission denied)")


def check_output_file(path, *, overwrite: bool, inputs=(), suffix: str | None = ".png",
                      what: str = "--output") -> Path:
    """Check, before any computing, that the output file ``path`` can be written.

    Refuses (as `UsageError`): another suffix than ``suffix``; a path equal to, or the same
    file as, one of ``inputs``; an existing folder; an existing file unless ``overwrite``; a
    place that cannot be written (a parent that is a file, no permission). Nothing is created.
    """
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise UsageError(f"{what} must be a {suffix} file, got {str(path)!r}")
    for src in inputs:
        if src is not None and _same_file(path, Path(src)):
            raise UsageError(f"{what} {str(path)!r} is the input {str(src)!r}: "
                             f"choose another output file (the input is never overwritten)")
    if path.is_dir():
        raise UsageError(f"{what} {str(path)!r} is a folder, not a file")
    if path.exists():
        if not overwrite:
            raise UsageError(f"{what} {str(path)!r} exists; pass --overwrite to replace it")
        if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {str(path)!r} cannot be replaced (permission denied)")
        return path
    _check_creatable(path, what)
    return path


def check_output_dir(path, *, what: str = "--out") -> Path:
    """Check that ``path`` is an existing writable folder or can be created as one."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{what} {str(path)!r} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{what} {str(path)!r} cannot be written (permission denied)")
        return path
    _check_creatable(path, what)
    return path


def check_input_file(path, what: str = "input") -> Path:
    """An existing regular file, or a `UsageError` that says what it is instead."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {str(p)!r} is a folder, not a file")
    if not p.exists():
        raise UsageError(f"{what} {str(p)!r} does not exist")
    if not p.is_file():
        raise UsageError(f"{what} {str(p)!r} is not a regular file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {str(p)!r} cannot be read (permission denied)")
    return p


def note(msg: str) -> None:
    """A remark about the input that is not an error (stdout, one line)."""
    print(f"jaxir: note: {msg}", file=sys.stdout)
