"""Tests of symgrad.data: generated tasks, FSDD conversion and caching, SHD binning, errors."""
from __future__ import annotations

import io
import os
import wave
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.figure import Figure

from symgrad import data
from symgrad.data import DataError, Dataset, fsdd, load_task
from symgrad.data.shd import load_shd
from helpers import tone, write_wav

REAL_FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"
PITCH = {0: 300.0, 1: 900.0, 2: 2500.0}  # Hz of the tone standing in for each "digit"
RATE = 8000


@pytest.fixture
def fsdd_dir(tmp_path):
    """An FSDD-shaped folder: 3 digits x 2 speakers x indices 0-6, a tone per digit."""
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for digit, freq in PITCH.items():
        for speaker, gain in (("alice", 1.0), ("bob", 0.3)):
            for index in range(7):
                write_wav(rec / f"{digit}_{speaker}_{index}.wav", gain * tone(freq, 0.2 + 0.02 * index))
    (rec / "notes.txt").write_text("not a recording")
    return tmp_path / "fsdd"


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


# ---------------------------------------------------------------------------- datasets

def test_subset_keeps_meta_aligned():
    x = np.zeros((4, 3, 2), np.float32)
    d = Dataset("t", x, np.arange(4), "classification", 4, dict(tag=["a", "b", "c", "d"], dt=0.1))
    s = d.subset(np.array([3, 1]))
    assert list(s.y) == [3, 1] and list(s.meta["tag"]) == ["d", "b"] and s.meta["dt"] == 0.1
    assert (d.steps, d.channels, d.outputs) == (3, 2, 4)


# ---------------------------------------------------------------------------- generated tasks

@pytest.mark.parametrize("name", ["pattern", "evidence", "randman"])
def test_generated_tasks_are_seeded(name):
    a, b, c = load_task(name, seed=1), load_task(name, seed=1), load_task(name, seed=2)
    for part in ("train", "test"):
        x = getattr(a, part).x
        assert x.dtype == np.float32 and x.ndim == 3 and set(np.unique(x)) <= {0.0, 1.0}
        assert np.array_equal(x, getattr(b, part).x) and np.array_equal(getattr(a, part).y, getattr(b, part).y)
    assert not np.array_equal(a.train.x, c.train.x)


def test_pattern_generation():
    split = data.pattern_generation(seed=0, samples=2, steps=200, channels=20, outputs=3)
    assert split.train.kind == "regression" and split.train.n_classes == 0
    assert split.train.x.shape == (2, 200, 20) and split.train.y.shape == (2, 200, 3)
    assert split.train.y.dtype == np.float32 and split.train.outputs == 3
    assert split.test is split.train  # a memorisation task


def test_evidence_accumulation():
    split = data.evidence_accumulation(seed=0, samples=400, test_samples=50, population=5)
    train = split.train
    assert train.x.shape == (400, 7 * 15 + 50 + 15, 20) and split.test.x.shape[0] == 50
    assert train.n_classes == 2 and 150 < np.bincount(train.y)[1] < 250
    assert np.array_equal(train.y, (train.meta["cues_right"] >= 4).astype(np.int64))
    # The side that wins gets more cue spikes (channels 0-4 left, 5-9 right) on average.
    left, right = train.x[:, :105, :5].sum((1, 2)), train.x[:, :105, 5:10].sum((1, 2))
    assert np.mean((right > left) == (train.y == 1)) > 0.8
    start, stop = train.meta["recall"]
    assert train.x[:, :start, 10:15].sum() == 0 and train.x[:, start:stop, 10:15].sum() > 0


