"""The radial filters: the only non-linear part of the network (paper Appendix A.1)."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

__all__ = ["RadialMLP"]


class RadialMLP(nn.Module):
    """``relu(W2 Dropout(BN(relu(W1 B(r)))))``: one weight per (triplet, channel) of a convolution.

    The 16-wide hidden layer is shared by all triplets and channels; only the last linear layer is specific
    to each of them, so the parameter count is ``(n_radial+1)*hidden + 2*hidden + (hidden+1)*n_out``.

    Parameters
    ----------
    n_radial, hidden, n_out : int
    dropout : float
    momentum : float
        BatchNorm momentum.
    output_relu : bool
        ReLU on the output, as written in the paper.
    """

    def __init__(self, n_radial: int, hidden: int, n_out: int, dropout: float, momentum: float, output_relu: bool):
        super().__init__()
        self.n_out = n_out
        self.output_relu = output_relu
        layers: list[nn.Module] = [
            nn.Linear(n_radial, hidden),
            nn.ReLU(),
            nn.BatchNorm1d(hidden, momentum=momentum),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_out),
        ]
        if output_relu:
            layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, radial):
        return self.net(radial)

    def hidden(self, radial: torch.Tensor) -> torch.Tensor:
        """The 16-wide hidden features (after batch norm and dropout): what the fused kernel takes, applying
        the last layer itself (:meth:`last_layer`, ``output_relu``)."""
        return self.net[3](self.net[2](torch.relu(self.net[0](radial))))

    def last_layer(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the last linear layer."""
        last = self.net[4]
        return last.weight, last.bias
