"""Verified data downloads, a local mirror, and loaders for every chapter's data.

Files are listed in ``data_manifest.yaml`` (upstream URL, hash, size). :func:`fetch` puts them in the
cache folder (``pooch.os_cache("tutorialreg")``, or ``TUTORIALREG_DATA_DIR``), trying the mirror named by
``TUTORIALREG_MIRROR`` (a folder or base URL laid out like ``shared/data``) before the upstream URL.
Every file is verified (size, then ``sha256:`` or ``gitblob:`` hash) before use and written atomically;
manifest paths must stay inside the cache folder.

Stand-in lung CT: the ``paired_ct_lung`` images are upstream only. When they cannot be had and
``TUTORIALREG_ALLOW_STANDIN=1``, :func:`fetch` says so loudly and returns ``is_standin=True``;
:class:`PairedDataset` then builds CT-like volumes from the real lung masks in memory (never written to
disk), see :func:`standin_ct`. A dataset is either all real or all stand-in.

Modules: :mod:`~tutorialreg.data.manifest` (manifest, path checks), :mod:`~tutorialreg.data.cache`
(cache folder, verification), :mod:`~tutorialreg.data.download` (fetching), :mod:`~tutorialreg.data.volumes`
(reading, normalising, resampling, moving placement), :mod:`~tutorialreg.data.paired` (paired folders),
:mod:`~tutorialreg.data.arrays` (preloaded pairs and batches), :mod:`~tutorialreg.data.loaders` (h5
datasets), :mod:`~tutorialreg.data.standin`, :mod:`~tutorialreg.data.cli`.

CLI: ``python -m tutorialreg.data list | fetch NAME|all | verify [--clean]``.
"""

from tutorialreg.checks import NonFiniteError
from tutorialreg.data.arrays import PairArrays, preload_bytes
from tutorialreg.data.cache import check_file, data_dir, file_hash, partial_files
from tutorialreg.data.cli import main
from tutorialreg.data.download import FetchResult, FetchSession, Terminated, fetch, fetch_file
from tutorialreg.data.errors import CorruptFileError, DataUnavailable, ManifestError, PairingError
from tutorialreg.data.loaders import load_hnct, load_promise12
from tutorialreg.data.manifest import MANIFEST_NAME, load_manifest, manifest_path
from tutorialreg.data.paired import PairedDataset, split_pairs
from tutorialreg.data.standin import standin_ct
from tutorialreg.data.volumes import PLACEMENTS, normalise, place_moving, read_volume, resize, volume_grid

__all__ = [
    "MANIFEST_NAME",
    "PLACEMENTS",
    "CorruptFileError",
    "DataUnavailable",
    "FetchResult",
    "FetchSession",
    "ManifestError",
    "NonFiniteError",
    "PairArrays",
    "PairedDataset",
    "PairingError",
    "Terminated",
    "check_file",
    "data_dir",
    "fetch",
    "fetch_file",
    "file_hash",
    "load_hnct",
    "load_manifest",
    "load_promise12",
    "main",
    "manifest_path",
    "normalise",
    "partial_files",
    "place_moving",
    "preload_bytes",
    "read_volume",
    "resize",
    "split_pairs",
    "standin_ct",
    "volume_grid",
]