def test_randman():
    split = data.randman(seed=0, samples=200, test_samples=100, n_classes=5, channels=12, steps=40)
    train = split.train
    assert train.x.shape == (200, 40, 12) and train.n_classes == 5
    assert np.all(train.x.sum(1) == 1)  # one spike per channel per sample
    assert np.array_equal(np.bincount(train.y), [40] * 5)
    # Each class is a distinct low-dimensional manifold: 1-nearest-neighbour on the spike
    # times generalises to new latent points.
    train_t, test_t = train.x.argmax(1).astype(float), split.test.x.argmax(1).astype(float)
    nearest = ((test_t[:, None] - train_t[None]) ** 2).sum(-1).argmin(1)
    assert np.mean(train.y[nearest] == split.test.y) > 0.9


# ---------------------------------------------------------------------------- load_task

def test_load_task_errors(tmp_path):
    assert set(data.TASKS) == {"fsdd", "shd", "ssc", "pattern", "evidence", "randman"}
    with pytest.raises(DataError, match="randman"):
        load_task("mnist")
    for name in ("fsdd", "shd", "ssc"):
        with pytest.raises(DataError, match=name):
            load_task(name)
    with pytest.raises(DataError, match="colour"):
        load_task("randman", colour="red")


# ---------------------------------------------------------------------------- fsdd

def test_fsdd_conversion_and_split(fsdd_dir, cache):
    split = fsdd.load_fsdd(fsdd_dir, cache_dir=cache, progress=False)
    train, test = split.train, split.test
    assert train.x.shape == (3 * 2 * 2, 100, 40) and test.x.shape == (3 * 2 * 5, 100, 40)
    assert train.x.dtype == np.float32 and set(np.unique(train.x)) == {0.0, 1.0}
    assert train.y.dtype == np.int64 and train.n_classes == 10
    assert set(train.meta["index"]) == {5, 6} and set(test.meta["index"]) == set(range(5))
    assert set(test.meta["speaker"]) == {"alice", "bob"}
    for d in (train, test):  # labels come from the names
        assert all(int(f[0]) == y for f, y in zip(d.meta["file"], d.y))
    # Spikes only while there is sound: a 0.2-0.32 s tone is over by step 33.
    assert train.x[:, 40:].sum() == 0 and train.x[:, :30].sum() > 0
    # Higher pitch drives higher mel channels, independently of loudness.
    peak = test.x.sum(1).argmax(1)
    for lower, higher in ((0, 1), (1, 2)):
        assert peak[test.y == lower].max() < peak[test.y == higher].min()
    assert np.array_equal(peak[test.meta["speaker"] == "alice"], peak[test.meta["speaker"] == "bob"])


def test_fsdd_accepts_recordings_folder_and_is_deterministic(fsdd_dir, tmp_path):
    a = fsdd.load_fsdd_all(fsdd_dir, cache_dir=tmp_path / "c1", progress=False)
    b = fsdd.load_fsdd_all(fsdd_dir / "recordings", cache_dir=tmp_path / "c2", progress=False)
    assert len(a) == 42 and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    small = fsdd.load_fsdd_all(fsdd_dir, channels=16, steps=30, cache_dir=tmp_path / "c1", progress=False)
    assert small.x.shape == (42, 30, 16)


def test_fsdd_cache(fsdd_dir, cache, monkeypatch):
    first = fsdd.load_fsdd_all(fsdd_dir, cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npz"))) == 1 and not list(cache.glob("*.tmp"))

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted although cached")

    with monkeypatch.context() as m:
        m.setattr(fsdd, "convert", no_conversion)
        again = fsdd.load_fsdd_all(fsdd_dir, cache_dir=cache, progress=False)
        assert np.array_equal(first.x, again.x) and list(first.meta["file"]) == list(again.meta["file"])
        # Changing a file changes the key, so the cache is not used.
        write_wav(fsdd_dir / "recordings" / "0_alice_0.wav", tone(440.0, 0.3))
        with pytest.raises(AssertionError, match="converted"):
            fsdd.load_fsdd_all(fsdd_dir, cache_dir=cache, progress=False)

    # A corrupt cache file is rebuilt, with a warning.
    fsdd.load_fsdd_all(fsdd_dir, cache_dir=cache, progress=False)
    for f in cache.glob("*.npz"):
        f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="is not an .npz archive; converting the recordings again"):
        rebuilt = fsdd.load_fsdd_all(fsdd_dir, cache_dir=cache, progress=False)
    assert len(rebuilt) == 42
    with monkeypatch.context() as m:
        m.setattr(fsdd, "convert", no_conversion)
        fsdd.load_fsdd_all(fsdd_dir, cache_dir=cache, progress=False)


