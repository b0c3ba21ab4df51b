"""Data loaders that trust nothing they read: WAV headers, caches, a run's settings, sizes."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest

from symgrad import store
from symgrad.data import TASKS, DataError, fsdd, load_task
from test_data import cache, fsdd_dir, shd_dir  # noqa: F401 - fixtures


def set_sample_rate(path, rate: int):
    """Write ``rate`` into a WAV's header as a crafted file would (wave refuses to)."""
    raw = bytearray(path.read_bytes())
    assert raw[12:16] == b"fmt "  # the plain 44-byte header that helpers.write_wav writes
    raw[24:28] = struct.pack("<I", rate)
    path.write_bytes(bytes(raw))


def no_warnings(load):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load()


# ---------------------------------------------------------------------------- WAV headers

@pytest.mark.parametrize("rate", [0, 2**31, 10])
def test_an_absurd_sample_rate_makes_a_file_unreadable(fsdd_dir, cache, rate):
    """Rate 0 divided by zero, naming no file; 2**31 Hz in a 16 kB file made its analysis use
    21.5 GB (a window of 25.8 million samples and its filterbank)."""
    bad = fsdd_dir / "recordings" / "1_bob_3.wav"
    set_sample_rate(bad, rate)
    with pytest.raises(DataError, match=rf"1_bob_3.wav has a sample rate of {rate} Hz"):
        fsdd.load_fsdd_all(fsdd_dir, cache_dir=cache, progress=False)
    with pytest.warns(UserWarning, match=r"skipped 1 of 42 recordings.*1_bob_3.wav"):
        kept = fsdd.load_fsdd_all(fsdd_dir, cache_dir=cache, progress=False, skip_unreadable=True)
    assert len(kept) == 41 and "1_bob_3.wav" not in list(kept.meta["file"])


# ---------------------------------------------------------------------------- the cache

def _retype(arrays, key, dtype, value):
    changed = arrays[key].astype(dtype)
    changed.flat[0] = value
    arrays[key] = changed


BAD_CACHES = {
    "label 42": lambda a: a["labels"].__setitem__(0, 42),
    "label -1": lambda a: a["labels"].__setitem__(0, -1),
    "a label not the file's digit": lambda a: a["labels"].__setitem__(0, (a["labels"][0] + 1) % 10),
    "7 channels": lambda a: a.__setitem__("spikes", a["spikes"][..., :7]),
    "spike times 1e30": lambda a: _retype(a, "spikes", np.float64, 1e30),
    "a spike of 2": lambda a: a["spikes"].__setitem__((0, 0, 0), 2),
    "spikes of rank 2": lambda a: a.__setitem__("spikes", a["spikes"][:, 0]),
    "float labels": lambda a: a.__setitem__("labels", a["labels"].astype(np.float64)),
    "another speaker": lambda a: a["speakers"].__setitem__(0, "mallory"),
    "variants of 7 channels": lambda a: a.__setitem__("variants", a["variants"][..., :7]),
    "variants of 3 copies": lambda a: a.__setitem__("variants", a["variants"][:, :1].repeat(3, 1)),
}


@pytest.mark.parametrize("problem", BAD_CACHES)
def test_a_cache_that_does_not_fit_is_rebuilt_with_one_warning(fsdd_dir, cache, problem):
    settings = dict(channels=12, steps=40, augment=2, cache_dir=cache, progress=False)
    fresh = fsdd.load_fsdd_all(fsdd_dir, **settings)
    [path] = cache.glob("*.npz")
    arrays = store.read_npz(path)
    BAD_CACHES[problem](arrays)
    np.savez_compressed(path, **arrays)
    with pytest.warns(UserWarning) as caught:
        again = fsdd.load_fsdd_all(fsdd_dir, **settings)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith(f"fsdd: the cache {path} ") \
        and messages[0].endswith("; converting the recordings again"), messages
    for name in ("x", "y", "variants"):
        assert np.array_equal(getattr(again, name), getattr(fresh, name)), name
    assert list(again.meta["speaker"]) == list(fresh.meta["speaker"])
    no_warnings(lambda: fsdd.load_fsdd_all(fsdd_dir, **settings))  # rebuilt: trusted again


