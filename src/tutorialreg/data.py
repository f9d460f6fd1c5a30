"""Verified data downloads, a local mirror, and loaders for every chapter's data.

Files are listed in ``data_manifest.yaml`` (upstream URL, hash, size). :func:`fetch` puts them in the
cache folder (``pooch.os_cache("tutorialreg")``, or ``TUTORIALREG_DATA_DIR``), trying the mirror named by
``TUTORIALREG_MIRROR`` (a folder or base URL laid out like ``shared/data``) before the upstream URL.
Every file is verified (size, then ``sha256:`` or ``gitblob:`` hash) before use and written atomically.

Stand-in lung CT: the ``paired_ct_lung`` images are upstream only. When they cannot be had and
``TUTORIALREG_ALLOW_STANDIN=1``, :func:`fetch` says so loudly and returns ``is_standin=True``;
:class:`PairedDataset` then builds CT-like volumes from the real lung masks in memory (never written to
disk), see :func:`standin_ct`. A dataset is either all real or all stand-in.

CLI: ``python -m tutorialreg.data list | fetch NAME|all | verify``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tutorialreg.config import allow_standin

MANIFEST_NAME = "data_manifest.yaml"
TIMEOUT_S = 30  # per connect / read, so an unreachable host fails instead of hanging
_SUFFIXES = (".nii.gz", ".nii", ".h5")


class DataUnavailable(RuntimeError):
    """A file could be had from nowhere; ``missing`` is a list of ``(path, url, reason)``."""

    def __init__(self, missing: list[tuple[str, str, str]]):
        self.missing = missing
        lines = [f"  {p}\n    from {u}\n    ({why})" for p, u, why in missing]
        super().__init__(
            f"{len(missing)} data file(s) unavailable:\n"
            + "\n".join(lines)
            + "\nTo fix: get network access, "
            "or set TUTORIALREG_MIRROR to a folder (or base URL) laid out like shared/data, e.g. "
            "TUTORIALREG_MIRROR=../shared/data. Offline lung CT only: TUTORIALREG_ALLOW_STANDIN=1 builds "
            "stand-in images from the real lung masks."
        )


class PairingError(ValueError):
    """Paired folders do not match: a file without its partner, or shapes that disagree."""


class FetchResult(list):
    """List of local file paths of one dataset, plus ``name``, ``root`` (its folder in the cache),
    ``is_standin`` and ``standin_files`` (manifest paths that :class:`PairedDataset` synthesises)."""

    def __init__(self, paths, name: str, root: Path, standin_files: Sequence[str] = ()):
        super().__init__(paths)
        self.name, self.root, self.standin_files = name, root, list(standin_files)
        self.is_standin = bool(self.standin_files)


# ---------------------------------------------------------------- manifest, cache, verification
def manifest_path() -> Path:
    """The manifest: next to this module when packaged, else at the repository root (src layout)."""
    here = Path(__file__).resolve().parent
    for path in (here / MANIFEST_NAME, here.parents[1] / MANIFEST_NAME):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{MANIFEST_NAME} not found next to {here} nor at the repository root")


def load_manifest(path: str | Path | None = None) -> dict[str, dict]:
    """Manifest datasets: ``{name: {description, citation, licence, files: [{path, url, hash, size}]}}``."""
    import yaml

    with open(path or manifest_path()) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["datasets"]


def data_dir() -> Path:
    """Cache folder: ``TUTORIALREG_DATA_DIR`` if set, else the platform cache (``pooch.os_cache``)."""
    import pooch

    return Path(os.environ.get("TUTORIALREG_DATA_DIR") or pooch.os_cache("tutorialreg")).expanduser()


def file_hash(path: str | Path, algorithm: str) -> str:
    """Hex digest of a file: ``sha256``, or ``gitblob`` (sha1 of ``b"blob <size>\\0"`` + content)."""
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
    """Why ``path`` does not match the manifest ``entry`` (size, then hash), or None when it does."""
    if not os.path.isfile(path):
        return "no such file"
    size = os.path.getsize(path)
    if entry.get("size") is not None and size != entry["size"]:
        return f"size {size} bytes, expected {entry['size']}"
    algorithm, expected = entry["hash"].split(":", 1)
    if (got := file_hash(path, algorithm)) != expected.lower():
        return f"{algorithm} {got}, expected {expected}"
    return None


def _sources(entry: dict) -> list[str]:
    """Where to try a file, in order: the mirror (folder or base URL), then upstream.

    A relative mirror folder is taken from the working directory, or else from the repository root
    (so ``../shared/data`` also works for notebooks run inside ``book/``).
    """
    mirror = os.environ.get("TUTORIALREG_MIRROR", "").strip()
    if mirror.startswith(("http://", "https://")):
        return [mirror.rstrip("/") + "/" + entry["path"], entry["url"]]
    if not mirror:
        return [entry["url"]]
    folder = Path(mirror.removeprefix("file://")).expanduser()
    if not folder.is_absolute() and not folder.is_dir():
        folder = Path(__file__).resolve().parents[2] / folder
    return [str(folder.resolve() / entry["path"]), entry["url"]]


def fetch_file(entry: dict, progress: bool = False) -> Path:
    """Local verified copy of one manifest entry; re-fetches a corrupt cached copy.

    Each source is copied (local mirror) or downloaded with pooch into a temporary file beside the
    target, verified, then renamed onto the final name; a failed source leaves nothing behind.
    Raises :class:`DataUnavailable` (one file) when every source fails.
    """
    import pooch

    target = data_dir() / entry["path"]
    if target.exists():
        if check_file(target, entry) is None:
            return target
        target.unlink()  # corrupt or stale: fetch again
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for source in _sources(entry):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        try:
            if source.startswith(("http://", "https://")):
                pooch.HTTPDownloader(progressbar=progress, timeout=TIMEOUT_S)(source, tmp, None)
            else:
                shutil.copyfile(source, tmp)
            if (why := check_file(tmp, entry)) is not None:
                raise ValueError(f"verification failed: {why}")
            os.replace(tmp, target)
            return target
        except Exception as err:  # noqa: BLE001 - any failure means: try the next source
            errors.append(f"{source}: {type(err).__name__}: {err}"[:300])
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataUnavailable([(entry["path"], entry["url"], "; ".join(errors))])


def fetch(name: str, progress: bool = False) -> FetchResult:
    """Fetch and verify every file of dataset ``name``; return their local paths (manifest order).

    Raises :class:`DataUnavailable` listing every file that could be had from nowhere, except lung CT
    images when stand-ins are allowed (``TUTORIALREG_ALLOW_STANDIN=1``): then ``is_standin`` is True.
    """
    datasets = load_manifest()
    if name not in datasets:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(datasets)}")
    paths, missing = [], []
    files = datasets[name]["files"]
    if progress:
        from tqdm.auto import tqdm

        files = tqdm(files, desc=name, unit="file")
    for entry in files:
        try:
            paths.append(fetch_file(entry, progress))
        except DataUnavailable as err:
            missing += err.missing
    standin = [p for p, _, _ in missing if name == "paired_ct_lung" and "_images/" in p]
    if missing and (len(standin) < len(missing) or not allow_standin()):
        raise DataUnavailable(missing)
    if standin:
        notice = (
            f"STAND-IN DATA: {len(standin)} lung CT image(s) of {name} are unavailable; synthetic CT-like "
            "volumes are built from the real lung masks instead (TUTORIALREG_ALLOW_STANDIN=1). Results on "
            "them are NOT results on real CT."
        )
        print(f"\n{'!' * 100}\n{notice}\n{'!' * 100}\n", flush=True)
        warnings.warn(notice, stacklevel=2)
    return FetchResult(paths, name, data_dir() / name, standin)


# ---------------------------------------------------------------- h5 loaders
def normalise(x) -> np.ndarray:
    """Min-max scale to [0, 1] as float32 (a constant array gives zeros)."""
    x = np.asarray(x, dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def load_hnct() -> dict:
    """Head-and-neck CT: dict with ``image`` [128,128,37] float32 HU, ``labels`` [128,128,37,2] float32
    {0,1}, ``label_names`` (one per label channel)."""
    import h5py

    with h5py.File(fetch("hnct")[0], "r") as f:
        image, labels = f["image"][()], f["label"][()]
    return {
        "image": image.astype(np.float32),
        "labels": labels.astype(np.float32),
        "label_names": ("brainstem", "spinal cord"),
    }


def load_promise12() -> dict:
    """Prostate MR of two patients: dict with ``image0``, ``image1`` [32,128,128] float32 raw intensities
    and ``label0``, ``label1`` [32,128,128] float32 {0,1} gland masks."""
    import h5py

    with h5py.File(fetch("promise12")[0], "r") as f:
        return {k: f[k][()].astype(np.float32) for k in ("image0", "image1", "label0", "label1")}


# ---------------------------------------------------------------- paired volumes
def read_volume(path: str | Path) -> np.ndarray:
    """A NIfTI (``.nii``, ``.nii.gz``) or single-dataset ``.h5`` volume as float32."""
    path = Path(path)
    if path.name.endswith(".h5"):
        import h5py

        with h5py.File(path, "r") as f:
            if len(f) != 1:
                raise ValueError(f"{path}: expected an h5 file with one dataset, found keys {list(f)}")
            return np.asarray(f[next(iter(f))][()], dtype=np.float32)
    import nibabel as nib

    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def resize(volume: np.ndarray, shape: Sequence[int] | None) -> np.ndarray:
    """Order-1 resampling of ``[d1,d2,d3]`` or ``[d1,d2,d3,c]`` (per channel) to ``shape`` (3 ints)."""
    if shape is None or tuple(volume.shape[:3]) == tuple(shape):
        return volume
    from scipy.ndimage import zoom

    factors = [t / s for t, s in zip(shape, volume.shape[:3], strict=True)]
    if volume.ndim == 3:
        return zoom(volume, factors, order=1).astype(np.float32)
    return np.stack([zoom(volume[..., c], factors, order=1) for c in range(volume.shape[3])], -1)


def split_pairs(names: Sequence[str], fractions=(0.7, 0.1, 0.2), seed: int = 0) -> dict[str, list[str]]:
    """Seeded split of pair names into ``{"train", "valid", "test"}`` (sorted lists, sizes by rounding)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(sorted(names))
    n_train, n_valid = round(fractions[0] * len(order)), round(fractions[1] * len(order))
    parts = order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]
    return {k: sorted(p.tolist()) for k, p in zip(("train", "valid", "test"), parts, strict=True)}


