"""nodelib.storage: checkpoints and JSON files that are never half written, and clear errors for those
that are (truncated, empty, garbage, not nodelib's).

References: the saved tensors against the ones saved (torch.equal); the order of fsync and replace
as recorded by wrapping ``os.fsync`` and ``os.replace``; the error messages against the file's path.
"""
import os
import pathlib
import stat

import pytest
import torch

from nodelib import storage
from nodelib.storage import CheckpointError, load_checkpoint, read_json, save_checkpoint, write_json_atomic

STATE = {"model": {"weight": torch.arange(6.0).reshape(2, 3), "bias": torch.tensor([1, -2], dtype=torch.int64)},
         "iteration": 7, "losses": [0.5, 0.25], "name": "planar"}


class NotAllowed:
    """A class of this module: ``torch.load(weights_only=True)`` refuses to unpickle it."""


def _truncated(path: pathlib.Path) -> None:
    save_checkpoint(path, STATE)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


BAD_FILES = {
    "truncated": _truncated,
    "empty": lambda path: path.write_bytes(b""),
    "garbage": lambda path: path.write_bytes(bytes(range(256)) * 4),
    "custom class": lambda path: torch.save({"model": NotAllowed()}, path),
    "not a dict": lambda path: torch.save([torch.zeros(2)], path),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_broken_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path, kind):
    path = tmp_path / "run.pt"
    BAD_FILES[kind](path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "not a nodelib checkpoint" in message and "delete it" in message
    assert "weights_only=False" not in message
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


def test_missing_keys_raise_checkpoint_error_naming_them(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(path, STATE)
    assert load_checkpoint(path, keys=("model", "iteration"))["iteration"] == 7
    with pytest.raises(CheckpointError, match=r"lacks \['optimizer', 'schedule'\]") as info:
        load_checkpoint(path, keys=("model", "optimizer", "schedule", "losses"))
    assert str(path) in str(info.value)
    assert load_checkpoint(tmp_path / "none.pt", keys=("model",)) is None


def test_save_checkpoint_fsyncs_before_replacing_and_round_trips(tmp_path, monkeypatch):
    """The file's bytes reach the disk before the rename, the rename before the call returns."""
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def recording_replace(src, dst):
        events.append("replace")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    path = tmp_path / "run.pt"
    save_checkpoint(path, STATE)
    assert events == ["fsync file", "replace", "fsync folder"]
    back = load_checkpoint(path)
    assert back.keys() == STATE.keys() and back["model"].keys() == STATE["model"].keys()
    for key, value in STATE["model"].items():
        assert torch.equal(back["model"][key], value) and back["model"][key].dtype == value.dtype
    assert (back["iteration"], back["losses"], back["name"]) == (7, [0.5, 0.25], "planar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


def test_a_save_removes_the_temporary_files_of_a_killed_save(tmp_path):
    path = tmp_path / "run.pt"
    stale = [tmp_path / ".run.pt.k3x9_q1z.tmp", tmp_path / ".run.pt.abcdefgh.tmp"]
    others = [tmp_path / ".run.pt.x.abcdefgh.tmp", tmp_path / ".other.pt.abcdefgh.tmp", tmp_path / "run.pt.tmp"]
    for file in stale + others:
        file.write_bytes(b"half a checkpoint")
    save_checkpoint(path, STATE)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run.pt"] + [p.name for p in others])


def test_read_json_names_a_truncated_file(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"status": "complete", "models": {"mlp": {"test_error": 0.03}}})
    assert read_json(path) == {"status": "complete", "models": {"mlp": {"test_error": 0.03}}}
    path.write_text(path.read_text()[:20])
    with pytest.raises(ValueError, match="is not valid JSON") as info:
        read_json(path)
    assert str(path) in str(info.value) and "delete it" in str(info.value)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_json(path)
    assert "read_json" in storage.__all__ and "CheckpointError" in storage.__all__
