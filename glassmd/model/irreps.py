"""Rotational bookkeeping shared by the reference and fast implementations.

Every feature is a concatenation of blocks ``(mul, l)`` in e3nn's ``mul_ir`` layout. Only proper rotations
matter (SE(3), not E(3)): parity labels are all even, so every (l_in, l_filter, l_out) triplet allowed by the
triangle rule of the Clebsch-Gordan coefficients is used, 34 of them for l_max = 3 as in the paper.
"""

from __future__ import annotations

from e3nn import o3

__all__ = ["hidden_irreps", "edge_sh_irreps", "conv_input_irreps", "triplets"]


def hidden_irreps(channels: int, l_max: int) -> o3.Irreps:
    """``channels`` copies of every l up to l_max, e.g. 4x0e+4x1e+4x2e+4x3e."""
    return o3.Irreps([(channels, (l, 1)) for l in range(l_max + 1)])


def edge_sh_irreps(l_max: int) -> o3.Irreps:
    """One spherical harmonic of each order, labelled even (only rotations are used)."""
    return o3.Irreps([(1, (l, 1)) for l in range(l_max + 1)])


def conv_input_irreps(channels: int, l_max: int, n_types: int, first: bool) -> o3.Irreps:
    """Input of a convolution: the one-hot types alone (first layer), else hidden l=0 channels and the one-hot
    types as extra l=0 channels, then the l>0 hidden channels."""
    if first:
        return o3.Irreps([(n_types, (0, 1))])
    return o3.Irreps([(channels + n_types, (0, 1))] + [(channels, (l, 1)) for l in range(1, l_max + 1)])


def triplets(l_in_max: int, l_max: int) -> list[tuple[int, int, int]]:
    """All (l_in, l_filter, l_out) with l_in <= l_in_max and l_filter, l_out <= l_max allowed by the
    triangle rule, ordered by l_in, then l_filter, then l_out."""
    return [
        (li, lf, lo)
        for li in range(l_in_max + 1)
        for lf in range(l_max + 1)
        for lo in range(abs(li - lf), min(li + lf, l_max) + 1)
    ]
