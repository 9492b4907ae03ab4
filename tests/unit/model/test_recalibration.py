"""Batch-norm statistics re-measured without dropout (glassmd.model.norm.recalibrate_batch_norm)."""

import torch

from glassmd.data.graph import periodic_graph
from glassmd.model import GlassGNN, ModelConfig
from glassmd.model.norm import EquivariantBatchNorm, recalibrate_batch_norm


def _graphs(ka_small):
    positions, types, box = ka_small
    types = torch.from_numpy(types)
    out = []
    for shift in (0.0, 0.37):
        edge_index, edge_vec = periodic_graph((positions + shift) % box, box, 2.0)
        out.append((types, edge_index, edge_vec))
    return out


def _forward(net, graph):
    return net(*graph)


def _norms(net):
    return [m for m in net.modules() if isinstance(m, (EquivariantBatchNorm, torch.nn.BatchNorm1d))]


def test_one_batch_makes_evaluation_equal_to_batch_statistics_without_dropout(ka_small):
    torch.manual_seed(3)
    graph = _graphs(ka_small)[0]
    net = GlassGNN.create(ModelConfig(l_max=2, layers=3), torch.float64)
    net.train()
    for _ in range(3):  # running statistics gathered with dropout on, as in training
        net(*graph)
    stale = net.eval()(*graph)

    assert recalibrate_batch_norm(net, [graph], _forward) == 1
    recalibrated = net(*graph)  # still in eval mode: the modes were restored
    assert not net.training and not any(m.training for m in net.modules())

    # The same network with dropout off and batch statistics: what the recalibrated statistics describe.
    for m in net.modules():
        m.train(isinstance(m, (EquivariantBatchNorm, torch.nn.BatchNorm1d)))
    with torch.no_grad():
        reference = net(*graph)
    net.eval()
    # torch's BatchNorm1d keeps the unbiased variance (n / (n - 1) over ~10^4 edges): a 1e-4 relative effect.
    assert torch.allclose(recalibrated, reference, rtol=1e-3, atol=1e-3)
    assert (stale - reference).abs().max() > 10 * (recalibrated - reference).abs().max()


def test_statistics_are_the_mean_over_batches_and_momenta_are_restored(ka_small):
    torch.manual_seed(4)
    graphs = _graphs(ka_small)
    net = GlassGNN.create(ModelConfig(l_max=1, layers=2), torch.float64)
    per_batch = []
    for graph in graphs:
        recalibrate_batch_norm(net, [graph], _forward)
        per_batch.append([m.running_mean.clone() for m in _norms(net)])
    recalibrate_batch_norm(net, graphs, _forward)
    for k, m in enumerate(_norms(net)):
        assert torch.allclose(m.running_mean, (per_batch[0][k] + per_batch[1][k]) / 2, atol=1e-12)
        assert m.momentum == 0.5  # the paper's momentum, put back
    # Dropout was off: recalibrating again on the same data gives the same statistics.
    before = [m.running_var.clone() for m in _norms(net)]
    recalibrate_batch_norm(net, graphs, _forward)
    assert all(torch.equal(a, m.running_var) for a, m in zip(before, _norms(net)))


def test_no_batches_leaves_statistics_untouched(ka_small):
    net = GlassGNN.create(ModelConfig(l_max=1, layers=2), torch.float32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert recalibrate_batch_norm(net, [], _forward) == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def _statistics(net):
    return [
        getattr(m, name).clone()
        for m in _norms(net)
        for name in ("running_mean", "running_var", "running_sq")
        if hasattr(m, name)
    ]


def test_statistics_equal_those_of_the_evaluation_layout(ka_small):
    """Recalibration runs the network in training mode with dropout off, so the layers take the fused training
    kernels (pairs of edges sharing their radial weights when nothing is dropped). The statistics must equal those
    measured with only the batch norms in training mode, which runs the layers' other path."""
    torch.manual_seed(5)
    graph = _graphs(ka_small)[1]
    net = GlassGNN.create(ModelConfig(l_max=3, layers=3), torch.float64)
    assert recalibrate_batch_norm(net, [graph], _forward) == 1
    recalibrated = _statistics(net)

    for m in net.modules():
        m.train(isinstance(m, (EquivariantBatchNorm, torch.nn.BatchNorm1d)))
    for m in _norms(net):
        m.momentum = 1.0  # running statistics = this batch's
    with torch.no_grad():
        net(*graph)
    reference = _statistics(net)
    # three radial batch norms (mean, var) and three equivariant ones (mean, var, sq)
    assert len(recalibrated) == len(reference) == 3 * 2 + 3 * 3
    for fast, slow in zip(recalibrated, reference):
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)


def test_statistics_agree_between_implementations(ka_small):
    """The torch edge-frame path (the one on GPUs) evaluates the radial MLP in chunks of edges outside training
    mode, so recalibration must run the layers in training mode for its batch norms to see the whole batch."""
    torch.manual_seed(6)
    graph = _graphs(ka_small)[0]
    assert graph[1].shape[1] > 4 * 2048  # more edges than one chunk of FrameConvKernel
    net = GlassGNN.create(ModelConfig(l_max=2, layers=2), torch.float64)
    statistics = {}
    for implementation in ("fused", "frame", "e3nn"):
        net.set_implementation(implementation)
        recalibrate_batch_norm(net, [graph], _forward)
        statistics[implementation] = _statistics(net)
    for implementation in ("frame", "e3nn"):
        for fused, other in zip(statistics["fused"], statistics[implementation]):
            torch.testing.assert_close(other, fused, rtol=1e-9, atol=1e-12)
