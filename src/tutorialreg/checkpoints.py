"""Training checkpoints: written whole or not at all, indexed, found, and restored with a fallback.

A checkpoint is one file ``<log_dir>/checkpoints/<tag>.ckpt.npz`` holding the model's weights, the
optimiser's variables and a JSON state (epochs done, history). It is serialised in memory, written to a
temporary file in the same folder, flushed to disk and renamed into place, and only then named by the
index ``checkpoint.json``: an interrupted or failed save (a second Ctrl-C, a full disk) leaves every
earlier checkpoint and the index untouched. Restoring checks every array against the model and falls
back to the newest checkpoint that loads.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["CheckpointError", "checkpoint_dir", "find", "latest", "restore", "restore_latest", "save"]

SUFFIX = ".ckpt.npz"
INDEX = "checkpoint.json"
_MARGIN = 1 << 20  # bytes of free disk space kept beyond a checkpoint's size


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file and the cause."""


def checkpoint_dir(log_dir: str | os.PathLike) -> Path:
    """``<log_dir>/checkpoints``."""
    return Path(log_dir) / "checkpoints"


# ------------------------------------------------------------------------------------------ writing
def _serialise(weights: Sequence[np.ndarray], optimizer_vars: Sequence[np.ndarray], state: dict) -> bytes:
    arrays = {f"w{i:04d}": np.asarray(w) for i, w in enumerate(weights)}
    arrays |= {f"o{i:04d}": np.asarray(v) for i, v in enumerate(optimizer_vars)}
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@contextmanager
def _no_interrupt():
    """Defer SIGINT (Ctrl-C) while a file is being put in place; the interrupt is raised afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda *_: pending.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder and a rename.

    :raises CheckpointError: when the disk lacks the space (checked first) or the write fails; the
        temporary file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < len(payload) + _MARGIN:
        raise CheckpointError(f"not enough disk space to write {path}: {len(payload) / 2**20:.1f} MiB "
                              f"needed, {free / 2**20:.1f} MiB free there; earlier checkpoints are kept")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with _no_interrupt():
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except OSError as err:
        raise CheckpointError(f"could not write {path}: {err.strerror or err}; earlier checkpoints are "
                              "kept") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_index(folder: Path) -> list[str]:
    try:
        tags = json.loads((folder / INDEX).read_text())["all"]
        return [t for t in tags if isinstance(t, str)]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def save(log_dir: str | os.PathLike, tag: str, model, optimizer, state: dict) -> Path:
    """Write checkpoint ``tag`` (model weights, optimiser variables, ``state``) and add it to the index.

    :return: the checkpoint's path.
    :raises CheckpointError: when it cannot be written (nothing already saved is lost).
    """
    folder = checkpoint_dir(log_dir)
    path = folder / f"{tag}{SUFFIX}"
    payload = _serialise(model.get_weights(), [np.asarray(v) for v in optimizer.variables], state)
    write_atomic(path, payload)
    tags = [t for t in _read_index(folder) if t != tag] + [tag]
    write_atomic(folder / INDEX, json.dumps({"latest": tag, "all": tags}, indent=1).encode())
    return path


# ------------------------------------------------------------------------------------------ finding
def find(log_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints of ``log_dir``, newest first: those the index names, then any other complete file."""
    folder = checkpoint_dir(log_dir)
    indexed = [folder / f"{t}{SUFFIX}" for t in reversed(_read_index(folder))]
    others = sorted((p for p in folder.glob(f"*{SUFFIX}") if p not in indexed),
                    key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    return [p for p in indexed if p.is_file()] + others


def latest(log_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of ``log_dir`` (see :func:`find`), or None."""
    found = find(log_dir)
    return found[0] if found else None


# ------------------------------------------------------------------------------------------ reading
def _load(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    try:
        with np.load(path) as z:
            weights = [z[k] for k in sorted(k for k in z.files if k.startswith("w"))]
            opt = [z[k] for k in sorted(k for k in z.files if k.startswith("o"))]
            state = json.loads(z["state"].tobytes().decode())
    except Exception as err:  # noqa: BLE001 - zip, npz or JSON damage: say which file
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); it may be "
                              "truncated") from err
    return weights, opt, state


def _check_shapes(path: Path, saved: list[np.ndarray], want: list[tuple], what: str) -> None:
    got = [tuple(a.shape) for a in saved]
    if got != want:
        i = next((k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                 min(len(got), len(want)))
        raise CheckpointError(
            f"checkpoint {path} holds {len(got)} {what} arrays, the model needs {len(want)} (first "
            f"difference at #{i}: {got[i] if i < len(got) else None} vs "
            f"{want[i] if i < len(want) else None}): it was saved from another architecture or config")


def restore(path: str | os.PathLike, model, optimizer=None) -> dict:
    """Load a checkpoint's weights into ``model`` (and variables into ``optimizer``); returns its state.

    :raises CheckpointError: for an unreadable file or arrays that do not fit the model (another
        architecture), naming the file; the model is unchanged then.
    """
    path = Path(path)
    weights, opt, state = _load(path)
    _check_shapes(path, weights, [tuple(w.shape) for w in model.get_weights()], "weight")
    if optimizer is not None:
        optimizer.build(model.trainable_variables)
        if opt:
            shapes = [tuple(int(d) for d in v.shape) for v in optimizer.variables]
            _check_shapes(path, opt, shapes, "optimiser")
    model.set_weights(weights)
    if optimizer is not None and opt:
        for var, value in zip(optimizer.variables, opt, strict=True):
            var.assign(value)
    return state


def restore_latest(log_dir: str | os.PathLike, model, optimizer=None) -> tuple[Path, dict, list[str]]:
    """Restore the newest checkpoint of ``log_dir`` that loads.

    :return: ``(path, state, skipped)`` where ``skipped`` says which newer checkpoints failed and why.
    :raises CheckpointError: when none loads (or there is none).
    """
    skipped = []
    for path in find(log_dir):
        try:
            return path, restore(path, model, optimizer), skipped
        except CheckpointError as err:
            skipped.append(str(err))
    why = "; ".join(skipped) if skipped else f"no checkpoint in {checkpoint_dir(log_dir)}"
    raise CheckpointError(f"no usable checkpoint in {log_dir}: {why}")
