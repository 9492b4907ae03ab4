"""A file that is not the model a command needs gets one line saying what it is and what to use instead."""

from __future__ import annotations

import shutil

import pytest

from glassmd.cli import main
from glassmd.data.dump import read_dump, write_dump
from glassmd.errors import ModelFileError
from glassmd.model import load_model_file
from glassmd.train.dataset import synthetic_frames

TORCH_BOILERPLATE = ("internal miniz error", "high likelihood", "checkpoint file is corrupted")


@pytest.fixture
def dump_file(tmp_path):
    path = tmp_path / "x.dump"
    write_dump(path, synthetic_frames(1, 100, seed=3))
    return path


def _predict(capsys, model, dump_file, output):
    status = main(["predict", str(model), str(dump_file), "-o", str(output), "-q"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
    return status, err


@pytest.mark.parametrize("content", ["junk", "truncated"])
def test_unreadable_model_file_is_one_line_without_torch_boilerplate(tmp_path, capsys, reference_run, dump_file,
                                                                      content):
    model = tmp_path / "model.pt"
    if content == "junk":
        model.write_bytes(b"\x00garbage, not a zip archive" * 10)
    else:
        data = (reference_run / "model.pt").read_bytes()
        model.write_bytes(data[: len(data) // 2])
    status, err = _predict(capsys, model, dump_file, tmp_path / "out.dump")
    assert status == 2 and "not a readable TorchScript model" in err and str(model) in err
    assert not any(phrase in err for phrase in TORCH_BOILERPLATE), err
    assert not (tmp_path / "out.dump").exists()


@pytest.mark.parametrize("name", ["best.ckpt", "last.ckpt"])
def test_training_checkpoint_given_as_model_names_the_export_command(tmp_path, capsys, reference_run, dump_file,
                                                                      name):
    checkpoint = reference_run / name
    status, err = _predict(capsys, checkpoint, dump_file, tmp_path / "out.dump")
    assert status == 2 and "training checkpoint" in err and "corrupt" not in err
    assert f"glassmd export --checkpoint {checkpoint} -o model.pt" in err
    assert str(reference_run / "model.pt") in err  # the run's own export, beside it
    assert not (tmp_path / "out.dump").exists()

    # Alone in a folder (no model.pt beside it) there is nothing else to suggest; the advice itself works.
    alone = tmp_path / "alone" / name
    alone.parent.mkdir()
    shutil.copyfile(checkpoint, alone)
    with pytest.raises(ModelFileError, match="training checkpoint") as info:
        load_model_file(alone)
    assert "beside it" not in str(info.value)
    assert main(["export", "--checkpoint", str(alone), "-o", str(tmp_path / "model.pt")]) == 0
    assert main(["predict", str(tmp_path / "model.pt"), str(dump_file), "-o", str(tmp_path / "out.dump"), "-q"]) == 0
    assert "propensity_t10" in read_dump(tmp_path / "out.dump")[0].columns


def test_directory_given_as_model(tmp_path, capsys, reference_run, dump_file):
    status, err = _predict(capsys, reference_run, dump_file, tmp_path / "out.dump")
    assert status == 2 and "is a directory" in err and "does not exist" not in err
    assert f"did you mean {str(reference_run / 'model.pt')!r}" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    status, err = _predict(capsys, empty, dump_file, tmp_path / "out.dump")
    assert status == 2 and "is a directory" in err and "did you mean" not in err
    assert not (tmp_path / "out.dump").exists()


def test_export_checkpoint_given_a_model_file_or_a_run_directory(tmp_path, capsys, reference_run):
    target = tmp_path / "m.pt"
    assert main(["export", "--checkpoint", str(reference_run / "model.pt"), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert "exported (TorchScript) model, not a training checkpoint" in err and "--model" in err
    assert main(["export", "--checkpoint", str(reference_run), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and f"did you mean {str(reference_run / 'best.ckpt')!r}" in err
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"PK\x03\x04 not really a zip archive" * 10)
    assert main(["export", "--checkpoint", str(junk), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert "not a readable checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not any(phrase in err for phrase in TORCH_BOILERPLATE), err
    assert not target.exists()


def test_train_init_given_a_run_directory(tmp_path, capsys, reference_run, labelled_dir):
    status = main(["train", str(labelled_dir), "--times", "10", "-o", str(tmp_path / "run"), "--init",
                   str(reference_run), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "is a directory" in err and str(reference_run / "model.pt") in err
    assert not (tmp_path / "run").exists()
