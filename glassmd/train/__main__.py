"""``python -m glassmd.train ...`` is ``glassmd train ...`` (and the module torchrun launches)."""

from __future__ import annotations

import argparse
import sys

from glassmd.errors import GlassmdError
from glassmd.train.commands import add_train_arguments, train_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glassmd.train", description="Train the glassmd network.")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(train_command(args) or 0)
    except GlassmdError as exc:
        print(f"glassmd train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
