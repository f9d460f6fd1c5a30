"""Fetching manifest files into the cache: mirror first, then upstream, verified, written atomically.

Every file is downloaded (or copied from a mirror folder) into a temporary ``*.part`` file beside its
target, verified, then renamed onto the target (``os.replace``, atomic), so a reader never sees a half
written file and concurrent processes may repair the same file. One :class:`FetchSession` per
:func:`fetch` remembers which sources (the mirror, an upstream host) failed to connect or timed out, and
skips them for the rest of that fetch. While fetching in the main thread, SIGTERM raises
:class:`Terminated` so the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import urllib.parse
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tutorialreg.checks import number
from tutorialreg.data import manifest as _manifest
from tutorialreg.data.cache import PART_SUFFIX, cache_target, check_file, data_dir
from tutorialreg.data.errors import DataUnavailable
from tutorialreg.runtime import allow_standin, mirror

__all__ = ["FetchResult", "FetchSession", "Terminated", "fetch", "fetch_file"]

CONNECT_TIMEOUT_S = 5.0  # a host that does not accept a connection by then is skipped
READ_TIMEOUT_S = 20.0  # longest silence between two received chunks
CHUNK_BYTES = 1 << 16


class FetchResult(list):
    """Local file paths of one dataset (manifest order), plus ``name``, ``root`` (its folder in the
    cache), ``is_standin`` and ``standin_files`` (manifest paths that :class:`PairedDataset` synthesises)."""

    def __init__(self, paths: Sequence[Path], name: str, root: Path, standin_files: Sequence[str] = ()):
        super().__init__(paths)
        self.name, self.root, self.standin_files = name, root, list(standin_files)
        self.is_standin = bool(self.standin_files)


@dataclass
class FetchSession:
    """What one :func:`fetch` learns about its sources.

    :ivar timeout: ``(connect, read)`` timeouts in seconds of each HTTP request.
    :ivar progress: show download progress bars.
    :ivar failed: source (``"mirror <base>"`` or ``"scheme://host"``) -> its first connection failure or
        timeout; such a source is skipped for the rest of the session.
    """

    timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
    progress: bool = False
    failed: dict[str, str] = field(default_factory=dict)


class Terminated(SystemExit):
    """SIGTERM arrived during a download; the partial file was removed. Exits with status 143 (128 + 15)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(128 + int(signum))

    def __str__(self) -> str:
        return "terminated by SIGTERM during a data download; its partial file was removed"


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (so ``finally`` clauses clean up).

    Only in the main thread and only while SIGTERM has its default action; otherwise nothing changes.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        """The SIGTERM handler."""
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _mirror_folder(base: str) -> Path:
    """A mirror folder; a relative one is taken from the working directory, or else from the repository
    root (so ``../shared/data`` also works for notebooks run inside ``book/``)."""
    folder = Path(base.removeprefix("file://")).expanduser()
    if not folder.is_absolute() and not folder.is_dir():
        folder = _manifest.REPO_ROOT / folder
    return folder.resolve()


class _Source(NamedTuple):
    """One place to try a file: ``key`` names what a failure is blamed on (the mirror, an upstream host),
    ``location`` is the file's URL or local path, ``problem`` what is known to be wrong before trying."""

    key: str
    location: str
    problem: str | None = None


def _sources(entry: dict) -> list[_Source]:
    """Where to try a file, in order: the mirror (``TUTORIALREG_MIRROR``, a folder or base URL), then the
    upstream URL."""
    out = []
    base = mirror()
    if base and base.startswith(("http://", "https://")):
        out.append(_Source(f"mirror {base}", base.rstrip("/") + "/" + entry["path"]))
    elif base:
        folder = _mirror_folder(base)
        problem = f"the mirror folder {folder} (TUTORIALREG_MIRROR) does not exist"
        problem = None if folder.is_dir() else problem
        out.append(_Source(f"mirror {folder}", str(folder / entry["path"]), problem))
    url = urllib.parse.urlsplit(entry["url"])
    out.append(_Source(f"{url.scheme}://{url.netloc}", entry["url"]))
    return out


def _unreachable(err: BaseException) -> bool:
    """True for a failure of the source as a whole: refused or failed connection, or a timeout."""
    import requests

    return isinstance(err, (requests.ConnectionError, requests.Timeout))


