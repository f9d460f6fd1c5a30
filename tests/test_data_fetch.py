"""tutorialreg.data: manifest, cache, fetching and its failure modes (nothing is downloaded from outside)."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import importlib.resources
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tutorialreg
from tutorialreg import data

DEAD_URL = "http://127.0.0.1:9/unreachable/demo.h5"  # connection refused at once: no hang
SRC = Path(tutorialreg.__file__).resolve().parents[1]  # the folder that holds the package under test


def _entry(name: str, index: int = 0) -> dict:
    return dict(data.load_manifest()[name]["files"][index])


def _no_partial(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".part")], "partial download left behind"


def _flip_byte(src: Path, dst: Path, at: int = 1000) -> None:
    raw = bytearray(src.read_bytes())
    raw[at] ^= 0xFF
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".flip")
    tmp.write_bytes(bytes(raw))
    os.replace(tmp, dst)  # other processes never see a half-written file


def _use_manifest(monkeypatch, datasets: dict) -> None:
    """Every part of tutorialreg.data reads ``datasets`` as the manifest."""
    monkeypatch.setattr("tutorialreg.data.manifest.load_manifest", lambda path=None: datasets)


def _serve(handler_class) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------- manifest
def test_manifest_covers_every_source_row(mirror_dir):
    with open(mirror_dir / "SOURCES.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    files = {e["path"]: (name, e) for name, m in data.load_manifest().items() for e in m["files"]}
    assert len(files) == len(rows)
    for row in rows:
        name, e = files[row["local_path"]]
        assert e["url"] == row["upstream_url"]
        expected = f"sha256:{row['sha256']}" if row["sha256"] else f"gitblob:{row['git_blob_sha1']}"
        assert e["hash"] == expected
        assert e["size"] == (int(row["bytes"]) if row["bytes"] else None)
    counts = {n: len(m["files"]) for n, m in data.load_manifest().items()}
    assert counts == {"hnct": 1, "promise12": 1, "paired_ct_lung": 76, "paired_mrus_prostate": 352}
    for meta in data.load_manifest().values():
        assert meta["citation"] and meta["licence"]


def test_manifest_found_from_the_subpackage():
    path = data.manifest_path()
    assert path.name == data.MANIFEST_NAME == "data_manifest.yaml" and path.is_file()
    packaged = importlib.resources.files("tutorialreg") / data.MANIFEST_NAME  # where the wheel puts it
    assert packaged.is_file() and Path(str(packaged)).resolve() == path.resolve()


def test_gitblob_hash_matches_sources(mirror_dir):
    with open(mirror_dir / "SOURCES.tsv", newline="") as f:
        row = next(csv.DictReader(f, delimiter="\t"))
    assert data.file_hash(mirror_dir / row["local_path"], "gitblob") == row["git_blob_sha1"]


@pytest.mark.parametrize(
    ("path", "match"),
    [("../outside/x.h5", r"'\.\.'"), ("a/../../x.h5", r"'\.\.'"), ("/etc/passwd", "relative"),
     ("C:/x.h5", "relative"), ("a\\b.h5", "relative"), ("", "non-empty")],
)
def test_manifest_refuses_unsafe_paths(tmp_path, path, match):
    entry = {"path": path, "url": "https://example.org/x.h5", "hash": "sha256:" + "0" * 64, "size": 1}
    manifest = tmp_path / "m.yaml"
    import yaml

    manifest.write_text(yaml.safe_dump({"datasets": {"evil": {"files": [entry]}}}))
    with pytest.raises(data.ManifestError, match=match) as err:
        data.load_manifest(manifest)
    assert "evil" in str(err.value) and str(manifest) in str(err.value)


def test_manifest_refuses_malformed_entries(tmp_path):
    import yaml

    good = {"path": "a/x.h5", "url": "https://example.org/x.h5", "hash": "sha256:" + "0" * 64, "size": 1}
    for bad, match in [({"hash": "md5:abc"}, "hash must be"), ({"url": "ftp://x"}, "url must be"),
                       ({"size": -1}, "size must be")]:
        (tmp_path / "m.yaml").write_text(yaml.safe_dump({"datasets": {"d": {"files": [{**good, **bad}]}}}))
        with pytest.raises(data.ManifestError, match=match):
            data.load_manifest(tmp_path / "m.yaml")


# ---------------------------------------------------------------- fetching and bad input
def test_fetch_from_local_mirror(fresh_data_env):
    paths = data.fetch("hnct")
    assert paths == [fresh_data_env / "hnct" / "demo.h5"] and not paths.is_standin
    assert data.check_file(paths[0], _entry("hnct")) is None
    _no_partial(fresh_data_env)


def test_corrupt_cached_file_is_fetched_again(fresh_data_env):
    path = data.fetch("hnct")[0]
    _flip_byte(path, path)
    assert data.check_file(path, _entry("hnct")) is not None
    assert data.main(["verify"]) == 1
    assert data.fetch("hnct")[0] == path and data.check_file(path, _entry("hnct")) is None
    assert data.main(["verify"]) == 0


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated"])
@pytest.mark.parametrize("algorithm", ["sha256", "gitblob"])
def test_damaged_mirror_file_is_rejected(damage, algorithm, fresh_data_env, mirror_dir, tmp_path,
                                         monkeypatch):
    good = mirror_dir / "hnct" / "demo.h5"
    bad_mirror = tmp_path / "bad_mirror"
    if damage == "flipped_byte":
        _flip_byte(good, bad_mirror / "hnct" / "demo.h5")
    else:
        (bad_mirror / "hnct").mkdir(parents=True)
        (bad_mirror / "hnct" / "demo.h5").write_bytes(good.read_bytes()[:50_000])
    monkeypatch.setenv("TUTORIALREG_MIRROR", str(bad_mirror))
    entry = {**_entry("hnct"), "url": DEAD_URL}
    if algorithm == "gitblob":  # size unknown: only the hash can catch the damage
        entry.update(hash="gitblob:" + data.file_hash(good, "gitblob"), size=None)
    with pytest.raises(data.DataUnavailable, match="verification failed") as err:
        data.fetch_file(entry)
    assert DEAD_URL in str(err.value) and "TUTORIALREG_MIRROR" in str(err.value)
    assert not (fresh_data_env / "hnct" / "demo.h5").exists()
    _no_partial(fresh_data_env)


def test_unreachable_everywhere_names_url(fresh_data_env, tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIALREG_MIRROR", str(tmp_path / "no_such_mirror"))
    entry = {**_entry("hnct"), "url": DEAD_URL}
    with pytest.raises(data.DataUnavailable) as err:
        data.fetch_file(entry)
    assert err.value.missing[0][:2] == ("hnct/demo.h5", DEAD_URL)
    assert "TUTORIALREG_MIRROR" in str(err.value)
    _no_partial(fresh_data_env)


def test_http_mirror_downloads_with_pooch(fresh_data_env, mirror_dir, monkeypatch):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror_dir))
    handler.log_message = lambda *args: None
    server = _serve(handler)
    try:
        monkeypatch.setenv("TUTORIALREG_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
        path = data.fetch_file({**_entry("promise12"), "url": DEAD_URL})
    finally:
        server.shutdown()
    assert data.check_file(path, _entry("promise12")) is None


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        data.fetch("nope")


# ---------------------------------------------------------------- paths must stay inside the cache
def test_dotdot_path_writes_nothing_outside_the_cache(fresh_data_env, mirror_dir, tmp_path, monkeypatch):
    """A mirror where ``../outside/demo.h5`` exists: fetch_file refuses before creating anything."""
    mirror = tmp_path / "mirror" / "sub"
    (mirror.parent / "outside").mkdir(parents=True)
    mirror.mkdir()
    (mirror.parent / "outside" / "demo.h5").write_bytes((mirror_dir / "hnct" / "demo.h5").read_bytes())
    monkeypatch.setenv("TUTORIALREG_MIRROR", str(mirror))
    outside = fresh_data_env.parent / "outside"
    with pytest.raises(data.ManifestError, match=r"'\.\./outside/demo\.h5'.*'\.\.'"):
        data.fetch_file({**_entry("hnct"), "path": "../outside/demo.h5", "url": DEAD_URL})
    assert not outside.exists()


def test_absolute_path_never_deletes_a_user_file(fresh_data_env, tmp_path):
    precious = tmp_path / "user" / "thesis.h5"
    precious.parent.mkdir()
    precious.write_bytes(b"years of work")
    with pytest.raises(data.ManifestError, match="must be relative"):
        data.fetch_file({**_entry("hnct"), "path": str(precious), "url": DEAD_URL})
    assert precious.read_bytes() == b"years of work"


def test_link_out_of_the_cache_is_refused(fresh_data_env, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    fresh_data_env.mkdir(parents=True)
    (fresh_data_env / "hnct").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(data.ManifestError, match="outside the folder"):
        data.fetch_file({**_entry("hnct"), "url": DEAD_URL})
    assert not list((tmp_path / "elsewhere").iterdir())


# ---------------------------------------------------------------- an unresponsive mirror
@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers; yields its base URL."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    sock.settimeout(0.05)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.mark.parametrize("upstream", ["refused", "silent"])
def test_silent_mirror_costs_one_timeout_per_fetch(upstream, fresh_data_env, silent_server, monkeypatch):
    import requests  # noqa: F401 - imported before the clock starts

    n, timeout = 12, 0.5
    base = silent_server + "/upstream" if upstream == "silent" else "http://127.0.0.1:9"
    files = [{"path": f"slow/f{i}.bin", "url": f"{base}/slow/f{i}.bin", "hash": "sha256:" + "0" * 64,
              "size": 10} for i in range(n)]
    _use_manifest(monkeypatch, {"slow": {"files": files}})
    monkeypatch.setenv("TUTORIALREG_MIRROR", silent_server + "/mirror")
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailable) as err:
        data.fetch("slow", timeout=(timeout, timeout))
    elapsed = time.perf_counter() - start
    # one timeout for the mirror (+ one for a silent upstream host), not one per file and source
    timeouts = 1 if upstream == "refused" else 2
    assert elapsed < (timeouts + 1) * timeout + 0.5, f"{elapsed:.1f} s for {n} files"
    assert len(err.value.missing) == n
    assert "Timeout" in err.value.missing[0][2] and "skipped" in err.value.missing[-1][2]
    _no_partial(fresh_data_env)


def test_default_timeouts_are_short():
    from tutorialreg.data import download

    assert download.FetchSession().timeout == (download.CONNECT_TIMEOUT_S, download.READ_TIMEOUT_S)
    assert max(download.FetchSession().timeout) <= 20


# ---------------------------------------------------------------- interrupted downloads
class _Trickle(http.server.BaseHTTPRequestHandler):
    """Announces 10 MB and sends 8 KB every 25 ms."""

    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Length", str(10_000_000))
        self.end_headers()
        try:
            for _ in range(1280):
                self.wfile.write(b"x" * 8192)
                self.wfile.flush()
                time.sleep(0.025)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def test_sigterm_during_download_leaves_no_partial_file(tmp_path):
    server = _serve(_Trickle)
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUTORIALREG_")}
    env.update(TUTORIALREG_DATA_DIR=str(cache), PYTHONPATH=str(SRC))
    url = f"http://127.0.0.1:{server.server_address[1]}/big.bin"
    script = (
        "import sys; from tutorialreg import data; "
        "data.fetch_file({'path': 'slow/big.bin', 'url': sys.argv[1], 'hash': 'sha256:' + '0' * 64, "
        "'size': 10_000_000})"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, url], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in cache.rglob("*.part") if p.stat().st_size > 0]:
            assert proc.poll() is None and time.monotonic() < deadline, "download did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
        server.shutdown()
    assert code == 128 + signal.SIGTERM, proc.stderr.read()
    assert not list(cache.rglob("*.part"))


def test_verify_reports_and_cleans_partial_files(fresh_data_env, capsys):
    data.fetch("hnct")
    leftover = fresh_data_env / "hnct" / ".demo.h5.k3j2.part"
    leftover.write_bytes(b"half")
    assert data.partial_files() == [leftover]
    assert data.main(["verify"]) == 1
    assert f"LEFTOVER partial download {leftover}" in capsys.readouterr().out
    assert data.main(["verify", "--clean"]) == 0
    assert not leftover.exists() and data.partial_files() == []


# ---------------------------------------------------------------- concurrent repair
def _repair(entry: dict, barrier, rank: int, rounds: int) -> None:
    """One of several processes: each round, rank 0 corrupts the cached file, then all repair it at once."""
    import pooch  # noqa: F401 - imported before the race, so that the processes stay in step

    from tutorialreg import data as d

    target = d.data_dir() / entry["path"]
    for _ in range(rounds):
        barrier.wait(timeout=30)
        if rank == 0:
            _flip_byte(target, target)
        barrier.wait(timeout=30)
        d.fetch_file(entry)


def test_concurrent_repair_of_a_corrupt_file(fresh_data_env, tmp_path, monkeypatch):
    blob = np.random.default_rng(0).integers(0, 256, 12 << 20, dtype=np.uint8).tobytes()  # slow to hash
    (tmp_path / "mirror" / "big").mkdir(parents=True)
    (tmp_path / "mirror" / "big" / "blob.bin").write_bytes(blob)
    monkeypatch.setenv("TUTORIALREG_MIRROR", str(tmp_path / "mirror"))
    entry = {"path": "big/blob.bin", "url": DEAD_URL, "hash": "sha256:" + hashlib.sha256(blob).hexdigest(),
             "size": len(blob)}
    target = data.fetch_file(entry)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_repair, args=(entry, barrier, rank, 3)) for rank in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert data.check_file(target, entry) is None
    _no_partial(fresh_data_env)


# ---------------------------------------------------------------- a short report for a whole dataset
def test_unavailable_dataset_report_is_short(fresh_data_env, tmp_path, monkeypatch):
    files = [dict(e) for e in data.load_manifest()["paired_mrus_prostate"]["files"]]
    for e in files:  # the real upstream URLs on a host that refuses connections
        assert e["url"].startswith("https://github.com/YipengHu/example-data/raw/mrus/")
        e["url"] = e["url"].replace("https://github.com/", "http://127.0.0.1:9/")
    _use_manifest(monkeypatch, {"paired_mrus_prostate": {"files": files}})
    monkeypatch.setenv("TUTORIALREG_MIRROR", str(tmp_path / "no_such_mirror"))
    with pytest.raises(data.DataUnavailable) as err:
        data.fetch("paired_mrus_prostate")
    message = str(err.value)
    assert len(err.value.missing) == 352 and len(message) < 5000, len(message)
    assert "upstream: http://127.0.0.1:9/YipengHu/example-data/raw/mrus/... (e.g. http://" in message
    assert "352 data file(s) unavailable" in message and "351 file(s)" in message
    assert "set TUTORIALREG_MIRROR" in message and files[0]["path"] in message
    assert f"the mirror folder {tmp_path / 'no_such_mirror'} (TUTORIALREG_MIRROR) does not exist" in message
    assert all(p in reason for p, _, reason in err.value.missing)  # the full reasons are kept


def test_report_groups_distinct_causes():
    missing = [(f"d/f{i}.h5", f"https://h/x/f{i}.h5", f"/m/d/f{i}.h5: FileNotFoundError: d/f{i}.h5; "
                f"https://h/x/f{i}.h5: ConnectionError: url: /x/f{i}.h5 (<Connection object at 0x7f{i}>)")
               for i in range(40)] + [("d/g.h5", "https://h/x/g.h5", "https://h/x/g.h5: HTTPError: 404")]
    message = str(data.DataUnavailable(missing))
    assert "41 data file(s) unavailable (2 distinct cause(s))" in message
    assert "- 40 file(s): d/f0.h5, d/f1.h5, d/f2.h5 and 37 more" in message
    assert "  upstream: https://h/x/... (e.g. https://h/x/f0.h5)" in message
    assert ("cause: /m/<path>: FileNotFoundError: <path>; <url>: ConnectionError: url: <url path> "
            "(<Connection object>)") in message
    assert "upstream: https://h/x/g.h5\n  cause: <url>: HTTPError: 404" in message


# ---------------------------------------------------------------- command line
def test_cli(fresh_data_env, capsys):
    assert data.main(["fetch", "promise12"]) == 0
    assert data.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "promise12" in out and "paired_mrus_prostate" in out and "Litjens" in out
    (fresh_data_env / "promise12" / ".demo2.h5.x.part").write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    run = functools.partial(subprocess.run, env=env, capture_output=True, text=True, timeout=60)
    verify = run([sys.executable, "-m", "tutorialreg.data", "verify"])
    assert verify.returncode == 1 and "LEFTOVER" in verify.stdout
    clean = run([sys.executable, "-m", "tutorialreg.data", "verify", "--clean"])
    assert clean.returncode == 0 and "all cached files verified" in clean.stdout and "REMOVED" in clean.stdout


def test_file_hash_rejects_unknown_algorithm(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert data.file_hash(tmp_path / "f", "sha256") == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(ValueError, match="unknown hash algorithm 'md5'"):
        data.file_hash(tmp_path / "f", "md5")
