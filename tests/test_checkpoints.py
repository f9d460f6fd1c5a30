"""Checkpoints are written whole or not at all, and restoring falls back to the newest one that loads."""

from __future__ import annotations

import json
import os
from collections import namedtuple

import keras
import numpy as np
import pytest

from tutorialreg import checkpoints


def _model(width: int = 4) -> keras.Model:
    inp = keras.Input((3,))
    return keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(width)(inp)))


def _setup(tmp_path, width: int = 4):
    model = _model(width)
    opt = keras.optimizers.Adam(1e-3)
    opt.build(model.trainable_variables)
    return model, opt


def test_save_and_restore_round_trip(tmp_path):
    model, opt = _setup(tmp_path)
    state = {"epochs_done": 1, "history": {"loss": [1.0]}}
    path = checkpoints.save(tmp_path, "epoch-0001", model, opt, state)
    assert path.name == "epoch-0001.ckpt.npz" and checkpoints.latest(tmp_path) == path
    other, other_opt = _setup(tmp_path)
    assert checkpoints.restore(path, other, other_opt) == state
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_an_interrupted_save_leaves_the_earlier_checkpoint_and_index_intact(tmp_path, monkeypatch):
    """A second Ctrl-C during a save used to truncate the file the index named; now nothing is touched."""
    model, opt = _setup(tmp_path)
    good = checkpoints.save(tmp_path, "epoch-0001", model, opt, {"epochs_done": 1})
    index = (tmp_path / "checkpoints" / "checkpoint.json").read_text()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save(tmp_path, "interrupted-epoch-0001", model, opt, {"epochs_done": 1})
    monkeypatch.undo()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["checkpoint.json", "epoch-0001.ckpt.npz"]
    assert (tmp_path / "checkpoints" / "checkpoint.json").read_text() == index
    assert checkpoints.restore_latest(tmp_path, _model())[0] == good


def test_restore_falls_back_past_a_truncated_checkpoint(tmp_path):
    model, opt = _setup(tmp_path)
    first = checkpoints.save(tmp_path, "epoch-0001", model, opt, {"epochs_done": 1})
    second = checkpoints.save(tmp_path, "epoch-0002", model, opt, {"epochs_done": 2})
    second.write_bytes(second.read_bytes()[:100])  # damaged after the fact (e.g. a copy cut short)
    path, state, skipped = checkpoints.restore_latest(tmp_path, _model())
    assert path == first and state["epochs_done"] == 1
    assert len(skipped) == 1 and "epoch-0002.ckpt.npz is unreadable" in skipped[0]


def test_a_checkpoint_of_another_architecture_is_named_not_loaded(tmp_path, recwarn):
    model, opt = _setup(tmp_path, width=4)
    path = checkpoints.save(tmp_path, "epoch-0001", model, opt, {})
    other = _model(width=5)
    before = [w.copy() for w in other.get_weights()]
    with pytest.raises(checkpoints.CheckpointError, match="another architecture"):
        checkpoints.restore(path, other)
    for a, b in zip(before, other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not [w for w in recwarn if "keras" in str(w.filename)]


def test_a_full_disk_is_a_clear_error_and_loses_nothing(tmp_path, monkeypatch):
    model, opt = _setup(tmp_path)
    good = checkpoints.save(tmp_path, "epoch-0001", model, opt, {"epochs_done": 1})
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(checkpoints.CheckpointError, match="not enough disk space .* MiB free"):
        checkpoints.save(tmp_path, "epoch-0002", model, opt, {"epochs_done": 2})
    monkeypatch.undo()
    assert checkpoints.find(tmp_path) == [good]
    assert json.loads((tmp_path / "checkpoints" / "checkpoint.json").read_text())["latest"] == "epoch-0001"


def test_a_write_error_is_reported_with_the_file_and_cause(tmp_path, monkeypatch):
    """ENOSPC from the file system itself (the space check can race with other writers)."""
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(checkpoints.CheckpointError, match="No space left on device"):
        checkpoints.write_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
