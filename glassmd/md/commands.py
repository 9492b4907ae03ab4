"""``glassmd simulate`` and ``glassmd propensity``: thin command-line layers over glassmd.md."""

from __future__ import annotations

import json

from glassmd.errors import GlassmdError, run_command


def register(subparsers) -> None:
    """Add the ``simulate`` and ``propensity`` sub-commands."""
    _register_simulate(subparsers)
    _register_propensity(subparsers)


def _register_simulate(subparsers) -> None:
    from glassmd.md.simulate import SimulationSettings

    d = SimulationSettings()
    p = subparsers.add_parser(
        "simulate",
        help="equilibrate a Kob-Andersen liquid in LAMMPS and write configurations as dumps",
        description="Melt, quench and equilibrate a Kob-Andersen 80:20 mixture (Nose-Hoover NVT, dt 0.005), "
        "then write one gzip dump per configuration, spaced --spacing time units apart. "
        "LAMMPS's log goes to DIR/log.lammps, the settings to DIR/simulate.json.",
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (must hold no configurations)")
    p.add_argument("--n", type=int, default=d.n_atoms, help=f"number of particles (default {d.n_atoms})")
    p.add_argument("--temperature", type=float, default=d.temperature, help=f"temperature (default {d.temperature})")
    p.add_argument("--density", type=float, default=d.density, help=f"number density (default {d.density})")
    p.add_argument("--equilibrate", type=float, default=d.equilibrate,
                   help=f"equilibration time at --temperature, LJ units (default {d.equilibrate:g})")
    p.add_argument("--spacing", type=float, default=d.spacing,
                   help=f"time between written configurations (default {d.spacing:g})")
    p.add_argument("--count", type=int, default=d.count, help=f"configurations to write (default {d.count})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--melt-temperature", type=float, default=d.melt_temperature,
                   help=f"temperature of the initial melt (default {d.melt_temperature})")
    p.add_argument("--melt-time", type=float, default=d.melt_time, help=f"melt duration (default {d.melt_time:g})")
    p.add_argument("--tdamp", type=float, default=d.tdamp, help=f"Nose-Hoover damping time (default {d.tdamp})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_simulate)


def _simulate(args) -> int:
    from glassmd.md.simulate import SimulationSettings, simulate

    settings = SimulationSettings(
        n_atoms=args.n,
        temperature=args.temperature,
        density=args.density,
        equilibrate=args.equilibrate,
        spacing=args.spacing,
        count=args.count,
        seed=args.seed,
        melt_temperature=args.melt_temperature,
        melt_time=args.melt_time,
        tdamp=args.tdamp,
    )
    written = simulate(args.output, settings, progress=not args.no_progress)
    if _is_rank0():
        print(f"wrote {len(written)} configurations to {args.output}")
    return 0


def _register_propensity(subparsers) -> None:
    from glassmd.md.propensity import PropensitySettings

    p = subparsers.add_parser(
        "propensity",
        help="label configurations with the dynamical propensity (iso-configurational NVE runs)",
        description="For each frame of each input dump, run --n-iso NVE trajectories with fresh velocities at "
        "--temperature and write the configuration with columns propensity_t<time> (mean displacement) to "
        "OUTDIR/<name>.dump.gz, and F_s(q, t) of A particles with tau_alpha to OUTDIR/<name>.fs.json. "
        "Resumable: complete outputs are skipped. Parallel with --jobs K, or under mpiexec -n K. "
        "With --summary DIR, print tau_alpha and the mean F_s of the configurations labelled in DIR.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="dump files, or folders of *.dump / *.dump.gz")
    p.add_argument("-o", "--output", metavar="OUTDIR", help="output folder for the labelled dumps")
    # Not argparse-required: --summary DIR runs without it.
    p.add_argument("--temperature", type=float,
                   help="temperature of the fresh velocities (required for labelling; not with --summary)")
    p.add_argument("--times", type=float, nargs="+", default=list(PropensitySettings.times), metavar="T",
                   help="label times (default: %(default)s)")
    p.add_argument("--n-iso", type=int, default=PropensitySettings.n_iso,
                   help="NVE runs per configuration (default %(default)s)")
    p.add_argument("--seed", type=int, default=PropensitySettings.seed, help="base seed (default %(default)s)")
    p.add_argument("--q", type=float, default=PropensitySettings.q,
                   help="wave number of F_s (default %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1; under mpiexec use ranks)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--summary", metavar="DIR",
                   help="instead of labelling, summarise the labels in DIR (tau_alpha, mean F_s)")
    p.add_argument("--json", action="store_true", help="with --summary: print JSON")
    p.add_argument("--plot", metavar="PNG", help="with --summary: also draw the mean F_s(q, t) curve into PNG")
    p.set_defaults(func=_propensity)


def _propensity(args) -> int:
    from glassmd.md.propensity import (
        PropensitySettings,
        format_summary,
        label_configurations,
        summarize_labels,
    )

    if args.summary is not None:
        if args.inputs or args.output:
            raise GlassmdError("--summary DIR takes no inputs and no -o")
        summary = summarize_labels(args.summary)
        print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
        if args.plot:
            from glassmd.md.propensity import plot_summary

            print(f"mean F_s curve drawn in {plot_summary(summary, args.plot)}")
        return 0
    if args.plot:
        raise GlassmdError("--plot goes with --summary DIR")
    if not args.inputs:
        raise GlassmdError("no input dumps given")
    if not args.output:
        raise GlassmdError("-o OUTDIR is required")
    if args.temperature is None:
        raise GlassmdError("--temperature is required (the temperature the configurations were equilibrated at)")
    settings = PropensitySettings(
        temperature=args.temperature,
        times=tuple(args.times),
        n_iso=args.n_iso,
        seed=args.seed,
        q=args.q,
    )
    report = label_configurations(args.inputs, args.output, settings, jobs=args.jobs,
                                  progress=not args.no_progress)
    if report["seconds"]:
        mean = sum(report["seconds"]) / len(report["seconds"])
        timing = f"; {mean:.1f} s per configuration"
    else:
        timing = ""
    if _is_rank0():
        print(f"{report['labelled']} configurations labelled, {report['skipped']} already done "
              f"(of {report['total']}) in {args.output}{timing}")
    return 0


def _is_rank0() -> bool:
    try:
        from mpi4py import MPI
    except ImportError:
        return True
    return MPI.COMM_WORLD.Get_rank() == 0


def main(argv: list[str] | None = None) -> int:
    """Only the md sub-commands, without loading the other areas (torch): ``python -m glassmd.md.commands``.

    Behaves like ``glassmd simulate|propensity``; handy for scripts and batch jobs that start many times.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="glassmd")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
