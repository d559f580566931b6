"""Bookkeeping of long runs: device choice, provenance, progress lines, presets, recorded results.

Every experiment of Part III ("The paper's experiments") writes its results with a
:func:`provenance` record through :func:`nodelib.storage.write_json_atomic`, and its checkpoints
through :func:`nodelib.storage.save_checkpoint`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import pathlib
import platform
import shlex
import sys
import tempfile
from typing import Any, Optional, Union

import torch
import torchdiffeq

import nodelib
from ..storage import read_json

__all__ = ["pick_device", "check_out_folder", "provenance", "log", "default_dtype", "replace_preset",
           "recorded_results", "config_changes", "raw_url", "beside", "read_png", "BOOK_REPOSITORY", "BOOK_BRANCH"]

PathLike = Union[str, os.PathLike]


def pick_device(device: Optional[str] = None, *, prefer_cuda: bool = True) -> torch.device:
    """``device`` if given; else CUDA when available and ``prefer_cuda``; else the CPU.

    Raises:
        ValueError: ``device`` is not a torch device, or is a CUDA device where CUDA is not available.
    """
    if device is not None:
        try:
            chosen = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"device={device!r} is not a valid torch device ('cpu', 'cuda', 'cuda:1').") from err
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} needs CUDA, which is not available here "
                             f"(torch {torch.__version__}); use device='cpu' (--device cpu) or leave it out.")
        return chosen
    return torch.device("cuda" if prefer_cuda and torch.cuda.is_available() else "cpu")


def check_out_folder(out: PathLike) -> pathlib.Path:
    """``out`` as a path, once it is clear that a run can write there; nothing is created.

    ``out`` must be a folder that accepts a new file, or not exist yet below such a folder (the
    folders in between are created when the run first writes).

    Raises:
        ValueError: ``out`` or a folder above it is a file, or the folder cannot be written.
    """
    path = pathlib.Path(out)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"out={str(out)!r}: {existing} is a file, not a folder; pass another --out (out=).")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(f"out={str(out)!r}: the folder {existing} cannot be written ({err.strerror}); "
                         f"pass another --out (out=).") from None
    return path


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device, **extra: Any) -> dict:
    """Where and how a result was produced: device name, library versions, date, command line."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    command = None
    if sys.argv and sys.argv[0]:
        program = pathlib.Path(sys.argv[0])
        if program.parent.name == "experiments" and program.name == "__main__.py":
            program = "python -m nodelib.experiments"
        else:  # a script, e.g. a benchmark: its path from the working directory where it lies below it
            absolute = program.resolve()
            cwd = pathlib.Path.cwd()
            program = "python " + str(absolute.relative_to(cwd) if absolute.is_relative_to(cwd) else program)
        command = " ".join([program, *map(shlex.quote, sys.argv[1:])])  # (as a shell would need it)
    return {
        "device": str(device),
        "device_name": name,
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchdiffeq": torchdiffeq.__version__,
        "nodelib": nodelib.__version__,  # also where nodelib is used from a checkout, not installed
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        **extra,
    }


def log(message: str) -> None:
    """One plain-text progress line, flushed at once (no progress bars)."""
    print(message, flush=True)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Build models in ``dtype`` from the start, so that their initial weights do not depend on the
    caller's default dtype (drawing in float64 and rounding differs from drawing in float32)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def replace_preset(presets: dict, name: str, **overrides: Any):
    """Preset ``name`` of ``presets`` with the fields in ``overrides`` replaced (``None`` keeps a field).

    Unknown preset names and unknown fields raise ``ValueError`` listing the valid ones.
    """
    if name not in presets:
        raise ValueError(f"preset={name!r} is unknown; expected one of {sorted(presets)}.")
    preset_class = type(presets[name])
    fields = {f.name for f in dataclasses.fields(preset_class)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"overrides {unknown} are not fields of {preset_class.__name__}; "
                         f"valid ones are {sorted(fields)}.")
    return dataclasses.replace(presets[name], **{k: v for k, v in overrides.items() if v is not None})


