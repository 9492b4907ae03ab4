"""``glassmd import``: public data sets (Bapst et al. 2020, GlassBench) to labelled dumps."""

from __future__ import annotations

import argparse
import re

from glassmd.errors import InputError

_TIME_ARG_RE = re.compile(r"(?:tc)?(\d+)=(.+)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="convert a public data set (Bapst et al. 2020 pickles, GlassBench .npz) into labelled dumps",
        description=(
            "Convert public glassy-dynamics data into labelled dumps: one file per configuration, LAMMPS\n"
            "types 1 = A and 2 = B, one propensity_t<time> column per time.\n\n"
            "  bapst       DeepMind glassy_dynamics pickles (Bapst et al. 2020); times are in the files.\n"
            "  glassbench  GlassBench / BOTAN .npz files, one time point each, named with a time index\n"
            "              such as _tc07; files of one configuration at several indices merge into one dump."
        ),
        epilog=(
            "examples:\n"
            "  glassmd import bapst data/train/*.pickle -o labelled/\n"
            "  glassmd import glassbench KA_T0.44_n*_tc07.npz --time 7=1000 -o labelled/\n"
            "  glassmd import glassbench a_tc05.npz a_tc07.npz --time 5=100 --time 7=1000 -o labelled/"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("format", choices=("bapst", "glassbench"), help="format of the input files")
    parser.add_argument("files", nargs="+", metavar="FILE", help="input files")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the labelled dumps")
    parser.add_argument(
        "--time",
        action="append",
        default=[],
        metavar="[INDEX=]T",
        help="glassbench only: the time of the files' time point; with several time indices give one "
        "INDEX=T per index (e.g. --time 7=1000 --time tc08=3000)",
    )
    parser.add_argument(
        "--box",
        metavar="L[,Ly,Lz]",
        help="glassbench only: box edge (cubic) or three comma-separated edges; default 15.05658 for 4096 "
        "particles",
    )
    parser.add_argument("--gzip", action="store_true", help="write .dump.gz instead of .dump")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that exist already")
    parser.set_defaults(func=run_import)


def parse_times(values: list[str]) -> dict[int | None, float]:
    """``["7=1000", "tc08=3000"]`` -> ``{7: 1000.0, 8: 3000.0}``; ``["1000"]`` -> ``{None: 1000.0}``."""
    times: dict[int | None, float] = {}
    for value in values:
        match = _TIME_ARG_RE.fullmatch(value.strip())
        index, text = (int(match.group(1)), match.group(2)) if match else (None, value)
        try:
            time = float(text)
        except ValueError:
            raise InputError(f"--time {value!r}: expected T or INDEX=T with a number T") from None
        if index in times:
            raise InputError(f"--time given twice for {'the files' if index is None else f'index {index}'}")
        times[index] = time
    return times


def parse_box(value: str) -> list[float]:
    """``"8"`` -> ``[8.0]``; ``"8,8,9.5"`` -> ``[8.0, 8.0, 9.5]``."""
    try:
        lengths = [float(part) for part in value.split(",")]
    except ValueError:
        lengths = []
    if len(lengths) not in (1, 3):
        raise InputError(f"--box {value!r}: expected one length or three comma-separated lengths")
    return lengths


def run_import(args: argparse.Namespace) -> int:
    from glassmd.data.importers import import_files

    box = None if args.box is None else parse_box(args.box)
    written = import_files(
        args.format,
        args.files,
        args.output,
        times=parse_times(args.time),
        box_lengths=box,
        gzip=args.gzip,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(written)} labelled dump(s) to {args.output}")
    return 0
