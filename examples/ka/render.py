"""Picture of a slab of a Kob-Andersen configuration coloured by the propensity fix glassgnn predicted.

Usage: python render.py ka.dump [-o propensity.png] [--column f_prop] [--thickness 1.5] [--frame -1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from glassmd.data.dump import read_dump  # noqa: E402


def render(dump: Path, output: Path, column: str = "f_prop", thickness: float = 1.5, frame_index: int = -1) -> Path:
    """Draw the particles within ``thickness / 2`` of the box's mid-plane in z, coloured by ``column``."""
    frame = read_dump(dump)[frame_index]
    if column not in frame.columns:
        raise SystemExit(f"{dump}: no column {column!r} (has {', '.join(frame.columns) or 'none'})")
    values = frame.columns[column]
    lo, hi = frame.box[:, 0], frame.box[:, 1]
    box = hi - lo
    wrapped = lo + np.mod(frame.positions - lo, box)
    middle = lo[2] + box[2] / 2
    in_slab = np.abs(wrapped[:, 2] - middle) <= thickness / 2

    fig, ax = plt.subplots(figsize=(5.5, 4.8), dpi=150)
    sizes = np.where(frame.types[in_slab] == 1, 90.0, 45.0)  # A particles larger than B, as sigma_AA > sigma_BB
    points = ax.scatter(
        wrapped[in_slab, 0], wrapped[in_slab, 1], c=values[in_slab], s=sizes, cmap="viridis",
        edgecolors="black", linewidths=0.3,
    )
    fig.colorbar(points, ax=ax, label=f"predicted propensity ({column})")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"KA slab |z - L/2| < {thickness / 2:g}, step {frame.timestep} ({int(in_slab.sum())} particles)")
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path, help="dump file with the fix glassgnn column")
    parser.add_argument("-o", "--output", type=Path, default=Path("propensity.png"))
    parser.add_argument("--column", default="f_prop", help="per-atom column to colour by (default f_prop)")
    parser.add_argument("--thickness", type=float, default=1.5, help="slab thickness in sigma (default 1.5)")
    parser.add_argument("--frame", type=int, default=-1, help="frame index in the dump (default: last)")
    args = parser.parse_args(argv)
    print(f"wrote {render(args.dump, args.output, args.column, args.thickness, args.frame)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
