"""EquivariantBatchNorm in training mode against the paper's formulas (eqs. 12-13) written out per block."""

import pytest
import torch
from e3nn import o3

from glassmd.model.fused_kernel import fused_kernel_available
from glassmd.model.norm import EquivariantBatchNorm
from glassmd.testing import results_per_thread_count


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


def _perturbed(irreps, dtype, fused):
    torch.manual_seed(0)
    norm = EquivariantBatchNorm(o3.Irreps(irreps), momentum=0.3).to(dtype).train()
    with torch.no_grad():
        norm.weight_scalar.uniform_(0.5, 1.5)
        norm.bias_scalar.uniform_(-0.5, 0.5)
        norm.weight_vector.uniform_(0.5, 1.5)
    norm.use_fused_kernel = fused
    return norm


needs_kernels = pytest.mark.skipif(not fused_kernel_available(), reason="compiled kernels not built")


@needs_kernels
@pytest.mark.parametrize("irreps", ["4x0e+4x1o+4x2e+4x3o", "2x1o+3x0e+1x2e+1x0e"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_fused_operator_matches_the_per_block_formulas(irreps, dtype, tol):
    """glassmd::equivariant_norm: output, gradients of input and parameters, running statistics. 1001 nodes: not
    a whole number of the operator's row blocks."""
    norm = _perturbed(irreps, dtype, fused=True)
    x = (torch.randn(1001, norm.dim, dtype=dtype) * 2 + 0.3).requires_grad_(True)
    probe = torch.randn(1001, norm.dim, dtype=dtype)
    running = [b.clone() for b in (norm.running_mean, norm.running_var, norm.running_sq)]

    y = norm(x)
    y_ref, mean, var, sq = per_block_reference(norm, x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=tol)

    params = [x, norm.weight_scalar, norm.bias_scalar, norm.weight_vector]
    grads = torch.autograd.grad((y * probe).sum(), params)
    grads_ref = torch.autograd.grad((y_ref * probe).sum(), params)
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, rtol=0, atol=tol * max(1.0, float(r.abs().max())))

    for buffer, before, batch in zip((norm.running_mean, norm.running_var, norm.running_sq), running, (mean, var, sq)):
        torch.testing.assert_close(buffer, before + 0.3 * (batch.detach() - before), rtol=0, atol=tol)


@needs_kernels
def test_fused_operator_does_not_depend_on_the_thread_count():
    norm = _perturbed("4x0e+4x1o+4x2e+4x3o", torch.float32, fused=True)
    x = torch.randn(3000, norm.dim) * 2 + 0.3

    def run():
        norm.zero_grad()
        xr = x.clone().requires_grad_(True)
        y = norm(xr)
        (y**2).sum().backward()
        return [y.detach(), xr.grad] + [p.grad.clone() for p in norm.parameters()]

    results = results_per_thread_count(run)
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            assert torch.equal(a, b)


@needs_kernels
def test_fused_operator_rejects_features_that_do_not_match_its_blocks():
    norm = _perturbed("4x0e+4x1o", torch.float32, fused=True)
    with pytest.raises(RuntimeError, match=r"equivariant_norm: x must be \[n, 16\]"):
        norm(torch.randn(10, 15))


@needs_kernels
def test_scripted_norm_does_not_reference_the_training_operator():
    """Exported models are evaluated only: their code must load where the compiled kernels are absent."""
    norm = _perturbed("4x0e+4x1o", torch.float32, fused=True).eval()
    scripted = torch.jit.script(norm)
    assert "equivariant_norm" not in scripted.code
    x = torch.randn(10, 16)
    torch.testing.assert_close(scripted(x), norm(x))
