import pytest
import torch
from e3nn import o3

from glassmd.model.irreps import hidden_irreps
from glassmd.model.readout import InvariantReadout


@pytest.mark.parametrize("channels,l_max", [(4, 3), (3, 1), (2, 2)])
def test_invariants_are_the_scalars_and_the_norm_of_each_channel_and_order(channels, l_max):
    torch.manual_seed(0)
    readout = InvariantReadout(channels, l_max, n_outputs=2).double()
    irreps = hidden_irreps(channels, l_max)
    h = irreps.randn(7, -1, dtype=torch.float64)
    expected = []
    for (mul, ir), piece in zip(irreps, h.split([mul * ir.dim for mul, ir in irreps], dim=1)):
        blocks = piece.reshape(7, mul, ir.dim)
        expected.append(blocks[:, :, 0] if ir.l == 0 else blocks.norm(dim=2))
    expected = readout.linear(torch.cat(expected, dim=1))
    assert torch.allclose(readout(h), expected, rtol=0, atol=1e-12)
    rotation = irreps.D_from_matrix(o3.rand_matrix(dtype=torch.float64))
    assert torch.allclose(readout(h @ rotation.T), expected, rtol=0, atol=1e-12)
