"""A short real training run: the loss goes down and every artefact of a run is written and consistent."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import torch

from glassmd.model import load_model_file


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_loss_goes_down_and_metrics_are_logged_per_epoch_and_timescale(reference_run):
    rows = _rows(reference_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    for key in ("train_loss", "val_loss", "train_pearson_t10", "val_pearson_t20", "val_pearson_mean", "lr"):
        assert key in rows[0]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0]
    # MultiStepLR at epoch 3 with gamma 0.5
    assert [float(r["lr"]) for r in rows] == [1e-2, 1e-2, 1e-2, 5e-3]


def test_run_directory_holds_every_artefact(reference_run):
    for name in ("run.json", "config.yaml", "split.json", "metrics.csv", "last.ckpt", "best.ckpt", "model.pt",
                 "report.json", "report.md", "learning_curves.png", "predicted_vs_true.png"):
        assert (reference_run / name).is_file(), name
    for png in ("learning_curves.png", "predicted_vs_true.png"):
        assert (reference_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(reference_run.glob(".*tmp"))  # atomic writes leave no temporary files

    split = json.loads((reference_run / "split.json").read_text())
    ids = split["train"] + split["validation"] + split["test"]
    assert (len(split["train"]), len(split["validation"]), len(split["test"])) == (4, 2, 2)
    assert sorted(ids) == sorted([f"part1.dump#{k}" for k in range(5)] + [f"part2.dump.gz#{k}" for k in range(3)])


def test_exported_model_is_the_best_epoch_with_label_normalisation(reference_run):
    module, meta = load_model_file(reference_run / "model.pt")
    assert meta["output_names"] == ["propensity_t10", "propensity_t20"]
    assert meta["output_times"] == [10.0, 20.0]
    assert meta["type_names"] == ["A", "B"]
    best = torch.load(reference_run / "best.ckpt", weights_only=False)
    report = json.loads((reference_run / "report.json").read_text())
    assert report["best_epoch"] == best["epoch"] == meta["training"]["best_epoch"]
    rows = _rows(reference_run)
    val = [float(r["val_pearson_mean"]) for r in rows]
    assert best["epoch"] == 1 + int(np.nanargmax(val))
    # label normalisation: mean/std over training A particles
    assert np.allclose(meta["label_mean"], best["model_state"]["label_mean"].tolist())
    state = {k[len("model."):]: v for k, v in module.state_dict().items() if k.startswith("model.")}
    for key, value in best["model_state"].items():
        assert torch.equal(state[key], value), key


def test_report_gives_gnn_and_baseline_side_by_side(reference_run):
    report = json.loads((reference_run / "report.json").read_text())
    assert report["times"] == [10.0, 20.0]
    for t in ("10", "20"):
        pooled = report["gnn"][t]["pooled"]
        assert pooled["low"] <= pooled["value"] <= pooled["high"]
        assert pooled["n"] == 2 * 96  # two test configurations of 96 A particles
        assert math.isfinite(report["gnn"][t]["per_configuration"]["mean"])
    assert report["baseline"] is not None and "error" not in report["baseline"], report["baseline"]
    markdown = (reference_run / "report.md").read_text()
    assert "GNN vs expert features" in markdown
    assert "| 10 |" in markdown and "| 20 |" in markdown
    table_row = next(line for line in markdown.splitlines() if line.startswith("| 10 |"))
    assert table_row.count("n/a") == 0, table_row


def test_test_pearson_recomputed_from_the_exported_model(reference_run):
    """The pooled test Pearson of the report is that of model.pt on the test configurations."""
    from glassmd.data.dump import read_dump
    from glassmd.train.metrics import pearson
    from glassmd.train.predict import predict_frame

    module, meta = load_model_file(reference_run / "model.pt")
    split = json.loads((reference_run / "split.json").read_text())
    run = json.loads((reference_run / "run.json").read_text())
    frames = {}
    for path in run["inputs"]:
        for k, frame in enumerate(read_dump(path)):
            frames[f"{path.rsplit('/', 1)[-1]}#{k}"] = frame
    preds, trues = [], []
    for cid in split["test"]:
        frame = frames[cid]
        out = predict_frame(module, meta, frame, {1: 0, 2: 1})
        a = frame.types == 1
        preds.append(out[a, 0])
        trues.append(frame.propensity(10.0)[a])
    report = json.loads((reference_run / "report.json").read_text())
    assert abs(pearson(np.concatenate(preds), np.concatenate(trues)) - report["gnn"]["10"]["pooled"]["value"]) < 1e-5
