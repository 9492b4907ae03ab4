"""The edge-frame kernels (glassmd.model.fast_conv in torch ops, and the fused C++ kernel glassmd::frame_conv)
compute the same function as the e3nn reference, with the same parameters."""

import copy

import numpy as np
import pytest
import torch
from e3nn import o3

from glassmd.data.graph import periodic_graph
from glassmd.model import GlassGNN, ModelConfig, count_parameters, export_model, load_model_file
from glassmd.model.fast_conv import EdgeFrames, frame_dim
from glassmd.model.fused_kernel import fused_kernel_available
from glassmd.testing import results_per_thread_count

FAST = ["fused", "frame"]


def random_configuration(n, dtype, seed, density=1.2, cutoff=2.0):
    rng = np.random.default_rng(seed)
    box = np.full(3, (n / density) ** (1 / 3))
    pos = rng.random((n, 3)) * box
    edge_index, edge_vec = periodic_graph(pos, box, cutoff)
    types = torch.as_tensor(rng.integers(0, 2, n))
    return (
        torch.as_tensor(pos, dtype=dtype),
        types,
        torch.as_tensor(edge_index),
        torch.as_tensor(edge_vec, dtype=dtype),
    )


def model_with_statistics(config, dtype, graph, seed=0):
    """A model whose batch-norm running statistics come from data (a fresh model's are 0/1 and blow up)."""
    torch.manual_seed(seed)
    model = GlassGNN.create(config, dtype)
    _, types, edge_index, edge_vec = graph
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(types, edge_index, edge_vec)
    return model.eval()


def both(model, implementation):
    fast = copy.deepcopy(model).set_implementation(implementation)
    reference = copy.deepcopy(model).set_implementation("e3nn")
    return fast, reference


CASES = [(1, 2), (1, 5), (2, 4), (2, 5), (3, 2), (3, 4)]


