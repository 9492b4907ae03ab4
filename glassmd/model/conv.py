"""The SE(3)-equivariant graph convolution of the paper (eqs. 10-11), reference implementation with e3nn."""

from __future__ import annotations

from typing import Optional

import torch
from e3nn import o3
from torch import nn

from glassmd.model.fast_conv import FrameConvKernel, holds_edge_vectors
from glassmd.model.irreps import conv_input_irreps, edge_sh_irreps, hidden_irreps
from glassmd.model.radial import RadialMLP

__all__ = ["EquivariantConv"]


class EquivariantConv(nn.Module):
    """One convolution: per edge and channel, every allowed (l_in, l_filter -> l_out) Clebsch-Gordan product of
    the sender's features with the edge harmonics, weighted by the radial MLP; summed over senders; then one
    linear map per l_out mixes (triplet, channel) into ``channels`` outputs.

    This is the plain e3nn formulation (``o3.TensorProduct`` 'uvu' with per-edge weights, ``index_add``
    aggregation): the reference that faster implementations are tested against. When ``edge_frame`` (the
    per-edge Wigner matrices of :class:`glassmd.model.fast_conv.EdgeFrames`) is given, the same function is
    evaluated by :class:`glassmd.model.fast_conv.FrameConvKernel` in edge-aligned frames, with the same
    parameters.

    Parameters
    ----------
    channels, l_max, n_types : int
    first : bool
        The first layer sees only the one-hot types; later layers see the hidden features plus the one-hot
        types again as extra l=0 channels.
    n_radial, radial_hidden : int
    dropout, bn_momentum : float
    radial_output_relu : bool
    """

    def __init__(
        self,
        channels: int,
        l_max: int,
        n_types: int,
        first: bool,
        n_radial: int,
        radial_hidden: int,
        dropout: float,
        bn_momentum: float,
        radial_output_relu: bool,
    ):
        super().__init__()
        self.first = first
        self.channels = channels
        self.irreps_in = conv_input_irreps(channels, l_max, n_types, first)
        self.irreps_sh = edge_sh_irreps(l_max)
        self.irreps_out = hidden_irreps(channels, l_max)
        tp_irreps_out = []
        instructions = []
        for i_in, (mul, ir_in) in enumerate(self.irreps_in):
            for i_sh, (_, ir_sh) in enumerate(self.irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out.l <= l_max:
                        instructions.append((i_in, i_sh, len(tp_irreps_out), "uvu", True))
                        tp_irreps_out.append((mul, ir_out))
        self.tp = o3.TensorProduct(
            self.irreps_in,
            self.irreps_sh,
            o3.Irreps(tp_irreps_out),
            instructions,
            internal_weights=False,
            shared_weights=False,
        )
        self.radial = RadialMLP(n_radial, radial_hidden, self.tp.weight_numel, dropout, bn_momentum, radial_output_relu)
        self.mix = o3.Linear(self.tp.irreps_out, self.irreps_out)
        self.n_paths = len(instructions)
        self.frame_kernel = FrameConvKernel(self)
        # The edge-frame evaluation runs in the fused C++ kernel on the CPU when it is built (set by
        # GlassGNN.set_implementation); on other devices, and for gradients with respect to positions, the
        # torch kernel runs.
        self.use_fused_kernel = False

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_frame: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``edge_frame``: the Wigner matrices of :class:`~glassmd.model.fast_conv.EdgeFrames` ``[E, frame_dim]``
        (None: the e3nn reference); for the fused kernel on the CPU without gradients with respect to positions,
        the edge vectors ``[E, 3]`` (it computes the frames itself), or paired edge blocks in evaluation; paired
        edge vectors in training, with a third row of ``edge_index`` (:meth:`GlassGNN.edge_inputs`)."""
        if edge_frame is not None:
            if edge_index.shape[0] == 3:
                return self._fused_forward(x, edge_index, edge_radial, edge_frame)
            if edge_radial.dim() == 3 or edge_radial.shape[0] != edge_index.shape[1]:
                # Paired edges (GlassGNN.edge_inputs): one radial row and frame per pair, or the edge blocks of
                # glassmd::edge_blocks; fused evaluation only.
                if not self._fused_evaluation(x, edge_frame):
                    raise RuntimeError(
                        "paired edges (fewer radial rows than edges) are evaluated by the fused kernel only: "
                        "CPU, eval mode, no gradients"
                    )
                return self._fused_forward(x, edge_index, edge_radial, edge_frame)
            return self._frame_forward(x, edge_index, edge_radial, edge_frame)
        sender = edge_index[0]
        receiver = edge_index[1]
        weights = self.radial(edge_radial)
        messages = self.tp(x[sender], edge_sh, weights)
        summed = torch.zeros(x.shape[0], messages.shape[1], dtype=messages.dtype, device=messages.device)
        summed.index_add_(0, receiver, messages)
        return self.mix(summed)

    def _frame_forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_radial: torch.Tensor, edge_frame: torch.Tensor
    ) -> torch.Tensor:
        """The fast kernel, over blocks of edges so that the per-edge intermediates stay in cache."""
        kernel = self.frame_kernel
        if self.use_fused_kernel and x.device.type == "cpu" and not edge_frame.requires_grad:
            return self._fused_forward(x, edge_index, edge_radial, edge_frame)
        x_t, mix = kernel.prepare(x, self.mix.weight)
        # In training the radial batch norm needs the statistics of all edges (and dropout one mask).
        all_weights: Optional[torch.Tensor] = self.radial(edge_radial) if self.training else None
        summed = torch.zeros(kernel.dim_out, x.shape[0], dtype=x.dtype, device=x.device)
        n_edges = edge_index.shape[1]
        chunk = kernel.chunk_size if x.device.type == "cpu" else kernel.device_chunk_size
        for start in range(0, n_edges, chunk):
            stop = min(start + chunk, n_edges)
            if all_weights is None:
                weights = self.radial(edge_radial[start:stop])
            else:
                weights = all_weights[start:stop]
            msg = kernel.messages(x_t, edge_index[0, start:stop], weights, edge_frame[start:stop], mix)
            summed.index_add_(1, edge_index[1, start:stop], msg)
        return kernel.finish(summed)

    def _fused_evaluation(self, x: torch.Tensor, edge_frame: torch.Tensor) -> bool:
        """Whether :meth:`_fused_forward` runs the evaluation operator (``glassmd::frame_conv_eval``)."""
        return (
            self.use_fused_kernel
            and x.device.type == "cpu"
            and not edge_frame.requires_grad
            and not self.training
            and self.radial.folds()
            and not torch.is_grad_enabled()
        )

    def _fused_forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_radial: torch.Tensor, edge_frame: torch.Tensor
    ) -> torch.Tensor:
        order: Optional[torch.Tensor] = None
        if edge_index.shape[0] == 3:
            # Paired training edges (GlassGNN.edge_inputs): the third row is each edge's index in the caller's order.
            if not (holds_edge_vectors(edge_frame) and self.radial.kernel_computes_hidden(edge_index.shape[1])):
                raise RuntimeError(
                    "paired edges in training are read by glassmd::frame_conv_train only (GlassGNN.edge_inputs "
                    "pairs them when every layer computes its radial hidden layer in the kernels)"
                )
            order = edge_index[2]
            edge_index = edge_index[:2]
        if not self.training and self.radial.folds() and not torch.is_grad_enabled():
            # Evaluation: the whole radial MLP runs per edge inside the kernel (batch norm folded).
            if holds_edge_vectors(edge_frame):
                # edge vectors, as a network in training mode gives them (GlassGNN.edge_inputs) to a layer in eval
                edge_frame = self.frame_kernel.frames_of_vectors(edge_frame)
            first_weight, first_bias, last_weight, last_bias = self.radial.evaluation_layers()
            return self.frame_kernel.fused_eval(
                x,
                edge_index,
                edge_radial,
                first_weight,
                first_bias,
                last_weight,
                last_bias,
                self.radial.output_relu,
                edge_frame,
                self.mix.weight,
            )
        weight, bias = self.radial.last_layer()
        if holds_edge_vectors(edge_frame) and self.radial.kernel_computes_hidden(edge_index.shape[1]):
            # Training: the kernels compute the whole radial MLP per block from the basis, with the batch
            # statistics of one pass before (batch norm needs all edges).
            layer, draws, drop, mean, var, sums = self.radial.kernel_hidden(edge_radial, edge_index.shape[1], order)
            return self.frame_kernel.fused_train(
                x, edge_index, edge_radial, edge_frame, layer + [weight, bias], draws, drop, mean, var, sums,
                self.radial.net[2].eps, self.radial.output_relu, self.mix.weight,
            )
        # The radial MLP up to its last layer runs first (batch norm and dropout need all edges in training),
        # in a fused operator of its own; the last layer, the widest array of the model, is evaluated inside
        # the convolution kernel.
        return self.frame_kernel.fused(
            x,
            edge_index,
            self.radial.fused_hidden(edge_radial),
            weight,
            bias,
            self.radial.output_relu,
            edge_frame,
            self.mix.weight,
        )
