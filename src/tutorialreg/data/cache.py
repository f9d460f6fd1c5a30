"""The data cache folder: where a manifest file goes, verifying files, leftover partial downloads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tutorialreg.data.manifest import check_entry, inside
from tutorialreg.runtime import data_dir_override

__all__ = ["PART_SUFFIX", "cache_target", "check_file", "data_dir", "file_hash", "partial_files"]

PART_SUFFIX = ".part"  # downloads in progress: ".{name}.{random}.part" beside their target


def data_dir() -> Path:
    """Cache folder: ``TUTORIALREG_DATA_DIR`` if set, else the platform cache (``pooch.os_cache``)."""
    override = data_dir_override()
    if override:
        return Path(override).expanduser()
    import pooch

    return Path(pooch.os_cache("tutorialreg")).expanduser()


def cache_target(entry: dict) -> Path:
    """Where manifest ``entry`` lives in the cache, after checking the entry.

    :raises ManifestError: for a malformed entry, or a path that is absolute, has ``..`` or resolves outside
        the cache folder.
    """
    return inside(data_dir(), check_entry(entry)["path"], "manifest entry")


def file_hash(path: str | Path, algorithm: str) -> str:
    """Hex digest of a file: ``sha256``, or ``gitblob`` (sha1 of ``b"blob <size>\\0"`` + content).

    :raises ValueError: for another algorithm.
    """
    if algorithm == "sha256":
        h = hashlib.sha256()
    elif algorithm == "gitblob":
        h = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    else:
        raise ValueError(f"unknown hash algorithm {algorithm!r}; expected 'sha256' or 'gitblob'")
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: str | Path, entry: dict) -> str | None:
    """Why ``path`` does not match the manifest ``entry`` (size in bytes, then hash), or None when it does.

    A file that disappears while it is checked (another process replacing it) reads as ``"no such file"``.
    """
    try:
        if not os.path.isfile(path):
            return "no such file"
        size = os.path.getsize(path)
        if entry.get("size") is not None and size != entry["size"]:
            return f"size {size} bytes, expected {entry['size']}"
        algorithm, expected = entry["hash"].split(":", 1)
        got = file_hash(path, algorithm)
    except FileNotFoundError:
        return "no such file"
    return None if got == expected.lower() else f"{algorithm} {got}, expected {expected}"


def partial_files(root: str | Path | None = None) -> list[Path]:
    """Leftover partial downloads (``*.part``) under ``root`` (default :func:`data_dir`), sorted."""
    root = Path(root) if root is not None else data_dir()
    return sorted(p for p in root.rglob(f"*{PART_SUFFIX}") if p.is_file()) if root.is_dir() else []