@pytest.mark.parametrize("implementation", FAST)
@pytest.mark.parametrize("l_max,channels", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_eval_outputs_match_reference(implementation, l_max, channels, dtype, tol):
    graph = random_configuration(150, dtype, seed=l_max * 10 + channels)
    config = ModelConfig(l_max=l_max, channels=channels, layers=3)
    fast, reference = both(model_with_statistics(config, dtype, graph), implementation)
    _, types, edge_index, edge_vec = graph
    with torch.no_grad():
        h_fast = fast.hidden_features(types, edge_index, edge_vec)
        h_ref = reference.hidden_features(types, edge_index, edge_vec)
        y_fast = fast(types, edge_index, edge_vec)
        y_ref = reference(types, edge_index, edge_vec)
    scale = max(1.0, float(h_ref.abs().max()))
    assert torch.allclose(h_fast, h_ref, rtol=0, atol=tol * scale)
    assert torch.allclose(y_fast, y_ref, rtol=0, atol=tol * max(1.0, float(y_ref.abs().max())))


def train_step_results(model, graph, dtype):
    """Outputs, parameter gradients and state after one training-mode pass, in float64 for comparison."""
    model = copy.deepcopy(model).to(dtype).train()
    _, types, edge_index, edge_vec = graph
    # The same dropout draws in every implementation. (A radial pre-activation within float32 rounding of the ReLU's
    # kink takes its edge's whole term in or out of a float32 gradient: with draws 1234 one such edge put layer 0's
    # gradients 1.5e-4 off. These draws have none that matters; float64 compares exactly either way.)
    torch.manual_seed(2025)
    y = model(types, edge_index, edge_vec.to(dtype))
    loss = (y**2).mean() + y.mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    state = {k: v.double() for k, v in model.state_dict().items() if v.is_floating_point()}
    return y.detach().double(), [g.double() for g in grads], state


@pytest.mark.parametrize("implementation", FAST)
@pytest.mark.parametrize("l_max,channels", [(1, 4), (2, 2), (3, 5), (3, 8)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_train_mode_outputs_gradients_and_statistics_match(implementation, l_max, channels, dtype, tol):
    """Batch norm in training mode and dropout with the same random stream in both implementations.

    Both are compared with the reference in float64 (same parameters, cast). In float32 torch's batch norm
    over the edges is itself off by up to a few 1e-4 of the gradients, which the pure-torch paths share; the
    fused path sums its batch statistics in float64 and lands 100x closer. So in float32 a fast path must be
    within ``tol`` of the exact result, or at most as far from it as the float32 reference is.
    """
    graph = random_configuration(120, dtype, seed=7 + l_max)
    config = ModelConfig(l_max=l_max, channels=channels, layers=3)
    fast, reference = both(model_with_statistics(config, dtype, graph), implementation)
    y_f, g_f, s_f = train_step_results(fast, graph, dtype)
    y_x, g_x, s_x = train_step_results(reference, graph, torch.float64)
    if dtype == torch.float64:
        y_r, g_r = y_x, g_x
    else:
        y_r, g_r, _ = train_step_results(reference, graph, dtype)

    def allowed(reference_error, scale):
        return max(tol * scale, 1.5 * reference_error)

    y_scale = max(1.0, float(y_x.abs().max()))
    assert (y_f - y_x).abs().max() <= allowed(float((y_r - y_x).abs().max()), y_scale)
    grad_scale = max(float(g.abs().max()) for g in g_x)
    assert grad_scale > 0
    for (name, _), a, r, x in zip(reference.named_parameters(), g_f, g_r, g_x):
        assert (a - x).abs().max() <= allowed(float((r - x).abs().max()), grad_scale), name
    for key in s_x:  # running statistics updated identically
        assert torch.allclose(s_f[key], s_x[key], rtol=tol, atol=tol), key


def test_parameters_and_state_dict_are_shared():
    for config, count in ((ModelConfig(), 23177), (ModelConfig(l_max=1), 5381)):
        model = GlassGNN(config)
        assert model.implementation == "fused"
        assert count_parameters(model) == count
        keys = set(model.state_dict())
        assert not any("frame" in k for k in keys)
        for name in ("frame", "e3nn"):
            other = GlassGNN(config).set_implementation(name)
            assert set(other.state_dict()) == keys
            other.load_state_dict(model.state_dict())  # a checkpoint of any loads into the others


def test_block_size_does_not_change_the_result():
    graph = random_configuration(100, torch.float64, seed=3)
    model = model_with_statistics(ModelConfig(layers=2), torch.float64, graph)
    _, types, edge_index, edge_vec = graph
    outputs = []
    for block in (37, 100_000):
        for layer in model.layers:
            layer.conv.frame_kernel.chunk_size = block
        with torch.no_grad():
            outputs.append(model(types, edge_index, edge_vec))
    assert torch.allclose(outputs[0], outputs[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("l_max", [1, 2, 3])
def test_edge_frames_rotate_the_polar_axis_onto_the_edge(l_max):
    vectors = torch.cat(
        [
            torch.randn(50, 3, dtype=torch.float64),
            torch.tensor([[0.0, 1.0, 0.0], [0.0, -2.0, 0.0], [1e-9, 1.0, 0.0], [3.0, 0.0, 0.0]], dtype=torch.float64),
        ]
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # constants computed in float64, as GlassGNN.create does
    try:
        frames = EdgeFrames(l_max)(vectors)
    finally:
        torch.set_default_dtype(previous)
    assert frames.shape == (len(vectors), frame_dim(l_max))
    polar = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    offset = 0
    for l in range(1, l_max + 1):
        d = 2 * l + 1
        rot = frames[:, offset : offset + d * d].reshape(-1, d, d)
        offset += d * d
        sh = o3.spherical_harmonics(l, vectors, True, "component")
        sh_polar = o3.spherical_harmonics(l, polar, True, "component")[0]
        assert torch.allclose(rot @ sh_polar, sh, atol=1e-12)
        eye = torch.eye(d, dtype=torch.float64).expand_as(rot)
        assert torch.allclose(rot @ rot.transpose(1, 2), eye, atol=1e-12)


def test_export_of_fast_path_round_trips_and_matches_reference(tmp_path):
    graph = random_configuration(120, torch.float32, seed=11)
    model = model_with_statistics(ModelConfig(l_max=2, channels=3, layers=3), torch.float32, graph)
    model.set_label_normalization([0.5], [2.0])
    path = export_model(model, tmp_path / "fast.pt")
    module, meta = load_model_file(path)
    pos, types, edge_index, edge_vec = graph
    with torch.no_grad():
        y_file = module(pos, types, edge_index, edge_vec)
        reference = copy.deepcopy(model).set_implementation("e3nn")
        y_ref = reference.denormalize(reference(types, edge_index, edge_vec))
        # Edge features of the edge-frame kernels: radial basis and frames, no harmonics.
        edge_feat = module.edge_features(edge_vec)
        assert edge_feat.shape == (edge_vec.shape[0], 10 + frame_dim(2))
        # Paired: edge blocks of glassmd::edge_blocks (basis, vectors, and in the last row the lane kinds)
        paired_index, paired_feat = module.prepare_edges(edge_index, edge_vec)
        assert paired_feat.dim() == 3 and paired_feat.shape[1] == 10 + 3 + 1
        n_pairs = int((paired_feat[:, -1] == 2).sum())
        assert 2 * n_pairs == edge_vec.shape[0]  # a full periodic list: every edge has its reverse
        node_attr = module.node_attributes(types)
        y_layers = []
        for index, feat in ((edge_index, edge_feat), (paired_index, paired_feat)):
            h = torch.zeros(pos.shape[0], 0)
            for k in range(module.num_layers()):
                h = module.layer(k, h, node_attr, index, feat)
                assert h.shape == (pos.shape[0], module.feature_dim())
            y_layers.append(module.readout(h))
    assert torch.allclose(y_file, y_ref, rtol=0, atol=1e-5 * max(1.0, float(y_ref.abs().max())))
    assert torch.equal(y_layers[1], y_file)  # forward() is the paired layer-by-layer evaluation
    assert torch.allclose(y_layers[0], y_file, rtol=0, atol=1e-6 * max(1.0, float(y_ref.abs().max())))


def test_fused_kernel_is_built_and_used():
    """The package build compiles the kernel; a silent fallback to torch ops would cost 4x in speed."""
    assert fused_kernel_available()
    graph = random_configuration(150, torch.float32, seed=2)
    model = model_with_statistics(ModelConfig(layers=2), torch.float32, graph)
    _, types, edge_index, edge_vec = graph
    with torch.profiler.profile() as prof:
        with torch.no_grad():
            model(types, edge_index, edge_vec)
    keys = {e.key for e in prof.key_averages()}
    # evaluation: each layer is one glassmd::interaction_eval (the convolution kernel and the layer's folds)
    assert "glassmd::interaction_eval" in keys and "glassmd::frame_conv" not in keys
    with torch.profiler.profile() as prof:
        model.train()(types, edge_index, edge_vec)
    keys = {e.key for e in prof.key_averages()}
    # training: one glassmd::frame_conv_train per layer (the whole radial MLP in its kernels), after its statistics
    assert "glassmd::frame_conv_train" in keys and "glassmd::radial_statistics" in keys
    assert "glassmd::radial_hidden" not in keys and "glassmd::frame_conv_factored" not in keys


def test_evaluation_kernel_matches_the_autograd_kernel_and_refuses_gradients():
    """Under no_grad, eval mode runs the whole radial MLP in the kernel (frame_conv_eval, batch norm folded
    into the last layer); with gradients on, the same model runs frame_conv_factored. Both give one result."""
    graph = random_configuration(200, torch.float64, seed=3)
    model = model_with_statistics(ModelConfig(layers=3), torch.float64, graph)
    _, types, edge_index, edge_vec = graph
    with torch.no_grad():
        folded = model(types, edge_index, edge_vec)
    unfolded = model(types, edge_index, edge_vec)  # parameters require grad: the autograd kernel
    assert unfolded.requires_grad
    assert torch.allclose(folded, unfolded.detach(), rtol=0, atol=1e-11)

    conv = model.layers[1].conv
    w1, b1, w2, b2 = conv.radial.evaluation_layers()
    assert w2.requires_grad  # computed from parameters with gradients on
    frame = torch.zeros(edge_index.shape[1], 1)
    with pytest.raises(RuntimeError, match="frame_conv_eval computes no gradients"):
        torch.ops.glassmd.frame_conv_eval(
            torch.zeros(types.shape[0], 1, dtype=torch.float64), edge_index, edge_vec, w1, b1, w2, b2, True,
            frame.double(), conv.mix.weight, conv.frame_kernel.rot_in_table, conv.frame_kernel.lo_meta_table,
            conv.frame_kernel.src_index, conv.frame_kernel.weight_index, conv.frame_kernel.active,
            conv.frame_kernel.dim_out, conv.frame_kernel.channels,
        )


def conv_operator_inputs(l_max, channels, seed):
    """Inputs of the fused training operators for layer 1 of a small float64 model, with random features."""
    graph = random_configuration(90, torch.float64, seed=seed)
    model = GlassGNN.create(ModelConfig(l_max=l_max, channels=channels, layers=2), torch.float64)
    _, _, edge_index, edge_vec = graph
    conv = model.layers[1].conv
    kernel = conv.frame_kernel
    generator = torch.Generator().manual_seed(seed)
    weight, bias = conv.radial.last_layer()

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)

    leaves = {
        "x": rand(graph[0].shape[0], kernel.dim_in),
        "hidden": rand(edge_index.shape[1], weight.shape[1]),
        "radial_weight": rand(*weight.shape),
        "radial_bias": rand(*bias.shape),
        "mix_weight": rand(*conv.mix.weight.shape),
    }
    frames = EdgeFrames(l_max).to(torch.float64)(edge_vec)
    tables = (kernel.rot_in_table, kernel.lo_meta_table, kernel.src_index, kernel.weight_index, kernel.active)

    def factored(x, hidden, radial_weight, radial_bias, mix_weight):
        return torch.ops.glassmd.frame_conv_factored(
            x, edge_index, hidden, radial_weight, radial_bias, True, frames, mix_weight, kernel.mix_index,
            kernel.mix_coef, *tables, kernel.dim_out, kernel.channels,
        )

    def products(x, hidden, radial_weight, radial_bias, mix_weight):
        return torch.ops.glassmd.frame_conv(
            x, edge_index, hidden, radial_weight, radial_bias, True, frames, kernel.mix_matrices(mix_weight),
            *tables, kernel.dim_out, kernel.channels,
        )

    def from_vectors(x, hidden, radial_weight, radial_bias, mix_weight):
        return torch.ops.glassmd.frame_conv_factored(
            x, edge_index, hidden, radial_weight, radial_bias, True, edge_vec, mix_weight, kernel.mix_index,
            kernel.mix_coef, *tables, kernel.dim_out, kernel.channels, kernel.frame_alpha_coef,
            kernel.frame_beta_coef,
        )

    factored.from_vectors = from_vectors
    return leaves, factored, products


@pytest.mark.parametrize("l_max,channels", [(1, 3), (2, 4), (3, 2)])
def test_factored_and_product_mix_operators_agree_in_value_and_gradient(l_max, channels):
    """frame_conv_factored (training) sums the gradient of the mixing weight per weight; frame_conv (still called
    by older model files) that of each matrix product, which autograd carries back to the weight. Both must
    give the same numbers, and the first must be the true derivative (finite differences)."""
    leaves, factored, products = conv_operator_inputs(l_max, channels, seed=11 + l_max)
    inputs = list(leaves.values())
    out_f, out_p = factored(*inputs), products(*inputs)
    assert torch.allclose(out_f, out_p, rtol=0, atol=1e-12)
    probe = torch.randn(out_f.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads_f = torch.autograd.grad((out_f * probe).sum(), inputs)
    grads_p = torch.autograd.grad((out_p * probe).sum(), inputs)
    for name, a, b in zip(leaves, grads_f, grads_p):
        assert a.abs().max() > 0, name
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), name
    fixed = {k: v.detach() for k, v in leaves.items()}
    assert torch.autograd.gradcheck(
        lambda x, w: factored(x, fixed["hidden"], fixed["radial_weight"], fixed["radial_bias"], w),
        (leaves["x"], leaves["mix_weight"]), eps=1e-6, atol=1e-6,
    )


@pytest.mark.parametrize("l_max,channels", [(1, 3), (3, 4)])
def test_training_operator_computes_the_frames_from_edge_vectors(l_max, channels):
    """Given EdgeFrames' constants, frame_conv_factored takes the [E, 3] edge vectors and computes each block's
    frames itself, forward and backward: the same values and gradients as with the frames given (the edge count
    leaves a partly filled last block), on any thread count."""
    leaves, factored, _ = conv_operator_inputs(l_max, channels, seed=21 + l_max)
    inputs = list(leaves.values())
    assert leaves["hidden"].shape[0] % 16 != 0
    probe = torch.randn(factored(*inputs).shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def run(op):
        out = op(*inputs)
        return [out.detach()] + list(torch.autograd.grad((out * probe).sum(), inputs))

    expected = run(factored)
    for got in results_per_thread_count(lambda: run(factored.from_vectors)):
        for name, a, b in zip(["out"] + list(leaves), got, expected):
            assert b.abs().max() > 0, name
            assert torch.allclose(a, b, rtol=1e-11, atol=1e-11), name


def test_training_operator_rejects_bad_edge_vectors():
    leaves, factored, _ = conv_operator_inputs(1, 2, seed=3)
    model = GlassGNN.create(ModelConfig(l_max=1, channels=2, layers=2), torch.float64)
    kernel = model.layers[1].conv.frame_kernel
    x = leaves["x"].detach()
    edge_index = torch.zeros(2, 5, dtype=torch.long)
    hidden = torch.zeros(5, leaves["hidden"].shape[1], dtype=torch.float64)
    args = (leaves["radial_weight"].detach(), leaves["radial_bias"].detach(), True)
    tables = (kernel.rot_in_table, kernel.lo_meta_table, kernel.src_index, kernel.weight_index, kernel.active)
    mix = (leaves["mix_weight"].detach(), kernel.mix_index, kernel.mix_coef)
    with pytest.raises(RuntimeError, match=r"must be the \[E, 3\] edge vectors"):
        torch.ops.glassmd.frame_conv_factored(
            x, edge_index, hidden, *args, torch.ones(5, 4, dtype=torch.float64), *mix, *tables, kernel.dim_out,
            kernel.channels, kernel.frame_alpha_coef, kernel.frame_beta_coef,
        )
    with pytest.raises(RuntimeError, match="give both alpha_coef and beta_coef"):
        torch.ops.glassmd.frame_conv_factored(
            x, edge_index, hidden, *args, torch.ones(5, 3, dtype=torch.float64), *mix, *tables, kernel.dim_out,
            kernel.channels, kernel.frame_alpha_coef,
        )


def test_fused_kernel_parallel_sums_match_serial():
    """Threads sum into private copies of the outputs; any thread count gives the serial result."""
    graph = random_configuration(300, torch.float64, seed=4)
    model = model_with_statistics(ModelConfig(layers=2), torch.float64, graph)
    _, types, edge_index, edge_vec = graph

    def run():
        model.zero_grad()
        model.train()
        torch.manual_seed(0)
        y = model(types, edge_index, edge_vec)
        (y**2).sum().backward()
        return y.detach(), [p.grad.clone() for p in model.parameters()]

    results = results_per_thread_count(run)
    y0, g0 = results[0]
    for y, g in results[1:]:
        assert torch.allclose(y, y0, rtol=0, atol=1e-12)
        for a, b in zip(g, g0):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_lanes_sharing_a_receiver_add_like_shuffled_edges():
    """Edges sorted by receiver (as graph builders give them) fill blocks whose lanes share output rows; the float32
    kernel adds such runs of lanes in registers before updating the row (lanes.h). The sums equal those of the
    same edges shuffled, whose lanes take the plain path."""
    graph = random_configuration(90, torch.float32, seed=21)
    model = GlassGNN.create(ModelConfig(l_max=2, channels=4, layers=2), torch.float32)
    _, _, edge_index, edge_vec = graph
    n_edges = edge_index.shape[1]
    assert (edge_index[1, 1:] == edge_index[1, :-1]).float().mean() > 0.5
    conv = model.layers[1].conv
    kernel = conv.frame_kernel
    weight, bias = conv.radial.last_layer()
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(graph[0].shape[0], kernel.dim_in, generator=generator)
    hidden = torch.randn(n_edges, weight.shape[1], generator=generator)
    tables = (kernel.rot_in_table, kernel.lo_meta_table, kernel.src_index, kernel.weight_index, kernel.active)

    def run(order):
        return torch.ops.glassmd.frame_conv_factored(
            x, edge_index[:, order], hidden[order], weight, bias, True, edge_vec[order], conv.mix.weight,
            kernel.mix_index, kernel.mix_coef, *tables, kernel.dim_out, kernel.channels, kernel.frame_alpha_coef,
            kernel.frame_beta_coef,
        )

    with torch.no_grad():
        sorted_sums = run(torch.arange(n_edges))
        shuffled_sums = run(torch.randperm(n_edges, generator=generator))
    assert sorted_sums.abs().max() > 0
    assert torch.allclose(sorted_sums, shuffled_sums, rtol=1e-5, atol=1e-5)


def test_fused_kernel_rejects_bad_edges():
    graph = random_configuration(150, torch.float32, seed=5)
    model = model_with_statistics(ModelConfig(layers=1), torch.float32, graph)
    _, types, edge_index, edge_vec = graph
    bad = edge_index.clone()
    bad[1, 0] = 150
    with pytest.raises(RuntimeError, match="edge_index out of range"):
        with torch.no_grad():
            model(types, bad, edge_vec)


def test_fused_backward_checks_the_edges_it_reads():
    """The backward reads the edge_index saved by the forward. Changed behind autograd's back (through .data,
    which skips the version check), an index out of range fails the backward clearly instead of being read."""
    graph = random_configuration(90, torch.float64, seed=8)
    model = GlassGNN.create(ModelConfig(l_max=1, channels=2, layers=2), torch.float64)
    _, _, edge_index, edge_vec = graph
    conv = model.layers[1].conv
    kernel = conv.frame_kernel
    weight, bias = conv.radial.last_layer()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(graph[0].shape[0], kernel.dim_in, generator=generator, dtype=torch.float64, requires_grad=True)
    hidden = torch.randn(edge_index.shape[1], weight.shape[1], generator=generator, dtype=torch.float64)
    tables = (kernel.rot_in_table, kernel.lo_meta_table, kernel.src_index, kernel.weight_index, kernel.active)
    saved = edge_index.clone()
    out = torch.ops.glassmd.frame_conv_factored(
        x, saved, hidden, weight, bias, True, edge_vec, conv.mix.weight, kernel.mix_index, kernel.mix_coef,
        *tables, kernel.dim_out, kernel.channels, kernel.frame_alpha_coef, kernel.frame_beta_coef,
    )
    saved.data[0, 5] = graph[0].shape[0]
    with pytest.raises(RuntimeError, match="edge_index out of range"):
        out.sum().backward()


def test_positions_gradient_falls_back_to_torch_kernel():
    """The fused kernel has no gradient with respect to positions; such calls run the torch kernel."""
    graph = random_configuration(150, torch.float64, seed=6)
    model = model_with_statistics(ModelConfig(layers=2), torch.float64, graph)
    _, types, edge_index, edge_vec = graph
    grads = []
    for name in ("fused", "e3nn"):
        vec = edge_vec.clone().requires_grad_(True)
        y = copy.deepcopy(model).set_implementation(name)(types, edge_index, vec)
        grads.append(torch.autograd.grad(y.sum(), vec)[0])
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-9)


def test_fused_kernel_rejects_a_plan_that_does_not_fit_its_tensors():
    """Tables that disagree with the tensors they index give an error, never a read out of bounds."""
    graph = random_configuration(150, torch.float32, seed=8)
    model = model_with_statistics(ModelConfig(layers=2), torch.float32, graph)
    _, types, edge_index, edge_vec = graph
    kernel = model.layers[1].conv.frame_kernel
    kernel.mix_index = kernel.mix_index[:10]
    kernel.mix_coef = kernel.mix_coef[:10]
    with pytest.raises(RuntimeError, match="mixing matrices too short"):
        with torch.no_grad():
            model(types, edge_index, edge_vec)


def test_features_in_wider_rows_give_the_same_convolution_and_gradients():
    """Node features that are a view into wider rows (the layout the evaluation's padded input has) are read in
    place by the evaluation kernel and copied for the training kernels: same values and gradients."""
    graph = random_configuration(120, torch.float64, seed=5)
    model = model_with_statistics(ModelConfig(layers=2), torch.float64, graph)
    _, types, edge_index, edge_vec = graph
    conv = model.layers[1].conv
    n, dim_in = types.shape[0], conv.irreps_in.dim
    wide = torch.randn(n, 80, dtype=torch.float64)  # 640-byte rows, whole cache lines
    with torch.no_grad():
        index, blocks = model.edge_frame_features(edge_index, edge_vec)
        view, dense = wide[:, :dim_in], wide[:, :dim_in].contiguous()
        assert torch.equal(conv(view, index, wide[:0], blocks[:, :10], blocks[:, 10:]),
                           conv(dense, index, wide[:0], blocks[:, :10], blocks[:, 10:]))
    model.train()
    train_index, sh, radial, frame = model.edge_inputs(edge_index, edge_vec)  # (paired: the edges reordered)
    grads = []
    for x in (wide.clone().requires_grad_(), None):
        source = x if x is not None else wide.clone().requires_grad_()
        features = source[:, :dim_in] if x is not None else source[:, :dim_in].contiguous()
        torch.manual_seed(0)
        out = conv(features, train_index, sh, radial, frame)
        (out**2).sum().backward()
        grads.append((out.detach(), source.grad))
    assert torch.allclose(grads[0][0], grads[1][0], rtol=0, atol=1e-12)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=0, atol=1e-12)


def test_training_pairs_edges_only_where_every_layer_runs_the_training_operator():
    """In training the network pairs the edges (GlassGNN.edge_inputs: one basis and vector row per pair, and the
    caller's index of each edge as a third row of edge_index) when every convolution runs glassmd::frame_conv_train;
    a convolution that cannot read them says so."""
    graph = random_configuration(80, torch.float64, seed=12)
    model = model_with_statistics(ModelConfig(layers=2), torch.float64, graph).train()
    _, types, edge_index, edge_vec = graph
    index, _, radial, vectors = model.edge_inputs(edge_index, edge_vec)
    n_edges = edge_index.shape[1]
    assert index.shape == (3, n_edges) and radial.shape[0] == vectors.shape[0] < n_edges
    assert torch.equal(index[2].sort().values, torch.arange(n_edges))
    assert torch.equal(index[:2], edge_index[:, index[2]])
    model.layers[1].conv.radial.net[3].p = 0.3  # a dropout rate the kernels do not draw
    assert model.edge_inputs(edge_index, edge_vec)[0].shape == (2, n_edges)
    model.layers[1].conv.eval()
    with pytest.raises(RuntimeError, match="paired edges in training"):
        model.layers[1].conv(torch.zeros(types.shape[0], model.layers[1].conv.irreps_in.dim, dtype=torch.float64),
                             index, radial[:, :0], radial, vectors)


def test_convolutions_in_eval_mode_inside_a_network_in_training_mode():
    """A network in training mode hands the fused kernel edge vectors instead of frames; a convolution switched to
    eval mode on its own (frozen radial filters) must still see frames. Compared with the torch kernel."""
    graph = random_configuration(100, torch.float64, seed=9)
    model = model_with_statistics(ModelConfig(layers=2), torch.float64, graph)
    _, types, edge_index, edge_vec = graph
    fused = copy.deepcopy(model).set_implementation("fused")
    frame = copy.deepcopy(model).set_implementation("frame")
    outputs = []
    for m in (fused, frame):
        m.train()
        for layer in m.layers:
            layer.conv.eval()
        with torch.no_grad():
            torch.manual_seed(3)
            outputs.append(m(types, edge_index, edge_vec))
    assert torch.allclose(outputs[0], outputs[1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("drop", [True, False])
def test_training_operator_with_the_hidden_layer_matches_radial_hidden(drop, paired):
    """glassmd::frame_conv_train computes the radial MLP's hidden layer (batch norm with batch statistics, dropout)
    in its kernels and sums the batch norm's backward there: the same values and gradients as radial_hidden
    followed by frame_conv_factored, on any thread count (float64; the edge count leaves a partial last block).
    Paired (glassmd::pair_edges, one basis and vector row per pair and per unpaired edge, each edge its own
    draws), the same again: some edges are dropped so that unpaired ones remain too."""
    graph = random_configuration(90, torch.float64, seed=31)
    model = GlassGNN.create(ModelConfig(l_max=2, channels=3, layers=2), torch.float64)
    _, _, edge_index, edge_vec = graph
    keep = torch.arange(edge_index.shape[1]) % 7 != 3
    edge_index, edge_vec = edge_index[:, keep].contiguous(), edge_vec[keep].contiguous()
    assert edge_index.shape[1] % 16 != 0
    conv = model.layers[1].conv
    kernel = conv.frame_kernel
    basis = model.edge_embedding.radial_basis(edge_vec)
    generator = torch.Generator().manual_seed(5)
    first, norm, last = conv.radial.net[0], conv.radial.net[2], conv.radial.net[4]

    def rand_like(t, scale=1.0):
        return (scale * torch.randn(t.shape, generator=generator, dtype=torch.float64)).requires_grad_()

    leaves = {
        "x": rand_like(torch.empty(graph[0].shape[0], kernel.dim_in)),
        "w1": rand_like(first.weight),
        "b1": rand_like(first.bias),
        "gamma": rand_like(norm.weight, 0.5),
        "beta": rand_like(norm.bias),
        "w2": rand_like(last.weight),
        "b2": rand_like(last.bias),
        "mix_weight": rand_like(conv.mix.weight),
    }
    draws = torch.randint(0, 2**31 - 1, (edge_index.shape[1],), generator=generator, dtype=torch.int32)
    tables = (kernel.rot_in_table, kernel.lo_meta_table, kernel.src_index, kernel.weight_index, kernel.active)
    eps = 1e-5

    def separate(x, w1, b1, gamma, beta, w2, b2, mix_weight):
        hidden, _, _ = torch.ops.glassmd.radial_hidden(basis, w1, b1, gamma, beta, draws, eps, drop)
        return torch.ops.glassmd.frame_conv_factored(
            x, edge_index, hidden, w2, b2, True, edge_vec, mix_weight, kernel.mix_index, kernel.mix_coef, *tables,
            kernel.dim_out, kernel.channels, kernel.frame_alpha_coef, kernel.frame_beta_coef,
        )

    call_index, call_basis, call_vec, call_draws, n_pairs = edge_index, basis, edge_vec, draws, 0
    if paired:
        order, n_pairs = torch.ops.glassmd.pair_edges(edge_index, edge_vec)
        rows = torch.cat([order[:n_pairs], order[2 * n_pairs :]])
        call_index, call_draws = edge_index[:, order], draws[order]
        call_basis, call_vec = basis[rows], edge_vec[rows]
        n_single = edge_index.shape[1] - 2 * n_pairs
        assert n_pairs % 16 != 0 and n_single % 16 != 0 and n_pairs > 16 and n_single > 16

    def fused(x, w1, b1, gamma, beta, w2, b2, mix_weight):
        with torch.no_grad():
            mean, var, sums = torch.ops.glassmd.radial_statistics(call_basis, w1, b1, n_pairs)
        return kernel.fused_train(
            x, call_index, call_basis, call_vec, [w1, b1, gamma, beta, w2, b2], call_draws, drop, mean, var, sums,
            eps, True, mix_weight,
        )

    inputs = list(leaves.values())
    out = separate(*inputs)
    probe = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    expected = [out.detach()] + list(torch.autograd.grad((out * probe).sum(), inputs))

    def run():
        got = fused(*inputs)
        return [got.detach()] + list(torch.autograd.grad((got * probe).sum(), inputs))

    for got in results_per_thread_count(run):
        for name, a, b in zip(["out"] + list(leaves), got, expected):
            assert b.abs().max() > 0, name
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), (name, float((a - b).abs().max()))


def test_training_operator_without_reverse_flip_keeps_its_earlier_call():
    """frame_conv_train's plan list without its eighth tensor (reverse_flip), as callers before paired training
    passed it: the same values and gradients as with it for unpaired edges, and a clear error for paired rows."""
    graph = random_configuration(90, torch.float64, seed=17)
    model = GlassGNN.create(ModelConfig(l_max=1, channels=2, layers=2), torch.float64)
    _, _, edge_index, edge_vec = graph
    conv = model.layers[1].conv
    kernel = conv.frame_kernel
    net = conv.radial.net
    layer = [net[0].weight, net[0].bias, net[2].weight, net[2].bias, net[4].weight, net[4].bias]
    basis = model.edge_embedding.radial_basis(edge_vec)
    draws = torch.randint(0, 2**31 - 1, (edge_index.shape[1],), generator=torch.Generator().manual_seed(1),
                          dtype=torch.int32)
    plan = [kernel.rot_in_table, kernel.lo_meta_table, kernel.src_index, kernel.weight_index, kernel.active,
            kernel.frame_alpha_coef, kernel.frame_beta_coef]

    def run(vectors, rows_basis, n_pairs, plan_list):
        x = torch.randn(graph[0].shape[0], kernel.dim_in, generator=torch.Generator().manual_seed(2),
                        dtype=torch.float64, requires_grad=True)
        with torch.no_grad():  # as RadialMLP.kernel_hidden: the training kernel's backward covers the statistics
            mean, var, sums = torch.ops.glassmd.radial_statistics(rows_basis, net[0].weight, net[0].bias, n_pairs)
        out = torch.ops.glassmd.frame_conv_train(
            x, edge_index, rows_basis, vectors, layer, draws, True, mean, var, sums, 1e-5, True,
            [conv.mix.weight, kernel.mix_index, kernel.mix_coef], plan_list, kernel.dim_out, kernel.channels,
        )
        (out**2).sum().backward()
        return out.detach(), x.grad

    for a, b in zip(run(edge_vec, basis, 0, plan), run(edge_vec, basis, 0, plan + [kernel.reverse_flip])):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="one row per edge"):
        run(edge_vec[:-10], basis[:-10], 10, plan)


def test_radial_statistics_match_the_batch_of_activations():
    generator = torch.Generator().manual_seed(8)
    basis = torch.randn(300, 10, generator=generator, dtype=torch.float64)
    weight = torch.randn(16, 10, generator=generator, dtype=torch.float64)
    bias = torch.randn(16, generator=generator, dtype=torch.float64)
    mean, var, sums = torch.ops.glassmd.radial_statistics(basis, weight, bias)
    a = torch.relu(basis @ weight.t() + bias)
    rho = (a > 0).double()
    assert torch.allclose(mean, a.mean(0)) and torch.allclose(var, a.var(0, unbiased=False))
    columns = [rho.t() @ basis, a.t() @ basis, rho.sum(0)[:, None], a.sum(0)[:, None], (a * a).sum(0)[:, None]]
    expected = torch.cat(columns, 1)
    assert torch.allclose(sums, expected)
    with pytest.raises(RuntimeError, match="more than one edge"):
        torch.ops.glassmd.radial_statistics(basis[:1], weight, bias)
    # the first n_pairs rows stand for two edges each (both directions of a pair)
    paired = torch.ops.glassmd.radial_statistics(basis, weight, bias, 70)
    duplicated = torch.ops.glassmd.radial_statistics(torch.cat([basis[:70], basis]), weight, bias)
    for a, b in zip(paired, duplicated):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="n_pairs"):
        torch.ops.glassmd.radial_statistics(basis, weight, bias, 301)


def test_training_operator_rejects_statistics_of_another_shape():
    leaves, factored, _ = conv_operator_inputs(1, 2, seed=3)
    model = GlassGNN.create(ModelConfig(l_max=1, channels=2, layers=2), torch.float64)
    kernel = model.layers[1].conv.frame_kernel
    radial = model.layers[1].conv.radial.net
    n = 5
    basis = torch.rand(n, 10, dtype=torch.float64)
    mean, var, sums = torch.ops.glassmd.radial_statistics(basis, radial[0].weight, radial[0].bias)
    layer = [radial[0].weight, radial[0].bias, radial[2].weight, radial[2].bias, radial[4].weight, radial[4].bias]
    args = (leaves["x"].detach(), torch.zeros(2, n, dtype=torch.long), basis, torch.ones(n, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"sums must be the \[H, 2R \+ 3\]"):
        kernel.fused_train(*args, layer, torch.zeros(n, dtype=torch.int32), True, mean, var, sums[:, :-1], 1e-5,
                           True, model.layers[1].conv.mix.weight)
    with pytest.raises(RuntimeError, match="draws must be one int32 per edge"):
        kernel.fused_train(*args, layer, torch.zeros(n, dtype=torch.int64), True, mean, var, sums, 1e-5,
                           True, model.layers[1].conv.mix.weight)


@pytest.mark.parametrize("radial", [dict(radial_hidden=8), dict(radial_hidden=20, n_radial=12), dict(dropout=0.0)])
def test_training_with_other_radial_shapes_matches_reference(radial):
    """The training kernels' generic paths (hidden widths other than 16, other basis sizes, no dropout) against
    the e3nn reference: outputs, every gradient and the running statistics (float64)."""
    graph = random_configuration(100, torch.float64, seed=12)
    fast, reference = both(model_with_statistics(ModelConfig(layers=2, **radial), torch.float64, graph), "fused")
    y_f, g_f, s_f = train_step_results(fast, graph, torch.float64)
    y_x, g_x, s_x = train_step_results(reference, graph, torch.float64)
    assert torch.allclose(y_f, y_x, rtol=0, atol=1e-10)
    scale = max(float(g.abs().max()) for g in g_x)
    for (name, _), a, b in zip(reference.named_parameters(), g_f, g_x):
        assert (a - b).abs().max() <= 1e-10 * scale, name
    for key in s_x:
        assert torch.allclose(s_f[key], s_x[key], rtol=1e-10, atol=1e-10), key


def test_evaluation_sees_parameters_changed_between_calls():
    """glassmd::interaction_eval keeps each layer's folded constants between calls, checked against a copy of
    every input they derive from: parameters changed in place, through .data (no version bump) or in another
    model with the same shapes must never meet stale constants. Compared with the torch kernel each time."""
    graph = random_configuration(120, torch.float64, seed=13)
    model = model_with_statistics(ModelConfig(layers=2), torch.float64, graph).eval()
    _, types, edge_index, edge_vec = graph

    def check():
        with torch.no_grad():
            fused = model(types, edge_index, edge_vec)
            frame = copy.deepcopy(model).set_implementation("frame")(types, edge_index, edge_vec)
        assert torch.allclose(fused, frame, rtol=0, atol=1e-10)
        return fused

    before = check()
    layer = model.layers[1]
    changes = [
        layer.conv.mix.weight,  # folded into the mixing matrices
        layer.conv.radial.net[4].weight,  # the last radial layer
        layer.conv.radial.net[2].running_var,  # the radial batch norm, folded into the last layer
        layer.norm.weight_scalar,  # the layer's batch-norm map
        model.layers[0].conv.radial.net[4].bias,
    ]
    for tensor in changes:
        tensor.data.mul_(1.25)  # through .data: the version counter does not move
        after = check()
        assert not torch.allclose(after, before)
        before = after
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.layers[1].conv.mix.weight.add_(0.5)
        first = other(types, edge_index, edge_vec)
    check()  # the first model's constants after the other's
    with torch.no_grad():
        assert torch.equal(other(types, edge_index, edge_vec), first)
