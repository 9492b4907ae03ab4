"""LAMMPS-driven work: Kob-Andersen simulations and iso-configurational propensity labels.

``glassmd.md.simulate`` writes equilibrated configurations as dump files, ``glassmd.md.propensity``
labels them with the dynamical propensity (mean displacement over iso-configurational NVE runs).
"""

from glassmd.md.propensity import (
    PropensitySettings,
    label_configurations,
    run_seed,
    summarize_labels,
)
from glassmd.md.simulate import SimulationSettings, simulate

__all__ = [
    "PropensitySettings",
    "SimulationSettings",
    "label_configurations",
    "run_seed",
    "simulate",
    "summarize_labels",
]