def _fetch_to(target: Path, location: str, entry: dict, session: FetchSession) -> None:
    """Download or copy ``location`` into a ``*.part`` file beside ``target``, verify it, rename it onto
    ``target``; the ``*.part`` file is removed whatever happens.

    :raises ValueError: when the file does not match the manifest entry; network and OS errors as raised.
    """
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PART_SUFFIX, dir=target.parent)
        os.close(fd)
        if location.startswith(("http://", "https://")):
            import pooch

            download = pooch.HTTPDownloader(
                progressbar=session.progress, timeout=session.timeout, chunk_size=CHUNK_BYTES
            )
            download(location, tmp, None)
        else:
            shutil.copyfile(location, tmp)
        if (why := check_file(tmp, entry)) is not None:
            raise ValueError(f"verification failed: {why}")
        os.replace(tmp, target)  # atomic: concurrent fetches of one file each put a whole copy
        tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def fetch_file(entry: dict, progress: bool = False, session: FetchSession | None = None) -> Path:
    """Local verified copy of one manifest entry; replaces a corrupt cached copy.

    :param entry: ``{path, url, hash, size}`` from :func:`load_manifest`.
    :param session: shared by the files of one :func:`fetch` (sources that failed are skipped).
    :return: the file's path in the cache.
    :raises ManifestError: when the entry's path would leave the cache (checked before anything is written).
    :raises DataUnavailable: (for this one file) when every source fails.
    """
    session = session if session is not None else FetchSession(progress=progress)
    target = cache_target(entry)
    if (stale := check_file(target, entry)) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = [] if stale == "no such file" else [f"cached copy {target} is corrupt ({stale}); kept"]
    with sigterm_raises():
        for source in _sources(entry):
            if source.key in session.failed:
                errors.append(f"{source.location}: skipped, {source.key} failed earlier in this fetch")
                continue
            try:
                if source.problem:
                    raise FileNotFoundError(source.problem)
                _fetch_to(target, source.location, entry, session)
                return target
            except Exception as err:  # noqa: BLE001 - any failure means: try the next source
                errors.append(f"{source.location}: {type(err).__name__}: {err}")
                if source.problem or _unreachable(err):
                    session.failed[source.key] = errors[-1]
    raise DataUnavailable([(entry["path"], entry["url"], "; ".join(errors))])


def fetch(name: str, progress: bool = False, timeout: tuple[float, float] | None = None) -> FetchResult:
    """Fetch and verify every file of dataset ``name``; return their local paths (manifest order).

    :param progress: progress bars (files, and bytes of each download).
    :param timeout: ``(connect, read)`` seconds per request; default
        ``(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)``. A source that fails to connect or times out once is
        skipped for the rest of this call, so an unresponsive mirror costs about one timeout in all.
    :raises ValueError: for an unknown dataset.
    :raises DataUnavailable: listing every file that could be had from nowhere, except lung CT images when
        stand-ins are allowed (``TUTORIALREG_ALLOW_STANDIN=1``): then ``is_standin`` is True.
    """
    datasets = _manifest.load_manifest()
    if name not in datasets:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(datasets)}")
    session = FetchSession(progress=progress)
    if timeout is not None:
        session.timeout = tuple(number(t, "timeout", low=0, low_open=True) for t in timeout)  # type: ignore
        if len(session.timeout) != 2:
            raise ValueError(f"timeout must be (connect, read) seconds, got {timeout!r}")
    files = datasets[name]["files"]
    if progress:
        from tqdm.auto import tqdm

        files = tqdm(files, desc=name, unit="file")
    paths, missing = [], []
    with sigterm_raises():
        for entry in files:
            try:
                paths.append(fetch_file(entry, progress, session))
            except DataUnavailable as err:
                missing += err.missing
    standin = [p for p, _, _ in missing if name == "paired_ct_lung" and "_images/" in p]
    if missing and (len(standin) < len(missing) or not allow_standin()):
        raise DataUnavailable(missing)
    if standin:
        _standin_notice(name, len(standin))
    return FetchResult(paths, name, data_dir() / name, standin)


_ANNOUNCED: set[str] = set()  # datasets whose stand-in banner this process has printed (once is enough)


def _standin_notice(name: str, count: int) -> None:
    """Say loudly (a printed banner, the first time in a process, and a warning every time) that ``count``
    images of ``name`` are stand-ins."""
    notice = (
        f"STAND-IN DATA: {count} lung CT image(s) of {name} are unavailable; synthetic CT-like volumes are "
        "built from the real lung masks instead (TUTORIALREG_ALLOW_STANDIN=1). Results on them are NOT "
        "results on real CT."
    )
    if name not in _ANNOUNCED:
        _ANNOUNCED.add(name)
        print(f"\n{'!' * 100}\n{notice}\n{'!' * 100}\n", flush=True)
    warnings.warn(notice, stacklevel=3)
