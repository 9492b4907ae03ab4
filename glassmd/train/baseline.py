"""Expert-feature baseline: ridge regression on the Boattini 2021 descriptors, one model per timescale.

The procedure follows Boattini, Smallenburg and Filion (PRL 127, 088007, 2021), the "Ridge (Boattini 2021)"
row of the comparison table of Pezzicoli et al.:

1. descriptors of every particle (:func:`glassmd.train.descriptors.boattini_descriptors`), computed once
   per configuration;
2. regression on particles of one species (A) only, features standardised with training statistics;
3. for every penalty ``alpha`` on a log grid, the closed-form ridge solution minimising
   ``mean((y - X w)^2) + alpha |w|^2``; the ``alpha`` kept is the one with the best validation Pearson;
4. test Pearson over all test particles with a bootstrap interval, and the per-configuration mean.

Training statistics are accumulated frame by frame (Gram matrix and moments), so the training set is never
held as one matrix; one eigendecomposition of the Gram matrix serves every ``alpha`` and every timescale.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from glassmd.atomic import atomic_write_text
from glassmd.errors import GlassmdError, InputError
from glassmd.train.descriptors import DescriptorConfig, boattini_descriptors
from glassmd.train.metrics import bootstrap_pearson, pearson, per_configuration_pearson

__all__ = ["DEFAULT_ALPHAS", "add_baseline_arguments", "baseline_command", "format_table", "run_baseline"]

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-6, 3, 19))


class _DescriptorCache:
    """Descriptors of the target particles of each frame, computed once per frame object and settings."""

    def __init__(self, config: DescriptorConfig, type_map: dict[int, int], target: int, store: dict | None):
        self.config = config
        self.type_map = type_map
        self.target = target
        self._store = {} if store is None else store
        self._settings = (config, tuple(sorted(type_map.items())), target)

    def __call__(self, frame) -> tuple[np.ndarray, np.ndarray]:
        """(features of target particles, boolean mask of target particles) of ``frame``."""
        key = (id(frame), self._settings)
        entry = self._store.get(key)
        if entry is None or entry[0] is not frame:
            from glassmd.train.dataset import map_types

            species = map_types(frame.types, self.type_map, where=f"frame at timestep {frame.timestep}")
            features = boattini_descriptors(frame.positions, species, frame.box_lengths, config=self.config)
            mask = species == self.target
            entry = (frame, features[mask], mask)
            self._store[key] = entry  # keeps the frame alive, so its id cannot be reused
        return entry[1], entry[2]


def _labels(frame, mask: np.ndarray, times: Sequence[float]) -> np.ndarray:
    labels = np.stack([np.asarray(frame.propensity(t), dtype=np.float64)[mask] for t in times], axis=1)
    if not np.isfinite(labels).all():
        raise InputError(f"frame at timestep {frame.timestep}: propensity labels contain NaN or inf")
    return labels


def _safe_pearson(pred: np.ndarray, true: np.ndarray) -> float:
    try:
        return pearson(pred, true)
    except InputError:  # constant predictions: this penalty carries no signal
        return float("nan")


def _fit_ridge(train_frames, features_of, times, alphas):
    """Ridge weights for every (alpha, time) from streamed training moments.

    Returns the feature mean and scale, the label mean (per time) and weights of shape
    (n_alphas, n_features, n_times) acting on standardised features.
    """
    shift = None
    n = 0
    for frame in train_frames:
        x, mask = features_of(frame)
        y = _labels(frame, mask, times)
        if shift is None:
            # Moments about a nearby point avoid cancellation in (X^T X - n mu mu^T).
            shift = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
            sum_x = np.zeros(x.shape[1])
            gram = np.zeros((x.shape[1], x.shape[1]))
            cross = np.zeros((x.shape[1], len(times)))
            sum_y = np.zeros(len(times))
        xc = x - shift
        n += len(x)
        sum_x += xc.sum(axis=0)
        gram += xc.T @ xc
        cross += xc.T @ y
        sum_y += y.sum(axis=0)
    if n < 2:
        raise InputError(f"the training configurations hold {n} particle(s) of the target species; need at least 2")
    mean_c = sum_x / n
    y_mean = sum_y / n
    covariance = gram / n - np.outer(mean_c, mean_c)
    scale = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    scale[scale <= 1e-12 * max(scale.max(), 1.0)] = 1.0  # constant features: centred to 0, left unscaled
    standardised_cov = covariance / np.outer(scale, scale)
    standardised_cross = (cross / n - np.outer(mean_c, y_mean)) / scale[:, None]
    eigenvalues, eigenvectors = np.linalg.eigh(standardised_cov)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    projected = eigenvectors.T @ standardised_cross  # (features, times)
    weights = np.stack(
        [eigenvectors @ (projected / (eigenvalues + alpha)[:, None]) for alpha in alphas]
    )  # (alphas, features, times)
    return shift + mean_c, scale, y_mean, weights, n


def _predict(frames, features_of, times, mean, scale, y_mean, weights):
    """Per frame: predictions (n_target, n_alphas, n_times) and labels (n_target, n_times)."""
    out = []
    for frame in frames:
        x, mask = features_of(frame)
        z = (x - mean) / scale
        pred = np.einsum("nf,aft->nat", z, weights) + y_mean
        out.append((pred, _labels(frame, mask, times)))
    return out


def run_baseline(
    train_frames: Sequence,
    val_frames: Sequence,
    test_frames: Sequence,
    times: Sequence[float],
    type_names_by_lammps_type: dict[int, str] | None = None,
    *,
    target_species: str = "A",
    config: DescriptorConfig | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    n_resamples: int = 5000,
    confidence: float = 0.95,
    seed: int = 0,
    descriptor_cache: dict | None = None,
) -> dict:
    """Fit and evaluate the ridge baseline for every timescale.

    Parameters
    ----------
    train_frames, val_frames, test_frames : sequences of :class:`glassmd.data.dump.Frame`
        Labelled configurations (``propensity_t<time>`` columns); each frame's descriptors are computed
        once even if the frame is used for several times.
    times : timescales to fit, one independent ridge model each
    type_names_by_lammps_type : dict, default ``{1: "A", 2: "B"}``
        Species name of each LAMMPS type; species are numbered in order of first appearance.
    target_species : str
        Species whose particles are regressed on and evaluated (Boattini 2021: A).
    config : DescriptorConfig, optional
        Descriptor settings; ``n_species`` is set from the type names.
    alphas : penalties tried, per particle (see the module docstring)
    n_resamples, confidence, seed : test bootstrap settings (:func:`glassmd.train.metrics.bootstrap_pearson`)
    descriptor_cache : dict, optional
        Pass the same (initially empty) dict to several calls to reuse descriptors of the same frame
        objects across calls; it holds a reference to every frame it describes. Without it, descriptors
        are cached for this call only.

    Returns
    -------
    dict
        ``{"descriptors": {...}, "n_features", "target_species", "alphas", "configurations": {split: count},
        "particles": {split: count}, "times": {"<t:g>": {"time", "alpha", "validation_pearson",
        "validation_curve", "test": PearsonEstimate dict, "test_per_configuration": {"mean", "std_error"}}}}``.
    """
    if type_names_by_lammps_type is None:
        type_names_by_lammps_type = {1: "A", 2: "B"}
    times = [float(t) for t in times]
    if not times:
        raise InputError("no timescales to fit")
    for name, frames in (("training", train_frames), ("validation", val_frames), ("test", test_frames)):
        if not frames:
            raise InputError(f"the {name} set is empty")
    alphas = [float(a) for a in alphas]
    if not alphas or any(not (a > 0 and math.isfinite(a)) for a in alphas):
        raise InputError(f"penalties must be positive finite numbers, got {alphas}")
    species_names = list(dict.fromkeys(type_names_by_lammps_type[k] for k in sorted(type_names_by_lammps_type)))
    if target_species not in species_names:
        raise InputError(f"target species {target_species!r} is not among the type names {species_names}")
    type_map = {int(k): species_names.index(v) for k, v in type_names_by_lammps_type.items()}
    config = dataclasses.replace(config or DescriptorConfig(), n_species=len(species_names))
    features_of = _DescriptorCache(config, type_map, species_names.index(target_species), descriptor_cache)

    mean, scale, y_mean, weights, n_train = _fit_ridge(train_frames, features_of, times, alphas)
    validation = _predict(val_frames, features_of, times, mean, scale, y_mean, weights)
    test = _predict(test_frames, features_of, times, mean, scale, y_mean, weights)
    val_pred = np.concatenate([p for p, _ in validation])
    val_true = np.concatenate([t for _, t in validation])
    test_pred = np.concatenate([p for p, _ in test])
    test_true = np.concatenate([t for _, t in test])

    results = {}
    for k, t in enumerate(times):
        curve = [_safe_pearson(val_pred[:, a, k], val_true[:, k]) for a in range(len(alphas))]
        if all(math.isnan(c) for c in curve):
            raise InputError(f"timescale {t:g}: no penalty gives a defined validation Pearson (constant labels?)")
        best = int(np.nanargmax(curve))
        estimate = bootstrap_pearson(
            test_pred[:, best, k], test_true[:, k], n_resamples=n_resamples, confidence=confidence, seed=seed
        )
        per_config_mean, per_config_error = per_configuration_pearson(
            [p[:, best, k] for p, _ in test], [y[:, k] for _, y in test]
        )
        results[f"{t:g}"] = {
            "time": t,
            "alpha": alphas[best],
            "validation_pearson": curve[best],
            "validation_curve": curve,
            "test": estimate.to_dict(),
            "test_per_configuration": {"mean": per_config_mean, "std_error": per_config_error},
        }
    return {
        "method": "ridge regression on Boattini et al. 2021 descriptors (PRL 127, 088007)",
        "descriptors": config.to_dict(),
        "n_features": config.n_features,
        "target_species": target_species,
        "type_names_by_lammps_type": {str(k): v for k, v in sorted(type_names_by_lammps_type.items())},
        "alphas": alphas,
        "configurations": {"train": len(train_frames), "validation": len(val_frames), "test": len(test_frames)},
        "particles": {"train": int(n_train), "validation": int(len(val_true)), "test": int(len(test_true))},
        "times": results,
    }


# --------------------------------------------------------------------------------------------------
# Command line


def add_baseline_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``glassmd baseline DATA... [--times T...] [--split SPLIT.json] [-o REPORT.json]``."""
    parser.add_argument("inputs", nargs="+", metavar="DATA",
                        help="labelled dump files (propensity_t<time> columns) or directories of *.dump / *.dump.gz")
    parser.add_argument("--times", type=float, nargs="+", metavar="T",
                        help="timescales to fit (default: every propensity time of the first configuration)")
    parser.add_argument("--split", metavar="SPLIT_JSON",
                        help='{"train": [ids], "validation": [...], "test": [...]} with ids "<file name>#<frame>" '
                             "(e.g. the split.json of a training run, for a like-for-like comparison)")
    split = _default_split()
    parser.add_argument("--seed", type=int, default=split["seed"],
                        help=f"seed of the split drawn without --split (glassmd train's default split: "
                             f"{_split_text(split)} train/validation/test) and of the bootstrap "
                             f"(default %(default)s, as glassmd train's split.seed and training.seed)")
    parser.add_argument("-o", "--output", metavar="REPORT_JSON", help="write the full report here (JSON)")
    parser.add_argument("--type-names", nargs="+", default=["A", "B"], metavar="NAME",
                        help="species names of LAMMPS types 1, 2, ... (default: A B)")
    parser.add_argument("--species", default="A", help="species regressed on and evaluated (default: A)")
    parser.add_argument("--bootstrap", type=int, default=5000, metavar="N",
                        help="bootstrap resamples of the test set (default 5000)")
    parser.add_argument("--coarse-grain-radius", type=float, default=DescriptorConfig().coarse_grain_radius,
                        metavar="R", help="r_c of the descriptor averaging (default %(default)g)")


