"""Where the compiled LAMMPS plugin lives (``lammps.plugins`` entry point)."""

from pathlib import Path


def plugin_dir() -> str:
    """Folder holding ``glassgnnplugin.so``; LAMMPS loads every ``*plugin.so`` found there."""
    return str(Path(__file__).resolve().parent.parent / "plugin")


def plugin_file() -> Path:
    """Path of the plugin shared object (it may not exist if glassmd was not built)."""
    return Path(plugin_dir()) / "glassgnnplugin.so"
