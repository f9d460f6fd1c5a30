"""tutorialreg.data against the real files of the local mirror (see conftest.py: nothing is downloaded)."""

from __future__ import annotations

import csv
import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tutorialreg import data

DEAD_URL = "http://127.0.0.1:9/unreachable/demo.h5"  # connection refused at once: no hang


def _entry(name: str, index: int = 0) -> dict:
    return dict(data.load_manifest()[name]["files"][index])


def _no_partial(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".part")], "partial download left behind"


def _flip_byte(src: Path, dst: Path, at: int = 1000) -> None:
    raw = bytearray(src.read_bytes())
    raw[at] ^= 0xFF
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(raw))


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


def test_gitblob_hash_matches_sources(mirror_dir):
    with open(mirror_dir / "SOURCES.tsv", newline="") as f:
        row = next(csv.DictReader(f, delimiter="\t"))
    assert data.file_hash(mirror_dir / row["local_path"], "gitblob") == row["git_blob_sha1"]


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
def test_damaged_mirror_file_is_rejected(
    damage, algorithm, fresh_data_env, mirror_dir, tmp_path, monkeypatch
):
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
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("TUTORIALREG_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
        path = data.fetch_file({**_entry("promise12"), "url": DEAD_URL})
    finally:
        server.shutdown()
    assert data.check_file(path, _entry("promise12")) is None


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        data.fetch("nope")


# ---------------------------------------------------------------- loaders
def test_load_hnct(data_env):
    d = data.load_hnct()
    assert d["image"].shape == (128, 128, 37) and d["image"].dtype == np.float32
    assert d["labels"].shape == (128, 128, 37, 2) and d["labels"].dtype == np.float32
    assert len(d["label_names"]) == 2
    assert d["image"].min() == -1024 and d["image"].max() == 2022  # raw HU kept
    assert set(np.unique(d["labels"])) == {0.0, 1.0}
    n = data.normalise(d["image"])
    assert n.dtype == np.float32 and n.min() == 0 and n.max() == 1


def test_load_promise12(data_env):
    d = data.load_promise12()
    for key in ("image0", "image1", "label0", "label1"):
        assert d[key].shape == (32, 128, 128) and d[key].dtype == np.float32
    assert d["image0"].max() > 1 and set(np.unique(d["label0"])) == {0.0, 1.0}


def test_mrus_pairs_native_shapes(data_env):
    ds = data.PairedDataset("paired_mrus_prostate", None)
    assert len(ds) == 88 and not ds.is_standin
    item = ds[0]
    assert item["name"] == "obs000"
    assert item["fixed_image"].shape == (47, 63, 44) and item["moving_image"].shape == (69, 69, 64)
    assert item["fixed_label"].shape == (47, 63, 44, 6) and item["moving_label"].shape == (69, 69, 64, 6)
    for key in ("fixed_image", "moving_image", "fixed_label", "moving_label"):
        assert item[key].dtype == np.float32 and item[key].min() >= 0 and item[key].max() <= 1
    assert ds[0] is item  # cached in the instance


def test_split_pairs_seeded(data_env):
    names = data.PairedDataset("paired_mrus_prostate").names
    a, b = data.split_pairs(names, seed=1), data.split_pairs(names[::-1], seed=1)
    assert a == b and [len(a[k]) for k in ("train", "valid", "test")] == [62, 9, 17]
    assert sorted(a["train"] + a["valid"] + a["test"]) == sorted(names)
    assert data.split_pairs(names, seed=2) != a
    with pytest.raises(ValueError, match="fractions"):
        data.split_pairs(names, fractions=(0.5, 0.5, 0.5))


def test_tf_dataset_batches_seeded_and_augmented(data_env):
    names = data.split_pairs(data.PairedDataset("paired_mrus_prostate").names, seed=0)["valid"][:3]
    ds = data.PairedDataset("paired_mrus_prostate", None, image_shape=(16, 16, 16), names=names)
    channels = [ds[i]["moving_label"].shape for i in range(3)]
    assert channels == [ds[i]["fixed_label"].shape for i in range(3)] and channels[0][:3] == (16, 16, 16)
    batches = list(ds.dataset(batch_size=2, seed=3, sample_label="sample").as_numpy_iterator())
    assert [len(b["name"]) for b in batches] == [2, 1]
    assert batches[0]["moving_image"].shape == (2, 16, 16, 16)
    assert batches[0]["fixed_label"].shape == (2, 16, 16, 16, 1)
    order = [n for b in batches for n in b["name"]]
    again = [
        n
        for b in ds.dataset(batch_size=2, seed=3, sample_label="first").as_numpy_iterator()
        for n in b["name"]
    ]
    assert order == again and sorted(order) == sorted(n.encode() for n in names)
    if len({c[-1] for c in channels}) > 1:  # whole labels with different channel counts cannot be batched
        with pytest.raises(Exception, match="sample_label"):
            list(ds.dataset(batch_size=3, sample_label="all").as_numpy_iterator())
    pytest.importorskip("tutorialreg.warp")
    plain = next(ds.dataset(batch_size=3, shuffle=False, sample_label="first").as_numpy_iterator())
    aug = ds.dataset(batch_size=3, shuffle=False, augment_scale=0.3, seed=5, sample_label="first")
    aug = next(aug.as_numpy_iterator())
    assert aug["moving_label"].shape == plain["moving_label"].shape
    assert not np.allclose(aug["moving_image"], plain["moving_image"])
    assert aug["fixed_label"].min() >= -1e-5 and aug["fixed_label"].max() <= 1 + 1e-5


def _write_pairs(root: Path, pairs: dict[str, tuple]) -> None:
    """pairs: folder -> {file name: shape}; writes small NIfTI volumes."""
    for folder, files in pairs.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, shape in files.items():
            nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), root / folder / name)


