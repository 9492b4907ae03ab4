"""Output block: rotation invariants of the last hidden features, then one linear layer."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from glassmd.model.irreps import hidden_irreps

__all__ = ["InvariantReadout", "invariants"]


def invariants(h: torch.Tensor, channels: int, l_max: int) -> torch.Tensor:
    """l=0 values and the norm of every l>0 channel: ``channels * (l_max + 1)`` invariants per node."""
    n = h.shape[0]
    parts: List[torch.Tensor] = [h[:, :channels]]
    offset = channels
    for l in range(1, l_max + 1):
        d = 2 * l + 1
        block = h[:, offset : offset + channels * d].reshape(n, channels, d)
        # The tiny epsilon keeps the gradient finite for an exactly vanishing feature (sqrt'(0) is infinite);
        # it shifts norms of order one by less than 1e-12.
        parts.append(torch.sqrt(block.pow(2).sum(dim=2) + 1e-24))
        offset += channels * d
    return torch.cat(parts, dim=1)


class InvariantReadout(nn.Module):
    """Invariants -> ``n_outputs`` values per node (paper: 16 invariants -> 1 value, 17 parameters)."""

    def __init__(self, channels: int, l_max: int, n_outputs: int):
        super().__init__()
        self.irreps_in = hidden_irreps(channels, l_max)
        self.channels = channels
        self.l_max = l_max
        self.linear = nn.Linear(channels * (l_max + 1), n_outputs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(invariants(h, self.channels, self.l_max))