def test_fsdd_augmented_copies(fsdd_dir, cache, tmp_path):
    split = fsdd.load_fsdd(fsdd_dir, augment=3, cache_dir=cache, progress=False)
    train, test = split.train, split.test
    assert train.variants.shape == (len(train), 3, 100, 40) and train.copies == 3
    assert test.variants is None  # the test set is heard as recorded
    clean, copies = train.x, train.variants.astype(np.float32)
    # Each copy is the same word through another microphone: spikes differ, but the sound's
    # channels still carry it. A gain tilt can move the tone's busiest channel among the
    # filters that its analysis window smears it over (the Hann main lobe reaches 2 / WINDOW
    # Hz either side), but no further.
    assert all(not np.array_equal(copies[:, k], clean) for k in range(3))
    assert (copies.sum((2, 3)) > 0).all()
    centres = fsdd.mel_to_hz(np.linspace(fsdd.hz_to_mel(fsdd.FMIN), fsdd.hz_to_mel(fsdd.FMAX), 42))[1:-1]
    moved = centres[copies.sum(2).argmax(2)] - centres[clean.sum(1).argmax(1)][:, None]
    assert np.abs(moved).max() <= 2 / fsdd.WINDOW
    # Deterministic, and each file's copies depend on nothing but the file.
    again = fsdd.load_fsdd(fsdd_dir, augment=3, cache_dir=tmp_path / "other", progress=False)
    assert np.array_equal(again.train.variants, train.variants)
    write_wav(fsdd_dir / "recordings" / "2_carol_9.wav", tone(650.0))
    more = fsdd.load_fsdd(fsdd_dir, augment=3, cache_dir=cache, progress=False).train
    keep = np.isin(more.meta["file"], train.meta["file"])
    assert np.array_equal(more.variants[keep], train.variants)
    assert fsdd.load_fsdd(fsdd_dir, augment=0, cache_dir=cache, progress=False).train.variants is None
    for bad in (-1, 1.5, True, "many"):
        with pytest.raises(DataError, match="augment must be a whole number"):
            fsdd.load_fsdd(fsdd_dir, augment=bad, cache_dir=cache, progress=False)


@pytest.mark.parametrize("setting, value, match", [
    ("channels", 0, "channels must be a whole number of at least 1"),
    ("channels", "abc", "channels must be a whole number of at least 1"),
    ("steps", 2.5, "steps must be a whole number of at least 1"),
    ("dt", -0.01, "dt must be a number above 0"),
    ("dt", "fast", "dt must be a number above 0"),
])
def test_fsdd_bad_settings(fsdd_dir, cache, setting, value, match):
    with pytest.raises(DataError, match=match):
        fsdd.load_fsdd(fsdd_dir, cache_dir=cache, progress=False, **{setting: value})