def test_user_folder_pairing_errors(tmp_path):
    ok = {"a.nii.gz": (6, 5, 4)}
    _write_pairs(
        tmp_path / "good" / "train",
        {f"{s}_{k}": ok for s in ("moving", "fixed") for k in ("images", "labels")},
    )
    ds = data.PairedDataset(tmp_path / "good", "train", image_shape=(3, 3, 3))
    assert ds[0]["fixed_label"].shape == (3, 3, 3, 1)
    _write_pairs(tmp_path / "good" / "train", {"moving_images": {"b.nii.gz": (6, 5, 4)}})
    with pytest.raises(data.PairingError, match=r"fixed_images/ lacks \['b'\]"):
        data.PairedDataset(tmp_path / "good", "train")
    _write_pairs(
        tmp_path / "shape",
        {
            "moving_images": ok,
            "fixed_images": ok,
            "moving_labels": ok,
            "fixed_labels": {"a.nii.gz": (6, 5, 3)},
        },
    )
    with pytest.raises(data.PairingError, match="label shape"):
        data.PairedDataset(tmp_path / "shape")[0]
    with pytest.raises(FileNotFoundError, match="test"):
        data.PairedDataset(tmp_path / "good", "test")


def test_h5_pairs(tmp_path):
    import h5py

    for folder in ("moving_images", "fixed_images"):
        (tmp_path / folder).mkdir()
        with h5py.File(tmp_path / folder / "p1.h5", "w") as f:
            f["x"] = np.arange(64, dtype=np.int16).reshape(4, 4, 4)
    item = data.PairedDataset(tmp_path, labeled=False)[0]
    assert set(item) == {"moving_image", "fixed_image", "name"} and item["fixed_image"].max() == 1


# ---------------------------------------------------------------- stand-in lung CT
@pytest.fixture
def lung_offline(data_env, monkeypatch):
    """The lung CT images' upstream URLs made unreachable (CI may have network)."""
    manifest = data.load_manifest()
    for e in manifest["paired_ct_lung"]["files"]:
        e["url"] = DEAD_URL
    monkeypatch.setattr(data, "load_manifest", lambda path=None: manifest)


def test_lung_images_missing_raise_without_standin(lung_offline):
    with pytest.raises(data.DataUnavailable) as err:
        data.fetch("paired_ct_lung")
    missing = [p for p, _, _ in err.value.missing]
    assert len(missing) == 38 and all("_images/" in p for p in missing)
    assert "TUTORIALREG_ALLOW_STANDIN" in str(err.value)


def test_lung_standin(lung_offline, monkeypatch, mirror_dir):
    monkeypatch.setenv("TUTORIALREG_ALLOW_STANDIN", "1")
    with pytest.warns(UserWarning, match="STAND-IN"):
        ds = data.PairedDataset("paired_ct_lung", "valid", image_shape=(24, 24, 26))
    assert ds.is_standin and len(ds) == 1
    item = ds[0]
    assert item["fixed_image"].shape == (24, 24, 26) and item["moving_label"].shape == (24, 24, 26, 1)
    assert 0 <= item["fixed_image"].min() and item["fixed_image"].max() == 1
    label = data.read_volume(mirror_dir / "paired_ct_lung/valid/fixed_labels/case_008.nii.gz")
    ct = data.standin_ct(label, seed=0)
    assert ct.shape == label.shape == (192, 192, 208) and ct.dtype == np.float32
    lung = label > 0.5
    assert abs(np.median(ct[lung]) + 850) < 30  # parenchyma
    assert abs(np.median(ct[ct > -500]) - 40) < 10 and (ct < -950).mean() > 0.3  # soft tissue, air outside
    np.testing.assert_array_equal(ct, data.standin_ct(label, seed=0))


# ---------------------------------------------------------------- command line
def test_cli(fresh_data_env, capsys):
    assert data.main(["fetch", "promise12"]) == 0
    assert data.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "promise12" in out and "paired_mrus_prostate" in out and "Litjens" in out
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    run = subprocess.run(
        [sys.executable, "-m", "tutorialreg.data", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "all cached files verified" in run.stdout
