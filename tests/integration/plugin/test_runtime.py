"""glassmd.runtime (what the plugin calls) and `glassmd plugin-path`, without LAMMPS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


def test_layerwise_evaluation_equals_forward(model_two_outputs):
    from glassmd.data.graph import periodic_graph
    from glassmd.runtime import LayerwiseEvaluator

    rng = np.random.default_rng(3)
    box = np.full(3, 5.5)
    positions = rng.random((120, 3)) * box
    types = (rng.random(120) < 0.2).astype(np.int64)
    evaluator = LayerwiseEvaluator(model_two_outputs, device="cpu")
    assert evaluator.output_names == ("propensity_t10", "propensity_t100")
    edge_index, edge_vec = periodic_graph(positions, box, evaluator.cutoff)
    values = evaluator.evaluate(types, edge_index.numpy(), edge_vec.numpy())
    module = torch.jit.load(str(model_two_outputs))
    with torch.no_grad():
        expected = module(torch.as_tensor(positions, dtype=torch.float32), torch.as_tensor(types), edge_index,
                          edge_vec.float()).double().numpy()
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-6)


def test_unknown_device_and_missing_gpu_are_user_errors():
    from glassmd.errors import GlassmdError
    from glassmd.runtime import select_device

    with pytest.raises(GlassmdError, match="unknown device 'tpu'"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(GlassmdError, match="sees no GPU"):
            select_device("cuda")
    assert select_device("cpu").type == "cpu"


def test_plugin_path_command_prints_the_installed_plugin(plugin):
    glassmd = Path(sys.executable).parent / "glassmd"
    folder = subprocess.run([str(glassmd), "plugin-path"], capture_output=True, text=True, check=True).stdout.strip()
    file = subprocess.run([str(glassmd), "plugin-path", "--file"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert Path(file) == Path(folder) / "glassgnnplugin.so" == plugin
    assert Path(file).is_file()
