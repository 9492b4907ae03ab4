"""Bad input: one clear error before any training starts, and no run directory left behind."""

from __future__ import annotations

import json

import pytest

from glassmd.cli import main
from glassmd.data.dump import write_dump
from glassmd.train.dataset import synthetic_frames


def _train(capsys, *args):
    status = main(["train", *map(str, args), "--device", "cpu", "--no-progress"])
    return status, capsys.readouterr().err


def test_missing_label_for_the_asked_timescale(tmp_path, capsys, labelled_dir, small_config_file):
    status, err = _train(capsys, labelled_dir, "--times", 10, 30, "-c", small_config_file, "-o", tmp_path / "run")
    assert status == 2
    assert "no label column 'propensity_t30'" in err and "part1.dump" in err and "10, 20" in err
    assert not (tmp_path / "run").exists()


def test_mismatched_particle_counts(tmp_path, capsys, small_config_file):
    write_dump(tmp_path / "a.dump", synthetic_frames(2, 100, times=(10.0,), seed=1))
    write_dump(tmp_path / "b.dump", synthetic_frames(2, 110, times=(10.0,), seed=2))
    status, err = _train(capsys, tmp_path / "a.dump", tmp_path / "b.dump", "--times", 10, "-c", small_config_file,
                         "-o", tmp_path / "run")
    assert status == 2
    assert "particle counts differ" in err and "a.dump#0 has 100" in err and "b.dump#0 has 110" in err
    assert not (tmp_path / "run").exists()


def test_empty_training_set(tmp_path, capsys, labelled_dir):
    config = tmp_path / "c.yaml"
    config.write_text("split: {train: 0.01, validation: 0.99, test: 0.0}\n")
    status, err = _train(capsys, labelled_dir, "--times", 10, "-c", config, "-o", tmp_path / "run")
    assert status == 2 and "training set is empty" in err
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [], "validation": ["part1.dump#0"], "test": []}))
    status, err = _train(capsys, labelled_dir, "--times", 10, "--split", split, "-o", tmp_path / "run")
    assert status == 2 and "training set is empty" in err
    assert not (tmp_path / "run").exists()


def test_unknown_config_key(tmp_path, capsys, labelled_dir):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  l_max: 1\noptimizer:\n  learning_rate: 0.1\n")
    status, err = _train(capsys, labelled_dir, "--times", 10, "-c", config, "-o", tmp_path / "run")
    assert status == 2
    assert "unknown config key 'optimizer.learning_rate'" in err and "did you mean 'lr'" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--times", "10"], "give the run directory"),
        (["--times", "10", "-o", "RUN", "--freeze-backbone"], "--freeze-backbone needs --init"),
        (["-o", "RUN"], "no timescale to learn"),
        (["--times", "10", "-o", "RUN", "--split", "nowhere.json"], "does not exist"),
    ],
)
def test_other_usage_errors(tmp_path, capsys, labelled_dir, small_config_file, args, fragment):
    args = [str(tmp_path / "run") if a == "RUN" else a for a in args]
    status, err = _train(capsys, labelled_dir, "-c", small_config_file, *args)
    assert status == 2 and fragment in err
    assert not (tmp_path / "run").exists()


def test_existing_run_is_never_overwritten(tmp_path, capsys, labelled_dir, small_config_file, reference_run):
    before = {p.name: p.stat().st_mtime_ns for p in reference_run.iterdir()}
    status, err = _train(capsys, labelled_dir, "--times", 10, "-c", small_config_file, "-o", reference_run)
    assert status == 2 and "not empty" in err and "--resume" in err
    assert {p.name: p.stat().st_mtime_ns for p in reference_run.iterdir()} == before


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--epochs", "9"], ["--epochs"]),
        (["--seed", "3"], ["--seed"]),
        (["--freeze-backbone"], ["--freeze-backbone"]),
        (["--epochs", "9", "--seed", "3"], ["--epochs", "--seed"]),
        (["--print-config"], ["--print-config"]),
        (["--times", "10"], ["--times"]),
        (["INPUT"], ["input files"]),
    ],
)
def test_resume_refuses_options_that_would_change_the_run(capsys, reference_run, labelled_dir, extra, named):
    """A resumed run repeats the original exactly: what it cannot honour is an error, not silently ignored."""
    extra = [str(labelled_dir) if a == "INPUT" else a for a in extra]
    before = {p.name: p.stat().st_mtime_ns for p in reference_run.iterdir()}
    status = main(["train", "--resume", str(reference_run), *extra, "--device", "cpu", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 2 and "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "--resume RUN_DIR" in captured.err and all(name in captured.err for name in named)
    assert "resuming" not in captured.out  # refused before anything was read or redone
    assert {p.name: p.stat().st_mtime_ns for p in reference_run.iterdir()} == before
