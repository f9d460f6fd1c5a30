"""Shared test fixtures.

Data: tests read the real files through the local mirror ``../shared/data`` beside the repository
(``TUTORIALREG_MIRROR``) into a pytest temporary cache (``TUTORIALREG_DATA_DIR``), so nothing leaks into
the user's cache and nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    """The local data mirror (``../shared/data``); tests that need it are skipped without it."""
    if not (MIRROR / "SOURCES.tsv").is_file():
        pytest.skip(f"data mirror not found at {MIRROR}")
    return MIRROR


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One temporary data cache for the whole session (filled from the mirror on first use)."""
    return tmp_path_factory.mktemp("tutorialreg_cache")


@pytest.fixture
def data_env(monkeypatch, mirror_dir, shared_cache) -> Path:
    """Mirror = ``../shared/data``, cache = the session's temporary cache, no stand-ins; returns the cache."""
    monkeypatch.setenv("TUTORIALREG_MIRROR", str(mirror_dir))
    monkeypatch.setenv("TUTORIALREG_DATA_DIR", str(shared_cache))
    monkeypatch.delenv("TUTORIALREG_ALLOW_STANDIN", raising=False)
    return shared_cache


@pytest.fixture
def fresh_data_env(monkeypatch, mirror_dir, tmp_path) -> Path:
    """Like ``data_env`` but with an empty cache of this test's own; returns the cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TUTORIALREG_MIRROR", str(mirror_dir))
    monkeypatch.setenv("TUTORIALREG_DATA_DIR", str(cache))
    monkeypatch.delenv("TUTORIALREG_ALLOW_STANDIN", raising=False)
    return cache
