"""Training configuration: one YAML file naming every knob, defaults from the paper.

The file has these sections (every key optional; anything absent keeps its default)::

    times:      [10, 20]        # timescales to learn; --times on the command line overrides
    types:      {1: A, 2: B}    # LAMMPS atom type -> model type name
    loss_types: [A]             # particle types the loss and the metrics are computed on
    model:      ...             # glassmd.model.ModelConfig fields (see below)
    optimizer:  {lr, betas, weight_decay}
    scheduler:  {milestones, gamma}
    training:   {epochs, batch_size, forward_size, seed, dtype, deterministic, bn_recalibration}
    split:      {train, validation, test, seed}
    evaluation: {bootstrap_samples, confidence, baseline}

Every key is checked before anything is trained: a key that does not exist is an error naming it and the
closest valid name, a value of the wrong type or out of range is an error naming the key and the value.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any

import yaml

from glassmd.errors import GlassmdError
from glassmd.model.config import ModelConfig

__all__ = [
    "ConfigError",
    "DEFAULT_CONFIG_PATH",
    "TrainConfig",
    "default_config_dict",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.yaml")

# Model fields the user does not set in the model section: they follow from `types` and `--times`.
_DERIVED_MODEL_FIELDS = {"type_names": "types", "output_names": "times", "output_times": "times"}


class ConfigError(GlassmdError):
    """A configuration key or value that cannot be used."""


def _model_defaults() -> dict[str, Any]:
    defaults = ModelConfig().to_dict()
    return {k: v for k, v in defaults.items() if k not in _DERIVED_MODEL_FIELDS}


def default_config_dict() -> dict[str, Any]:
    """The defaults as a nested dict (what ``default.yaml`` holds).

    Paper values (Pezzicoli, Charpiat, Landes, section IV and Appendix A): 8 layers, 4 channels,
    l_max 3, Adam with lr 1e-3, betas (0.95, 0.999), weight decay 1e-7, learning rate halved at several
    epochs, one configuration per step, split 400/320/80 of 800 configurations, 5000 bootstrap resamples.
    The paper does not list the epochs at which the learning rate is halved; the milestones here are ours.
    """
    return {
        "times": None,
        "types": {1: "A", 2: "B"},
        "loss_types": ["A"],
        "model": _model_defaults(),
        "optimizer": {"lr": 1.0e-3, "betas": [0.95, 0.999], "weight_decay": 1.0e-7},
        "scheduler": {"milestones": [40, 70, 100, 130], "gamma": 0.5},
        "training": {"epochs": 150, "batch_size": 1, "forward_size": None, "seed": 0, "dtype": "float32",
                     "deterministic": True, "bn_recalibration": 32},
        "split": {"train": 0.5, "validation": 0.4, "test": 0.1, "seed": 0},
        "evaluation": {"bootstrap_samples": 5000, "confidence": 0.95, "baseline": True},
    }


def _closest(name: str, valid) -> str:
    name = str(name)
    valid = [str(v) for v in valid]
    match = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    if not match:
        # Abbreviations difflib misses: "learning_rate" -> "lr", "lmax" -> "l_max".
        initials = "".join(word[0] for word in name.replace("-", "_").split("_") if word)
        squashed = name.replace("_", "").lower()
        match = [v for v in valid if v == initials or v.replace("_", "").lower() == squashed]
    return f" (did you mean {match[0]!r}?)" if match else ""


def _check_keys(section: dict, defaults: dict, where: str) -> None:
    for key in section:
        if key not in defaults:
            if where == "model" and key in _DERIVED_MODEL_FIELDS:
                raise ConfigError(
                    f"config key 'model.{key}' cannot be set in the model section: it follows from "
                    f"'{_DERIVED_MODEL_FIELDS[key]}'"
                )
            path = f"{where}.{key}" if where else str(key)
            valid = ", ".join(str(k) for k in defaults)
            raise ConfigError(f"unknown config key {path!r}{_closest(key, defaults)}; valid keys here: {valid}")


def _merge(user: dict, defaults: dict, where: str = "") -> dict:
    """Defaults overlaid with the user's values, after checking every key exists."""
    if not isinstance(user, dict):
        raise ConfigError(f"config section {where or '<top level>'!r} must be a mapping, got {user!r}")
    _check_keys(user, defaults, where)
    merged = copy.deepcopy(defaults)
    for key, value in user.items():
        default = defaults[key]
        if isinstance(default, dict) and key != "types":
            merged[key] = _merge(value if value is not None else {}, default, f"{where}.{key}" if where else key)
        else:
            merged[key] = value
    return merged


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def _require(ok: bool, key: str, value, what: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} must be {what}, got {value!r}")


