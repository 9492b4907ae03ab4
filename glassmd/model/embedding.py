"""Embeddings of the graph: one-hot particle types, spherical harmonics and Bessel basis of the edges."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

from glassmd.model.irreps import edge_sh_irreps

__all__ = ["EdgeEmbedding", "one_hot_types"]


def one_hot_types(types: torch.Tensor, n_types: int, dtype: torch.dtype) -> torch.Tensor:
    """[n] model types (0-based) -> [n, n_types] one-hot features (the input l=0 channels)."""
    return torch.nn.functional.one_hot(types, n_types).to(dtype)


class EdgeEmbedding(nn.Module):
    """Edge vector -> (real spherical harmonics of its direction, Bessel basis of its length).

    The Bessel basis is ``B_n(r) = sqrt(2/r_c) sin(n pi r / r_c) / r`` for n = 1..n_radial (paper eq. A1).
    The harmonics use e3nn's ``component`` normalisation (sum_m Y_lm^2 = 2l+1).

    Parameters
    ----------
    l_max : int
    n_radial : int
    cutoff : float
        r_c of the Bessel basis.
    """

    def __init__(self, l_max: int, n_radial: int, cutoff: float):
        super().__init__()
        self.irreps_out = edge_sh_irreps(l_max)
        self.sh_dim = (l_max + 1) ** 2
        self.n_radial = n_radial
        self.cutoff = float(cutoff)
        self.sh = o3.SphericalHarmonics(
            o3.Irreps([(1, (l, (-1) ** l)) for l in range(l_max + 1)]), normalize=True, normalization="component"
        )
        self.register_buffer("frequencies", torch.arange(1, n_radial + 1, dtype=torch.get_default_dtype()) * math.pi)

    def forward(self, edge_vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sh(edge_vec), self.radial_basis(edge_vec)

    def radial_basis(self, edge_vec: torch.Tensor) -> torch.Tensor:
        """The Bessel basis alone ``[E, n_radial]`` (the edge-frame kernels need no harmonics)."""
        r = torch.linalg.vector_norm(edge_vec, dim=1, keepdim=True)
        # three passes over [E, n_radial] instead of five: it is computed for every graph the fix evaluates
        basis = torch.sin(r * (self.frequencies / self.cutoff))
        return basis.mul_(math.sqrt(2.0 / self.cutoff) / r)
