"""The options every command that runs over many devices and hosts shares (``--mesh``,
``--coordinator``, ``--num-processes``, ``--process-id``, ``--per-device``), and turning them
into a started `jax.distributed` job and a mesh (`jaxir.distributed.as_mesh`).

Building the parser imports no jax; :func:`setup_devices` does, when the command runs.
"""

from __future__ import annotations

from ._common import UsageError, nonnegative_int, positive_int


def parse_mesh(spec: str) -> dict:
    """``"data=8,fsdp=1"`` -> ``{"data": 8, "fsdp": 1}`` (``data=-1``: all devices left)."""
    out = {}
    for part in spec.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or key not in ("data", "fsdp") or key in out:
            raise ValueError(f"--mesh must look like data=8,fsdp=1, got {spec!r}")
        try:
            out[key] = int(val)
        except ValueError:
            raise ValueError(f"--mesh values must be integers, got {spec!r}") from None
        if out[key] < 1 and not (key == "data" and out[key] == -1):
            raise ValueError(f"--mesh sizes must be positive (data may be -1), got {spec!r}")
    return out


def add_device_options(p, description: str):
    """Add the "many devices and hosts" option group to the sub-parser ``p``; returns it."""
    g = p.add_argument_group("many devices and hosts", description)
    g.add_argument("--mesh", default=None,
                   help="device mesh, e.g. data=8 (default: all devices on data)")
    g.add_argument("--per-device", type=positive_int, default=None,
                   help="examples per device per compiled call (default 8)")
    g.add_argument("--coordinator", default=None,
                   help="multi-host: coordinator host:port, or auto (as jaxir train)")
    g.add_argument("--num-processes", type=positive_int, default=None,
                   help="multi-host: number of processes (with --coordinator HOST:PORT)")
    g.add_argument("--process-id", type=nonnegative_int, default=None,
                   help="multi-host: this process's index (with --coordinator HOST:PORT)")
    return g


def wants_devices(args) -> bool:
    """Whether the command line asked for the mesh / multi-host path."""
    return any(getattr(args, a, None) is not None
               for a in ("mesh", "coordinator", "num_processes", "process_id", "per_device"))


def check_mesh(args):
    """``--mesh`` parsed (None when not given), or a `UsageError`; imports no jax."""
    try:
        return parse_mesh(args.mesh) if args.mesh else None
    except ValueError as e:
        raise UsageError(str(e)) from None


def setup_devices(args):
    """Start `jax.distributed` from ``--coordinator`` / ``--num-processes`` / ``--process-id``
    (or the ``JAXIR_*`` variables; a single process when none is set) and return the mesh
    ``--mesh`` names. Every failure is a `UsageError`. Call once, before any device is used."""
    mesh = check_mesh(args)
    from ..training import initialize_distributed

    try:
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    except (ValueError, RuntimeError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    from .. import distributed

    try:
        return distributed.as_mesh(mesh)
    except ValueError as e:
        raise UsageError(f"--mesh: {e}") from None