@dataclasses.dataclass
class TrainConfig:
    """A validated training configuration (see the module docstring for the sections).

    Build it with :func:`load_config` or :meth:`from_dict`; ``to_dict()`` gives back a dict that
    round-trips through YAML and :meth:`from_dict`.
    """

    times: list[float] | None
    types: dict[int, str]
    loss_types: list[str]
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    training: dict[str, Any]
    split: dict[str, Any]
    evaluation: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TrainConfig":
        """Validate ``data`` (a possibly partial nested dict) against the defaults."""
        merged = _merge(data or {}, default_config_dict())
        config = cls(**merged)
        config._validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dataclasses.asdict(self))

    # ----------------------------------------------------------------------------------------------
    @property
    def type_names(self) -> tuple[str, ...]:
        """Model type names in model-type order: first appearance by increasing LAMMPS type."""
        names: list[str] = []
        for lammps_type in sorted(self.types):
            if self.types[lammps_type] not in names:
                names.append(self.types[lammps_type])
        return tuple(names)

    def model_config(self, times: list[float]) -> ModelConfig:
        """The :class:`ModelConfig` for outputs at ``times``."""
        from glassmd.data.dump import propensity_column

        return ModelConfig(
            **self.model,
            type_names=self.type_names,
            output_names=tuple(propensity_column(t) for t in times),
            output_times=tuple(float(t) for t in times),
        )

    def with_times(self, times: list[float] | None) -> "TrainConfig":
        """A copy whose ``times`` is ``times`` when given (the command line overrides the file)."""
        data = self.to_dict()
        if times is not None:
            data["times"] = list(times)
        return TrainConfig.from_dict(data)

    # ----------------------------------------------------------------------------------------------
    def _validate(self) -> None:
        if self.times is not None:
            _require(
                isinstance(self.times, (list, tuple)) and len(self.times) > 0 and all(_is_number(t) for t in self.times),
                "times", self.times, "a non-empty list of numbers",
            )
            _require(all(t > 0 for t in self.times), "times", self.times, "positive")
            _require(len(set(self.times)) == len(self.times), "times", self.times, "distinct")
            self.times = [float(t) for t in self.times]

        _require(isinstance(self.types, dict) and len(self.types) > 0, "types", self.types,
                 "a non-empty mapping from LAMMPS type (int) to type name")
        types: dict[int, str] = {}
        for k, v in self.types.items():
            try:
                lammps_type = int(k)
            except (TypeError, ValueError):
                raise ConfigError(f"config key 'types' maps LAMMPS atom types (integers), got key {k!r}") from None
            _require(lammps_type >= 1, "types", self.types, "keyed by LAMMPS types >= 1")
            _require(isinstance(v, str) and v != "", f"types.{k}", v, "a type name (string)")
            types[lammps_type] = v
        self.types = types

        _require(isinstance(self.loss_types, (list, tuple)) and len(self.loss_types) > 0, "loss_types",
                 self.loss_types, "a non-empty list of type names")
        for name in self.loss_types:
            if name not in self.type_names:
                raise ConfigError(
                    f"config key 'loss_types' names type {name!r}, which 'types' does not define "
                    f"(types: {list(self.type_names)})"
                )
        self.loss_types = list(self.loss_types)

        # ModelConfig checks its own ranges; build one to surface them now, naming the section.
        defaults = _model_defaults()
        for key, value in self.model.items():
            default = defaults[key]
            if isinstance(default, bool):
                _require(isinstance(value, bool), f"model.{key}", value, "true or false")
            elif _is_int(default):
                _require(_is_int(value), f"model.{key}", value, "an integer")
            elif isinstance(default, float):
                _require(_is_number(value), f"model.{key}", value, "a number")
                self.model[key] = float(value)
        try:
            ModelConfig(**self.model, type_names=self.type_names)
        except GlassmdError as exc:
            raise ConfigError(f"config section 'model': {exc}") from None

        opt = self.optimizer
        _require(_is_number(opt["lr"]) and opt["lr"] > 0, "optimizer.lr", opt["lr"], "a positive number")
        betas = opt["betas"]
        _require(isinstance(betas, (list, tuple)) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas),
                 "optimizer.betas", betas, "two numbers in [0, 1)")
        _require(_is_number(opt["weight_decay"]) and opt["weight_decay"] >= 0, "optimizer.weight_decay",
                 opt["weight_decay"], "a number >= 0")
        opt["lr"], opt["weight_decay"], opt["betas"] = float(opt["lr"]), float(opt["weight_decay"]), [float(b) for b in betas]

        sch = self.scheduler
        ms = sch["milestones"]
        _require(isinstance(ms, (list, tuple)) and all(_is_int(m) and m > 0 for m in ms), "scheduler.milestones", ms,
                 "a list of positive integers (epochs)")
        _require(list(ms) == sorted(set(ms)), "scheduler.milestones", ms, "increasing")
        _require(_is_number(sch["gamma"]) and 0 < sch["gamma"] <= 1, "scheduler.gamma", sch["gamma"], "in (0, 1]")
        sch["milestones"], sch["gamma"] = list(ms), float(sch["gamma"])

        tr = self.training
        _require(_is_int(tr["epochs"]) and tr["epochs"] >= 1, "training.epochs", tr["epochs"], "an integer >= 1")
        _require(_is_int(tr["batch_size"]) and tr["batch_size"] >= 1, "training.batch_size", tr["batch_size"],
                 "an integer >= 1")
        fs = tr["forward_size"]
        _require(fs is None or (_is_int(fs) and fs >= 1), "training.forward_size", fs, "null or an integer >= 1")
        _require(_is_int(tr["seed"]) and tr["seed"] >= 0, "training.seed", tr["seed"], "an integer >= 0")
        _require(tr["dtype"] in ("float32", "float64"), "training.dtype", tr["dtype"], "'float32' or 'float64'")
        _require(isinstance(tr["deterministic"], bool), "training.deterministic", tr["deterministic"], "true or false")
        _require(_is_int(tr["bn_recalibration"]) and tr["bn_recalibration"] >= 0, "training.bn_recalibration",
                 tr["bn_recalibration"], "an integer >= 0")

        sp = self.split
        for key in ("train", "validation", "test"):
            _require(_is_number(sp[key]) and 0 <= sp[key] <= 1, f"split.{key}", sp[key], "a fraction in [0, 1]")
            sp[key] = float(sp[key])
        total = sp["train"] + sp["validation"] + sp["test"]
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(
                f"config keys split.train + split.validation + split.test must sum to 1, got {total:g}"
            )
        _require(sp["train"] > 0, "split.train", sp["train"], "> 0")
        _require(_is_int(sp["seed"]) and sp["seed"] >= 0, "split.seed", sp["seed"], "an integer >= 0")

        ev = self.evaluation
        _require(_is_int(ev["bootstrap_samples"]) and ev["bootstrap_samples"] >= 0, "evaluation.bootstrap_samples",
                 ev["bootstrap_samples"], "an integer >= 0")
        _require(_is_number(ev["confidence"]) and 0 < ev["confidence"] < 1, "evaluation.confidence",
                 ev["confidence"], "in (0, 1)")
        _require(isinstance(ev["baseline"], bool), "evaluation.baseline", ev["baseline"], "true or false")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a YAML configuration; ``None`` gives the defaults.

    Parameters
    ----------
    path : path-like, optional
        YAML file; keys absent from it keep their defaults.
    overrides : dict, optional
        Nested dict applied on top of the file (same shape as the file).
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    if overrides:
        data = _deep_update(copy.deepcopy(data), overrides)
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from None
        raise


def _deep_update(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "types":
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base