def test_fsdd_speaker_normalisation_takes_out_a_microphone(tmp_path):
    """Two speakers say the same "digits" (two tones over a little broadband noise, as voiced
    speech has energy in every band); bob's microphone is a low-pass filter, 20 dB down at
    4 kHz. Taking out each speaker's colour makes bob's spikes match alice's again."""
    rec = tmp_path / "two_tones"
    rec.mkdir()
    rng = np.random.default_rng(0)
    for digit, (low, high) in enumerate(((300.0, 1500.0), (600.0, 2500.0), (900.0, 3200.0))):
        for index in range(3):
            seconds = 0.2 + 0.02 * index
            word = 0.4 * (tone(low, seconds) + tone(high, seconds)) + 0.02 * rng.standard_normal(int(seconds * RATE))
            for speaker, microphone in (("alice", [1.0]), ("bob", [0.5, 0.45])):
                write_wav(rec / f"{digit}_{speaker}_{index}.wav", np.convolve(word, microphone)[:len(word)])

    def mismatch(speaker_norm):
        d = fsdd.load_fsdd_all(rec, speaker_norm=speaker_norm, cache_dir=tmp_path / "cache", progress=False)
        counts = d.x.sum(axis=1)  # spikes per channel and recording
        alice, bob = (counts[d.meta["speaker"] == name] for name in ("alice", "bob"))
        return np.abs(alice - bob).sum() / alice.sum()

    raw, normalised = mismatch(False), mismatch(True)
    assert raw > 0.2  # the microphone matters without normalisation
    assert normalised < raw / 10  # measured: 0.50 -> 0.02
    with pytest.raises(DataError, match="speaker_norm must be true or false"):
        fsdd.load_fsdd_all(rec, speaker_norm="maybe", cache_dir=tmp_path / "cache", progress=False)


def test_dataset_inputs_take_the_chosen_copies():
    x = np.zeros((4, 3, 2), np.float32)
    copies = np.stack([np.full((4, 3, 2), k + 1, np.uint8) for k in range(2)], axis=1)
    d = Dataset("t", x, np.arange(4), "classification", 4, variants=copies)
    choice = np.array([0, 1, 2, 1])
    got = d.inputs(np.array([3, 0, 2]), choice)
    assert got.dtype == np.float32 and [g[0, 0] for g in got] == [1.0, 0.0, 2.0]
    assert not d.x.any()  # the set itself is untouched
    assert d.subset([1, 2]).copies == 2 and d.subset([1, 2], variants=False).variants is None
    with pytest.raises(ValueError, match="variants must be"):
        Dataset("t", x, np.arange(4), "classification", 4, variants=copies[:3])


def test_fsdd_held_out_speaker(fsdd_dir, cache):
    split = fsdd.load_fsdd(fsdd_dir, augment=0, test_speaker="bob", cache_dir=cache, progress=False)
    assert set(split.test.meta["speaker"]) == {"bob"} and len(split.test) == 21
    assert set(split.train.meta["speaker"]) == {"alice"} and len(split.train) == 21
    with pytest.raises(DataError, match=r"no recordings of speaker 'eve'.*speakers there: alice, bob"):
        fsdd.load_fsdd(fsdd_dir, augment=0, test_speaker="eve", cache_dir=cache, progress=False)
    for f in (fsdd_dir / "recordings").glob("*_alice_*.wav"):
        f.unlink()
    with pytest.raises(DataError, match="only speaker 'bob'"):
        fsdd.load_fsdd(fsdd_dir, augment=0, test_speaker="bob", cache_dir=cache, progress=False)


def test_fsdd_cache_env_variable(fsdd_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "env"))
    load_task("fsdd", fsdd_dir, progress=False)
    assert len(list((tmp_path / "env" / "fsdd").glob("*.npz"))) == 1


def test_fsdd_cache_that_cannot_be_written_only_warns(fsdd_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="could not write cache"):
        d = fsdd.load_fsdd_all(fsdd_dir, cache_dir=blocker / "cache", progress=False)
    assert len(d) == 42


def test_fsdd_evaluation_loads_every_recording_with_the_runs_front_end(fsdd_dir, tmp_path, monkeypatch):
    """The run's settings that load_fsdd_all takes apply; the split's and augment's do not."""
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "env"))
    settings = dict(channels=16, steps=30, test_speaker="bob", augment=2, progress=False)
    split = data.TASKS["fsdd"].everything(fsdd_dir, **settings)
    assert split.train is split.test and split.test.x.shape == (42, 30, 16)
    assert split.test.variants is None
    assert len(list((tmp_path / "env" / "fsdd").glob("*.npz"))) == 1  # symgrad's cache folder was used


