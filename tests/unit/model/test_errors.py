"""Bad inputs to the model get one clear error naming the problem."""

import numpy as np
import pytest
import torch

from glassmd.data.graph import periodic_graph
from glassmd.errors import InputError, ModelFileError
from glassmd.model import GlassGNN, ModelConfig, export_model, load_model_file

# Exceptions raised inside TorchScript reach Python as torch.jit.Error, not RuntimeError.
TORCHSCRIPT_ERROR = (RuntimeError, torch.jit.Error)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    export_model(GlassGNN(ModelConfig(l_max=1, layers=2)), path)
    module, _ = load_model_file(path)
    return module


def _config(n=60, seed=0):
    rng = np.random.default_rng(seed)
    box = np.full(3, 4.5)
    return rng.random((n, 3)) * box, rng.integers(0, 2, n), box


def test_nan_positions_named_with_index():
    positions, _, box = _config()
    positions[7, 1] = np.nan
    with pytest.raises(InputError, match=r"non-finite.*index 7"):
        periodic_graph(positions, box, 2.0)


def test_nan_reaching_the_exported_module(exported):
    positions, types, box = _config()
    edge_index, edge_vec = periodic_graph(positions, box, 2.0)
    pos = torch.from_numpy(positions).float()
    pos[3, 0] = float("nan")
    with pytest.raises(TORCHSCRIPT_ERROR, match="positions contain NaN"):
        exported(pos, torch.from_numpy(types), edge_index, edge_vec.float())
    edge_vec[0, 0] = float("nan")
    with pytest.raises(TORCHSCRIPT_ERROR, match="edge vectors contain NaN"):
        exported.edge_features(edge_vec.float())


def test_unknown_particle_type(exported):
    positions, types, box = _config()
    edge_index, edge_vec = periodic_graph(positions, box, 2.0)
    types[5] = 2  # the model knows types 0 (A) and 1 (B)
    with pytest.raises(TORCHSCRIPT_ERROR, match=r"particle type out of range: the model knows types 0..1 but got 0..2"):
        exported(torch.from_numpy(positions).float(), torch.from_numpy(types), edge_index, edge_vec.float())


def test_box_smaller_than_twice_the_cutoff():
    positions = np.random.default_rng(0).random((20, 3)) * 3.5
    with pytest.raises(InputError, match=r"must all exceed twice the model cutoff \(4\)"):
        periodic_graph(positions, np.full(3, 3.5), 2.0)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "nope.pt")


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00garbage, not a zip archive" * 10)
    with pytest.raises(ModelFileError, match="not a readable TorchScript model"):
        load_model_file(bad)


def test_truncated_model_file(tmp_path):
    good = tmp_path / "good.pt"
    export_model(GlassGNN(ModelConfig(l_max=1, layers=1)), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="not a readable TorchScript model"):
        load_model_file(cut)


def test_torchscript_file_that_is_not_a_glassmd_model(tmp_path):
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 1)), str(other))
    with pytest.raises(ModelFileError, match="not a glassmd model"):
        load_model_file(other)


def test_unknown_config_key():
    from glassmd.errors import GlassmdError

    with pytest.raises(GlassmdError, match=r"unknown model config key\(s\) \['lmax'\]"):
        ModelConfig.from_dict({"lmax": 3})
