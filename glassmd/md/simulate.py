"""Equilibrated Kob-Andersen configurations from LAMMPS, one gzip dump file per configuration.

Protocol: particles placed at random are pushed apart with a soft potential ramp, relaxed by energy
minimisation, melted at ``melt_temperature`` with a Nose-Hoover thermostat, quenched (velocities rescaled)
to ``temperature`` and equilibrated there for ``equilibrate`` time units, then one configuration is written
every ``spacing`` time units while the NVT run continues. LAMMPS writes its log to ``log.lammps`` in the
output folder; ``simulate.json`` records the settings.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from glassmd.atomic import atomic_write_text
from glassmd.errors import GlassmdError
from glassmd.md import ka
from glassmd.md.system import derive_seed, gather_state

__all__ = ["SimulationSettings", "simulate", "config_name"]


@dataclasses.dataclass
class SimulationSettings:
    """Every knob of ``glassmd simulate``; times are in LJ units (tau)."""

    n_atoms: int = 1000
    temperature: float = 0.6
    density: float = 1.2
    equilibrate: float = 1500.0
    spacing: float = 45.0
    count: int = 200
    seed: int = 1
    melt_temperature: float = 2.0
    melt_time: float = 50.0
    tdamp: float = 0.5  # Nose-Hoover damping time: 100 time steps

    def validate(self) -> None:
        """Raise GlassmdError naming the first unusable setting."""
        if self.n_atoms < 10:
            raise GlassmdError(f"--n must be at least 10, got {self.n_atoms}")
        for name in ("temperature", "density", "melt_temperature", "tdamp", "spacing"):
            if not getattr(self, name) > 0:
                raise GlassmdError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("equilibrate", "melt_time"):
            if getattr(self, name) < 0:
                raise GlassmdError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.count < 1:
            raise GlassmdError(f"--count must be at least 1, got {self.count}")
        if not 0 < self.seed < 2**31 - 1:
            raise GlassmdError(f"--seed must be between 1 and 2147483646, got {self.seed}")
        for name in ("equilibrate", "spacing", "melt_time"):
            steps_of(getattr(self, name), name)


def steps_of(duration: float, what: str = "time") -> int:
    """Number of MD steps in ``duration``; it must be a whole number of time steps."""
    steps = duration / ka.TIMESTEP
    if abs(steps - round(steps)) > 1e-6:
        raise GlassmdError(f"{what} = {duration:g} is not a multiple of the time step {ka.TIMESTEP:g}")
    return int(round(steps))


def config_name(index: int) -> str:
    """File name of the ``index``-th configuration written by simulate."""
    return f"config_{index:04d}.dump.gz"


def _write_json_atomic(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def _prepare_liquid(lmp, settings: SimulationSettings) -> None:
    """Random placement, soft push-off and minimisation: a KA system without overlaps."""
    length = ka.box_length(settings.n_atoms, settings.density)
    n_a, n_b = ka.type_counts(settings.n_atoms)
    lmp.commands_list(ka.box_commands([0.0] * 3, [length] * 3))
    lmp.command(f"create_atoms 1 random {n_a} {derive_seed(settings.seed, 'place-A')} NULL")
    if n_b:
        lmp.command(f"create_atoms 2 random {n_b} {derive_seed(settings.seed, 'place-B')} NULL")
    lmp.commands_list(
        [
            "mass * 1.0",
            f"neighbor {ka.NEIGHBOR_SKIN!r} bin",
            "neigh_modify every 1 delay 0 check yes",
            f"timestep {ka.TIMESTEP!r}",
            # Random points overlap; a soft repulsion ramped up with capped moves separates them.
            "pair_style soft 1.0",
            "pair_coeff * * 0.0",
            "variable glassmd_soft_a equal ramp(0.0,60.0)",
            "fix glassmd_pushoff_adapt all adapt 1 pair soft a * * v_glassmd_soft_a",
            "fix glassmd_pushoff all nve/limit 0.02",
            "run 2000",
            "unfix glassmd_pushoff_adapt",
            "unfix glassmd_pushoff",
            "variable glassmd_soft_a delete",
        ]
    )
    lmp.commands_list(ka.interaction_commands())
    lmp.commands_list(["minimize 1.0e-6 1.0e-8 2000 20000", "reset_timestep 0"])


def simulate(out_dir, settings: SimulationSettings, progress: bool = True) -> list[Path]:
    """Run the protocol and write ``settings.count`` configurations into ``out_dir``.

    Returns the paths written. Refuses to write into a folder that already holds configurations.
    """
    from glassmd.data.dump import Frame, write_dump
    from glassmd.integrations.lammps_library import open_lammps

    settings.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob("config_*.dump*"))
    if existing:
        raise GlassmdError(
            f"{out} already holds {len(existing)} configurations ({existing[0].name}, ...); "
            "choose an empty output folder"
        )
    lmp = open_lammps(cmdargs=["-log", str(out / "log.lammps")], quiet=True)
    started = time.time()
    try:
        _prepare_liquid(lmp, settings)
        melt_seed = derive_seed(settings.seed, "melt-velocities")
        lmp.commands_list(
            [
                f"velocity all create {settings.melt_temperature!r} {melt_seed} mom yes rot no dist gaussian",
                "thermo 1000",
                "thermo_style custom step temp pe etotal press",
                f"fix glassmd_nvt all nvt temp {settings.melt_temperature!r} "
                f"{settings.melt_temperature!r} {settings.tdamp!r}",
                f"run {steps_of(settings.melt_time, 'melt time')}",
                "unfix glassmd_nvt",
                # Rescaling at the quench spares the thermostat a large initial temperature error.
                f"velocity all scale {settings.temperature!r}",
                f"fix glassmd_nvt all nvt temp {settings.temperature!r} {settings.temperature!r} {settings.tdamp!r}",
                f"run {steps_of(settings.equilibrate, 'equilibration time')}",
            ]
        )
        boxlo, boxhi, *_ = lmp.extract_box()
        box = np.array([boxlo, boxhi], dtype=np.float64).T
        spacing_steps = steps_of(settings.spacing, "spacing")
        written: list[Path] = []
        bar = _progress(settings.count, progress)
        for index in range(settings.count):
            if index:
                lmp.command(f"run {spacing_steps}")
            ids, types, unwrapped = gather_state(lmp)
            frame = Frame(
                timestep=int(lmp.extract_global("ntimestep")),
                box=box.copy(),
                ids=ids,
                types=types,
                positions=unwrapped,
                columns={},
            )
            path = out / config_name(index)
            write_dump(path, [frame])
            written.append(path)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        _write_json_atomic(
            out / "simulate.json",
            {
                "settings": dataclasses.asdict(settings),
                "timestep": ka.TIMESTEP,
                "lammps_version": lmp.version(),
                "files": [p.name for p in written],
                "wall_seconds": round(time.time() - started, 1),
            },
        )
        return written
    finally:
        lmp.close()


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="config", desc="simulate", dynamic_ncols=True)