def _default_split() -> dict:
    """The split fractions and seed of ``glassmd train``'s default configuration: without --split, the
    baseline draws the very split a default training run on the same inputs draws."""
    from glassmd.train.config import default_config_dict

    return default_config_dict()["split"]


def _split_text(split: dict) -> str:
    return "/".join(f"{split[name]:g}" for name in ("train", "validation", "test"))


def _write_json_atomic(path: Path, data: dict) -> None:
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    atomic_write_text(path, json.dumps(clean(data), indent=1, allow_nan=False) + "\n")


def format_table(report: dict) -> str:
    """The small text table ``glassmd baseline`` prints."""
    confidence = next(iter(report["times"].values()))["test"]["confidence"] if report["times"] else 0.95
    lines = [
        f"ridge baseline: {report['n_features']} Boattini descriptors, {report['target_species']} particles; "
        f"configurations train {report['configurations']['train']} / validation "
        f"{report['configurations']['validation']} / test {report['configurations']['test']}",
        f"{'time':>10}  {'alpha':>8}  {'val r':>6}  {'test r':>6}  {f'{confidence:.0%} interval':>18}  "
        f"{'per-config r':>15}",
    ]
    for key, row in report["times"].items():
        test = row["test"]
        per = row["test_per_configuration"]
        error = "" if per["std_error"] is None or math.isnan(per["std_error"]) else f" ± {per['std_error']:.3f}"
        interval = f"[{test['low']:.3f}, {test['high']:.3f}]"
        lines.append(
            f"{key:>10}  {row['alpha']:>8.1e}  {row['validation_pearson']:>6.3f}  {test['value']:>6.3f}  "
            f"{interval:>18}  {per['mean']:>6.3f}{error}"
        )
    return "\n".join(lines)


