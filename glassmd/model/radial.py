"""The radial filters: the only non-linear part of the network (paper Appendix A.1)."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from glassmd.model.fused_kernel import fused_kernel_available

__all__ = ["RadialMLP", "BitDropout"]


class BitDropout(nn.Module):
    """:class:`torch.nn.Dropout` whose masks for ``p = 0.5`` (the paper's rate) are the bits of one random
    integer per row.

    The radial MLPs drop half of 16 hidden values on every edge of every layer; torch draws one random number
    per element, and in a training step on CPU that alone took as long as the whole fused forward pass.
    Each bit of a uniform integer is an independent fair coin, so the masks have the same distribution with
    16x fewer draws. Other rates, and rows wider than 30 values, use torch's dropout.

    Parameters
    ----------
    p : float
        Probability of an element to be zeroed.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.register_buffer("shifts", torch.arange(30, dtype=torch.int32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p != 0.5 or x.dim() != 2 or x.shape[1] > 30:
            return nn.functional.dropout(x, self.p, True)
        keep = (self.draw(x.shape[0], x.device) >> self.shifts[: x.shape[1]]) & 1
        return x * keep.to(x.dtype) * 2.0

    def draw(self, rows: int, device: torch.device) -> torch.Tensor:
        """``[rows, 1]`` int32: one uniform 31-bit integer per row, whose bit ``c`` keeps column ``c``
        (:meth:`draw_rows`)."""
        return self.draw_rows(rows, device).view(rows, 1)

    def draw_rows(self, rows: int, device: torch.device, order: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[rows]`` int32 of :meth:`draw`, or ``[len(order)]``: the draws of rows ``order``, in that order.

        On the CPU with the compiled kernels, ``glassmd::dropout_bits`` expands one seed drawn from torch's
        generator, a counter-based generator: the draws of any order of the rows come without a gather (torch's
        ``random_`` took 78 us for the 40k edges of N = 1000, 8 times a training step; the counter 10-35 us).
        Elsewhere, and in TorchScript, ``random_`` on an int32 tensor, which draws over its whole non-negative range
        (half the time of ``randint`` with a bound), then a gather."""
        if not torch.jit.is_scripting():  # (TorchScript compiles only the torch draws below)
            if device.type == "cpu" and fused_kernel_available():
                seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))
                return torch.ops.glassmd.dropout_bits(seed, rows, order)
        drawn = torch.empty(rows, dtype=torch.int32, device=device).random_()
        return drawn if order is None else drawn.index_select(0, order)

    def extra_repr(self) -> str:
        return f"p={self.p}"


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
            BitDropout(dropout),
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
        return self.net[3](self.net[2](self.net[1](self.net[0](radial))))

    def fused_hidden(self, radial: torch.Tensor) -> torch.Tensor:
        """:meth:`hidden` in training mode by one operator of the compiled kernel library
        (``glassmd::radial_hidden``, loaded by the caller), with the same dropout masks and batch-norm
        running statistics. Other cases (eval mode, a dropout rate other than 0 or 1/2) go to :meth:`hidden`.
        """
        norm = self.net[2]
        dropout = self.net[3]
        first = self.net[0]
        supported = dropout.p == 0.0 or dropout.p == 0.5
        if not self.training or not supported or first.out_features > 30 or radial.shape[0] < 2:
            return self.hidden(radial)
        drop = dropout.p == 0.5
        draws = dropout.draw(radial.shape[0], radial.device)  # the masks BitDropout would draw
        assert norm.weight is not None and norm.bias is not None
        out, mean, var = torch.ops.glassmd.radial_hidden(
            radial, first.weight, first.bias, norm.weight, norm.bias, draws.view(-1), norm.eps, drop
        )
        self._update_running_statistics(mean, var, radial.shape[0])
        return out

    def kernel_computes_hidden(self, n_edges: int) -> bool:
        """Whether ``glassmd::frame_conv_train`` can compute the hidden layer in its kernels (:meth:`kernel_hidden`):
        batch norm with batch statistics and an affine map, dropout at rate 0 or 1/2 (or off), at most 30 hidden
        values, more than one edge."""
        norm = self.net[2]
        dropout = self.net[3]
        return (
            self.training
            and norm.training
            and norm.weight is not None
            and (dropout.p == 0.0 or dropout.p == 0.5 or not dropout.training)
            and self.net[0].out_features <= 30
            and n_edges >= 2
        )

    def kernel_hidden(
        self, radial: torch.Tensor, n_edges: int, order: Optional[torch.Tensor] = None
    ) -> Tuple[List[torch.Tensor], torch.Tensor, bool, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The hidden layer as ``glassmd::frame_conv_train`` takes it: ``([W1, b1, gamma, beta], draws, drop, mean,
        var, sums)``, with the batch statistics of the ``n_edges`` edges (``glassmd::radial_statistics``; the
        running statistics are updated as :class:`torch.nn.BatchNorm1d` does) and one dropout mask per edge, those
        :class:`BitDropout` would draw.

        Paired edges (:meth:`GlassGNN.edge_inputs`): ``radial`` has one row per pair and per unpaired edge, fewer
        than ``n_edges``, and ``order`` gives each edge's index in the caller's order, so that every edge gets the
        mask it would get unpaired. Call where :meth:`kernel_computes_hidden`."""
        first = self.net[0]
        norm = self.net[2]
        dropout = self.net[3]
        drop = dropout.training and dropout.p == 0.5
        if drop:
            draws = dropout.draw_rows(n_edges, radial.device, order)
        else:
            draws = torch.zeros(n_edges, dtype=torch.int32, device=radial.device)
        with torch.no_grad():
            mean, var, sums = torch.ops.glassmd.radial_statistics(
                radial, first.weight, first.bias, n_edges - radial.shape[0]
            )
        self._update_running_statistics(mean.to(radial.dtype), var.to(radial.dtype), n_edges)
        assert norm.weight is not None and norm.bias is not None
        return [first.weight, first.bias, norm.weight, norm.bias], draws, drop, mean, var, sums

    def _update_running_statistics(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        """nn.BatchNorm1d's update from batch statistics: the running variance takes the unbiased variance."""
        norm = self.net[2]
        running_mean, running_var, batches = norm.running_mean, norm.running_var, norm.num_batches_tracked
        if running_mean is not None and running_var is not None and batches is not None:
            with torch.no_grad():
                batches.add_(1)
                momentum = norm.momentum if norm.momentum is not None else 1.0 / float(batches.item())
                running_mean.mul_(1.0 - momentum).add_(mean, alpha=momentum)
                running_var.mul_(1.0 - momentum).add_(var * (n / (n - 1)), alpha=momentum)

    def folds(self) -> bool:
        """Whether :meth:`evaluation_layers` is this MLP: batch norm and dropout in eval mode (a network in eval
        mode may hold a batch norm put in training mode by its caller)."""
        return not self.net[2].training and not self.net[3].training

    def evaluation_layers(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W1, b1, W2', b2')``: the MLP at evaluation is ``[relu](W2' relu(W1 B + b1) + b2')``.

        In eval mode dropout is the identity and batch norm is the affine map ``h -> a h + c`` of its running
        statistics, which folds into the last layer (``W2' = W2 diag(a)``, ``b2' = b2 + W2 c``); the fused
        evaluation kernel then computes the whole MLP per edge from the Bessel basis.
        """
        first = self.net[0]
        norm = self.net[2]
        last = self.net[4]
        running_mean, running_var = norm.running_mean, norm.running_var
        gamma, beta = norm.weight, norm.bias
        assert running_mean is not None and running_var is not None and gamma is not None and beta is not None
        scale = gamma * torch.rsqrt(running_var + norm.eps)
        shift = beta - running_mean * scale
        return first.weight, first.bias, last.weight * scale[None, :], last.bias + torch.mv(last.weight, shift)

    def last_layer(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the last linear layer."""
        last = self.net[4]
        return last.weight, last.bias
