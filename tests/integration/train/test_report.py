"""report.md says why a column is missing and lists exactly the files the run wrote."""

from __future__ import annotations

import json
import re

import pytest

from glassmd.cli import main
from glassmd.data.dump import write_dump
from glassmd.train.dataset import synthetic_frames

from .conftest import SMALL_CONFIG, TIMES, write_config


def _listed_files(markdown: str) -> list[str]:
    (line,) = [line for line in markdown.splitlines() if line.startswith("Files: ")]
    return [re.sub(r" \(.*\)$", "", name) for name in line[len("Files: "):].rstrip(".").split(", ")]


def _train(tmp_path, capsys, evaluation: dict):
    data = tmp_path / "data.dump"
    write_dump(data, synthetic_frames(4, 120, times=TIMES, seed=11))
    config = {**SMALL_CONFIG, "training": {**SMALL_CONFIG["training"], "epochs": 1},
              "split": {"train": 0.5, "validation": 0.5, "test": 0.0, "seed": 1},
              "evaluation": {**SMALL_CONFIG["evaluation"], **evaluation}}
    run_dir = tmp_path / "run"
    status = main(["train", str(data), "--times", *map(str, TIMES), "-c", str(write_config(tmp_path / "c.yaml", config)),
                   "-o", str(run_dir), "--device", "cpu", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    return run_dir


@pytest.mark.parametrize("baseline", [True, False])
def test_empty_test_set_report_gives_the_true_reason_and_only_written_files(tmp_path, capsys, training_threads,
                                                                            baseline):
    run_dir = _train(tmp_path, capsys, {"baseline": baseline})
    report = json.loads((run_dir / "report.json").read_text())
    assert report["split"] == {"train": 2, "validation": 2, "test": 0}
    markdown = (run_dir / "report.md").read_text()
    if baseline:
        assert "Ridge baseline not run (the test set is empty)." in markdown
        assert "evaluation.baseline: false" not in markdown
    else:
        assert "Ridge baseline not run (evaluation.baseline: false)." in markdown
    assert report["baseline"] is None
    assert not (run_dir / "predicted_vs_true.png").exists()
    listed = _listed_files(markdown)
    assert "predicted_vs_true.png" not in listed and "model.pt" in listed and "learning_curves.png" in listed
    assert all((run_dir / name).is_file() for name in listed), listed
    assert listed == report["files"]


def test_complete_report_lists_its_plots(reference_run):
    markdown = (reference_run / "report.md").read_text()
    listed = _listed_files(markdown)
    assert {"model.pt", "best.ckpt", "last.ckpt", "metrics.csv", "split.json", "learning_curves.png",
            "predicted_vs_true.png"} == set(listed)
    assert all((reference_run / name).is_file() for name in listed)
    assert "Ridge baseline not run" not in markdown
