"""The Kob-Andersen 80:20 binary Lennard-Jones mixture as LAMMPS commands.

Kob & Andersen, Phys. Rev. E 51, 4626 (1995): type 1 (A) and type 2 (B), eps_AB = 1.5, eps_BB = 0.5,
sigma_AB = 0.8, sigma_BB = 0.88, masses 1, cut-off 2.5 sigma_ab, potential shifted to zero there.
Every LAMMPS run in glassmd.md builds its system from these functions so that the simulation and the
labelling see exactly the same Hamiltonian.
"""

from __future__ import annotations

__all__ = [
    "KA_FRACTION_A",
    "KA_PAIRS",
    "TIMESTEP",
    "NEIGHBOR_SKIN",
    "box_length",
    "type_counts",
    "box_commands",
    "interaction_commands",
]

KA_FRACTION_A = 0.8
# (type i, type j, epsilon, sigma); cut-off is 2.5 sigma for every pair.
KA_PAIRS = ((1, 1, 1.0, 1.0), (1, 2, 1.5, 0.8), (2, 2, 0.5, 0.88))
KA_CUTOFF_SIGMAS = 2.5
TIMESTEP = 0.005
NEIGHBOR_SKIN = 0.3


def type_counts(n_atoms: int) -> tuple[int, int]:
    """Numbers of A and B particles for an 80:20 mixture of ``n_atoms`` (A rounded to nearest)."""
    if n_atoms < 2:
        raise ValueError(f"a Kob-Andersen mixture needs at least 2 particles, got {n_atoms}")
    n_a = int(round(KA_FRACTION_A * n_atoms))
    return n_a, n_atoms - n_a


def box_length(n_atoms: int, density: float) -> float:
    """Edge of the cubic box holding ``n_atoms`` at number density ``density``."""
    if density <= 0:
        raise ValueError(f"density must be positive, got {density}")
    return (n_atoms / density) ** (1.0 / 3.0)


def box_commands(box_lo, box_hi) -> list[str]:
    """Units, atom style and an empty orthogonal periodic box with 2 atom types.

    Parameters
    ----------
    box_lo, box_hi : sequence of 3 floats
        Lower and upper box bounds.
    """
    lo = [float(v) for v in box_lo]
    hi = [float(v) for v in box_hi]
    return [
        "units lj",
        "atom_style atomic",
        "atom_modify map array",
        "boundary p p p",
        "region glassmd_box block "
        + " ".join(f"{a!r} {b!r}" for a, b in zip(lo, hi)),
        "create_box 2 glassmd_box",
    ]


def interaction_commands() -> list[str]:
    """Masses, pair style and coefficients, neighbour settings and time step of the KA model."""
    cut_max = KA_CUTOFF_SIGMAS * max(sigma for *_, sigma in KA_PAIRS)
    commands = ["mass * 1.0", f"pair_style lj/cut {cut_max!r}"]
    for i, j, epsilon, sigma in KA_PAIRS:
        commands.append(f"pair_coeff {i} {j} {epsilon!r} {sigma!r} {KA_CUTOFF_SIGMAS * sigma!r}")
    commands += [
        "pair_modify shift yes",
        f"neighbor {NEIGHBOR_SKIN!r} bin",
        "neigh_modify every 1 delay 0 check yes",
        f"timestep {TIMESTEP!r}",
    ]
    return commands