def standin_ct(lung_mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """A CT-like float32 volume in HU, same shape as ``lung_mask`` ``[d1,d2,d3]``: lung parenchyma near
    -850 HU with smooth seeded texture, soft tissue ~40 HU in a body grown from the lungs, air -1000 HU."""
    from scipy import ndimage

    mask = np.asarray(lung_mask) > 0.5
    rng = np.random.default_rng(seed)
    f = 4  # body and texture are built on a 4x coarser grid, then interpolated up
    coarse = mask[::f, ::f, ::f]
    up = [s / c for s, c in zip(mask.shape, coarse.shape, strict=True)]
    distance = ndimage.distance_transform_edt(~coarse)  # to the lungs, in coarse voxels
    body = (ndimage.zoom(distance.astype(np.float32), up, order=1) <= 6) | mask  # dilated by ~24 voxels
    texture = ndimage.gaussian_filter(rng.standard_normal(coarse.shape).astype(np.float32), 1.0)
    texture = ndimage.zoom(texture / texture.std(), up, order=1)
    lung = -850 + 50 * texture + 150 * np.clip(texture - 1.5, 0, None)  # texture and a few vessels
    image = np.where(mask, lung, np.where(body, 40 + 15 * texture, np.float32(-1000)))
    return image + 8 * rng.standard_normal(mask.shape, dtype=np.float32)  # acquisition noise


class PairedDataset:
    """Moving/fixed volume pairs from ``{split}/{moving,fixed}_{images,labels}/`` (matched by file name).

    :param root_or_name: a manifest dataset name (fetched) or any folder with that layout.
    :param split: sub-folder (``"train"``...) or None for a flat layout (use ``names=`` with
        :func:`split_pairs` to split it).
    :param image_shape: fixed (and by default moving) volumes are resampled to it; None keeps native shapes.
    :param moving_shape: shape for moving volumes when it differs from ``image_shape``.
    :param names: pair names (file names without suffix) to keep; default all.

    ``ds[i]`` is a dict: ``moving_image``, ``fixed_image`` [d1,d2,d3] float32 in [0,1]; ``moving_label``,
    ``fixed_label`` [d1,d2,d3,c] float32 (if ``labeled``); ``name``. Loaded arrays are cached in the instance.
    """

    def __init__(
        self,
        root_or_name,
        split: str | None = None,
        image_shape=None,
        labeled: bool = True,
        moving_shape=None,
        names: Sequence[str] | None = None,
        cache: bool = True,
    ):
        self.is_standin = False
        if (
            isinstance(root_or_name, str)
            and root_or_name in load_manifest()
            and not Path(root_or_name).exists()
        ):
            result = fetch(root_or_name)
            root, self.is_standin = result.root, result.is_standin
        else:
            root = Path(root_or_name)
        self.root = root / split if split else root
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"no folder {self.root} (split {split!r}); expected {{split}}/moving_images/ ..."
            )
        self.fixed_shape = tuple(image_shape) if image_shape is not None else None
        self.moving_shape = tuple(moving_shape) if moving_shape is not None else self.fixed_shape
        self.labeled, self._cache = labeled, {} if cache else None
        kinds = ["labels"] if self.is_standin else ["images"] + (["labels"] if labeled else [])
        files = {}
        for side in ("moving", "fixed"):
            for kind in kinds:
                folder = self.root / f"{side}_{kind}"
                if not folder.is_dir():
                    raise PairingError(f"missing folder {folder} (expected {side}_{kind}/ under {self.root})")
                files[side, kind] = {self._stem(p): p for p in folder.iterdir() if p.name.endswith(_SUFFIXES)}
        all_names = set().union(*files.values())
        lost = [
            f"{side}_{kind}/ lacks {sorted(all_names - set(found))[:5]}"
            for (side, kind), found in files.items()
            if all_names - set(found)
        ]
        if lost:
            raise PairingError(f"unpaired files in {self.root}: " + "; ".join(lost))
        self.files = files
        self.names = sorted(all_names) if names is None else list(names)
        if unknown := sorted(set(self.names) - all_names):
            raise PairingError(f"pair names not found in {self.root}: {unknown[:5]}")

    @staticmethod
    def _stem(path: Path) -> str:
        return next(path.name[: -len(s)] for s in _SUFFIXES if path.name.endswith(s))

    def __len__(self) -> int:
        return len(self.names)

    def _side(self, name: str, side: str, shape) -> dict:
        label = read_volume(self.files[side, "labels"][name]) if self.labeled or self.is_standin else None
        if label is not None and label.ndim == 3:
            label = label[..., None]
        if self.is_standin:  # synthesised at the working resolution (cheap), not at 192 x 192 x 208
            label = resize(label, shape)
            image = standin_ct(label.max(-1), seed=zlib.crc32(f"{self.root.name}/{side}/{name}".encode()))
        else:
            image = read_volume(self.files[side, "images"][name])
        if label is not None and label.shape[:3] != image.shape:
            raise PairingError(
                f"{side} pair {name!r}: label shape {label.shape} does not match image {image.shape}"
            )
        out = {f"{side}_image": normalise(resize(image, shape))}
        if self.labeled:
            out[f"{side}_label"] = resize(label, shape).astype(np.float32)
        return out

    def __getitem__(self, i: int) -> dict:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        name = self.names[i]
        item = {
            **self._side(name, "moving", self.moving_shape),
            **self._side(name, "fixed", self.fixed_shape),
            "name": name,
        }
        if self.labeled and item["moving_label"].shape[-1] != item["fixed_label"].shape[-1]:
            raise PairingError(f"pair {name!r}: moving and fixed labels have different channel counts")
        if self._cache is not None:
            self._cache[i] = item
        return item

    def dataset(
        self,
        batch_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        augment_scale: float = 0.0,
        repeat: bool = False,
        drop_remainder: bool = False,
        sample_label: str = "all",
    ):
        """A seeded ``tf.data.Dataset`` of batched dicts (arrays gain a leading batch axis).

        Each pass (epoch) reshuffles with ``(seed, epoch)``. With ``augment_scale > 0`` a random affine
        (:func:`tutorialreg.warp.random_affine_ddf`) warps each image and its label identically, drawn
        independently for the moving and the fixed side. ``sample_label``: ``"all"`` gives labels whole
        (every pair in a batch needs the same channel count), ``"sample"`` one seeded random channel per
        pair (the same for moving and fixed), ``"first"`` channel 0; the last two give ``c = 1``.
        """
        import itertools

        import tensorflow as tf

        if sample_label not in ("all", "sample", "first"):
            raise ValueError(f"sample_label must be 'all', 'sample' or 'first', got {sample_label!r}")
        first = self._labels(self[0], sample_label, np.random.default_rng(seed))
        shapes = {k: v.shape for k, v in first.items() if k != "name"}
        epochs = itertools.count()

        def batches():
            while True:
                rng = np.random.default_rng([seed, next(epochs)])
                order = rng.permutation(len(self)) if shuffle else np.arange(len(self))
                for start in range(0, len(order), batch_size):
                    items = [
                        self._labels(self[int(i)], sample_label, rng)
                        for i in order[start : start + batch_size]
                    ]
                    if drop_remainder and len(items) < batch_size:
                        break
                    batch = self._stack(items, shapes)
                    if augment_scale > 0:
                        batch = self._augment(batch, augment_scale, rng)
                    yield {**batch, "name": np.array([it["name"] for it in items])}
                if not repeat:
                    return

        spec = {k: tf.TensorSpec((None, *shape), tf.float32) for k, shape in shapes.items()}
        spec["name"] = tf.TensorSpec((None,), tf.string)
        return tf.data.Dataset.from_generator(batches, output_signature=spec)

    @staticmethod
    def _stack(items: list[dict], shapes: dict[str, tuple]) -> dict:
        """Stack ``items`` into a batch after checking every array's shape against ``shapes``."""
        for it in items:
            if bad := [k for k, shape in shapes.items() if it[k].shape != shape]:
                raise PairingError(
                    f"pair {it['name']!r}: {bad} shapes differ from the first pair's; set image_shape "
                    "(volume sizes) or sample_label (label channel counts)"
                )
        return {k: np.stack([it[k] for it in items]) for k in shapes}

    def _labels(self, item: dict, mode: str, rng: np.random.Generator) -> dict:
        """``item`` with labels whole (``"all"``) or reduced to one channel (``"sample"``, ``"first"``)."""
        if mode == "all" or not self.labeled:
            return item
        j = int(rng.integers(item["fixed_label"].shape[-1])) if mode == "sample" else 0
        return {**item, **{k: item[k][..., j : j + 1] for k in ("moving_label", "fixed_label")}}

    def _augment(self, batch: dict, scale: float, rng: np.random.Generator) -> dict:
        from tutorialreg.warp import random_affine_ddf, warp

        out = dict(batch)
        for side in ("moving", "fixed"):
            image = batch[f"{side}_image"]
            ddf = random_affine_ddf(image.shape[1:4], len(image), scale, seed=int(rng.integers(2**31)))
            out[f"{side}_image"] = np.asarray(warp(image, ddf), dtype=np.float32)
            if f"{side}_label" in batch:
                out[f"{side}_label"] = np.asarray(warp(batch[f"{side}_label"], ddf), dtype=np.float32)
        return out


