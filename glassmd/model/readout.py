"""Output block: rotation invariants of the last hidden features, then one linear layer."""

from __future__ import annotations

import torch
from torch import nn

from glassmd.model.irreps import hidden_irreps

__all__ = ["InvariantReadout", "invariants", "block_sums"]


def block_sums(channels: int, l_max: int) -> torch.Tensor:
    """``[channels * ((l_max + 1)**2 - 1), channels * l_max]``: 1 where a feature of the l > 0 part belongs to
    channel c of order l (column (l - 1) * channels + c), else 0; squares times it are the squared norms."""
    sums = torch.zeros(channels * ((l_max + 1) ** 2 - 1), channels * l_max)
    row = 0
    for l in range(1, l_max + 1):
        for c in range(channels):
            sums[row : row + 2 * l + 1, (l - 1) * channels + c] = 1.0
            row += 2 * l + 1
    return sums


def invariants(h: torch.Tensor, channels: int, sums: torch.Tensor) -> torch.Tensor:
    """l=0 values and the norm of every l>0 channel: ``channels * (l_max + 1)`` invariants per node.

    ``sums``: :func:`block_sums`. The squared norms are one product with it (one slice, power and sum per l took
    twice as long: 0.1 ms of a 10 ms forward at N = 1000)."""
    squares = h[:, channels:].square() @ sums
    # The tiny epsilon keeps the gradient finite for an exactly vanishing feature (sqrt'(0) is infinite);
    # it shifts norms of order one by less than 1e-12.
    return torch.cat([h[:, :channels], torch.sqrt(squares + 1e-24)], dim=1)


class InvariantReadout(nn.Module):
    """Invariants -> ``n_outputs`` values per node (paper: 16 invariants -> 1 value, 17 parameters)."""

    def __init__(self, channels: int, l_max: int, n_outputs: int):
        super().__init__()
        self.irreps_in = hidden_irreps(channels, l_max)
        self.channels = channels
        self.l_max = l_max
        self.linear = nn.Linear(channels * (l_max + 1), n_outputs)
        self.register_buffer("block_sums", block_sums(channels, l_max), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(invariants(h, self.channels, self.block_sums))
