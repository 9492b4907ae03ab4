"""Helpers for tests of glassmd and of models built with it (in the spirit of e3nn.util.test)."""

from __future__ import annotations

import numpy as np
import torch
from e3nn import o3

__all__ = ["ka_configuration", "assert_equivariant", "results_per_thread_count"]


def ka_configuration(n: int = 400, temperature: float = 0.6, steps: int = 2000, seed: int = 1):
    """A Kob-Andersen 80:20 configuration at density 1.2 made with real LAMMPS (a few seconds).

    Random insertion, energy minimisation, then ``steps`` Nose-Hoover steps at ``temperature``.

    Returns
    -------
    positions : (n, 3) float64 array, wrapped into [0, L)
    types : (n,) int64 array, model types (0 = A, 1 = B)
    box : (3,) float64 array of edge lengths
    """
    from glassmd.integrations.lammps_library import open_lammps
    from glassmd.md.ka import interaction_commands

    length = (n / 1.2) ** (1.0 / 3.0)
    n_b = n // 5
    lmp = open_lammps()
    lmp.commands_string(
        f"""
        units lj
        atom_style atomic
        region box block 0 {length} 0 {length} 0 {length}
        create_box 2 box
        create_atoms 1 random {n - n_b} {seed} NULL overlap 0.7 maxtry 200
        create_atoms 2 random {n_b} {seed + 1} NULL overlap 0.7 maxtry 200
        {chr(10).join(interaction_commands())}
        minimize 1e-4 1e-6 1000 10000
        reset_timestep 0
        velocity all create {temperature} {seed + 2} mom yes rot no dist gaussian
        fix nvt all nvt temp {temperature} {temperature} 0.5
        run {steps}
        """
    )
    x = np.array(lmp.numpy.extract_atom("x")[:n], dtype=np.float64)
    ids = np.array(lmp.numpy.extract_atom("id")[:n])
    types = np.array(lmp.numpy.extract_atom("type")[:n], dtype=np.int64) - 1
    lmp.close()
    order = np.argsort(ids)
    box = np.full(3, length)
    x = x[order] - np.floor(x[order] / box) * box
    return x, types[order], box


def assert_equivariant(fn, edge_vec: torch.Tensor, irreps_out, tolerance: float | None = None, n_rotations: int = 3):
    """Check ``fn(R a) == D_out(R) fn(a)`` for random proper rotations R of the edge vectors.

    Parameters
    ----------
    fn : callable
        Maps edge vectors [E, 3] to node features [n, irreps_out.dim].
    edge_vec : (E, 3) tensor
    irreps_out : str or o3.Irreps
        Layout of the output (``"1x0e"`` for an invariant scalar output).
    tolerance : float, optional
        Maximal absolute error relative to the output scale; by dtype (1e-9 float64, 1e-4 float32) by default.

    Returns
    -------
    float : the largest relative error seen.
    """
    irreps_out = o3.Irreps(irreps_out)
    if tolerance is None:
        tolerance = 1e-9 if edge_vec.dtype == torch.float64 else 1e-4
    out = fn(edge_vec)
    scale = out.abs().max().clamp(min=1e-12)
    worst = 0.0
    previous = torch.get_default_dtype()
    for _ in range(n_rotations):
        rotation = o3.rand_matrix(dtype=edge_vec.dtype)
        torch.set_default_dtype(edge_vec.dtype)  # e3nn builds Wigner-D from default-dtype constants
        try:
            d_out = irreps_out.D_from_matrix(rotation).to(edge_vec.dtype)
        finally:
            torch.set_default_dtype(previous)
        rotated = fn(edge_vec @ rotation.T)
        error = float(((rotated - out @ d_out.T).abs().max() / scale))
        worst = max(worst, error)
    assert worst <= tolerance, f"not equivariant: relative error {worst:.3g} > tolerance {tolerance:.3g}"
    return worst


def results_per_thread_count(run, thread_counts=(1, 2, 3)) -> list:
    """``[run() for each torch thread count]``, the caller's thread count restored afterwards.

    For checks that a parallel kernel gives the serial result: compare the entries with the first.
    """
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            results.append(run())
    finally:
        torch.set_num_threads(previous)
    return results
