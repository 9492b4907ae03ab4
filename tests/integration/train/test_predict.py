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


def _listing(folder):
    """Every entry below ``folder`` (hidden temporary files included) with its bytes."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_predict_refuses_inputs_whose_names_clash_in_the_output_directory(tmp_path, capsys, reference_run):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_dump(tmp_path / "a" / "x.dump", synthetic_frames(1, 100, seed=3))
    write_dump(tmp_path / "b" / "x.dump", synthetic_frames(1, 100, seed=4))
    outdir = tmp_path / "predictions"
    outdir.mkdir()
    status = main(["predict", str(reference_run / "model.pt"), str(tmp_path / "a" / "x.dump"),
                   str(tmp_path / "b" / "x.dump"), "-o", str(outdir), "-q"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(tmp_path / "a" / "x.dump") in err and str(tmp_path / "b" / "x.dump") in err
    assert str(outdir / "x.dump") in err
    assert list(outdir.iterdir()) == []


@pytest.mark.parametrize("broken", ["truncated", "missing_column"])
def test_predict_into_a_directory_writes_nothing_when_an_input_is_bad(tmp_path, capsys, reference_run, broken):
    good = tmp_path / "good.dump"
    write_dump(good, synthetic_frames(2, 100, seed=3))
    bad = tmp_path / "bad.dump"
    write_dump(bad, synthetic_frames(2, 100, seed=5))
    text = bad.read_text()
    if broken == "truncated":
        bad.write_text(text[: len(text) * 3 // 4])  # the second frame ends in the middle of its atoms
    else:
        bad.write_text(text.replace("ITEM: ATOMS id type", "ITEM: ATOMS id kind", 1))
    outdir = tmp_path / "predictions"
    outdir.mkdir()
    (outdir / "good.dump").write_text("the user's earlier prediction\n")
    (outdir / "notes.txt").write_text("unrelated\n")
    before = _listing(outdir)
    status = main(["predict", str(reference_run / "model.pt"), str(good), str(bad), "-o", str(outdir), "-q"])
    err = capsys.readouterr().err
    assert status == 2 and "bad.dump" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert _listing(outdir) == before  # no new file, no temporary left, the old good.dump untouched

    # A directory named with a trailing slash that did not exist is not left behind either.
    fresh = tmp_path / "fresh"
    assert main(["predict", str(reference_run / "model.pt"), str(good), str(bad), "-o", f"{fresh}/", "-q"]) == 2
    assert not fresh.exists()
    # With the bad input left out, the same command writes the good one.
    assert main(["predict", str(reference_run / "model.pt"), str(good), "-o", str(outdir), "-q"]) == 0
    assert len(read_dump(outdir / "good.dump")) == 2
    assert sorted(p.name for p in outdir.iterdir()) == ["good.dump", "notes.txt"]


def test_predict_output_with_a_trailing_slash_is_a_new_directory(tmp_path, capsys, reference_run):
    write_dump(tmp_path / "x.dump", synthetic_frames(1, 100, seed=3))
    write_dump(tmp_path / "y.dump.gz", synthetic_frames(2, 90, seed=4))
    target = tmp_path / "new" / "deeper"
    assert main(["predict", str(reference_run / "model.pt"), str(tmp_path / "x.dump"), str(tmp_path / "y.dump.gz"),
                 "-o", f"{target}/", "-q"]) == 0
    assert target.is_dir()
    assert sorted(p.name for p in target.iterdir()) == ["x.dump", "y.dump.gz"]
    assert len(read_dump(target / "x.dump")) == 1 and len(read_dump(target / "y.dump.gz")) == 2
    assert "propensity_t10" in read_dump(target / "y.dump.gz")[1].columns
    # Without the slash, a path that does not exist is one output file, as before.
    assert main(["predict", str(reference_run / "model.pt"), str(tmp_path / "x.dump"), "-o",
                 str(tmp_path / "plain"), "-q"]) == 0
    assert (tmp_path / "plain").is_file() and len(read_dump(tmp_path / "plain")) == 1


def test_predict_trailing_slash_on_an_existing_file_is_refused(tmp_path, capsys, reference_run):
    write_dump(tmp_path / "x.dump", synthetic_frames(1, 100, seed=3))
    existing = tmp_path / "result"
    existing.write_text("keep me\n")
    status = main(["predict", str(reference_run / "model.pt"), str(tmp_path / "x.dump"), "-o", f"{existing}/"])
    err = capsys.readouterr().err
    assert status == 2 and "names a directory" in err and "is a file" in err
    assert existing.read_text() == "keep me\n"


def test_non_finite_position_is_named_by_atom_id(tmp_path, capsys, reference_run):
    frame = synthetic_frames(1, 100, seed=5)[0]
    positions = frame.positions.copy()
    positions[7, 2] = np.nan
    ids = frame.ids + 1000  # IDs that are not array indices
    write_dump(tmp_path / "nan.dump", [Frame(frame.timestep, frame.box, ids, frame.types, positions, {})])
    out = tmp_path / "out.dump"
    assert main(["predict", str(reference_run / "model.pt"), str(tmp_path / "nan.dump"), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "non-finite" in err and f"atom ID {int(ids[7])}" in err, err
    assert not out.exists()
