"""Hyper-parameters of the network; defaults are the paper's (Pezzicoli, Charpiat, Landes, Table I)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from glassmd.errors import GlassmdError

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`glassmd.model.GlassGNN`.

    Parameters
    ----------
    l_max : int
        Highest rotational order of the spherical harmonics and of the hidden features.
    channels : int
        Channels per rotational order in the hidden features.
    layers : int
        Number of equivariant convolution layers.
    cutoff : float
        Graph cutoff d_c (LJ units); also the Bessel basis length r_c.
    n_radial : int
        Number of Bessel functions embedding the edge length.
    radial_hidden : int
        Width of the hidden layer of the radial MLPs.
    dropout : float
        Dropout rate inside the radial MLPs.
    bn_momentum : float
        Momentum of the running statistics of every batch normalisation (the paper's 0.5).
    radial_output_relu : bool
        Apply ReLU to the radial MLP output, as in the paper's Appendix A formula.
    type_names : tuple of str
        Particle type names, in model-type order (model type k is ``type_names[k]``).
    output_names : tuple of str
        One name per predicted quantity, e.g. ``("propensity_t10",)``.
    output_times : tuple of float or None
        The timescale of each output (None when not a timescale).
    """

    l_max: int = 3
    channels: int = 4
    layers: int = 8
    cutoff: float = 2.0
    n_radial: int = 10
    radial_hidden: int = 16
    dropout: float = 0.5
    bn_momentum: float = 0.5
    radial_output_relu: bool = True
    type_names: tuple[str, ...] = ("A", "B")
    output_names: tuple[str, ...] = ("propensity",)
    output_times: tuple[float | None, ...] = field(default=(None,))

    def __post_init__(self):
        object.__setattr__(self, "type_names", tuple(str(t) for t in self.type_names))
        object.__setattr__(self, "output_names", tuple(str(o) for o in self.output_names))
        times = tuple(None if t is None else float(t) for t in self.output_times)
        if len(times) != len(self.output_names):
            if all(t is None for t in times):
                times = (None,) * len(self.output_names)
            else:
                raise GlassmdError(
                    f"{len(self.output_names)} output names but {len(times)} output times: give one time per output"
                )
        object.__setattr__(self, "output_times", times)
        checks = [
            (self.l_max >= 0, "l_max must be >= 0"),
            (self.channels >= 1, "channels must be >= 1"),
            (self.layers >= 1, "layers must be >= 1"),
            (self.cutoff > 0, "cutoff must be > 0"),
            (self.n_radial >= 1, "n_radial must be >= 1"),
            (self.radial_hidden >= 1, "radial_hidden must be >= 1"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (0.0 < self.bn_momentum <= 1.0, "bn_momentum must be in (0, 1]"),
            (len(self.type_names) >= 1, "type_names must name at least one particle type"),
            (len(set(self.type_names)) == len(self.type_names), "type_names must be distinct"),
            (len(self.output_names) >= 1, "output_names must name at least one output"),
        ]
        for ok, message in checks:
            if not ok:
                raise GlassmdError(f"invalid model config: {message}")

    @property
    def n_types(self) -> int:
        return len(self.type_names)

    @property
    def n_outputs(self) -> int:
        return len(self.output_names)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("type_names", "output_names", "output_times"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GlassmdError(f"unknown model config key(s) {unknown}; valid keys are {sorted(known)}")
        kwargs = dict(data)
        for key in ("type_names", "output_names", "output_times"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)
