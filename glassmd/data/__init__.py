"""Data: LAMMPS dump files in and out, periodic graphs, import of public data sets."""

from glassmd.data.dump import (
    DumpFormatError,
    Frame,
    MissingColumnError,
    iter_dump,
    parse_propensity_column,
    propensity_column,
    read_dump,
    write_dump,
)

__all__ = [
    "DumpFormatError",
    "Frame",
    "MissingColumnError",
    "iter_dump",
    "parse_propensity_column",
    "propensity_column",
    "read_dump",
    "write_dump",
]
