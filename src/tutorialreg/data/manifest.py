"""The data manifest: where it is, loading it, and checking that its paths stay inside the cache."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from tutorialreg.data.errors import ManifestError

__all__ = ["MANIFEST_NAME", "check_entry", "inside", "load_manifest", "manifest_path", "safe_relative_path"]

MANIFEST_NAME = "data_manifest.yaml"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # tutorialreg/ (the manifest is packaged here)
REPO_ROOT = PACKAGE_DIR.parents[1]  # the repository root in a source checkout (src layout)
_HASHES = {"sha256": 64, "gitblob": 40}  # algorithm: hex digits
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def manifest_path() -> Path:
    """The manifest file: in the ``tutorialreg`` package folder when installed, else at the repository root.

    :raises FileNotFoundError: when it is in neither place.
    """
    for path in (PACKAGE_DIR / MANIFEST_NAME, REPO_ROOT / MANIFEST_NAME):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{MANIFEST_NAME} is neither in {PACKAGE_DIR} nor in {REPO_ROOT}")


def safe_relative_path(path: Any, where: str = "") -> str:
    """``path`` if it is a relative POSIX path without ``..`` (so that it cannot leave the folder it is
    joined to).

    :param where: context for the message (manifest file, dataset, entry).
    :raises ManifestError: for anything else (absolute, drive letter, ``..``, backslash, empty).
    """
    context = f" ({where})" if where else ""
    if not isinstance(path, str) or not path.strip():
        raise ManifestError(f"data path{context} must be a non-empty relative path, got {path!r}")
    posix = PurePosixPath(path)
    if posix.is_absolute() or PureWindowsPath(path).drive or "\\" in path:
        raise ManifestError(f"data path {path!r}{context} must be relative, like 'hnct/demo.h5'")
    if ".." in posix.parts:
        raise ManifestError(f"data path {path!r}{context} must not contain '..'")
    return path


def inside(root: Path, path: str, where: str = "") -> Path:
    """``root / path`` after checking that ``path`` is safe and that it resolves (links followed) inside
    ``root``.

    :raises ManifestError: naming the path, where it resolves and ``root``.
    """
    safe_relative_path(path, where)
    target = Path(root) / path
    resolved, base = target.resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        context = f" ({where})" if where else ""
        raise ManifestError(f"data path {path!r}{context} resolves to {resolved}, outside the folder {base}")
    return target


def check_entry(entry: Any, where: str = "manifest entry") -> dict:
    """``entry`` if it is ``{path, url, hash, size}`` with sane values (a safe relative path, an http(s)
    URL, ``sha256:``/``gitblob:`` hex digest, size in bytes or None).

    :raises ManifestError: naming ``where`` and what is wrong.
    """
    if not isinstance(entry, dict) or not {"path", "url", "hash"} <= set(entry):
        raise ManifestError(f"{where}: expected a mapping with path, url, hash and size, got {entry!r}")
    safe_relative_path(entry["path"], where)
    if not str(entry["url"]).startswith(("http://", "https://")):
        raise ManifestError(f"{where} ({entry['path']}): url must be http(s)://..., got {entry['url']!r}")
    algorithm, _, digest = str(entry["hash"]).partition(":")
    if _HASHES.get(algorithm) != len(digest) or not re.fullmatch(r"[0-9a-fA-F]+", digest):
        raise ManifestError(
            f"{where} ({entry['path']}): hash must be 'sha256:<64 hex>' or 'gitblob:<40 hex>', "
            f"got {entry['hash']!r}"
        )
    size = entry.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ManifestError(f"{where} ({entry['path']}): size must be a byte count or null, got {size!r}")
    return entry


def load_manifest(path: str | Path | None = None) -> dict[str, dict]:
    """Manifest datasets, checked.

    :param path: a manifest file; default :func:`manifest_path`.
    :return: ``{name: {description, citation, licence, files: [{path, url, hash, size}]}}``; ``hash`` is
        ``sha256:<hex>`` or ``gitblob:<hex>``, ``size`` in bytes or None.
    :raises ManifestError: naming the file, dataset and entry that is malformed or unsafe (an absolute path,
        ``..``).
    """
    import yaml

    path = Path(path) if path is not None else manifest_path()
    with open(path) as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    datasets = doc.get("datasets") if isinstance(doc, dict) else None
    if not isinstance(datasets, dict):
        raise ManifestError(f"{path}: expected a mapping 'datasets: {{name: {{files: [...]}}}}'")
    for name, meta in datasets.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ManifestError(f"{path}: dataset name {name!r} must be letters, digits, '_', '.', '-'")
        files = meta.get("files") if isinstance(meta, dict) else None
        if not isinstance(files, list):
            raise ManifestError(f"{path}: dataset {name!r} needs a list 'files'")
        for i, entry in enumerate(files):
            check_entry(entry, f"{path}, dataset {name!r}, file {i}")
    return datasets
