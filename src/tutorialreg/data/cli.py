"""Command line: ``python -m tutorialreg.data list | fetch NAME|all | verify [--clean]``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from tutorialreg.data import manifest as _manifest
from tutorialreg.data.cache import check_file, data_dir, partial_files
from tutorialreg.data.download import fetch
from tutorialreg.data.errors import DataUnavailable
from tutorialreg.runtime import mirror

__all__ = ["main"]


def _list(datasets: dict, cache: Path) -> int:
    """Print each dataset's file count, size, how much is cached, citation and licence."""
    for name, meta in datasets.items():
        files = meta["files"]
        size = sum(e["size"] or 0 for e in files) / 2**20
        cached = sum((cache / e["path"]).exists() for e in files)
        unsized = sum(e["size"] is None for e in files)
        print(
            f"{name:22s} {len(files):4d} files  {size:6.1f} MiB"
            + (f" + {unsized} of unknown size" if unsized else "")
            + f"  {cached:4d} cached\n"
            f"{'':22s} {meta.get('citation', '')}\n{'':22s} licence: {meta.get('licence', '')}"
        )
    return 0


def _fetch(datasets: dict, which: str) -> int:
    """Fetch one dataset or ``all`` with progress bars; 1 (report on stderr) when files are missing."""
    try:
        for name in datasets if which == "all" else [which]:
            result = fetch(name, progress=True)
            standin = " (STAND-IN images)" * result.is_standin
            print(f"{name}: {len(result)} files in {result.root}{standin}")
    except DataUnavailable as err:
        print(err, file=sys.stderr)
        return 1
    return 0


def _verify(datasets: dict, cache: Path, clean: bool) -> int:
    """Re-check every cached file and report leftover partial downloads (``--clean`` removes them)."""
    bad = 0
    for name, meta in datasets.items():
        present = [e for e in meta["files"] if (cache / e["path"]).exists()]
        for entry in present:
            if (why := check_file(cache / entry["path"], entry)) is not None:
                bad += 1
                print(f"CORRUPT {entry['path']}: {why}")
        print(f"{name}: checked {len(present)} cached files")
    partial = partial_files(cache)
    for path in partial:
        if clean:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        print(f"{'REMOVED' if clean else 'LEFTOVER'} partial download {path}")
    if partial and not clean:
        print(f"{len(partial)} partial download(s) left by interrupted fetches; verify --clean removes them")
    print(f"{bad} corrupt file(s); run fetch again to replace them" if bad else "all cached files verified")
    return 1 if bad or (partial and not clean) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``list`` datasets, ``fetch NAME|all`` (progress bars) or ``verify [--clean]`` the cache.

    :return: exit code (0 when everything asked for is there and sound).
    """
    parser = argparse.ArgumentParser(
        prog="python -m tutorialreg.data", description="Verified data downloads for the tutorialreg book."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="datasets, sizes and what is cached")
    sub.add_parser("fetch", help="download and verify").add_argument("name", help="dataset name or 'all'")
    verify = sub.add_parser("verify", help="re-check every cached file, report leftover partial downloads")
    verify.add_argument(
        "--clean", action="store_true", help="remove leftover partial downloads (*.part); not while fetching"
    )
    args = parser.parse_args(argv)
    datasets, cache = _manifest.load_manifest(), data_dir()
    print(f"cache: {cache}   mirror: {mirror() or '(none)'}")
    if args.command == "list":
        return _list(datasets, cache)
    if args.command == "fetch":
        if args.name != "all" and args.name not in datasets:
            parser.error(f"unknown dataset {args.name!r}; expected 'all' or one of {sorted(datasets)}")
        return _fetch(datasets, args.name)
    return _verify(datasets, cache, args.clean)


if __name__ == "__main__":  # pragma: no cover - python -m tutorialreg.data.cli
    sys.exit(main())
