"""glassmd::radial_hidden, the training-mode hidden layer of the radial MLPs, against the torch modules."""

import copy

import pytest
import torch

from glassmd.model.fused_kernel import fused_kernel_available
from glassmd.model.radial import RadialMLP
from glassmd.testing import results_per_thread_count

pytestmark = pytest.mark.skipif(not fused_kernel_available(), reason="compiled kernels not built")


def perturbed_mlp(dropout, dtype, seed=0):
    torch.manual_seed(seed)
    mlp = RadialMLP(10, 16, 40, dropout, 0.5, True).to(dtype).train()
    with torch.no_grad():  # away from the initial gamma = 1, beta = 0, statistics 0 / 1
        for p in mlp.parameters():
            p.add_(0.3 * torch.randn_like(p))
        mlp.net[2].running_mean.normal_()
        mlp.net[2].running_var.uniform_(0.5, 2.0)
    return mlp


@pytest.mark.parametrize("dropout", [0.5, 0.0])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 2e-4)])
def test_values_gradients_and_running_statistics_match_the_modules(dropout, dtype, tol):
    reference = perturbed_mlp(dropout, dtype)
    fused = copy.deepcopy(reference)
    # A column slice of a wider array, as the model's [radial basis | frames] rows, and a row count that is
    # not a multiple of the kernel's blocks.
    basis = torch.rand(3001, 25, dtype=dtype)[:, 3:13]
    upstream = torch.randn(3001, 16, dtype=dtype)
    results = []
    for mlp, method in ((reference, reference.hidden), (fused, fused.fused_hidden)):
        x = basis.detach().requires_grad_(True)
        torch.manual_seed(42)  # the same dropout draws
        h = method(x)
        params = [mlp.net[0].weight, mlp.net[0].bias, mlp.net[2].weight, mlp.net[2].bias]
        grads = torch.autograd.grad((h * upstream).sum(), [x] + params)
        results.append((h.detach(), grads, [b.clone() for b in mlp.net[2].buffers()]))
    (h_r, g_r, b_r), (h_f, g_f, b_f) = results
    if dropout:
        assert 0.4 < (h_f == 0).float().mean().item() < 0.6
    assert torch.allclose(h_f, h_r, rtol=0, atol=tol * float(h_r.abs().max()))
    for a, b in zip(g_f, g_r):
        assert torch.allclose(a, b, rtol=0, atol=tol * float(b.abs().max()))
    for a, b in zip(b_f, b_r):  # running mean, running variance (unbiased), batches tracked
        assert torch.allclose(a.double(), b.double(), rtol=tol, atol=tol)
    assert int(b_f[2]) == 1


def test_results_do_not_depend_on_the_thread_count():
    mlp = perturbed_mlp(0.5, torch.float32)
    basis = torch.rand(5000, 10)

    def run():
        mlp.zero_grad()
        torch.manual_seed(0)
        h = mlp.fused_hidden(basis)
        (h**2).sum().backward()
        return [h.detach()] + [p.grad.clone() for p in list(mlp.parameters())[:4]]

    results = results_per_thread_count(run)
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            assert torch.equal(a, b)


def test_eval_mode_and_single_edges_take_the_module_path():
    mlp = perturbed_mlp(0.5, torch.float64)
    basis = torch.rand(7, 10, dtype=torch.float64)
    assert torch.equal(mlp.eval().fused_hidden(basis), mlp.hidden(basis))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        mlp.train().fused_hidden(basis[:1])  # what nn.BatchNorm1d says
