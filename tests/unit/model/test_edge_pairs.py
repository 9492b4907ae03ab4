"""Paired evaluation: glassmd::pair_edges puts i -> j and j -> i side by side, and glassmd::frame_conv_eval
evaluates the radial MLP and reads the frame once per pair. The result must not depend on it."""

import copy

import numpy as np
import pytest
import torch

from glassmd.data.graph import periodic_graph
from glassmd.model import GlassGNN, ModelConfig
from glassmd.model.fast_conv import EdgeFrames, reverse_frame_flip
from glassmd.model.fused_kernel import fused_kernel_available

pytestmark = pytest.mark.skipif(not fused_kernel_available(), reason="the fused kernel is not built")


def graph(n, box, seed, dtype=torch.float64, keep=1.0, cutoff=2.0):
    rng = np.random.default_rng(seed)
    box = np.full(3, box)
    pos = rng.random((n, 3)) * box
    edge_index, edge_vec = periodic_graph(pos, box, cutoff)
    kept = np.flatnonzero(rng.random(edge_index.shape[1]) < keep)  # a list without some reverses, as in LAMMPS
    types = torch.as_tensor(rng.integers(0, 2, n))
    return types, torch.as_tensor(edge_index[:, kept]), torch.as_tensor(edge_vec[kept], dtype=dtype)


def check_order(edge_index, edge_vec, order, n_pairs):
    """order is a permutation; [0, P) and [P, 2P) are mutual reverses with opposite vectors."""
    n_edges = edge_index.shape[1]
    assert sorted(order.tolist()) == list(range(n_edges))
    first, second = order[:n_pairs], order[n_pairs : 2 * n_pairs]
    assert torch.equal(edge_index[0, first], edge_index[1, second])
    assert torch.equal(edge_index[1, first], edge_index[0, second])
    assert torch.allclose(edge_vec[first], -edge_vec[second], rtol=0, atol=1e-12)
    unpaired = order[2 * n_pairs :]
    assert torch.all(unpaired[1:] > unpaired[:-1])  # in their original order
    # pairs shortest first within windows of 2048 (the radial filters' zeros are then shared by a block), by
    # squared lengths in float32
    length2 = (edge_vec[first].double() ** 2).sum(1).float()
    for start in range(0, n_pairs, 2048):
        window = length2[start : start + 2048]
        assert torch.all(window[1:] >= window[:-1])


def test_a_full_periodic_list_is_all_pairs():
    _, edge_index, edge_vec = graph(300, (300 / 1.2) ** (1 / 3), seed=0)
    order, n_pairs = torch.ops.glassmd.pair_edges(edge_index, edge_vec)
    assert 2 * n_pairs == edge_index.shape[1]
    check_order(edge_index, edge_vec, order, n_pairs)


def test_edges_without_their_reverse_stay_unpaired():
    _, edge_index, edge_vec = graph(300, (300 / 1.2) ** (1 / 3), seed=1, keep=0.7)
    order, n_pairs = torch.ops.glassmd.pair_edges(edge_index, edge_vec)
    keys = {(int(s), int(r)) for s, r in edge_index.t()}
    expected = sum((r, s) in keys for s, r in keys) // 2
    assert n_pairs == expected and 0 < n_pairs < edge_index.shape[1] // 2
    check_order(edge_index, edge_vec, order, n_pairs)


def test_periodic_images_pair_by_vector():
    """A box shorter than two cutoffs joins two atoms by several images (and atoms to their own images):
    each edge pairs only with the reverse of the same image."""
    from vesin import NeighborList  # glassmd's own graphs refuse such boxes; LAMMPS ghost lists have them

    pos = np.random.default_rng(2).random((4, 3)) * 1.9
    i, j, d = NeighborList(cutoff=2.0, full_list=True).compute(
        points=pos, box=np.diag([1.9] * 3), periodic=True, quantities="ijD"
    )
    edge_index, edge_vec = torch.as_tensor(np.stack([j, i]).astype(np.int64)), torch.as_tensor(d)
    assert bool((edge_index[0] == edge_index[1]).any())  # an atom sees its own images
    keys = [(int(s), int(r)) for s, r in edge_index.t()]
    assert len(set(keys)) < len(keys)  # and several images of another atom
    order, n_pairs = torch.ops.glassmd.pair_edges(edge_index, edge_vec)
    assert 2 * n_pairs == edge_index.shape[1]
    check_order(edge_index, edge_vec, order, n_pairs)


