"""The training configuration: defaults, the shipped YAML, and validation of every key."""

from __future__ import annotations

import pytest
import yaml

from glassmd.model import ModelConfig
from glassmd.train.config import DEFAULT_CONFIG_PATH, ConfigError, TrainConfig, default_config_dict, load_config


def test_shipped_yaml_equals_the_python_defaults():
    assert yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()) == default_config_dict()


def test_defaults_are_the_papers():
    config = load_config(None)
    assert (config.model["layers"], config.model["channels"], config.model["l_max"]) == (8, 4, 3)
    assert config.optimizer == {"lr": 1e-3, "betas": [0.95, 0.999], "weight_decay": 1e-7}
    assert config.scheduler["gamma"] == 0.5
    assert config.training["batch_size"] == 1
    assert config.types == {1: "A", 2: "B"} and config.loss_types == ["A"]


def test_model_section_maps_onto_model_config():
    config = TrainConfig.from_dict({"model": {"l_max": 1, "layers": 2}, "types": {1: "X", 2: "Y", 3: "X"},
                                   "loss_types": ["X"]})
    model = config.model_config([10, 300])
    assert isinstance(model, ModelConfig)
    assert (model.l_max, model.layers) == (1, 2)
    assert model.type_names == ("X", "Y")
    assert model.output_names == ("propensity_t10", "propensity_t300")
    assert model.output_times == (10.0, 300.0)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"optimiser": {}}, "'optimiser' (did you mean 'optimizer'?)"),
        ({"model": {"lmax": 2}}, "'model.lmax' (did you mean 'l_max'?)"),
        ({"training": {"epoch": 3}}, "'training.epoch' (did you mean 'epochs'?)"),
        ({"split": {"valid": 0.2}}, "'split.valid' (did you mean 'validation'?)"),
        ({"model": {"output_names": ["x"]}}, "'model.output_names' cannot be set"),
    ],
)
def test_unknown_key_is_named_with_the_closest_valid_one(data, fragment):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"optimizer": {"lr": -1.0}}, "optimizer.lr"),
        ({"optimizer": {"betas": [0.9]}}, "optimizer.betas"),
        ({"scheduler": {"milestones": [5, 3]}}, "scheduler.milestones"),
        ({"training": {"batch_size": 0}}, "training.batch_size"),
        ({"training": {"dtype": "float16"}}, "training.dtype"),
        ({"training": {"bn_recalibration": -1}}, "training.bn_recalibration"),
        ({"training": {"bn_recalibration": True}}, "training.bn_recalibration"),
        ({"model": {"layers": 2.5}}, "model.layers"),
        ({"split": {"train": 0.9}}, "sum to 1"),
        ({"loss_types": ["C"]}, "loss_types"),
        ({"types": {"one": "A"}}, "types"),
        ({"times": [10, -1]}, "times"),
        ({"model": {"dropout": 1.5}}, "dropout"),
    ],
)
def test_bad_values_are_errors_naming_the_key(data, key):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert key in str(info.value)


def test_yaml_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  l_max: 1\ntraining:\n  epochs: 2\n")
    config = load_config(path)
    assert config.model["l_max"] == 1 and config.training["epochs"] == 2
    assert config.model["layers"] == 8  # untouched keys keep their defaults
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(config.to_dict()))
    assert load_config(again).to_dict() == config.to_dict()

    path.write_text("training:\n  epohcs: 2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown config key 'training\.epohcs'"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_command_line_times_override_the_file():
    config = TrainConfig.from_dict({"times": [5]})
    assert config.with_times(None).times == [5.0]
    assert config.with_times([10, 20]).times == [10.0, 20.0]
