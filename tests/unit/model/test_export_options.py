"""`glassmd export --model / --checkpoint`: options the file decides are refused, not silently ignored."""

import pytest
import torch

from glassmd.cli import main
from glassmd.model import GlassGNN, ModelConfig, checkpoint_payload, export_model, load_model_file

CONFIG = ModelConfig(l_max=2, layers=2, type_names=("A", "B"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """An exported model file and a checkpoint of the same small model."""
    folder = tmp_path_factory.mktemp("export_options")
    model = GlassGNN.create(CONFIG)
    model.set_label_normalization([1.5], [0.2])
    model.eval()
    torch.save(checkpoint_payload(model), folder / "best.ckpt")
    return {"--model": export_model(model, folder / "old.pt"), "--checkpoint": folder / "best.ckpt"}


@pytest.mark.parametrize("source", ["--model", "--checkpoint"])
@pytest.mark.parametrize(
    "options, named",
    [
        (["--lmax", "1"], ["--lmax"]),
        (["--types", "X", "Y"], ["--types"]),
        (["--lmax", "1", "--types", "X", "Y"], ["--lmax", "--types"]),
        (["--channels", "8", "--layers", "3", "--cutoff", "2.5"], ["--channels", "--layers", "--cutoff"]),
        (["--n-radial", "6", "--radial-hidden", "8", "--dropout", "0.1"], ["--n-radial", "--radial-hidden", "--dropout"]),
        (["--outputs", "p1", "p2"], ["--outputs"]),
        (["--seed", "4"], ["--seed"]),
        # the paper's value, equal to the default, is refused too: the file's l_max (2) would still win
        (["--lmax", "3"], ["--lmax"]),
    ],
)
def test_options_the_file_decides_are_refused(tmp_path, capsys, sources, source, options, named):
    target = tmp_path / "new.pt"
    target.write_bytes(b"the user's previous file")
    status = main(["export", source, str(sources[source]), "-o", str(target), *options])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert source in err and all(name in err for name in named)
    assert target.read_bytes() == b"the user's previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.pt"]


@pytest.mark.parametrize("source", ["--model", "--checkpoint"])
def test_without_such_options_the_file_is_exported_as_it_is(tmp_path, sources, source):
    assert main(["export", source, str(sources[source]), "-o", str(tmp_path / "new.pt"), "--dtype", "float32"]) == 0
    _, meta = load_model_file(tmp_path / "new.pt")
    assert meta["config"]["l_max"] == 2 and meta["type_names"] == ["A", "B"] and meta["num_layers"] == 2


def test_architecture_options_still_shape_a_fresh_model(tmp_path):
    assert main(["export", "-o", str(tmp_path / "fresh.pt"), "--lmax", "1", "--types", "X", "Y", "--seed", "2"]) == 0
    _, meta = load_model_file(tmp_path / "fresh.pt")
    assert meta["config"]["l_max"] == 1 and meta["type_names"] == ["X", "Y"]
    assert meta["config"]["layers"] == ModelConfig().layers  # not given: the paper's default


def test_model_info_describes_a_model_file(capsys, sources):
    assert main(["model", "info", str(sources["--model"])]) == 0
    out = capsys.readouterr().out
    assert "l_max=2" in out and "layers=2" in out and "types=A,B" in out
    n_params = sum(p.numel() for p in GlassGNN.create(CONFIG).parameters())
    assert f"parameters: {n_params}" in out
    assert "outputs: propensity" in out


def test_model_info_refuses_options_with_a_model_file(capsys, sources):
    assert main(["model", "info", str(sources["--model"]), "--lmax", "1"]) == 2
    err = capsys.readouterr().err
    assert "--lmax" in err and len(err.strip().splitlines()) == 1
