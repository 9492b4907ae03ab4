"""The paper's Table I parameter counts, from the model and from the command line."""

import pytest

from glassmd.cli import main
from glassmd.model import GlassGNN, ModelConfig, count_parameters
from glassmd.model.irreps import triplets


@pytest.mark.parametrize("l_max, expected", [(3, 23177), (1, 5381)])
def test_paper_parameter_counts(l_max, expected):
    assert count_parameters(GlassGNN(ModelConfig(l_max=l_max))) == expected


def test_radial_mlp_and_mixing_counts_match_appendix_a():
    model = GlassGNN(ModelConfig())
    first, later = model.layers[0], model.layers[1]
    assert count_parameters(first.conv.radial) == 344
    assert count_parameters(later.conv.radial) == 2656
    assert count_parameters(first.conv.mix) == 32
    assert count_parameters(later.conv.mix) == 576
    assert count_parameters(later.norm) == 20
    assert count_parameters(model.readout) == 17


def test_34_triplets_for_lmax_3():
    assert len(triplets(3, 3)) == 34
    assert GlassGNN(ModelConfig()).layers[1].conv.n_paths == 34


def test_cli_model_info(capsys):
    assert main(["model", "info"]) == 0
    assert "parameters: 23177" in capsys.readouterr().out
    assert main(["model", "info", "--lmax", "1"]) == 0
    assert "parameters: 5381" in capsys.readouterr().out


def test_outputs_change_only_the_readout():
    three = GlassGNN(ModelConfig(output_names=("a", "b", "c"), output_times=(1, 2, 3)))
    assert count_parameters(three) == 23177 + 2 * 17
