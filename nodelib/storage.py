"""Files that a reader never sees half written: results as JSON, checkpoints as tensors.

Both go through a temporary file in the destination folder and ``os.replace``, so an interrupted
run leaves either the previous file or the new one. Checkpoints hold only tensors and plain
containers of numbers and strings, never pickled code, so :func:`load_checkpoint` reads them with
``torch.load(..., weights_only=True)``. Used by the training loops (:mod:`nodelib.training`) and
the experiments (:mod:`nodelib.experiments`).
"""
from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, Optional, Union

import torch

__all__ = ["write_json_atomic", "save_checkpoint", "load_checkpoint"]

PathLike = Union[str, os.PathLike]


def _replace_atomically(path: pathlib.Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` through a temporary file in the same folder."""
    text = json.dumps(obj, indent=1, allow_nan=False) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())

    _replace_atomically(pathlib.Path(path), write)


def save_checkpoint(path: PathLike, state: dict) -> None:
    """Save ``state`` (tensors, numbers, strings, lists, dicts) atomically with ``torch.save``."""
    _replace_atomically(pathlib.Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: PathLike) -> Optional[dict]:
    """The checkpoint at ``path`` (tensors on the CPU), or ``None`` if there is none."""
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
