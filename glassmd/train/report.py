"""End of a training run: export of the best model, test metrics, the ridge baseline, report and plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glassmd.atomic import atomic_write_text
from glassmd.errors import GlassmdError

__all__ = ["finalize_run", "format_report_markdown", "test_metrics"]


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def test_metrics(preds: list[np.ndarray], trues: list[np.ndarray], times: list[float], n_resamples: int,
                 confidence: float, seed: int) -> dict[str, dict]:
    """Pooled Pearson with bootstrap interval, and mean of per-configuration Pearson, per timescale.

    Parameters
    ----------
    preds, trues : one ``[m_c, n_times]`` array per test configuration (loss-type particles only)
    """
    from glassmd.train.metrics import bootstrap_pearson, pearson, per_configuration_pearson

    out: dict[str, dict] = {}
    for k, t in enumerate(times):
        p_all = np.concatenate([p[:, k] for p in preds])
        t_all = np.concatenate([y[:, k] for y in trues])
        entry: dict[str, Any] = {}
        try:
            if n_resamples > 0:
                entry["pooled"] = bootstrap_pearson(p_all, t_all, n_resamples=n_resamples, confidence=confidence,
                                                    seed=seed).to_dict()
            else:
                entry["pooled"] = {"value": pearson(p_all, t_all), "low": None, "high": None, "n": int(p_all.size),
                                   "n_resamples": 0, "confidence": confidence}
        except GlassmdError as exc:  # e.g. constant predictions: report it rather than lose the run
            entry["pooled"] = {"value": None, "low": None, "high": None, "n": int(p_all.size), "error": str(exc)}
        try:
            mean, se = per_configuration_pearson([p[:, k] for p in preds], [y[:, k] for y in trues])
            entry["per_configuration"] = {"mean": _finite_or_none(mean), "std_error": _finite_or_none(se),
                                          "n_configurations": len(preds)}
        except GlassmdError as exc:
            entry["per_configuration"] = {"mean": None, "std_error": None, "n_configurations": len(preds),
                                          "error": str(exc)}
        out[f"{t:g}"] = entry
    return out


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _baseline_cells(baseline: dict | None, t: float) -> tuple[str, str]:
    """(pooled, per-configuration) cells of the baseline column for timescale ``t``."""
    if not baseline or "error" in baseline:
        return "n/a", "n/a"
    entry = _baseline_entry(baseline, t)
    if entry is None:
        return "n/a", "n/a"
    pooled = entry.get("test") or {}
    if isinstance(pooled, dict):
        cell = _fmt(pooled.get("value"))
        if pooled.get("low") is not None and pooled.get("high") is not None:
            cell += f" [{_fmt(pooled['low'])}, {_fmt(pooled['high'])}]"
    else:
        cell = _fmt(pooled)
    per = entry.get("test_per_configuration") or {}
    if isinstance(per, dict):
        per_cell = _fmt(per.get("mean"))
        if per.get("std_error") is not None:
            per_cell += f" ± {_fmt(per['std_error'])}"
    else:
        per_cell = _fmt(per)
    return cell, per_cell


def _baseline_entry(baseline: dict, t: float) -> dict | None:
    """The baseline's figures for timescale ``t`` (``run_baseline(...)["times"]["<t:g>"]``)."""
    entry = (baseline.get("times") or {}).get(f"{t:g}")
    return entry if isinstance(entry, dict) else None


def format_report_markdown(report: dict) -> str:
    """The side-by-side table of ``report.md``."""
    lines = [
        "# Training report",
        "",
        f"Run: `{report['run_dir']}`  ",
        f"Best epoch: {report['best_epoch']} of {report['epochs']} (validation Pearson, mean over timescales: "
        f"{_fmt(report.get('best_validation_pearson'))})  ",
        f"Configurations: {report['split']['train']} train, {report['split']['validation']} validation, "
        f"{report['split']['test']} test; metrics on particle types {', '.join(report['loss_types'])}.",
        "",
        "## Test Pearson correlation: GNN vs expert features",
        "",
        f"Pooled over test particles with a bootstrap {int(round(report['confidence'] * 100))}% interval "
        f"({report['bootstrap_samples']} resamples); per configuration: mean ± standard error.",
        "",
        "| timescale | GNN pooled | GNN per configuration | expert features (ridge) pooled | "
        "expert features (ridge) per configuration |",
        "|---|---|---|---|---|",
    ]
    for t in report["times"]:
        g = report["gnn"].get(f"{t:g}") or {}
        pooled = g.get("pooled") or {}
        cell = _fmt(pooled.get("value"))
        if pooled.get("low") is not None:
            cell += f" [{_fmt(pooled['low'])}, {_fmt(pooled['high'])}]"
        per = g.get("per_configuration") or {}
        per_cell = _fmt(per.get("mean")) + (f" ± {_fmt(per['std_error'])}" if per.get("std_error") is not None else "")
        b_pooled, b_per = _baseline_cells(report.get("baseline"), t)
        lines.append(f"| {t:g} | {cell} | {per_cell} | {b_pooled} | {b_per} |")
    baseline = report.get("baseline")
    if baseline is None:
        # Reports written before "baseline_not_run" existed skipped the baseline only when it was off.
        reason = report.get("baseline_not_run") or "evaluation.baseline: false"
        lines += ["", f"Ridge baseline not run ({reason})."]
    elif "error" in baseline:
        lines += ["", f"Ridge baseline failed: {baseline['error']}"]
    if not report["gnn"]:
        lines += ["", "No test configurations: the split has an empty test set."]
    files = report.get("files", _RUN_FILES)
    names = [f"{name} (exported best model)" if name == "model.pt" else name for name in files]
    lines += ["", f"Files: {', '.join(names)}.", ""]
    return "\n".join(lines)


