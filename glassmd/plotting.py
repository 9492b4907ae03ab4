"""Matplotlib figures written as PNG files (Agg backend, atomic writes), shared by every command that draws."""

from __future__ import annotations

from pathlib import Path

from glassmd.atomic import atomic_path

__all__ = ["figure", "save_png"]


def figure(nrows: int, ncols: int, size: tuple[float, float]):
    """``(pyplot, fig, axes)`` with axes always a 2-D array; no display needed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    return plt, fig, axes


def save_png(plt, fig, path) -> Path:
    """Write ``fig`` to ``path`` atomically (a reader never sees half a file) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return path