# ---------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """``list`` datasets, ``fetch NAME|all`` (progress bars) or ``verify`` the cache; return exit code."""
    parser = argparse.ArgumentParser(prog="python -m tutorialreg.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="datasets, sizes and what is cached")
    sub.add_parser("fetch", help="download and verify").add_argument("name", help="dataset name or 'all'")
    sub.add_parser("verify", help="re-check every cached file")
    args = parser.parse_args(argv)
    datasets, cache = load_manifest(), data_dir()
    print(f"cache: {cache}   mirror: {os.environ.get('TUTORIALREG_MIRROR') or '(none)'}")
    if args.command == "list":
        for name, meta in datasets.items():
            files = meta["files"]
            size = sum(e["size"] or 0 for e in files) / 2**20
            cached = sum((cache / e["path"]).exists() for e in files)
            unsized = sum(e["size"] is None for e in files)
            print(
                f"{name:22s} {len(files):4d} files  {size:6.1f} MiB"
                + (f" + {unsized} of unknown size" if unsized else "")
                + f"  {cached:4d} cached\n"
                f"{'':22s} {meta['citation']}\n{'':22s} licence: {meta['licence']}"
            )
        return 0
    if args.command == "fetch":
        if args.name != "all" and args.name not in datasets:
            parser.error(f"unknown dataset {args.name!r}; expected 'all' or one of {sorted(datasets)}")
        try:
            for name in datasets if args.name == "all" else [args.name]:
                result = fetch(name, progress=True)
                print(
                    f"{name}: {len(result)} files in {result.root}"
                    + (" (STAND-IN images)" * result.is_standin)
                )
        except DataUnavailable as err:
            print(err, file=sys.stderr)
            return 1
        return 0
    bad = 0
    for name, meta in datasets.items():
        for entry in meta["files"]:
            path = cache / entry["path"]
            if path.exists() and (why := check_file(path, entry)) is not None:
                bad += 1
                print(f"CORRUPT {entry['path']}: {why}")
        print(f"{name}: checked {sum((cache / e['path']).exists() for e in meta['files'])} cached files")
    print(
        "all cached files verified" if not bad else f"{bad} corrupt file(s); run fetch again to replace them"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