#: The book's repository and branch, as in _config.yml (a test keeps them equal): chapters that run
#: outside the repository (Colab) read the recorded results from there.
BOOK_REPOSITORY = "https://github.com/nodelib/neural-ode-book"
BOOK_BRANCH = "main"
#: The list of recorded ``results.json`` files (relative to ``results/``), written by
#: ``tools/reproducibility_page.py``: raw file hosting cannot list a folder.
RESULTS_INDEX = "index.json"


def raw_url(path: str, repository: str = BOOK_REPOSITORY, branch: str = BOOK_BRANCH) -> str:
    """The address of the file ``path`` (relative to the repository's root) on ``branch``: GitHub's raw
    files for a ``https://github.com/OWNER/NAME`` repository, else ``repository/path``."""
    prefix = "https://github.com/"
    if repository.startswith(prefix):
        return f"https://raw.githubusercontent.com/{repository[len(prefix):].strip('/')}/{branch}/{path}"
    return f"{repository.rstrip('/')}/{path}"


def _read_remote(repository: str, branch: str) -> Optional[list]:
    """Every recorded ``(address, results)`` of the repository, or ``None`` (with one line said) offline."""
    import json
    import urllib.error
    import urllib.request

    def fetch(path: str) -> dict:
        with urllib.request.urlopen(raw_url(path, repository, branch), timeout=20) as response:
            return json.loads(response.read().decode())

    try:
        index = fetch(f"results/{RESULTS_INDEX}")
        return [(raw_url(f"results/{name}", repository, branch), fetch(f"results/{name}"))
                for name in index["results"]]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
        print(f"The recorded full-scale results are not here and could not be read from {repository} "
              f"({type(err).__name__}); they are not shown.")
        return None


def recorded_results(experiment: str, preset: str = "full", folders: tuple = ("../results", "results"), *,
                     repository: Optional[str] = BOOK_REPOSITORY, branch: str = BOOK_BRANCH) -> Optional[list]:
    """The recorded runs of ``experiment`` with ``preset``, from the first of ``folders`` that exists.

    A chapter runs in ``book/`` (the repository's ``results/`` is then ``../results``) or from the
    repository's root. Where neither exists (a chapter opened alone, e.g. in Colab), the files are read
    from ``repository`` on ``branch`` (the book's, by default; ``None`` to stay offline), through the
    index ``results/index.json``. Returns ``(path, results)`` for each ``results.json`` whose
    ``"experiment"`` and ``"preset"`` match, sorted by path (a run's figures lie beside its file; read
    remotely, the path is the file's address); an empty list when none matches; ``None`` when there
    is no folder and the repository cannot be read (after saying so in one line).
    """
    folder = next((pathlib.Path(f) for f in folders if pathlib.Path(f).is_dir()), None)
    if folder is not None:
        paths = sorted(folder.glob("*/results.json")) + sorted(folder.glob("*.json"))
        found = [(path, read_json(path)) for path in paths if path.name != RESULTS_INDEX]
    elif repository is not None:
        found = _read_remote(repository, branch)
        if found is None:
            return None
    else:
        return None
    return [(path, r) for path, r in found if r.get("experiment") == experiment and r.get("preset") == preset]


def config_changes(old: dict, new: dict) -> str:
    """The fields in which two configurations differ, as ``field: old → new`` (for resume errors)."""
    return ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in {**old, **new} if old.get(k) != new.get(k))


def beside(path: Union[str, pathlib.Path], name: str) -> Union[str, pathlib.Path]:
    """The file ``name`` beside a recorded ``results.json``: a path, or an address when the results
    were read from the book's repository (:func:`recorded_results`)."""
    if isinstance(path, str) and "://" in path:
        return path.rsplit("/", 1)[0] + "/" + name
    return pathlib.Path(path).parent / name


def read_png(location: Union[str, pathlib.Path]):
    """The pixels of a PNG file (a ``numpy`` array), read from a path or downloaded from an address."""
    import io
    import urllib.request

    import matplotlib.image

    if isinstance(location, str) and "://" in location:
        with urllib.request.urlopen(location, timeout=20) as response:
            return matplotlib.image.imread(io.BytesIO(response.read()), format="png")
    return matplotlib.image.imread(str(location))