def test_pair_edges_gives_one_order_on_any_number_of_threads():
    """Its passes over the edges run in one range per thread (counting sorts, the split into pairs and unpaired
    edges): the order must not depend on how many there are, for a list grouped by receiver and a shuffled one."""
    from glassmd.testing import results_per_thread_count

    _, edge_index, edge_vec = graph(400, (400 / 1.2) ** (1 / 3), seed=3, keep=0.9)
    shuffled = torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(0))
    assert edge_index.shape[1] > 3 * 4096  # several ranges on 3 threads
    for ei, ev in ((edge_index, edge_vec), (edge_index[:, shuffled], edge_vec[shuffled])):
        results = results_per_thread_count(lambda: torch.ops.glassmd.pair_edges(ei, ev))
        check_order(ei, ev, *results[0])
        for order, n_pairs in results[1:]:
            assert n_pairs == results[0][1] and torch.equal(order, results[0][0])


def test_pair_edges_of_no_edges_and_bad_input():
    order, n_pairs = torch.ops.glassmd.pair_edges(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 3))
    assert order.numel() == 0 and n_pairs == 0
    with pytest.raises(RuntimeError, match="edge_vec must be"):
        torch.ops.glassmd.pair_edges(torch.zeros(2, 4, dtype=torch.long), torch.zeros(3, 3))
    with pytest.raises(RuntimeError, match="negative node index"):
        torch.ops.glassmd.pair_edges(torch.tensor([[0, -1], [1, 0]]), torch.zeros(2, 3))


@pytest.mark.parametrize("l_max", [1, 2, 3])
def test_reverse_frame_is_a_column_sign_flip(l_max):
    frames = EdgeFrames(l_max).to(torch.float64)
    n = torch.randn(100, 3, dtype=torch.float64)
    flip = reverse_frame_flip(l_max)
    assert set(flip.tolist()) <= {-1.0, 1.0}
    assert torch.allclose(frames(-n), frames(n) * flip, atol=1e-6)


