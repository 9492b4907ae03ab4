"""What a file given as a model or checkpoint is, when it is not what the command expected.

The messages of :class:`glassmd.errors.ModelFileError` name the problem and the fix in one line: a
directory (with the model file it holds), a training checkpoint given where an exported model is needed
(and the command that exports it), an exported model given where a checkpoint is needed. Files are only
inspected, never unpickled: the error path runs on files whose origin is unknown.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path

from glassmd.model.checkpoint import TRAINING_CHECKPOINT_FORMAT

__all__ = ["archive_kind", "first_file_in", "torch_error_line"]

# torch appends this to every zip-reader failure (PytorchStreamReader); it adds nothing to the first
# sentence and turns a one-line error into a paragraph.
_MINIZ_BOILERPLATE = re.compile(r"[.\s]*This is an internal miniz error\..*", re.DOTALL)

# String constants of a pickle that identify a glassmd checkpoint (glassmd.model.checkpoint).
_CHECKPOINT_KEYS = {"model_config", "model_state"}
# Only the start of a checkpoint's pickle is read: the keys come early, tensors are stored apart from it.
_PICKLE_BYTES = 1 << 20


def torch_error_line(exc: BaseException) -> str:
    """The first line of a torch exception's message, without torch's generic advice."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0].strip()
    return _MINIZ_BOILERPLATE.sub("", line).strip() or type(exc).__name__


def archive_kind(path: str | Path) -> str | None:
    """What a PyTorch zip archive holds, judged from its member names and pickled string constants.

    Returns
    -------
    "torchscript"
        A TorchScript file (``torch.jit.save``: has ``constants.pkl`` or ``code/``).
    "training checkpoint"
        A ``torch.save`` file of ``glassmd train`` (``last.ckpt``, ``best.ckpt``).
    "checkpoint"
        A ``torch.save`` file holding ``model_config`` and ``model_state`` (``checkpoint_payload``).
    "torch.save"
        Another ``torch.save`` file (a state dict, an optimizer, ...).
    None
        Not a PyTorch zip archive, or unreadable.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                return "torchscript"
            pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
            if not pickles:
                return None
            with archive.open(pickles[0]) as stream:
                data = stream.read(_PICKLE_BYTES)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError):
        return None
    strings = set()
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if isinstance(argument, str) and "UNICODE" in opcode.name:
                strings.add(argument)
    except Exception:  # a pickle cut at _PICKLE_BYTES or damaged: judge from what was read
        pass
    if TRAINING_CHECKPOINT_FORMAT in strings:
        return "training checkpoint"
    if _CHECKPOINT_KEYS <= strings:
        return "checkpoint"
    return "torch.save"


def first_file_in(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` that is a file in ``folder`` (to suggest it), or None."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None