def baseline_command(args: argparse.Namespace) -> int:
    """``glassmd baseline``: fit, evaluate, print a table, optionally write the JSON report."""
    from glassmd.train.dataset import find_dump_files, load_labelled_set, make_split, read_split

    files = find_dump_files(args.inputs)
    labelled = load_labelled_set(files, args.times)
    times = args.times or labelled.frames[0].propensity_times()
    if not times:
        raise InputError(f"{labelled.ids[0]} has no propensity_t<time> columns; nothing to fit")
    if not args.times:
        labelled = load_labelled_set(files, times)  # checks every frame has the labels
    if args.bootstrap < 1:
        raise InputError(f"--bootstrap must be at least 1, got {args.bootstrap}")
    if args.split:
        split = read_split(args.split, labelled.ids)
    else:
        split = make_split(labelled.ids, _default_split(), args.seed)
    for name, ids in split.items():
        if not ids:
            raise InputError(
                f"the split leaves no configuration for {name!r} ({len(labelled)} configuration(s) in all, split "
                f"{len(split['train'])}/{len(split['validation'])}/{len(split['test'])} train/validation/test); "
                f"give more configurations or a --split file"
            )
    names = {k + 1: name for k, name in enumerate(args.type_names)}
    config = DescriptorConfig(coarse_grain_radius=args.coarse_grain_radius)
    report = run_baseline(
        labelled.subset(split["train"]),
        labelled.subset(split["validation"]),
        labelled.subset(split["test"]),
        times,
        names,
        target_species=args.species,
        config=config,
        n_resamples=args.bootstrap,
        seed=args.seed,
    )
    report["inputs"] = [str(f) for f in files]
    report["split"] = split
    print(format_table(report))
    if args.output:
        try:
            _write_json_atomic(Path(args.output), report)
        except OSError as exc:
            raise GlassmdError(f"cannot write the report {args.output!r}: {exc.strerror or exc}") from None
        print(f"report written to {args.output}", file=sys.stderr)
    return 0
