"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC), binned for training.

The official HDF5 files (Cramer et al. 2020) hold per sample a variable-length array of
spike times in seconds (``spikes/times``), one of channel indices 0-699 (``spikes/units``),
a label (``labels``) and extra information (``extra/speaker``, ...). Loading bins the
times into ``steps`` equal bins over ``[0, max_time)``; spikes at or after ``max_time``
are dropped. SHD's longest samples are about 1.4 s, hence the default.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .base import DataError, Dataset, Split, affordable, real, whole

UNITS = 700  # channels of the cochlea model used for SHD and SSC
# name: (training file, test file, classes). SSC's ssc_valid.h5 is not used.
FILES = {
    "shd": ("shd_train.h5", "shd_test.h5", 20),
    "ssc": ("ssc_train.h5", "ssc_test.h5", 35),
}


def _read(path: Path, name: str):
    """Spike times, units, labels and speakers (or None) from one file, checked."""
    if not path.is_file():
        raise DataError(f"{name}: {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{name}: {path} is not an HDF5 file ({err})") from None
    with f:
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise DataError(f"{name}: {key} missing in {path}")
            if f[key].ndim != 1:
                raise DataError(f"{name}: {key} in {path} must hold one entry per sample, "
                                f"has shape {f[key].shape}")
        times, units, labels = f["spikes/times"][()], f["spikes/units"][()], f["labels"][()]
        speakers = f["extra/speaker"][()] if "extra/speaker" in f else None
    if not len(times) == len(units) == len(labels):
        raise DataError(f"{name}: {path} holds {len(times)} spike-time arrays, {len(units)} "
                        f"unit arrays and {len(labels)} labels; they must match")
    if speakers is not None and len(speakers) != len(labels):
        speakers = None
    return times, units, np.asarray(labels, np.int64), speakers


def bin_spikes(times, units, steps: int, max_time: float, pool: int = 1,
               counts: bool = False, where: str = "") -> np.ndarray:
    """``(samples, steps, ceil(700 / pool))`` float32 from per-sample times and units.

    Bin ``b`` covers ``[b, b + 1) * max_time / steps``. Channels are pooled by summing
    groups of ``pool`` adjacent units. Counts above 1 are clipped to 1 unless ``counts``.
    Samples are binned in chunks so that memory stays near the size of the result.
    """
    n = len(times)
    lengths = np.array([len(t) for t in times], np.int64)
    bad = np.flatnonzero(lengths != np.array([len(u) for u in units], np.int64))
    if bad.size:
        i = bad[0]
        raise DataError(f"shd: sample {i} in {where} has {len(times[i])} spike times but {len(units[i])} units")
    flat_t = np.concatenate([np.asarray(t, np.float64) for t in times] + [np.zeros(0)])
    flat_u = np.concatenate([np.asarray(u, np.int64) for u in units] + [np.zeros(0, np.int64)])
    if flat_u.size and (flat_u.min() < 0 or flat_u.max() >= UNITS):
        raise DataError(f"shd: {where} has unit indices outside 0-{UNITS - 1}")
    channels = -(-UNITS // pool)
    cell = np.floor(flat_t * steps / max_time).astype(np.int64) * channels + flat_u // pool
    cell[~((flat_t >= 0) & (flat_t < max_time))] = -1  # dropped, NaN included
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    x = np.zeros((n, steps, channels), np.float32)
    size = steps * channels
    chunk = max(1, 2**24 // size)
    for s0 in range(0, n, chunk):
        s1 = min(n, s0 + chunk)
        spikes = slice(offsets[s0], offsets[s1])
        sample = np.repeat(np.arange(s1 - s0), lengths[s0:s1])
        valid = cell[spikes] >= 0
        flat = sample[valid] * size + cell[spikes][valid]
        x[s0:s1] = np.bincount(flat, minlength=(s1 - s0) * size).reshape(s1 - s0, steps, channels)
    return x if counts else np.minimum(x, 1.0, out=x)


def load_shd(data_dir, name: str = "shd", steps: int = 100, max_time: float = 1.4,
             pool: int = 1, counts: bool = False) -> Split:
    """SHD (``name="shd"``) or SSC (``name="ssc"``) from the folder holding the .h5 files.

    ``pool=5`` gives 140 channels. ``meta["speaker"]`` is filled where the files have it.
    """
    if name not in FILES:
        raise DataError(f"shd: unknown data set {name!r}; known: {', '.join(FILES)}")
    if data_dir is None:
        raise DataError(f"{name}: no data folder given (the folder holding {FILES[name][0]})")
    steps, pool = whole(name, "steps", steps), whole(name, "pool", pool)
    max_time = real(name, "max_time", max_time)
    if not isinstance(counts, (bool, np.bool_)):
        raise DataError(f"{name}: counts must be true or false, got {counts!r}")
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"{name}: data folder {folder} does not exist")
    train_file, test_file, n_classes = FILES[name]
    parts = []
    for file in (train_file, test_file):
        path = folder / file
        times, units, labels, speakers = _read(path, name)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise DataError(f"{name}: {path} has labels outside 0-{n_classes - 1}")
        channels = -(-UNITS // pool)
        # The binned float32 samples, and the int64 counts of one chunk of them.
        affordable(name, f"{path}: {len(times)} samples x {steps} steps x {channels} channels",
                   len(times) * steps * channels * 4 + max(2**24, steps * channels) * 8)
        x = bin_spikes(times, units, steps, max_time, pool, counts, str(path))
        meta = dict(file=file) if speakers is None else dict(file=file, speaker=np.asarray(speakers))
        parts.append(Dataset(name, x, labels, "classification", n_classes, meta))
    return Split(*parts)
