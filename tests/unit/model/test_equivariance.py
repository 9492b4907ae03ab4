"""Rotation, translation, permutation and periodic-wrapping symmetries of the network."""

import numpy as np
import pytest
import torch

from glassmd.data.graph import periodic_graph
from glassmd.model import GlassGNN, ModelConfig
from glassmd.model.irreps import hidden_irreps
from glassmd.testing import assert_equivariant


def _model(l_max=3, dtype=torch.float64):
    torch.manual_seed(1)
    model = GlassGNN.create(ModelConfig(l_max=l_max, layers=3), dtype)
    # Non-trivial batch-norm statistics and label scaling, so eval mode is not an identity map.
    with torch.no_grad():
        for layer in model.layers:
            layer.norm.running_mean.uniform_(-0.5, 0.5)
            layer.norm.running_var.uniform_(0.5, 2.0)
            layer.norm.running_sq.uniform_(0.5, 2.0)
    model.set_label_normalization([2.0], [0.5])
    return model.eval()


@pytest.fixture(scope="module")
def graph(ka_small):
    positions, types, box = ka_small
    edge_index, edge_vec = periodic_graph(positions, box, 2.0)
    return torch.from_numpy(types), edge_index, edge_vec


@pytest.mark.parametrize("l_max", [1, 3])
def test_output_invariant_under_rotation(graph, l_max):
    types, edge_index, edge_vec = graph
    model = _model(l_max)
    with torch.no_grad():
        assert_equivariant(lambda v: model(types, edge_index, v), edge_vec, "1x0e")


@pytest.mark.parametrize("l_max", [1, 2, 3])
def test_hidden_features_rotate_with_wigner_d(graph, l_max):
    types, edge_index, edge_vec = graph
    model = _model(l_max)
    irreps = hidden_irreps(4, l_max)
    with torch.no_grad():
        assert_equivariant(lambda v: model.hidden_features(types, edge_index, v), edge_vec, irreps)


def test_float32_equivariance(graph):
    types, edge_index, edge_vec = graph
    model = _model(3, torch.float32)
    with torch.no_grad():
        assert_equivariant(lambda v: model(types, edge_index, v), edge_vec.float(), "1x0e")


def test_helper_rejects_a_broken_model(graph):
    types, edge_index, edge_vec = graph
    model = _model(1)
    squash = torch.tensor([1.0, 1.0, 1.3], dtype=edge_vec.dtype)  # anisotropic: breaks rotation symmetry
    with torch.no_grad(), pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(lambda v: model(types, edge_index, v * squash), edge_vec, "1x0e")


def _predict(model, positions, types, box):
    edge_index, edge_vec = periodic_graph(positions, box, 2.0)
    with torch.no_grad():
        return model(torch.from_numpy(types), edge_index, edge_vec)


def test_translation_and_periodic_wrapping(ka_small):
    positions, types, box = ka_small
    model = _model()
    reference = _predict(model, positions, types, box)
    rng = np.random.default_rng(3)
    shifted = positions + rng.uniform(-10, 10, size=3)  # leaves the box: wrapping is the graph's job
    torch.testing.assert_close(_predict(model, shifted, types, box), reference, atol=1e-10, rtol=0)
    images = positions + rng.integers(-2, 3, size=positions.shape) * box  # each particle in another image
    torch.testing.assert_close(_predict(model, images, types, box), reference, atol=1e-10, rtol=0)


def test_cubic_box_rotation_with_graph_rebuilt(ka_small):
    """Rotating the whole periodic system by a cube symmetry, graph rebuilt from positions."""
    positions, types, box = ka_small
    model = _model()
    reference = _predict(model, positions, types, box)
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    rotated = positions @ rotation.T
    torch.testing.assert_close(_predict(model, rotated, types, box), reference, atol=1e-10, rtol=0)


def test_permutation(ka_small):
    positions, types, box = ka_small
    model = _model()
    reference = _predict(model, positions, types, box)
    perm = np.random.default_rng(4).permutation(len(types))
    permuted = _predict(model, positions[perm], types[perm], box)
    torch.testing.assert_close(permuted, reference[perm], atol=1e-10, rtol=0)
