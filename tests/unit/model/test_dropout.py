"""BitDropout (the radial MLPs' dropout) has the distribution of torch's dropout."""

import pytest
import torch

from glassmd.model.radial import BitDropout


def test_half_dropout_masks_are_fair_independent_coins():
    torch.manual_seed(0)
    x = torch.ones(50_000, 16)
    y = BitDropout(0.5).train()(x)
    kept = y > 0
    assert set(torch.unique(y).tolist()) == {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
    assert abs(kept.float().mean().item() - 0.5) < 0.005
    per_column = kept.float().mean(0)
    assert torch.all((per_column - 0.5).abs() < 0.015)
    # Different bits of one draw are independent: pairwise correlations near 0 (std ~ 1 / sqrt(50000)).
    corr = torch.corrcoef(kept.float().t())
    off_diagonal = corr[~torch.eye(16, dtype=torch.bool)]
    assert off_diagonal.abs().max().item() < 0.03
    # Different rows get different masks.
    assert len({tuple(row.tolist()) for row in kept[:200]}) > 190


def test_eval_mode_and_zero_rate_are_identity():
    x = torch.randn(100, 16)
    assert torch.equal(BitDropout(0.5).eval()(x), x)
    assert torch.equal(BitDropout(0.0).train()(x), x)


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_other_rates_use_torch_dropout(p):
    torch.manual_seed(1)
    y = BitDropout(p).train()(torch.ones(20_000, 16))
    assert abs((y == 0).float().mean().item() - p) < 0.01
    assert torch.allclose(y[y > 0], torch.full_like(y[y > 0], 1 / (1 - p)))


def test_bad_rate_is_refused():
    with pytest.raises(ValueError, match="dropout probability"):
        BitDropout(1.0)
