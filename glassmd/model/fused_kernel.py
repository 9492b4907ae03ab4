"""Loading of ``glassmd::frame_conv``, the fused C++ kernel of the edge-frame convolution (``csrc/``).

The library is compiled with the package (against the torch that builds it) and installed as
``glassmd/model/_frame_conv.so``; :mod:`glassmd.compiled` finds it, with editable installs too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from glassmd.compiled import compiled_candidates

__all__ = ["fused_kernel_available", "fused_kernel_path"]

LIBRARY = "model/_frame_conv.so"
_loaded: Optional[bool] = None


def fused_kernel_path() -> Optional[Path]:
    """Path of the compiled kernel library, or None when glassmd was built without it."""
    return next((path for path in compiled_candidates(LIBRARY) if path.is_file()), None)


def fused_kernel_available() -> bool:
    """Load the kernel library once; True when ``torch.ops.glassmd.frame_conv`` can be called."""
    global _loaded
    if _loaded is None:
        path = fused_kernel_path()
        if path is not None:
            torch.ops.load_library(str(path))
        _loaded = path is not None
    return _loaded
