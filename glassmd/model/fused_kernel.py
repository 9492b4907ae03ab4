"""Loading of ``glassmd::frame_conv``, the fused C++ kernel of the edge-frame convolution (``csrc/``).

The library is compiled with the package (against the torch that builds it) and installed next to this
module; with an editable install the compiled file stays in site-packages while the Python files are read
from the sources, so it is looked for beside the installed Cython bridge too, as the plugin is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import torch

__all__ = ["fused_kernel_available", "fused_kernel_path"]

LIBRARY_NAME = "_frame_conv.so"
_loaded: Optional[bool] = None


def fused_kernel_path() -> Optional[Path]:
    """Path of the compiled kernel library, or None when glassmd was built without it."""
    candidates = []
    spec = importlib.util.find_spec("glassmd._glassgnn_bridge")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).resolve().parent / "model" / LIBRARY_NAME)
    candidates.append(Path(__file__).resolve().parent / LIBRARY_NAME)
    for path in candidates:
        if path.is_file():
            return path
    return None


def fused_kernel_available() -> bool:
    """Load the kernel library once; True when ``torch.ops.glassmd.frame_conv`` can be called."""
    global _loaded
    if _loaded is None:
        path = fused_kernel_path()
        if path is not None:
            torch.ops.load_library(str(path))
        _loaded = path is not None
    return _loaded
