"""Exceptions of :mod:`tutorialreg.data`, and the grouped report of unavailable files."""

from __future__ import annotations

import os.path
import re
import urllib.parse
from collections.abc import Iterable

__all__ = ["CorruptFileError", "DataUnavailable", "ManifestError", "PairingError"]

FIX_HINT = (
    "To fix: get network access, or set TUTORIALREG_MIRROR to a folder (or base URL) laid out like "
    "shared/data, e.g. TUTORIALREG_MIRROR=../shared/data. Offline lung CT only: TUTORIALREG_ALLOW_STANDIN=1 "
    "builds stand-in images from the real lung masks."
)
SHOWN_FILES = 3  # file names shown per cause
SHOWN_CAUSES = 5  # distinct causes shown
CAUSE_CHARS = 700  # longest cause shown


class DataUnavailable(RuntimeError):
    """Files that could be had from nowhere.

    :ivar missing: every failed file as ``(manifest path, upstream URL, reason)``.

    The message groups the files by cause (the reason without what names one file: its URL, the URL's
    path and the manifest path): for each distinct cause, the number of files, the first few of them, their
    upstream URLs' common part and the cause once.
    """

    def __init__(self, missing: Iterable[tuple[str, str, str]]):
        self.missing = list(missing)
        super().__init__(summarise_missing(self.missing))


class PairingError(ValueError):
    """Paired folders do not match: a file without its partner, two files for one pair, or shapes that
    disagree."""


class CorruptFileError(ValueError):
    """A data file is truncated or corrupt (it cannot be decompressed or parsed)."""


class ManifestError(ValueError):
    """A manifest (or one of its entries) is malformed or unsafe, e.g. a path that leaves the cache."""


def _cause(reason: str, path: str, url: str) -> str:
    """``reason`` without what is specific to one file: its URL (and the URL's path), its manifest path
    and object addresses."""
    generic = reason.replace(url, "<url>")
    url_path = urllib.parse.urlsplit(url).path
    generic = generic.replace(url_path, "<url path>") if len(url_path) > 1 else generic
    generic = re.sub(r" at 0x[0-9a-fA-F]+", "", generic.replace(path, "<path>"))
    return generic if len(generic) <= CAUSE_CHARS else generic[: CAUSE_CHARS - 3] + "..."


def _upstream(urls: list[str]) -> str:
    """The upstream URL of one file, or the common part of several (``https://host/dir/...``)."""
    if len(urls) == 1:
        return urls[0]
    common = os.path.commonprefix(urls)
    return f"{common[: common.rfind('/') + 1]}... (e.g. {urls[0]})"


def summarise_missing(missing: list[tuple[str, str, str]]) -> str:
    """A short report of ``missing`` ``(path, url, reason)`` grouped by cause, ending with how to fix it.

    :return: the text (a few KB at most, whatever the number of files).
    """
    groups: dict[str, list[tuple[str, str]]] = {}
    for path, url, reason in missing:
        groups.setdefault(_cause(reason, path, url), []).append((path, url))
    lines = [f"{len(missing)} data file(s) unavailable ({len(groups)} distinct cause(s)):"]
    ranked = sorted(groups.items(), key=lambda g: -len(g[1]))
    for cause, files in ranked[:SHOWN_CAUSES]:
        shown = ", ".join(p for p, _ in files[:SHOWN_FILES])
        more = f" and {len(files) - SHOWN_FILES} more" if len(files) > SHOWN_FILES else ""
        lines += [
            f"- {len(files)} file(s): {shown}{more}",
            f"  upstream: {_upstream([u for _, u in files])}",
            f"  cause: {cause}",
        ]
    if len(ranked) > SHOWN_CAUSES:
        rest = sum(len(f) for _, f in ranked[SHOWN_CAUSES:])
        lines.append(f"- {len(ranked) - SHOWN_CAUSES} more cause(s) for {rest} file(s)")
    lines.append("(every file and its full reason: the exception's .missing list)")
    return "\n".join(lines + [FIX_HINT])
