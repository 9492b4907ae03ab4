"""Equivariant batch normalisation (paper eqs. 12-13)."""

# No postponed annotations here: TorchScript types the call of the @torch.jit.unused method from its annotations,
# and cannot resolve them as strings.
from typing import Callable, Iterable, List, Tuple

import torch
from e3nn import o3
from torch import nn

from glassmd.model.radial import BitDropout

__all__ = ["EquivariantBatchNorm", "recalibrate_batch_norm"]


class EquivariantBatchNorm(nn.Module):
    """Batch norm that keeps rotations: l=0 channels are shifted and scaled as usual, each l>0 channel is only
    rescaled by ``sigma_l = sqrt(<|h_l|^2> / (2l+1))`` (the mean over nodes and components of h^2).

    Statistics are averaged over the nodes of the batch; running averages use ``momentum`` (torch's
    convention: ``running = (1 - momentum) running + momentum batch``). Parameters: a scale and a shift per l=0
    channel, a scale per l>0 channel (20 for 4x0e+4x1e+4x2e+4x3e).

    Parameters
    ----------
    irreps : str or o3.Irreps
        Layout of the features, blocks of ``mul x l``.
    momentum : float
    eps : float
    """

    def __init__(self, irreps, momentum: float = 0.5, eps: float = 1e-5):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps)
        self.irreps_out = self.irreps_in
        self.momentum = float(momentum)
        self.eps = float(eps)
        blocks: List[List[int]] = []  # [offset, mul, dim, stat offset]
        offset = 0
        n_scalar = 0
        n_vector = 0
        for mul, ir in self.irreps_in:
            d = ir.dim
            stat = n_scalar if ir.l == 0 else n_vector
            blocks.append([offset, mul, d, stat])
            offset += mul * d
            if ir.l == 0:
                n_scalar += mul
            else:
                n_vector += mul
        self.dim = offset
        # Per feature, its statistic in cat([l=0 stats, l>0 stats, 0]): evaluation is one affine map.
        stat_of_feature: List[int] = []
        for offset_, mul, d, stat in blocks:
            base = stat if d == 1 else n_scalar + stat
            for u in range(mul):
                stat_of_feature.extend([base + u] * d)
        self.register_buffer("stat_of_feature", torch.tensor(stat_of_feature, dtype=torch.long), persistent=False)
        # Training statistics in a few whole-array operations (a loop over the blocks was ~25 small operations
        # per layer, forward and backward, about 8% of a training step): the l=0 features in statistic order,
        # the l>0 features, the [features, statistics] 0/1 matrix that sums each l>0 channel's components and
        # their counts (exact in any dtype, unlike 1/(2l+1)).
        scalar_features: List[int] = []
        vector_features: List[int] = []
        membership = torch.zeros(max(offset - n_scalar, 0), n_vector)
        components = torch.ones(n_vector)
        for offset_, mul, d, stat in blocks:
            for u in range(mul):
                first = offset_ + u * d
                if d == 1:
                    scalar_features.append(first)
                    continue
                components[stat + u] = d
                for i in range(d):
                    membership[len(vector_features), stat + u] = 1.0
                    vector_features.append(first + i)
        self.register_buffer("scalar_features", torch.tensor(scalar_features, dtype=torch.long), persistent=False)
        self.register_buffer("vector_features", torch.tensor(vector_features, dtype=torch.long), persistent=False)
        self.register_buffer("component_membership", membership, persistent=False)
        self.register_buffer("component_count", components, persistent=False)
        self.weight_scalar = nn.Parameter(torch.ones(n_scalar))
        self.bias_scalar = nn.Parameter(torch.zeros(n_scalar))
        self.weight_vector = nn.Parameter(torch.ones(n_vector))
        # The blocks as (offset, multiplicity, dimension): the layout glassmd::equivariant_norm reads.
        self.register_buffer(
            "block_layout", torch.tensor([b[:3] for b in blocks], dtype=torch.long).reshape(-1, 3), persistent=False
        )
        # Training statistics by the compiled operator glassmd::equivariant_norm (CPU): set by
        # GlassGNN.set_implementation with the convolutions' fused kernels.
        self.use_fused_kernel = False
        self.register_buffer("running_mean", torch.zeros(n_scalar))
        self.register_buffer("running_var", torch.ones(n_scalar))
        self.register_buffer("running_sq", torch.ones(n_vector))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            scale, shift = self.evaluation_affine()
            return torch.addcmul(shift, x, scale)
        if self.use_fused_kernel and x.device.type == "cpu":
            y, mean, var, sq = self._fused_training_forward(x)
        else:
            scalars = x.index_select(1, self.scalar_features)
            mean = scalars.mean(dim=0)
            var = scalars.var(dim=0, unbiased=False)
            vectors = x.index_select(1, self.vector_features)
            sq = ((vectors * vectors).mean(dim=0) @ self.component_membership) / self.component_count
            scale, shift = self._affine(mean, var, sq)
            y = torch.addcmul(shift, x, scale)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach(), self.momentum)
            self.running_sq.lerp_(sq.detach(), self.momentum)
        return y

    @torch.jit.unused
    def _fused_training_forward(
        self, x: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(y, mean, var, sq)`` by ``glassmd::equivariant_norm``: one operator forward and one backward instead of
        about 40 small torch operators (0.8 ms a layer at 1000 nodes). Unused in TorchScript, so that exported
        (evaluation) models do not reference it."""
        return torch.ops.glassmd.equivariant_norm(
            x, self.block_layout, self.weight_scalar, self.bias_scalar, self.weight_vector, self.eps
        )

    def evaluation_affine(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` [dim] with ``norm(x) = x * scale + shift`` in eval mode (running statistics)."""
        return self._affine(self.running_mean, self.running_var, self.running_sq)

    def _affine(self, mean: torch.Tensor, var: torch.Tensor, sq: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per feature ``(scale, shift)`` of the normalisation with these statistics (eqs. 12-13)."""
        scalar_scale = self.weight_scalar * torch.rsqrt(var + self.eps)
        vector_scale = self.weight_vector * torch.rsqrt(sq + self.eps)
        scale = torch.cat([scalar_scale, vector_scale]).index_select(0, self.stat_of_feature)
        shift = torch.cat([self.bias_scalar - mean * scalar_scale, torch.zeros_like(vector_scale)])
        return scale, shift.index_select(0, self.stat_of_feature)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in}, momentum={self.momentum})"


_BATCH_NORMS = (EquivariantBatchNorm, nn.modules.batchnorm._BatchNorm)
_DROPOUTS = (BitDropout, nn.modules.dropout._DropoutNd)


@torch.no_grad()
def recalibrate_batch_norm(net: nn.Module, batches: Iterable, forward: Callable[[nn.Module, object], object]) -> int:
    """Replace the running statistics of every batch norm in ``net`` by their plain average over ``batches``,
    computed with dropout off.

    Why: in training, dropout drops half of the radial hidden values and doubles the rest, which keeps
    their mean but not their variance. The running statistics gathered during training therefore describe
    features that evaluation (no dropout) never produces, and the shift compounds through the layers: the
    predictions keep their correlation with the labels but lose their scale (a validation MSE above the
    label variance). Statistics re-measured in evaluation conditions remove the mismatch.

    Parameters
    ----------
    net : nn.Module
        The network; its modes and the momenta of its batch norms are restored afterwards.
    batches : iterable
        Inputs, each passed to ``forward(net, batch)``; statistics are per batch as in training, then averaged.
    forward : callable

    Returns
    -------
    int
        The number of batches used (0 leaves the statistics untouched).
    """
    norms = [m for m in net.modules() if isinstance(m, _BATCH_NORMS)]
    modes = {m: m.training for m in net.modules()}
    momenta = {m: m.momentum for m in norms}
    count = 0
    try:
        for m in net.modules():
            # Dropout off, batch norms measuring the batch. The other modules read their training flag only to
            # choose a code path, and in training mode the network takes its fused training kernels (a third
            # faster than the evaluation-layout path that batch statistics otherwise need).
            m.train(not isinstance(m, _DROPOUTS))
        for batch in batches:
            for m in norms:
                m.momentum = 1.0 / (count + 1)  # running = mean of the batch statistics so far
            forward(net, batch)
            count += 1
    finally:
        for m, mode in modes.items():
            m.training = mode
        for m, momentum in momenta.items():
            m.momentum = momentum
    return count
