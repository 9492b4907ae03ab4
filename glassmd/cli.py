"""The ``glassmd`` command line: one sub-command per verb, each thin over the modules that do the work.

Sub-commands are contributed by ``commands`` modules (``glassmd/<area>/commands.py``): each exposes
``register(subparsers)`` that adds its parsers and sets ``func`` (called with the parsed arguments; its
return value is the exit status). Discovering them keeps this file free of per-area knowledge.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import glassmd
from glassmd.errors import run_command

# Areas whose commands appear in `glassmd --help`, in this order; any other area with a commands.py
# module is appended after them.
_AREA_ORDER = ["md", "data", "model", "train", "integrations"]


def _command_modules():
    areas = [m.name for m in pkgutil.iter_modules(glassmd.__path__) if m.ispkg]
    ordered = [a for a in _AREA_ORDER if a in areas] + sorted(a for a in areas if a not in _AREA_ORDER)
    for area in ordered:
        try:
            yield importlib.import_module(f"glassmd.{area}.commands")
        except ModuleNotFoundError as exc:
            if exc.name != f"glassmd.{area}.commands":
                raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassmd",
        description="Learned structural order parameter (dynamical propensity) for glassy liquids.",
    )
    parser.add_argument("--version", action="version", version=f"glassmd {glassmd.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
