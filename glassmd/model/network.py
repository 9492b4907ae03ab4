"""The network of Pezzicoli, Charpiat and Landes, assembled from the modules of this package."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from glassmd.model.config import ModelConfig
from glassmd.model.conv import EquivariantConv
from glassmd.model.embedding import EdgeEmbedding, one_hot_types
from glassmd.model.fast_conv import EdgeFrames
from glassmd.model.fused_kernel import fused_kernel_available
from glassmd.model.irreps import hidden_irreps
from glassmd.model.norm import EquivariantBatchNorm
from glassmd.model.readout import InvariantReadout

__all__ = ["GlassGNN", "InteractionLayer", "count_parameters", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = ("fused", "frame", "e3nn")


class InteractionLayer(nn.Module):
    """Convolution, residual connection (when shapes allow: not in the first layer), equivariant batch norm."""

    def __init__(self, config: ModelConfig, first: bool):
        super().__init__()
        self.first = first
        self.channels = config.channels
        self.conv = EquivariantConv(
            channels=config.channels,
            l_max=config.l_max,
            n_types=config.n_types,
            first=first,
            n_radial=config.n_radial,
            radial_hidden=config.radial_hidden,
            dropout=config.dropout,
            bn_momentum=config.bn_momentum,
            radial_output_relu=config.radial_output_relu,
        )
        self.norm = EquivariantBatchNorm(hidden_irreps(config.channels, config.l_max), momentum=config.bn_momentum)
        # TorchScript reads no constants of a submodule from here (the radial batch norm's eps): a copy
        self.radial_eps = float(self.conv.radial.net[2].eps)
        self.irreps_in = self.conv.irreps_in
        self.irreps_out = self.norm.irreps_out

    def forward(
        self,
        h: torch.Tensor,
        node_attr: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_frame: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if edge_frame is not None and edge_radial.dim() == 3 and self.evaluates_fused(edge_frame):
            return self._fused_evaluation(h, node_attr, edge_index, edge_radial, edge_frame)
        if self.first:
            return self.norm(self.conv(node_attr, edge_index, edge_sh, edge_radial, edge_frame))
        c = self.channels
        x = torch.cat([h[:, :c], node_attr, h[:, c:]], dim=1)
        return self.norm(h + self.conv(x, edge_index, edge_sh, edge_radial, edge_frame))

    def evaluates_fused(self, edge_frame: torch.Tensor) -> bool:
        """Whether the layer runs as ``glassmd::interaction_eval``: the convolution's evaluation kernel (CPU,
        no gradients: ``edge_frame`` is any per-edge input, for its device and gradients) with both batch norms
        in eval mode."""
        return self.conv._fused_evaluation(edge_frame, edge_frame) and not self.norm.training

    def _fused_evaluation(
        self,
        h: torch.Tensor,
        node_attr: torch.Tensor,
        edge_index: torch.Tensor,
        basis: torch.Tensor,
        vectors: torch.Tensor,
    ) -> torch.Tensor:
        """The whole layer in one operator, ``glassmd::interaction_eval``, from the paired edge blocks
        (:meth:`GlassGNN.edge_frame_features`): the parameter folds, concatenation, residual and batch-norm map
        of the torch path run inside it."""
        radial = self.conv.radial.net
        first, radial_norm, last = radial[0], radial[2], radial[4]
        kernel = self.conv.frame_kernel
        norm = self.norm
        mean, var = radial_norm.running_mean, radial_norm.running_var
        gamma, beta = radial_norm.weight, radial_norm.bias
        assert mean is not None and var is not None and gamma is not None and beta is not None
        return torch.ops.glassmd.interaction_eval(
            h,
            node_attr,
            edge_index,
            basis,
            vectors,
            [
                first.weight,
                first.bias,
                mean,
                var,
                gamma,
                beta,
                last.weight,
                last.bias,
            ],
            self.radial_eps,
            self.conv.radial.output_relu,
            [self.conv.mix.weight, kernel.mix_index, kernel.mix_coef],
            [
                kernel.rot_in_table,
                kernel.lo_meta_table,
                kernel.src_index,
                kernel.weight_index,
                kernel.active,
                kernel.reverse_flip,
                kernel.frame_alpha_coef,
                kernel.frame_beta_coef,
            ],
            kernel.dim_out,
            kernel.channels,
            [
                norm.block_layout,
                norm.running_mean,
                norm.running_var,
                norm.running_sq,
                norm.weight_scalar,
                norm.bias_scalar,
                norm.weight_vector,
            ],
            norm.eps,
        )


class GlassGNN(nn.Module):
    """SE(3)-equivariant GNN predicting per-particle quantities (dynamical propensity) from structure.

    ``model(types, edge_index, edge_vec)`` returns the **normalised** predictions ``[n, n_outputs]`` that the
    loss sees; :meth:`denormalize` maps them to label units with the stored label mean and std.

    Parameters
    ----------
    config : ModelConfig

    Examples
    --------
    >>> from glassmd.model import GlassGNN, ModelConfig
    >>> count_parameters(GlassGNN(ModelConfig()))
    23177
    >>> count_parameters(GlassGNN(ModelConfig(l_max=1)))
    5381
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.n_types = config.n_types
        self.n_outputs = config.n_outputs
        self.feature_dim = config.channels * (config.l_max + 1) ** 2
        self.edge_embedding = EdgeEmbedding(config.l_max, config.n_radial, config.cutoff)
        self.layers = nn.ModuleList([InteractionLayer(config, first=(k == 0)) for k in range(config.layers)])
        self.readout = InvariantReadout(config.channels, config.l_max, config.n_outputs)
        self.register_buffer("label_mean", torch.zeros(config.n_outputs))
        self.register_buffer("label_std", torch.ones(config.n_outputs))
        # The convolutions run in edge-aligned frames (glassmd.model.fast_conv), in the fused C++ kernel where
        # it is built, unless switched with set_implementation; all implementations read the same parameters.
        self.edge_frames = EdgeFrames(config.l_max)
        self.use_edge_frames = True
        self.set_implementation("fused" if fused_kernel_available() else "frame")

    @classmethod
    def create(cls, config: ModelConfig, dtype: torch.dtype = torch.float32) -> "GlassGNN":
        """Build a model whose constants (Clebsch-Gordan coefficients, harmonics) are computed in ``dtype``.

        Casting a float32-built model to float64 keeps float32-accurate constants (equivariance errors of
        1e-8); building under the target default dtype avoids that.
        """
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            return cls(config).to(dtype)
        finally:
            torch.set_default_dtype(previous)

    def set_label_normalization(self, mean, std) -> None:
        mean = torch.as_tensor(mean, dtype=self.label_mean.dtype).reshape(self.n_outputs)
        std = torch.as_tensor(std, dtype=self.label_std.dtype).reshape(self.n_outputs)
        if not torch.all(std > 0):
            raise ValueError(f"label std must be positive, got {std.tolist()}")
        self.label_mean.copy_(mean)
        self.label_std.copy_(std)

    def set_implementation(self, name: str) -> "GlassGNN":
        """Choose how the convolutions are evaluated.

        ``"fused"`` (default where built): edge frames, in the C++ kernels ``glassmd::frame_conv_eval``
        (evaluation) and ``glassmd::frame_conv_factored`` (with gradients) on the CPU and in torch elsewhere;
        ``"frame"``: edge frames in torch ops; ``"e3nn"``: the reference.
        """
        if name not in IMPLEMENTATIONS:
            raise ValueError(f"unknown implementation {name!r}: use one of {', '.join(IMPLEMENTATIONS)}")
        if name == "fused" and not fused_kernel_available():
            raise RuntimeError(
                "the fused kernel of glassmd (glassmd/model/_frame_conv.so) is not built: reinstall glassmd "
                "with torch present and --no-build-isolation (scripts/bootstrap.sh does)"
            )
        self.use_edge_frames = name != "e3nn"
        self.use_fused_kernel = name == "fused"
        for layer in self.layers:
            layer.conv.use_fused_kernel = name == "fused"
            layer.norm.use_fused_kernel = name == "fused"
        return self

    @property
    def implementation(self) -> str:
        if not self.use_edge_frames:
            return "e3nn"
        return "fused" if self.use_fused_kernel else "frame"

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.label_std + self.label_mean

    def node_attributes(self, types: torch.Tensor) -> torch.Tensor:
        return one_hot_types(types, self.n_types, self.label_mean.dtype)

    def hidden_features(self, types: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor) -> torch.Tensor:
        """Output of the last layer, ``[n, feature_dim]`` (equivariant features, e3nn mul_ir layout)."""
        node_attr = self.node_attributes(types)
        edge_index, edge_sh, edge_radial, edge_frame = self.edge_inputs(edge_index, edge_vec)
        h = node_attr.new_zeros((node_attr.shape[0], 0))
        for layer in self.layers:
            h = layer(h, node_attr, edge_index, edge_sh, edge_radial, edge_frame)
        return h

    def edge_inputs(
        self, edge_index: torch.Tensor, edge_vec: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """What the layers read per edge, computed once per forward: ``(edge_index, harmonics, radial basis,
        frames)``; the frames are None for the e3nn reference, which alone needs the harmonics (empty otherwise).

        For the fused evaluation (CPU, eval mode, no gradients) the edges come back reordered by
        ``glassmd::pair_edges``: the two directions of each pair, then the unpaired edges, with one row of radial
        basis and frame per pair (for its first direction) and per unpaired edge, so that the kernel evaluates
        the radial MLP and reads the frame once for both messages of a pair. For the fused kernel in training
        (CPU, no gradients with respect to positions) the frames' place holds the edge vectors ``[E, 3]``: the
        kernels compute each block's frames themselves. Where every layer computes its radial hidden layer in the
        kernels (:meth:`pairs_training_edges`) those edges are paired too, with one row of basis and vector per pair
        (a pair shares its frame and its hidden layer's activations, not its dropout masks), and ``edge_index``
        gets a third row: each edge's index in the caller's order, for its dropout mask.
        """
        if not self.use_edge_frames:
            edge_sh, edge_radial = self.edge_embedding(edge_vec)
            return edge_index, edge_sh, edge_radial, None
        if self.training:
            # The radial basis by rows (glassmd::radial_statistics and the training kernels read it so), and the
            # edge vectors, from which the fused kernel computes each block's frames (FrameConvKernel.fused).
            edge_sh = edge_vec.new_zeros((edge_vec.shape[0], 0))
            if self.use_fused_kernel and edge_vec.device.type == "cpu" and not edge_vec.requires_grad:
                if self.pairs_training_edges(edge_index.shape[1]):
                    order, n_pairs = torch.ops.glassmd.pair_edges(edge_index, edge_vec)
                    rows = edge_vec.index_select(0, torch.cat([order[:n_pairs], order[2 * n_pairs :]]))
                    edge_index = torch.cat([edge_index.gather(1, order.expand(2, -1)), order.unsqueeze(0)])
                    return edge_index, edge_sh, self.edge_embedding.radial_basis(rows), rows
                return edge_index, edge_sh, self.edge_embedding.radial_basis(edge_vec), edge_vec
            return edge_index, edge_sh, self.edge_embedding.radial_basis(edge_vec), self.edge_frames(edge_vec)
        edge_index, features = self.edge_frame_features(edge_index, edge_vec)
        n_radial = self.edge_embedding.n_radial
        edge_sh = features.new_zeros((features.shape[0], 0))
        return edge_index, edge_sh, features[:, :n_radial], features[:, n_radial:]

    def edge_frame_features(self, edge_index: torch.Tensor, edge_vec: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`edge_inputs` of the edge-frame kernels as ``(edge_index, features)``: radial basis and frames
        side by side in one array (the layers read both through views, and the layer-by-layer API passes the
        one array). Paired for the fused evaluation they are ``glassmd::edge_blocks``, ``[n_blocks, n_radial +
        4, lanes]``: radial basis and edge vectors in blocks of 64 bytes of lanes, from which the kernel computes
        the frames (reading 83 frame values per edge back in every layer cost more); otherwise rows
        ``[E, n_radial + frame_dim]``."""
        if self.pairs_edges(edge_vec):
            order, n_pairs = torch.ops.glassmd.pair_edges(edge_index, edge_vec)
            # gather: index_select along dim 1 of the [2, E] int64 array took 4x longer (110 against 25 us)
            edge_index = edge_index.gather(1, order.expand(2, -1))
            embedding = self.edge_embedding
            return edge_index, torch.ops.glassmd.bessel_edge_blocks(
                edge_vec, order, n_pairs, embedding.n_radial, embedding.cutoff
            )
        return edge_index, self.edge_frame_rows(edge_vec)

    def edge_frame_rows(self, edge_vec: torch.Tensor) -> torch.Tensor:
        """``[E, n_radial + frame_dim]``: radial basis and frames of each vector, in its own order."""
        return self.edge_frames.rows(edge_vec, self.edge_embedding.radial_basis(edge_vec))

    def pairs_edges(self, edge_vec: torch.Tensor) -> bool:
        """Whether :meth:`edge_inputs` pairs the edges (the fused evaluation kernel will run)."""
        if not (
            self.use_fused_kernel
            and edge_vec.device.type == "cpu"
            and not self.training
            and not torch.is_grad_enabled()
            and not edge_vec.requires_grad
        ):
            return False
        for layer in self.layers:  # batch norms a caller put in training mode need the unpaired path
            if not layer.evaluates_fused(edge_vec):
                return False
        return True

    def pairs_training_edges(self, n_edges: int) -> bool:
        """Whether :meth:`edge_inputs` pairs the edges in training: every layer's convolution runs
        ``glassmd::frame_conv_train`` (fused kernel, training mode, radial hidden layer in the kernels)."""
        for layer in self.layers:
            conv = layer.conv
            if not (conv.use_fused_kernel and conv.training and conv.radial.kernel_computes_hidden(n_edges)):
                return False
        return True

    def forward(self, types: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor) -> torch.Tensor:
        return self.readout(self.hidden_features(types, edge_index, edge_vec))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (the figure of the paper's Table I)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
