"""BitDropout (the radial MLPs' dropout) has the distribution of torch's dropout."""

import pytest
import torch

from glassmd.model.fused_kernel import fused_kernel_available
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


def test_counter_draws_repeat_with_the_seed_and_follow_any_row_order():
    """On the CPU the draws come from glassmd::dropout_bits, one seed taken from torch's generator: the same
    seed repeats them, each call differs, and rows asked for in another order get their own draws."""
    dropout = BitDropout(0.5)
    cpu = torch.device("cpu")
    torch.manual_seed(3)
    first = dropout.draw(40_000, cpu).view(-1)
    second = dropout.draw(40_000, cpu).view(-1)
    torch.manual_seed(3)
    assert torch.equal(dropout.draw(40_000, cpu).view(-1), first)
    assert (first == second).float().mean() < 0.01
    order = torch.randperm(40_000)
    torch.manual_seed(3)
    assert torch.equal(dropout.draw_rows(40_000, cpu, order), first[order])
    assert first.min() >= 0  # 31 bits: non-negative int32


def test_counter_draws_of_neighbouring_rows_are_independent():
    """A counter-based generator's weak spot would be rows next to each other: their bits must not correlate."""
    torch.manual_seed(4)
    draws = BitDropout(0.5).draw(50_000, torch.device("cpu")).view(-1)
    bits = ((draws[:, None] >> torch.arange(31)) & 1).float()
    assert torch.all((bits.mean(0) - 0.5).abs() < 0.015)
    for lag in (1, 2, 16):
        corr = ((bits[:-lag] - 0.5) * (bits[lag:] - 0.5)).mean(0) * 4
        assert corr.abs().max().item() < 0.03, lag


def test_counter_draws_refuse_rows_outside_the_range():
    assert fused_kernel_available()
    with pytest.raises(RuntimeError, match=r"order holds a row outside \[0, 10\)"):
        torch.ops.glassmd.dropout_bits(1, 10, torch.tensor([0, 10]))
