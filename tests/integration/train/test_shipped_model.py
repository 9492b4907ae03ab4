"""The shipped model: `glassmd model path` finds it, and it is the model its report describes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassmd.model import load_model_file
from glassmd.model.commands import SHIPPED_MODEL

REPO = Path(__file__).resolve().parents[3]
# The shipped model is trained on both reference sets; its split names configurations by their path below
# data/ (glassmd train's ids when two input folders repeat file names).
DATA = REPO / "data"
SHIPPED = SHIPPED_MODEL.parent


def test_model_path_prints_the_shipped_file():
    glassmd = Path(sys.executable).parent / "glassmd"  # the console script installed with the package
    result = subprocess.run([str(glassmd), "model", "path"], capture_output=True, text=True, check=True)
    assert Path(result.stdout.strip()) == SHIPPED_MODEL and SHIPPED_MODEL.is_file()


def test_shipped_model_reproduces_its_reported_test_pearson():
    """Re-evaluating the shipped file on the test configurations of its recorded split gives the pooled
    Pearson of its report: the file, the split and the figures in the README belong together."""
    from glassmd.data.dump import read_dump
    from glassmd.train.predict import predict_frame

    report = json.loads((SHIPPED / "report.json").read_text())
    split = json.loads((SHIPPED / "split.json").read_text())
    module, meta = load_model_file(SHIPPED_MODEL)
    assert meta["type_names"] == ["A", "B"] and meta["cutoff"] == 2.0
    assert {"propensity_t10", "propensity_t20"} <= set(meta["output_names"])
    if not (DATA / "ka-n1000-T0.6").is_dir():
        pytest.skip("the reference data sets are not in this checkout")
    predictions, labels = [], []
    for entry in split["test"]:
        name, frame_index = entry.split("#")
        frame = read_dump(DATA / name)[int(frame_index)]
        values = predict_frame(module, meta, frame, {1: 0, 2: 1})
        a = frame.types == 1
        predictions.append(values[a])
        labels.append(np.stack([frame.columns[n][a] for n in meta["output_names"]], axis=1))
    predictions, labels = np.concatenate(predictions), np.concatenate(labels)
    for k, t in enumerate(meta["output_times"]):
        r = np.corrcoef(predictions[:, k], labels[:, k])[0, 1]
        assert r == pytest.approx(report["gnn"][f"{t:g}"]["pooled"]["value"], abs=2e-4)
