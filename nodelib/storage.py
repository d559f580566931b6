"""Files that a reader never sees half written: results as JSON, checkpoints as tensors.

Both go through a temporary file in the destination folder, flushed to the disk, and ``os.replace``,
so an interrupted run leaves either the previous file or the new one (and a temporary file, which
the next save of the same path removes). Checkpoints hold only tensors and plain containers of
numbers and strings, never pickled code, so :func:`load_checkpoint` reads them with
``torch.load(..., weights_only=True)``. A file that is truncated or corrupt all the same (a full
disk, a copy cut short) gives :class:`CheckpointError` or, for JSON, a ``ValueError`` naming the
file. Used by the training loops (``nodelib.training``) and the experiments (``nodelib.experiments``).
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import pathlib
import tempfile
from typing import Any, Optional, Sequence, Union

import torch

__all__ = ["CheckpointError", "write_json_atomic", "read_json", "save_checkpoint", "load_checkpoint"]

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: truncated, corrupt, not nodelib's, or lacking a key."""


def _remove_stale_temporaries(path: pathlib.Path) -> None:
    """Remove the temporary files ``.{name}.XXXXXXXX.tmp`` that a killed save of ``path`` left behind."""
    prefix = f".{path.name}."
    for stale in path.parent.glob(glob.escape(prefix) + "*.tmp"):
        if "." not in stale.name[len(prefix):-len(".tmp")]:  # not the temporary file of a longer name
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _fsync_folder(folder: pathlib.Path) -> None:
    """Make a rename in ``folder`` durable, where the OS lets a folder be opened (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_atomically(path: pathlib.Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``write`` must flush the file to the disk (``os.fsync``) before it returns.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _fsync_folder(path.parent)


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` through a temporary file in the same folder."""
    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())

    _replace_atomically(pathlib.Path(path), write)


def read_json(path: PathLike) -> Any:
    """The JSON file at ``path`` (e.g. a run's ``results.json``).

    Raises:
        ValueError: the file is not valid JSON (truncated or corrupt); the message names the file.
    """
    try:
        return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except ValueError as err:  # json.JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON (truncated or corrupt?): {err}; "
                         f"delete it (or restore it) to start over.") from None


def save_checkpoint(path: PathLike, state: dict) -> None:
    """Save ``state`` (tensors, numbers, strings, lists, dicts) atomically with ``torch.save``."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())

    _replace_atomically(pathlib.Path(path), write)


def load_checkpoint(path: PathLike, *, keys: Sequence[str] = ()) -> Optional[dict]:
    """The checkpoint at ``path`` (tensors on the CPU), or ``None`` if there is none.

    Args:
        path: the file written by :func:`save_checkpoint`.
        keys: keys the checkpoint must have.

    Raises:
        CheckpointError: the file cannot be loaded (truncated, empty, corrupt, or holding anything
            but tensors and plain containers), is not a dict, or lacks some of ``keys``.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    start_over = "delete it or pass another checkpoint path (--out) to start over"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's own message would advise weights_only=False, which runs pickled code
        raise CheckpointError(f"checkpoint {path} is corrupt or not a nodelib checkpoint "
                              f"(loading it raised {type(err).__name__}); {start_over}.") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt or not a nodelib checkpoint (it holds a "
                              f"{type(state).__name__}, not a dict); {start_over}.")
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}: it is not a nodelib checkpoint of this kind "
                              f"(or of an older version); {start_over}.")
    return state