def test_fsdd_other_formats(tmp_path):
    """Stereo is averaged; 16 kHz audio gives the same bands as 8 kHz."""
    mono, stereo = tmp_path / "mono.wav", tmp_path / "stereo.wav"
    write_wav(mono, tone(700.0))
    write_wav(stereo, np.stack([tone(700.0), tone(700.0)], 1), channels=2)
    assert np.allclose(fsdd.read_wav(mono)[0], fsdd.read_wav(stereo)[0])
    low = fsdd.band_levels(tone(700.0, rate=8000), 8000, 40, 0.01, 100)
    high = fsdd.band_levels(tone(700.0, rate=16000), 16000, 40, 0.01, 100)
    assert low.sum(0).argmax() == high.sum(0).argmax()
    assert not fsdd.band_levels(np.zeros(2000), RATE, 40, 0.01, 100).any()  # silence is silent


@pytest.mark.parametrize("width", [1, 3, 4])
def test_fsdd_sample_widths(tmp_path, width):
    """8-bit (unsigned), 24-bit and 32-bit PCM decode to the same signal as 16-bit."""
    audio = tone(700.0)
    scale = 2 ** (8 * width - 1)
    pcm = np.round(audio * (scale - 1)).astype(np.int64)
    if width == 1:
        raw = (pcm + 128).astype(np.uint8).tobytes()
    else:
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in pcm)
    with wave.open(str(tmp_path / "x.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(RATE)
        w.writeframes(raw)
    decoded, rate = fsdd.read_wav(tmp_path / "x.wav")
    assert rate == RATE and np.abs(decoded - audio).max() < 2.0 / scale


@pytest.mark.parametrize("problem, match", [
    ("garbage", "not a readable PCM WAV"),
    ("empty", "no audio samples"),
    ("truncated", "truncated"),
])
def test_fsdd_bad_wav(fsdd_dir, cache, problem, match):
    bad = fsdd_dir / "recordings" / "3_alice_9.wav"
    if problem == "garbage":
        bad.write_bytes(os.urandom(300))
    elif problem == "empty":
        write_wav(bad, np.zeros(0))
    else:
        write_wav(bad, tone(500.0))
        bad.write_bytes(bad.read_bytes()[:-1000])
    with pytest.raises(DataError, match=match) as err:
        fsdd.load_fsdd(fsdd_dir, cache_dir=cache, progress=False)
    assert "3_alice_9.wav" in str(err.value)


def test_fsdd_folder_errors(tmp_path, cache):
    with pytest.raises(DataError, match="nowhere"):
        fsdd.load_fsdd(tmp_path / "nowhere", cache_dir=cache)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="empty"):
        fsdd.load_fsdd(tmp_path / "empty", cache_dir=cache)
    only_train = tmp_path / "train_only"
    only_train.mkdir()
    write_wav(only_train / "1_carol_12.wav", tone(500.0))
    with pytest.raises(DataError, match="no test recordings"):
        fsdd.load_fsdd(only_train, cache_dir=cache, progress=False)


@pytest.mark.skipif(not REAL_FSDD.is_dir(), reason="real FSDD data not present")
def test_real_fsdd_files():
    recordings = fsdd.list_recordings(REAL_FSDD)
    assert len(recordings) == 2500
    assert sum(r[3] < 5 for r in recordings) == 250 and {r[1] for r in recordings} == set(range(10))
    kept, spikes, copies = fsdd.convert(recordings[::500], 40, 0.01, 100, augment=2, progress=False)
    assert kept == recordings[::500] and spikes.shape == (5, 100, 40) and spikes.sum(1).mean() > 2
    assert copies.shape == (5, 2, 100, 40) and copies.sum(2).mean() > 2


# ---------------------------------------------------------------------------- shd

def write_h5(path, times, units, labels, speakers=None, skip=()):
    with h5py.File(path, "w") as f:
        if "spikes/times" not in skip:
            d = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
            for i, t in enumerate(times):
                d[i] = np.asarray(t, np.float32)
        d = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, u in enumerate(units):
            d[i] = np.asarray(u, np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        if speakers is not None:
            f.create_dataset("extra/speaker", data=np.asarray(speakers, np.uint16))


@pytest.fixture
def shd_dir(tmp_path):
    times = [[0.05, 0.15, 0.16, 0.95, 1.2], [0.0, 0.55]]
    units = [[0, 3, 3, 699, 5], [4, 6]]
    for name in ("shd", "ssc"):
        write_h5(tmp_path / f"{name}_train.h5", times, units, [1, 19], speakers=[7, 8])
        write_h5(tmp_path / f"{name}_test.h5", times[:1], units[:1], [2])
    return tmp_path


def test_shd_binning_is_exact(shd_dir):
    split = load_shd(shd_dir, steps=10, max_time=1.0)
    x = split.train.x
    assert x.shape == (2, 10, 700) and x.dtype == np.float32
    expected = np.zeros_like(x)
    expected[0, 0, 0] = expected[0, 1, 3] = expected[0, 9, 699] = 1  # 1.2 s is past max_time
    expected[1, 0, 4] = expected[1, 5, 6] = 1
    assert np.array_equal(x, expected)
    assert list(split.train.y) == [1, 19] and list(split.train.meta["speaker"]) == [7, 8]
    assert split.train.n_classes == 20 and len(split.test) == 1
    counts = load_shd(shd_dir, steps=10, max_time=1.0, counts=True).train.x
    assert counts[0, 1, 3] == 2 and counts.sum() == 6


def test_shd_pooling(shd_dir):
    x = load_shd(shd_dir, steps=2, max_time=1.0, pool=5, counts=True).train.x
    assert x.shape == (2, 2, 140)
    assert x[0, 0, 0] == 3 and x[0, 1, 139] == 1 and x[1, 0, 0] == 1 and x[1, 1, 1] == 1
    assert load_task("ssc", shd_dir, steps=2, max_time=1.0, pool=5).train.n_classes == 35


def test_shd_errors(tmp_path, shd_dir):
    with pytest.raises(DataError, match="missing_dir"):
        load_shd(tmp_path / "missing_dir")
    empty = tmp_path / "e"
    empty.mkdir()
    with pytest.raises(DataError, match="shd_train.h5 does not exist"):
        load_shd(empty)
    with pytest.raises(DataError, match="ssc: .*ssc_train.h5 does not exist"):
        load_shd(empty, name="ssc")
    (empty / "shd_train.h5").write_text("this is not HDF5")
    with pytest.raises(DataError, match="shd_train.h5 is not an HDF5 file"):
        load_shd(empty)
    write_h5(empty / "shd_train.h5", [[0.1]], [[1]], [0], skip=("spikes/times",))
    with pytest.raises(DataError, match="spikes/times missing in .*shd_train.h5"):
        load_shd(empty)
    write_h5(empty / "shd_train.h5", [[0.1], [0.2]], [[1]], [0, 1])
    with pytest.raises(DataError, match="shd_train.h5"):
        load_shd(empty)
    write_h5(empty / "shd_train.h5", [[0.1, 0.2]], [[1]], [0])
    with pytest.raises(DataError, match="sample 0 .*shd_train.h5"):
        load_shd(empty)


# ---------------------------------------------------------------------------- plots

def test_plots(fsdd_dir, cache):
    d = fsdd.load_fsdd_all(fsdd_dir, cache_dir=cache, progress=False)
    fig = data.raster(d.x[0], title="one", dt=0.01)
    assert isinstance(fig, Figure)
    path = fsdd_dir / "recordings" / d.meta["file"][0]
    for source in (path, fsdd.read_wav(path)):
        fig = data.audio_to_spikes(source, d.x[0], title=str(d.meta["file"][0]))
        assert isinstance(fig, Figure) and len(fig.axes) == 4  # 3 panels and a colour bar
        fig.savefig(io.BytesIO(), format="png")
