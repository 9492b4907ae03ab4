"""glassmd predict: the written columns hold exactly what the model computes, for any N and type mix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glassmd.cli import main
from glassmd.data.dump import Frame, read_dump, write_dump
from glassmd.data.graph import periodic_graph
from glassmd.model import model_from_checkpoint
from glassmd.train.dataset import synthetic_frames


def _shuffled(frame: Frame, seed: int) -> Frame:
    """The same configuration with atoms listed in another order and no label columns."""
    order = np.random.default_rng(seed).permutation(len(frame.ids))
    return Frame(frame.timestep, frame.box, frame.ids[order], frame.types[order], frame.positions[order], {})


def test_predict_writes_label_named_columns_equal_to_the_model(tmp_path, capsys, reference_run):
    frames = synthetic_frames(2, 150, times=(10.0,), seed=42) + synthetic_frames(1, 90, seed=43, fraction_a=0.0)
    write_dump(tmp_path / "in1.dump", frames[:2])
    write_dump(tmp_path / "in2.dump", [_shuffled(frames[2], 0)])
    out = tmp_path / "out.dump"
    status = main(["predict", str(reference_run / "model.pt"), str(tmp_path / "in1.dump"), str(tmp_path / "in2.dump"),
                   "-o", str(out), "--types", "A", "B", "-q"])
    assert status == 0, capsys.readouterr().err
    written = read_dump(out)
    assert len(written) == 3

    net = model_from_checkpoint(reference_run / "best.ckpt").eval()
    for source, result in zip(frames, written):
        assert np.array_equal(result.ids, np.sort(result.ids))
        assert "propensity_t10" in result.columns and "propensity_t20" in result.columns
        order = np.argsort(source.ids)
        assert np.array_equal(result.ids, source.ids[order])
        edge_index, edge_vec = periodic_graph(source.positions, source.box_lengths, net.config.cutoff)
        with torch.no_grad():
            direct = net.denormalize(net(torch.from_numpy(source.types - 1), edge_index, edge_vec.float())).double()
        direct = direct.numpy()[order]
        got = np.stack([result.columns["propensity_t10"], result.columns["propensity_t20"]], axis=1)
        np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-5)
    # the input's own label column is replaced by the prediction; the input file is untouched
    assert read_dump(tmp_path / "in1.dump")[0].columns.keys() == {"propensity_t10"}


def test_predict_into_a_directory_and_type_mapping(tmp_path, capsys, reference_run):
    frame = synthetic_frames(1, 100, seed=3)[0]
    write_dump(tmp_path / "x.dump", frame)
    outdir = tmp_path / "predictions"
    outdir.mkdir()
    assert main(["predict", str(reference_run / "model.pt"), str(tmp_path / "x.dump"), "-o", str(outdir), "-q"]) == 0
    plain = read_dump(outdir / "x.dump")[0]
    # Swapping the names changes which particles the model sees as A.
    assert main(["predict", str(reference_run / "model.pt"), str(tmp_path / "x.dump"), "-o",
                 str(tmp_path / "swapped.dump"), "--types", "B", "A", "-q"]) == 0
    swapped = read_dump(tmp_path / "swapped.dump")[0]
    assert not np.allclose(plain.columns["propensity_t10"], swapped.columns["propensity_t10"])


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--types", "A", "C"], "'C' (LAMMPS type 2) is not a type of the model"),
        (["--types", "A"], "LAMMPS atom type(s) [2] have no model type"),
    ],
)
def test_predict_type_errors(tmp_path, capsys, reference_run, extra, fragment):
    write_dump(tmp_path / "x.dump", synthetic_frames(1, 100, seed=3))
    status = main(["predict", str(reference_run / "model.pt"), str(tmp_path / "x.dump"), "-o",
                   str(tmp_path / "y.dump"), *extra])
    assert status == 2 and fragment in capsys.readouterr().err
    assert not (tmp_path / "y.dump").exists()


def test_predict_refuses_to_overwrite_its_input(tmp_path, capsys, reference_run):
    path = tmp_path / "x.dump"
    write_dump(path, synthetic_frames(1, 100, seed=3))
    before = path.read_bytes()
    assert main(["predict", str(reference_run / "model.pt"), str(path), "-o", str(path)]) == 2
    assert "also an input" in capsys.readouterr().err
    assert path.read_bytes() == before