# Files of a finished run that report.md lists, in this order, when they exist (report.json and report.md
# themselves aside).
_RUN_FILES = ("model.pt", "best.ckpt", "last.ckpt", "metrics.csv", "split.json", "learning_curves.png",
              "predicted_vs_true.png")


def _run_baseline(run, times) -> dict | None:
    if not run.config.evaluation["baseline"]:
        return None
    try:
        from glassmd.train.baseline import run_baseline
    except ImportError as exc:
        return {"error": f"glassmd.train.baseline is not available ({exc})"}
    labelled, split = run.labelled, run.split
    try:
        return run_baseline(
            labelled.subset(split["train"]),
            labelled.subset(split["validation"]),
            labelled.subset(split["test"]),
            times,
            **_baseline_kwargs(run),
        )
    except GlassmdError as exc:
        return {"error": str(exc)}


def _baseline_kwargs(run) -> dict:
    """The run's settings for run_baseline: same type mapping, regressed species, bootstrap and seed."""
    ev = run.config.evaluation
    return {
        "type_names_by_lammps_type": dict(run.config.types),
        "target_species": run.config.loss_types[0],
        "n_resamples": max(1, int(ev["bootstrap_samples"])),
        "confidence": float(ev["confidence"]),
        "seed": int(run.seed),
    }


def finalize_run(run) -> dict:
    """Export the best model, evaluate it on the test set next to the ridge baseline, write report and plots.

    Parameters
    ----------
    run : glassmd.train.trainer._Run
        A run whose training epochs are complete and whose ``best.ckpt`` exists.
    """
    from glassmd.model import export_model
    from glassmd.train.dataset import build_configurations
    from glassmd.train.plots import plot_learning_curves, plot_predicted_vs_true

    run_dir: Path = run.run_dir
    best = torch.load(run_dir / "best.ckpt", map_location="cpu", weights_only=False)
    run.net.load_state_dict(best["model_state"])
    run.net.eval()
    times = list(run.times)

    training_info = {
        "best_epoch": run.best_epoch,
        "epochs": run.epoch,
        "best_validation_pearson": _finite_or_none(run.best_metric),
        "lammps_types": {str(k): v for k, v in run.config.types.items()},
        "loss_types": list(run.config.loss_types),
        "split_sizes": {k: len(v) for k, v in run.split.items()},
    }
    net_cpu = run.net.to("cpu")
    export_model(net_cpu, run_dir / "model.pt", metadata={"training": training_info})
    run.net.to(run.device)

    test_set = build_configurations(run.labelled, run.test_ids, times, run.type_map, run.loss_type_ids,
                                    run.model_config.cutoff, run.dtype)
    preds, trues = [], []
    for config, pred in zip(test_set, run.predict(test_set)):
        pred = run.net.denormalize(pred).detach().cpu().to(torch.float64).numpy()
        mask = config.loss_mask.numpy()
        preds.append(pred[mask])
        trues.append(config.labels.to(torch.float64).numpy()[mask])
    ev = run.config.evaluation
    gnn = test_metrics(preds, trues, times, ev["bootstrap_samples"], ev["confidence"], run.seed) if test_set else {}

    from glassmd.train.trainer import _log

    if ev["baseline"] and test_set:
        _log(run.dist, "fitting the ridge baseline on expert features (same split)...")
    baseline = _run_baseline(run, times) if test_set else None
    if baseline is None:
        # The report says why there is no baseline column: switched off, or nothing to evaluate it on.
        not_run = "evaluation.baseline: false" if not ev["baseline"] else "the test set is empty"
    else:
        not_run = None

    # Plots first, so that the report lists the files that were actually written.
    plot_learning_curves(run.history, times, run_dir / "learning_curves.png", run.config.scheduler["milestones"])
    if test_set:
        plot_predicted_vs_true(
            [np.concatenate([p[:, k] for p in preds]) for k in range(len(times))],
            [np.concatenate([y[:, k] for y in trues]) for k in range(len(times))],
            times, run_dir / "predicted_vs_true.png",
            [(gnn[f"{t:g}"]["pooled"].get("value") or float("nan")) for t in times],
        )

    report = {
        "run_dir": str(run_dir),
        "times": times,
        **training_info,
        "split": training_info["split_sizes"],
        "confidence": float(ev["confidence"]),
        "bootstrap_samples": int(ev["bootstrap_samples"]),
        "gnn": gnn,
        "baseline": baseline,
        "baseline_not_run": not_run,
        "files": [name for name in _RUN_FILES if (run_dir / name).is_file()],
    }
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=1, default=_json_default) + "\n")
    markdown = format_report_markdown(report)
    atomic_write_text(run_dir / "report.md", markdown)
    _log(run.dist, markdown)
    return report


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    return str(obj)
