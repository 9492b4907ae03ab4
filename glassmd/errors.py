"""Errors a user can act on. The command line prints them as one line, without a traceback."""

import sys


class GlassmdError(Exception):
    """Base class: a problem with the user's input, files or settings, stated so they can fix it."""


class ModelFileError(GlassmdError):
    """A model file is missing, corrupt, not a glassmd model, or incompatible with this glassmd."""


class InputError(GlassmdError, ValueError):
    """Bad configuration data: NaN positions, unknown particle types, a box too small for the cutoff."""


def run_command(args) -> int:
    """Call a parsed sub-command (``args.func``) as the command line does: its return value is the exit status,
    a :class:`GlassmdError` is one line and status 2, Ctrl-C one line and status 130."""
    try:
        return int(args.func(args) or 0)
    except GlassmdError as exc:
        print(f"glassmd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the commands leave resumable state; a traceback would only alarm
        print(f"\nglassmd {args.command}: interrupted", file=sys.stderr)
        return 130
