"""Where the compiled parts of glassmd are found (the plugin, its Cython bridge, the fused kernel).

They are built when glassmd is installed and land in the installed package. With an editable install
(scikit-build-core, ``editable.mode = "redirect"``) the Python files are read from the source tree while the
compiled files stay in site-packages, so the installed package folder is found from where Python imports
the compiled bridge module, not from this file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["BRIDGE_MODULE", "compiled_candidates"]

BRIDGE_MODULE = "glassmd._glassgnn_bridge"


def compiled_candidates(relative: str) -> list[Path]:
    """Where ``relative`` (a path inside the glassmd package) may be, most likely first: beside the installed
    bridge module, then in the package sources (which hold compiled files only after an in-place build)."""
    places = []
    spec = importlib.util.find_spec(BRIDGE_MODULE)
    if spec is not None and spec.origin:
        places.append(Path(spec.origin).resolve().parent / relative)
    places.append(Path(__file__).resolve().parent / relative)
    return places
