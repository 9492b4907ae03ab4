"""EquivariantBatchNorm in training mode against the paper's formulas (eqs. 12-13) written out per block."""

import pytest
import torch
from e3nn import o3

from glassmd.model.norm import EquivariantBatchNorm


def per_block_reference(norm: EquivariantBatchNorm, x: torch.Tensor):
    """Output and batch statistics block by block: l=0 channels standardised over the nodes, each l>0 channel
    divided by the root mean square of its components over nodes and components."""
    out, means, variances, squares = [], [], [], []
    scalar, vector = 0, 0
    offset = 0
    for mul, ir in norm.irreps_in:
        d = ir.dim
        field = x[:, offset : offset + mul * d].reshape(x.shape[0], mul, d)
        if ir.l == 0:
            mean = field.mean(dim=(0, 2))
            var = field.var(dim=(0, 2), unbiased=False)
            weight = norm.weight_scalar[scalar : scalar + mul]
            bias = norm.bias_scalar[scalar : scalar + mul]
            field = (field - mean[None, :, None]) / torch.sqrt(var + norm.eps)[None, :, None]
            field = field * weight[None, :, None] + bias[None, :, None]
            means.append(mean)
            variances.append(var)
            scalar += mul
        else:
            sq = field.pow(2).mean(dim=(0, 2))
            weight = norm.weight_vector[vector : vector + mul]
            field = field / torch.sqrt(sq + norm.eps)[None, :, None] * weight[None, :, None]
            squares.append(sq)
            vector += mul
        out.append(field.reshape(x.shape[0], mul * d))
        offset += mul * d
    return torch.cat(out, dim=1), torch.cat(means), torch.cat(variances), torch.cat(squares)


@pytest.mark.parametrize("irreps", ["4x0e+4x1o+4x2e+4x3o", "2x1o+3x0e+1x2e+1x0e"])
def test_training_mode_matches_the_per_block_formulas(irreps):
    torch.manual_seed(0)
    norm = EquivariantBatchNorm(o3.Irreps(irreps), momentum=0.3).to(torch.float64).train()
    with torch.no_grad():  # parameters away from their initial 1 / 0
        norm.weight_scalar.uniform_(0.5, 1.5)
        norm.bias_scalar.uniform_(-0.5, 0.5)
        norm.weight_vector.uniform_(0.5, 1.5)
    x = (torch.randn(50, norm.dim, dtype=torch.float64) * 2 + 0.3).requires_grad_(True)
    probe = torch.randn(50, norm.dim, dtype=torch.float64)
    running = [b.clone() for b in (norm.running_mean, norm.running_var, norm.running_sq)]

    y = norm(x)
    y_ref, mean, var, sq = per_block_reference(norm, x)
    assert torch.allclose(y, y_ref, rtol=0, atol=1e-12)

    params = [x, norm.weight_scalar, norm.bias_scalar, norm.weight_vector]
    grads = torch.autograd.grad((y * probe).sum(), params)
    grads_ref = torch.autograd.grad((y_ref * probe).sum(), params)
    for g, r in zip(grads, grads_ref):
        assert torch.allclose(g, r, rtol=0, atol=1e-10)

    for buffer, before, batch in zip((norm.running_mean, norm.running_var, norm.running_sq), running, (mean, var, sq)):
        assert torch.allclose(buffer, before + 0.3 * (batch.detach() - before), rtol=0, atol=1e-12)