# ---------------------------------------------------------------------------- paths in settings

@pytest.mark.parametrize("folder", ["elsewhere", ""])
def test_a_cache_folder_is_not_a_task_setting(fsdd_dir, tmp_path, monkeypatch, folder):
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    settings = dict(cache_dir=str(tmp_path / folder) if folder else "", progress=False)
    for load in (lambda: load_task("fsdd", fsdd_dir, **settings),
                 lambda: TASKS["fsdd"].everything(fsdd_dir, **settings)):
        with pytest.raises(DataError, match="fsdd: cache_dir is not a task setting.*SYMGRAD_CACHE"):
            load()
    assert set(tmp_path.iterdir()) == before  # no folder made, nothing written
    assert "cache_dir" not in TASKS["fsdd"].settings


def test_evaluate_writes_nowhere_a_run_folder_names(fsdd_dir, tmp_path):
    """A crafted config.json made evaluate create folders and write its cache anywhere."""
    run, planted = tmp_path / "run", tmp_path / "planted" / "deep"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        dict(model="alif", task="fsdd", data=str(fsdd_dir), task_settings=dict(cache_dir=str(planted)))))
    done = subprocess.run([sys.executable, "-m", "symgrad.cli", "evaluate", str(run)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if not line.startswith("symgrad: warning:")]
    assert len(errors) == 1 and errors[0].startswith("symgrad: error: fsdd: cache_dir is not a task setting")
    assert not (tmp_path / "planted").exists()


# ---------------------------------------------------------------------------- memory

@pytest.mark.parametrize("task, settings, size", [
    ("fsdd", dict(steps=10**8), "42 recordings x 100000000 steps x 40 channels"),
    ("fsdd", dict(channels=10**8), "42 recordings x 100 steps x 100000000 channels"),
    ("fsdd", dict(dt=1e9), r"dt = 1e\+09 s makes frames of 8000000000000 samples at 8000 Hz"),
    ("randman", dict(samples=10**9), "1000000200 samples x 50 steps x 30 channels"),
    ("randman", dict(harmonics=10**9), "manifolds of 10 classes x 30 channels x 1 dimensions x 1000000000 harmonics"),
    ("evidence", dict(samples=10**9), "1000000200 samples x 170 steps x 40 channels"),
    ("pattern", dict(steps=10**9), "1 samples x 1000000000 steps x 100 channels"),
    ("shd", dict(steps=10**9), "shd_train.h5: 2 samples x 1000000000 steps x 700 channels"),
], ids=["fsdd-steps", "fsdd-channels", "fsdd-dt", "randman-samples", "randman-harmonics", "evidence",
        "pattern", "shd"])
def test_a_data_set_too_big_for_memory_is_refused_before_it_is_made(fsdd_dir, shd_dir, task, settings, size):
    """Each ended in a MemoryError traceback (fsdd's steps and channels on the real 2,500 files)."""
    where = {"fsdd": fsdd_dir, "shd": shd_dir}.get(task)
    progress = dict(progress=False) if task == "fsdd" else {}
    with pytest.raises(DataError, match=rf"^{task}: (.*/)?{size}.* would need [\d.]+ GiB of memory, more "
                                        rf"than the [\d.]+ [GM]iB available"):
        load_task(task, where, **settings, **progress)


def test_the_memory_refused_is_this_machines(monkeypatch):
    """The figure is compared with the memory available now, not a fixed cap."""
    small = dict(samples=200, test_samples=100, channels=30, steps=50)  # 1.7 MiB of inputs
    monkeypatch.setattr("symgrad.memory.available", lambda xp=None: 1 << 20)
    with pytest.raises(DataError, match=r"randman: 300 samples .* more than the 1.0 MiB available"):
        load_task("randman", **small)
    monkeypatch.setattr("symgrad.memory.available", lambda xp=None: 64 << 20)
    assert len(load_task("randman", **small).train) == 200


def test_a_data_set_too_big_is_one_line_on_the_command_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "symgrad.cli", "train", "alif", "--set", "samples=1000000000",
                           "--out", str(tmp_path / "run"), "--quiet"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("symgrad: error: randman: 1000000200 samples") and done.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()
