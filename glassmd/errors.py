"""Errors a user can act on. The command line prints them as one line, without a traceback."""


class GlassmdError(Exception):
    """Base class: a problem with the user's input, files or settings, stated so they can fix it."""


class ModelFileError(GlassmdError):
    """A model file is missing, corrupt, not a glassmd model, or incompatible with this glassmd."""


class InputError(GlassmdError, ValueError):
    """Bad configuration data: NaN positions, unknown particle types, a box too small for the cutoff."""
