"""Moving particle data between numpy and a running LAMMPS instance (serial, one rank)."""

from __future__ import annotations

import hashlib

import numpy as np

from glassmd.md import ka

__all__ = ["derive_seed", "gather_state", "build_system"]

# LAMMPS random seeds must be positive 32-bit integers.
_SEED_LIMIT = 2**31 - 1


def derive_seed(*parts) -> int:
    """A LAMMPS seed in [1, 2**31 - 2] from any values, stable across runs, machines and Python versions.

    Hashing (rather than e.g. ``seed + index``) keeps seeds of different configurations and runs
    unrelated, and makes them independent of processing order and worker count.
    """
    text = "\x1f".join(str(p) for p in parts).encode()
    value = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
    return 1 + value % (_SEED_LIMIT - 1)


def gather_state(lmp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom IDs, types and unwrapped positions, ordered by atom ID.

    Returns
    -------
    ids : (n,) int64
    types : (n,) int64
    unwrapped : (n, 3) float64, ``x + image * box_length``
    """
    n = lmp.get_natoms()
    boxlo, boxhi, *_ = lmp.extract_box()
    lengths = np.asarray(boxhi, dtype=np.float64) - np.asarray(boxlo, dtype=np.float64)
    # gather_atoms returns per-ID order (atom map required), so no sorting is needed.
    ids = np.ctypeslib.as_array(lmp.gather_atoms("id", 0, 1)).astype(np.int64)
    types = np.ctypeslib.as_array(lmp.gather_atoms("type", 0, 1)).astype(np.int64)
    x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(n, 3)
    image = np.ctypeslib.as_array(lmp.gather_atoms("image", 0, 3)).reshape(n, 3)
    return ids, types, x + image * lengths


def build_system(lmp, box: np.ndarray, ids: np.ndarray, types: np.ndarray, positions: np.ndarray) -> None:
    """Clear ``lmp`` and set up the Kob-Andersen system with the given particles.

    Positions may lie outside the box (unwrapped); LAMMPS maps them in and sets image flags.
    Starting from ``clear`` every time makes a run depend only on its inputs, not on what the
    instance did before (atom order, neighbour bins), which keeps labels bit-reproducible.
    """
    lmp.command("clear")
    lmp.commands_list(ka.box_commands(box[:, 0], box[:, 1]))
    n = len(ids)
    zero_image = lmp.encode_image_flags(0, 0, 0)
    created = lmp.create_atoms(
        n,
        [int(i) for i in ids],
        [int(t) for t in types],
        np.ascontiguousarray(positions, dtype=np.float64).ravel().tolist(),
        image=[zero_image] * n,
    )
    if created != n or lmp.get_natoms() != n:
        raise RuntimeError(f"LAMMPS created {lmp.get_natoms()} of {n} atoms")
    lmp.commands_list(ka.interaction_commands())