@pytest.mark.parametrize("l_max,channels", [(1, 2), (2, 5), (3, 4)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_paired_evaluation_matches_the_reference(l_max, channels, dtype, tol):
    """Pairs, unpaired edges and partial blocks of both, against e3nn."""
    types, edge_index, edge_vec = graph(203, (203 / 1.2) ** (1 / 3), seed=3, dtype=dtype, keep=0.8)
    torch.manual_seed(0)
    model = GlassGNN.create(ModelConfig(l_max=l_max, channels=channels, layers=3), dtype)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(types, edge_index, edge_vec)
    model.eval()
    _, n_pairs = torch.ops.glassmd.pair_edges(edge_index, edge_vec)
    assert n_pairs % 16 and (edge_index.shape[1] - 2 * n_pairs) % 16  # partial blocks of both kinds
    with torch.no_grad():
        assert model.pairs_edges(edge_vec)
        paired = model(types, edge_index, edge_vec)
        reference = copy.deepcopy(model).set_implementation("e3nn")(types, edge_index, edge_vec)
    assert torch.allclose(paired, reference, rtol=0, atol=tol * max(1.0, float(reference.abs().max())))


def test_radial_zeros_skipped_by_the_kernel_change_nothing():
    """The evaluation kernel skips the hidden radial values that are zero in every lane of a block: with
    half of them switched off on every edge, and one more alive on a few edges only, it still matches e3nn."""
    types, edge_index, edge_vec = graph(203, (203 / 1.2) ** (1 / 3), seed=6, dtype=torch.float32)
    torch.manual_seed(1)
    model = GlassGNN(ModelConfig(layers=3)).eval()
    lengths = edge_vec.norm(dim=1)
    with torch.no_grad():
        for layer in model.layers:
            first = layer.conv.radial.net[0]
            first.bias[:8] = -1e3  # relu(W1 B + b1) = 0 on every edge
        basis = model.edge_embedding.radial_basis(edge_vec)
        for layer in model.layers:
            # unit 8 alive on a few edges only: the threshold in the widest gap among its top 64 values (its
            # scale unchanged: a steeper unit would amplify the roundings in which the implementations differ)
            first = layer.conv.radial.net[0]
            top = (basis @ first.weight[8]).unique()[-64:]
            j = int((top[1:] - top[:-1]).argmax())
            first.bias[8] = -float(top[j] + top[j + 1]) / 2
        for layer in model.layers:
            first = layer.conv.radial.net[0]
            hidden = torch.relu(basis @ first.weight.T + first.bias)
            assert int((hidden[:, :8] != 0).sum()) == 0 and 0 < int((hidden[:, 8] != 0).sum()) <= 128
        paired = model(types, edge_index, edge_vec)
        reference = copy.deepcopy(model).set_implementation("e3nn")(types, edge_index, edge_vec)
    assert torch.allclose(paired, reference, rtol=0, atol=1e-5 * max(1.0, float(reference.abs().max())))


def test_interaction_eval_is_the_layer_of_torch_operators():
    """glassmd::interaction_eval (a whole layer: folds, concatenation, convolution, residual, batch-norm map)
    against the same layer through its modules (frame_conv_eval and torch operators), with batch statistics
    that are not the defaults; and its errors."""
    types, edge_index, edge_vec = graph(180, (180 / 1.2) ** (1 / 3), seed=10, dtype=torch.float64, keep=0.9)
    torch.manual_seed(2)
    model = GlassGNN.create(ModelConfig(layers=3), torch.float64).train()
    with torch.no_grad():
        model(types, edge_index, edge_vec)
    model.eval()
    with torch.no_grad():
        node_attr = model.node_attributes(types)
        index, blocks = model.edge_frame_features(edge_index, edge_vec)
        basis, vectors = blocks[:, :10], blocks[:, 10:]
        h = node_attr.new_zeros((node_attr.shape[0], 0))
        for layer in model.layers:
            fused = layer(h, node_attr, index, h[:0], basis, vectors)
            c = layer.channels
            x = node_attr if layer.first else torch.cat([h[:, :c], node_attr, h[:, c:]], dim=1)
            conv = layer.conv(x, index, h[:0], basis, vectors)  # frame_conv_eval
            expected = layer.norm(conv if layer.first else h + conv)
            assert torch.allclose(fused, expected, rtol=0, atol=1e-12 * float(expected.abs().max()))
            h = fused
        with pytest.raises(RuntimeError, match="0 or dim_out"):
            model.layers[1]._fused_evaluation(h[:, :5], node_attr, index, basis, vectors)
    with pytest.raises(RuntimeError, match="computes no gradients"):
        model.layers[1]._fused_evaluation(h.requires_grad_(), node_attr, index, basis, vectors)


def test_paired_edges_outside_the_fused_evaluation_are_an_error():
    types, edge_index, edge_vec = graph(100, (100 / 1.2) ** (1 / 3), seed=4, dtype=torch.float32)
    model = GlassGNN(ModelConfig(layers=2)).eval()
    with torch.no_grad():
        index, sh, radial, frame = model.edge_inputs(edge_index, edge_vec)
    assert radial.shape[0] < index.shape[1]
    x = model.node_attributes(types)
    with pytest.raises(RuntimeError, match="paired edges"):
        model.layers[0].conv(x, index, sh, radial, frame)  # gradients on: not the evaluation kernel


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.float64, 1e-13)])
def test_frames_kernel_matches_the_torch_formula(dtype, tol):
    """glassmd::edge_frames, edge_frame_rows and edge_frames_out (C++) against EdgeFrames.torch_forward,
    including edges along the polar axis and partial blocks of lanes."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        frames = EdgeFrames(3)
    finally:
        torch.set_default_dtype(previous)
    v = torch.randn(37, 3, dtype=dtype, generator=torch.Generator().manual_seed(5))
    v[3] = torch.tensor([0.0, 1.7, 0.0])
    v[4] = torch.tensor([0.0, -0.3, 0.0])
    assert frames.use_kernel
    expected = frames.torch_forward(v)
    torch.testing.assert_close(frames(v), expected, atol=tol, rtol=0)
    assert frames(v[:0]).shape == (0, frames.dim)

    # [prefix | frame] rows (the fused evaluation's per-edge array), for whole and partial blocks of 16 edges
    prefix = torch.randn(37, 10, dtype=dtype, generator=torch.Generator().manual_seed(6))
    for n in (37, 32, 16, 5):
        rows = frames.rows(v[:n], prefix[:n])
        assert rows.shape == (n, 10 + frames.dim)
        assert torch.equal(rows[:, :10], prefix[:n])
        torch.testing.assert_close(rows[:, 10:], expected[:n], atol=tol, rtol=0)
    assert frames.rows(v[:0], prefix[:0]).shape == (0, 10 + frames.dim)

    # glassmd::edge_frames_out, which model files exported before edge_frame_rows call, into a strided view
    out = torch.zeros(37, 10 + frames.dim, dtype=dtype)
    torch.ops.glassmd.edge_frames_out(v, frames.alpha_coef, frames.beta_coef, 3, out[:, 10:])
    torch.testing.assert_close(out[:, 10:], expected, atol=tol, rtol=0)
    assert not out[:, :10].any()


def paired_features(model, edge_index, edge_vec, blocked):
    """The paired edges and their per-edge array: glassmd::edge_blocks (what GlassGNN.edge_inputs passes), or
    one row of basis and frame per pair and per unpaired edge (what model files exported before it pass)."""
    order, n_pairs = torch.ops.glassmd.pair_edges(edge_index, edge_vec)
    index = edge_index.index_select(1, order)
    vec = edge_vec.index_select(0, torch.cat([order[:n_pairs], order[2 * n_pairs :]]))
    basis = model.edge_embedding.radial_basis(vec)
    features = torch.ops.glassmd.edge_blocks(vec, basis, n_pairs) if blocked else model.edge_frame_rows(vec)
    return index, features, vec, basis, n_pairs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_blocks_hold_each_row_in_its_lane(dtype):
    """glassmd::edge_blocks: pairs' rows then unpaired rows, each section from a new block, feature-major,
    lane kinds 2 / 1 / 0, padding lanes with a zero basis and the vector (0, 1, 0)."""
    lanes = 64 // torch.empty(0, dtype=dtype).element_size()
    generator = torch.Generator().manual_seed(7)
    for n_pairs, n_single in [(37, 5), (2 * lanes, lanes), (0, 3), (5, 0), (0, 0)]:
        n = n_pairs + n_single
        vec = torch.randn(n, 3, dtype=dtype, generator=generator)
        basis = torch.randn(n, 10, dtype=dtype, generator=generator)
        blocks = torch.ops.glassmd.edge_blocks(vec, basis, n_pairs)
        pair_blocks = -(-n_pairs // lanes)
        assert blocks.shape == (pair_blocks - (-n_single // lanes), 14, lanes)
        for row in range(n):
            first = row < n_pairs
            k = row if first else row - n_pairs
            block, lane = (k // lanes if first else pair_blocks + k // lanes), k % lanes
            assert torch.equal(blocks[block, :10, lane], basis[row])
            assert torch.equal(blocks[block, 10:13, lane], vec[row])
            assert blocks[block, 13, lane] == (2 if first else 1)
        kinds = blocks[:, 13]
        assert int((kinds == 2).sum()) == n_pairs and int((kinds == 1).sum()) == n_single
        padding = kinds == 0
        assert not blocks[:, :10][padding.unsqueeze(1).expand(-1, 10, -1)].any()
        assert torch.all(blocks[:, 11][padding] == 1) and not blocks[:, 10][padding].any()
    with pytest.raises(RuntimeError, match="n_pairs must lie in"):
        torch.ops.glassmd.edge_blocks(torch.randn(4, 3), torch.randn(4, 10), 5)
    with pytest.raises(RuntimeError, match="prefix must be"):
        torch.ops.glassmd.edge_blocks(torch.randn(4, 3), torch.randn(3, 10), 1)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-13)])
def test_bessel_edge_blocks_are_the_edge_blocks_of_the_paired_rows(dtype, tol):
    """glassmd::bessel_edge_blocks (what GlassGNN.edge_inputs passes) selects the rows of the paired order itself
    and computes their Bessel basis: the edge_blocks of the selected rows and of EdgeEmbedding.radial_basis."""
    types, edge_index, edge_vec = graph(150, (150 / 1.2) ** (1 / 3), seed=9, dtype=dtype, keep=0.85)
    model = GlassGNN.create(ModelConfig(layers=1), dtype)
    order, n_pairs = torch.ops.glassmd.pair_edges(edge_index, edge_vec)
    assert 0 < 2 * n_pairs < edge_index.shape[1]
    _, expected, _, _, _ = paired_features(model, edge_index, edge_vec, blocked=True)
    blocks = torch.ops.glassmd.bessel_edge_blocks(edge_vec, order, n_pairs, 10, model.edge_embedding.cutoff)
    assert blocks.shape == expected.shape
    assert torch.equal(blocks[:, 10:], expected[:, 10:])  # vectors and lane kinds
    torch.testing.assert_close(blocks[:, :10], expected[:, :10], atol=tol * float(expected[:, :10].abs().max()), rtol=0)
    # edges longer than the basis' cutoff (sin and cos by libm there, polynomials below)
    blocks = torch.ops.glassmd.bessel_edge_blocks(edge_vec, order, n_pairs, 10, 1.0)
    rows = edge_vec[torch.cat([order[:n_pairs], order[2 * n_pairs :]])]
    r = rows.double().norm(dim=1, keepdim=True)
    assert float(r.max()) > 1.5
    basis = (2.0**0.5 * torch.sin(r * torch.arange(1, 11, dtype=torch.float64) * torch.pi) / r).to(dtype)
    expected = torch.ops.glassmd.edge_blocks(rows, basis, n_pairs)
    torch.testing.assert_close(blocks[:, :10], expected[:, :10], atol=tol * float(expected[:, :10].abs().max()), rtol=0)
    with pytest.raises(RuntimeError, match="order must be"):
        torch.ops.glassmd.bessel_edge_blocks(edge_vec, order[1:], n_pairs, 10, 2.0)
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.glassmd.bessel_edge_blocks(edge_vec, order + edge_vec.shape[0], n_pairs, 10, 2.0)
    with pytest.raises(RuntimeError, match="n_pairs must lie"):
        torch.ops.glassmd.bessel_edge_blocks(edge_vec, order, edge_vec.shape[0], 10, 2.0)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.float64, 1e-12)])
def test_blocks_and_rows_give_the_same_convolution(dtype, tol):
    """The evaluation kernel computes the frames of a block from its vectors: the same messages as from the
    frames of edge_frame_rows (the layout of model files exported before edge_blocks)."""
    types, edge_index, edge_vec = graph(150, (150 / 1.2) ** (1 / 3), seed=8, dtype=dtype, keep=0.85)
    torch.manual_seed(1)
    model = GlassGNN.create(ModelConfig(layers=2), dtype).eval()
    conv = model.layers[1].conv
    x = torch.randn(150, conv.irreps_in.dim, dtype=dtype)
    with torch.no_grad():
        out = {}
        for blocked in (False, True):
            index, features, *_ = paired_features(model, edge_index, edge_vec, blocked)
            out[blocked] = conv(x, index, features[:, :0], features[:, :10], features[:, 10:])
    assert torch.allclose(out[True], out[False], rtol=0, atol=tol * float(out[False].abs().max()))


def test_edge_blocks_that_do_not_match_the_edges_are_an_error():
    types, edge_index, edge_vec = graph(120, (120 / 1.2) ** (1 / 3), seed=9, dtype=torch.float32, keep=0.9)
    model = GlassGNN(ModelConfig(layers=2)).eval()
    conv = model.layers[1].conv
    x = torch.randn(120, conv.irreps_in.dim)
    index, blocks, vec, basis, n_pairs = paired_features(model, edge_index, edge_vec, True)
    run = lambda i, b: conv(x, i, b[:, :0], b[:, :10], b[:, 10:])  # noqa: E731
    with torch.no_grad():
        run(index, blocks)
        with pytest.raises(RuntimeError, match="do not match edge_index"):
            run(index[:, :-1], blocks)  # one edge fewer than the blocks hold
        with pytest.raises(RuntimeError, match="do not match edge_index"):
            run(index, blocks[:-1])  # a block missing
        shifted = torch.ops.glassmd.edge_blocks(vec, basis, n_pairs - 1)  # pairs and edges counted differently
        with pytest.raises(RuntimeError, match="do not match edge_index"):
            run(index, shifted)
        bad = blocks.clone()
        bad[0, 13, 0] = 3.0
        with pytest.raises(RuntimeError, match="lane kinds"):
            run(index, bad)
        with pytest.raises(RuntimeError, match="views of one"):
            run(index, blocks.contiguous()[:, :, :8])
