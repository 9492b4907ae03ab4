"""Atomic file writes: a file is either the old one or the complete new one, never a partial write.

Everything glassmd writes for the user (models, checkpoints, reports, splits, plots) goes through here,
so that a killed run or a failing write never leaves a truncated file or destroys the previous one.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_text", "current_umask"]


def current_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``, ending in ``suffix``; when the block succeeds it replaces ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was. The new file gets
    ordinary permissions (``0666 & ~umask``) rather than mkstemp's 0600. Several of them entered in one
    :class:`contextlib.ExitStack` replace their targets together, only when every block succeeded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
