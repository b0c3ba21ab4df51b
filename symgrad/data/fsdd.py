"""Free Spoken Digit Dataset (FSDD) recordings turned into spike trains.

The front end follows the idea behind the Spiking Heidelberg Digits: a cochlea-like
filterbank followed by spiking "hair cells". Per recording:

1. pre-emphasis (first-order high-pass), so formants above the strong low harmonics count;
2. a framed FFT (Hann window of ``WINDOW`` s, hop ``dt``), power spectrum. The window is
   short, as in a wideband spectrogram: it blurs the harmonics of the voice's pitch, which
   belong to the speaker, and keeps the formants, which carry the word;
3. ``channels`` triangular filters evenly spaced on the mel scale from ``FMIN`` to ``FMAX``;
4. log compression (dB); with ``speaker_norm``, each speaker's colour is taken out: the
   speaker's mean level per band, over the loud frames of all their recordings in the
   folder, is subtracted (as speaker-level cepstral mean normalisation does in speech
   recognition), so that a microphone's or a voice's spectral tilt is not mistaken for a
   word. Then each recording is normalised to its loudest band, so that the recording level
   does not matter, and floored ``DYNAMIC_RANGE`` dB below it: each channel then carries a
   level in [0, 1];
5. a deterministic integrate-and-fire encoder per channel, driven by the sustained level
   plus an onset term (the level's rise above its recent average, as adapting hair cells
   respond), so a loud band fires steadily and a band that switches on fires a burst.

One time step is one frame (``dt`` s); every sample is zero-padded or truncated to
``steps`` steps. With the defaults (10 ms, 100 steps) only 4 of the 2,500 recordings
(longest 2.3 s, mean 0.41 s) are cut.

The speaker normalisation is unsupervised (it reads no labels) but needs several recordings
of a speaker to estimate their colour; a folder with one recording of a speaker normalises it
by its own average spectrum. Training can also draw on ``augment`` recoloured copies of
every recording (:func:`recolour`): the same speech heard through a random microphone and
room, a smooth random gain curve across the channels and stationary background noise.

Recordings at other sample rates are analysed at their own rate with the same filters in
Hz (filters above the Nyquist frequency of a slower recording stay silent); stereo is
averaged to mono.

Conversion results are cached as an .npz keyed by the settings and by the names, sizes and
modification times of the WAV files, so a folder is converted once. A cache is checked before
it is used (its recordings, shapes, values and labels against the folder and the settings);
one that does not fit is converted again, with a warning.
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
import wave
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import store
from .base import DataError, Dataset, Split, affordable, real, whole

NAME_RE = re.compile(r"^(\d)_(.+)_(\d+)\.wav$", re.IGNORECASE)
TEST_INDICES = (0, 1, 2, 3, 4)  # the official split: indices 0-4 test, the rest train
N_CLASSES = 10

PRE_EMPHASIS = 0.97
WINDOW = 0.012  # s; the analysis window, widened to dt if dt is longer
FMIN, FMAX = 50.0, 4000.0  # Hz; FMAX is the Nyquist frequency of FSDD's 8 kHz
DYNAMIC_RANGE = 30.0  # dB kept below the loudest band; more lets background noise spike
SUSTAINED_GAIN = 0.5  # spikes per step at full level without change
ONSET_GAIN = 2.0  # extra drive per unit rise of the level above its recent average
ONSET_TAU = 0.05  # s; time constant of that recent average
RECOLOUR_GAIN = 15.0  # dB; scale of the random gain curve of an augmented copy
RECOLOUR_NOISE = (20.0, 50.0)  # dB below the loudest band: range of its background noise level
# Hz; sample rates of audio recordings. A header outside them is not a recording (a rate of 0
# divided by zero; one of 2**31 Hz in a 16 kB file made an analysis window of 25.8 million
# samples, and 21.5 GB of filterbank).
RATES = (1000, 768000)
# Bump when the front end changes, so stale caches are not reused.
FRONT_END_VERSION = 2


def _front_end_settings(channels: int, dt: float, steps: int, speaker_norm: bool, augment: int) -> dict:
    settings = dict(
        version=FRONT_END_VERSION, channels=channels, dt=dt, steps=steps, speaker_norm=speaker_norm,
        pre_emphasis=PRE_EMPHASIS, window=WINDOW, fmin=FMIN, fmax=FMAX,
        dynamic_range=DYNAMIC_RANGE, sustained_gain=SUSTAINED_GAIN,
        onset_gain=ONSET_GAIN, onset_tau=ONSET_TAU,
    )
    if augment:
        settings.update(augment=augment, recolour_gain=RECOLOUR_GAIN, recolour_noise=RECOLOUR_NOISE)
    return settings


# ---------------------------------------------------------------------------- files

def recordings_dir(data_dir) -> Path:
    """The folder holding the WAVs: ``data_dir/recordings`` if present, else ``data_dir``."""
    if data_dir is None:
        raise DataError("fsdd: no data folder given (point it to the FSDD folder or its recordings/)")
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"fsdd: data folder {folder} does not exist")
    return folder / "recordings" if (folder / "recordings").is_dir() else folder


def list_recordings(data_dir) -> list[tuple[Path, int, str, int]]:
    """``(path, digit, speaker, index)`` for every ``{digit}_{speaker}_{index}.wav``, sorted.

    Other files in the folder are ignored.
    """
    folder = recordings_dir(data_dir)
    found = []
    for path in folder.iterdir():
        match = NAME_RE.match(path.name)
        if match and path.is_file():
            digit, speaker, index = match.groups()
            found.append((path, int(digit), speaker, int(index)))
    if not found:
        raise DataError(f"fsdd: no recordings named {{digit}}_{{speaker}}_{{index}}.wav in {folder}")
    found.sort(key=lambda r: (r[1], r[2], r[3], r[0].name))
    return found


class UnreadableWav(DataError):
    """A recording that is not a complete, non-empty PCM WAV; ``reason`` says why."""

    def __init__(self, path, reason: str):
        super().__init__(path, reason)  # as args, so that it pickles between MPI ranks
        self.path, self.reason = path, reason

    def __str__(self):
        return f"fsdd: {self.path} {self.reason}"


def read_wav(path) -> tuple[np.ndarray, int]:
    """A PCM WAV as mono float64 in [-1, 1] and its sample rate.

    Raises UnreadableWav for anything that is not a complete, non-empty PCM WAV.
    """
    try:
        with wave.open(str(path), "rb") as w:
            n_channels, width, rate, n_frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n_frames)
    except (wave.Error, EOFError, OSError, ValueError) as err:
        # wave's EOFError carries no message: a file cut inside its header.
        reason = str(err) or ("the file is empty" if Path(path).stat().st_size == 0
                              else "the file ends inside its header")
        raise UnreadableWav(path, f"is not a readable PCM WAV file ({reason})") from None
    if not RATES[0] <= rate <= RATES[1]:
        raise UnreadableWav(path, f"has a sample rate of {rate} Hz, outside the {RATES[0]}-{RATES[1]} Hz "
                                  f"of audio recordings")
    if n_frames == 0 or not raw:
        raise UnreadableWav(path, "holds no audio samples")
    if len(raw) < n_frames * n_channels * width:
        raise UnreadableWav(path, f"is truncated: its header declares {n_frames} frames "
                                  f"but it holds {len(raw) // (n_channels * width)}")
    if width == 1:  # 8-bit WAV is unsigned
        audio = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        audio = np.frombuffer(raw, "<i2") / 32768.0
    elif width == 3:  # 24-bit: place each 3-byte sample in the top of an int32
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        audio = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)) / 2.0**31
    elif width == 4:
        audio = np.frombuffer(raw, "<i4") / 2.0**31
    else:
        raise UnreadableWav(path, f"has an unsupported sample width of {width} bytes")
    return audio.reshape(-1, n_channels).mean(axis=1), rate


# ---------------------------------------------------------------------------- front end

def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


def mel_filterbank(channels: int, n_fft: int, rate: int) -> np.ndarray:
    """``(n_fft // 2 + 1, channels)`` triangular filters evenly spaced in mel, FMIN to FMAX."""
    edges = mel_to_hz(np.linspace(hz_to_mel(FMIN), hz_to_mel(FMAX), channels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)[:, None]
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs - lo) / (mid - lo)
    falling = (hi - freqs) / (hi - mid)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def band_power_db(audio: np.ndarray, rate: int, channels: int, dt: float, steps: int):
    """``(frames, channels)`` mel band power in dB (steps 1-3), ``frames <= steps``."""
    hop = max(1, round(dt * rate))
    win = max(hop, round(WINDOW * rate))
    n_fft = 1 << (win - 1).bit_length()
    n_frames = min(steps, -(-len(audio) // hop))
    needed = (n_frames - 1) * hop + win
    bins = n_fft // 2 + 1
    # In float64: the padded signal, the windowed frames, their spectra (complex: two numbers;
    # magnitude; power) and the filterbank with its temporaries.
    affordable("fsdd", f"dt = {dt:g} s makes frames of {win} samples at {rate} Hz, whose analysis",
               8 * (needed + n_frames * win + 4 * n_frames * bins + 4 * bins * channels))
    x = np.append(audio[0], audio[1:] - PRE_EMPHASIS * audio[:-1])
    x = np.pad(x[:needed], (0, max(0, needed - len(x))))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n_frames]
    power = np.abs(np.fft.rfft(frames * np.hanning(win), n_fft)) ** 2
    return 10.0 * np.log10(power @ mel_filterbank(channels, n_fft, rate) + 1e-12)


def compress(db: np.ndarray, steps: int) -> np.ndarray:
    """``(steps, channels)`` levels in [0, 1] from band power in dB (step 4), zero-padded."""
    # The floor on the reference keeps digital silence (-120 dB everywhere) silent.
    reference = max(db.max(), -120.0 + DYNAMIC_RANGE)
    out = np.zeros((steps, db.shape[1]))
    out[:len(db)] = np.clip(1.0 + (db - reference) / DYNAMIC_RANGE, 0.0, 1.0)
    return out


def band_levels(audio: np.ndarray, rate: int, channels: int, dt: float, steps: int) -> np.ndarray:
    """``(steps, channels)`` band levels in [0, 1] (steps 1-4 of the module docstring)."""
    return compress(band_power_db(audio, rate, channels, dt, steps), steps)


def speaker_colours(dbs: list, speakers) -> dict:
    """Per speaker, the mean dB of each band over the loud frames of all their recordings.

    A frame is loud when its loudest band is within ``DYNAMIC_RANGE`` dB of the recording's
    loudest; silence before and after the word would otherwise dilute the estimate.
    """
    loud = {}
    for db, speaker in zip(dbs, speakers):
        frame_peak = db.max(axis=1)
        loud.setdefault(speaker, []).append(db[frame_peak >= frame_peak.max() - DYNAMIC_RANGE])
    return {speaker: np.concatenate(frames).mean(axis=0) for speaker, frames in loud.items()}


def recolour(db: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The band power ``db`` as heard through a random microphone in a random room.

    Adds a smooth gain curve across the channels (a tilt, a bow and one slow ripple, each
    drawn on the scale of ``RECOLOUR_GAIN`` dB) and stationary noise with exponentially
    distributed power per band and frame, ``RECOLOUR_NOISE`` dB below the loudest band.
    """
    c = np.linspace(-1.0, 1.0, db.shape[1])
    tilt, bow, ripple, phase = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-0.5, 0.5), rng.uniform(0, 2 * np.pi)
    gain = RECOLOUR_GAIN * (tilt * c + bow * (c ** 2 - 1 / 3) + ripple * np.sin(2 * np.pi * c + phase))
    db = db + gain
    noise_db = db.max() - rng.uniform(*RECOLOUR_NOISE)
    noise = 10.0 ** (noise_db / 10.0) * rng.exponential(1.0, db.shape)
    return 10.0 * np.log10(10.0 ** (db / 10.0) + noise)


def encode(levels: np.ndarray, dt: float) -> np.ndarray:
    """Integrate-and-fire spikes for ``(..., T, channels)`` levels (step 5), as uint8.

    The drive is ``SUSTAINED_GAIN * level + ONSET_GAIN * max(0, level - recent average)``,
    capped at one spike per step; the membrane resets by subtraction so every bit of drive
    is eventually spent as spikes, and nothing is random.
    """
    decay = np.exp(-dt / ONSET_TAU)
    average = np.zeros(levels.shape[:-2] + levels.shape[-1:])
    v = np.zeros_like(average)
    spikes = np.zeros(levels.shape, np.uint8)
    for t in range(levels.shape[-2]):
        level = levels[..., t, :]
        drive = SUSTAINED_GAIN * level + ONSET_GAIN * np.maximum(0.0, level - average)
        v = v + np.minimum(drive, 1.0)
        fired = v >= 1.0
        v = v - fired
        spikes[..., t, :] = fired
        average = decay * average + (1.0 - decay) * level
    return spikes


# ---------------------------------------------------------------------------- cache

def cache_key(recordings, settings: dict) -> str:
    """Hash of the front-end settings and of every file's name, size and mtime."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path, *_ in recordings:
        st = path.stat()
        h.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


CACHE_FIELDS = ("spikes", "labels", "speakers", "indices", "files")


def _read_cache(path: Path, recordings, steps: int, channels: int, augment: int, skip_unreadable: bool):
    """The cached arrays, or None if there are none to trust. A cache is read, never trusted: one
    that is corrupt or does not fit the recordings and the settings (see :func:`_cache_problem`)
    is treated as missing, with a warning."""
    try:
        arrays = store.read_npz(path)
    except FileNotFoundError:
        return None
    except store.NotNpz as err:
        problem = f"is {err}"
    except (OSError, MemoryError) as err:  # a crafted header can declare an array of any size
        problem = f"cannot be read ({type(err).__name__}: {err})"
    else:
        problem = _cache_problem(arrays, recordings, steps, channels, augment, skip_unreadable)
    if problem:
        warnings.warn(f"fsdd: the cache {path} {problem}; converting the recordings again")
        return None
    return {key: arrays[key] for key in CACHE_FIELDS + (("variants",) if augment else ())}


def _cache_problem(arrays: dict, recordings, steps: int, channels: int, augment: int,
                   skip_unreadable: bool) -> str | None:
    """Why cached ``arrays`` are not the conversion of ``recordings`` with these settings (in a
    few words), or None. It must hold every recording, or with ``skip_unreadable`` some of them,
    in order; spikes and copies of 0 and 1 shaped by the settings; and each file's digit, speaker
    and index, as its name gives them."""
    fields = CACHE_FIELDS + (("variants",) if augment else ())
    missing = [key for key in fields if key not in arrays]
    if missing:
        return f"lacks {', '.join(missing)}"
    files = arrays["files"]
    named = {path.name: (digit, speaker, index) for path, digit, speaker, index in recordings}
    if files.dtype.kind != "U" or files.ndim != 1:
        return "holds no list of file names"
    kept = set(files.tolist())
    expected = [name for name in named if name in kept] if skip_unreadable else list(named)
    if files.tolist() != expected:
        return "holds other recordings than the folder"
    n = len(files)
    shapes = {"spikes": (n, steps, channels), "labels": (n,), "speakers": (n,), "indices": (n,)}
    if augment:
        shapes["variants"] = (n, augment, steps, channels)
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            return f"holds {key} of shape {arrays[key].shape}, where the settings make {shape}"
    for key in ("spikes", "variants") if augment else ("spikes",):
        if arrays[key].dtype != np.uint8 or arrays[key].max(initial=0) > 1:
            return f"holds {key} other than 0 and 1"
    given = [named[name] for name in files.tolist()]
    for column, (key, kind) in enumerate((("labels", "i"), ("speakers", "U"), ("indices", "i"))):
        if arrays[key].dtype.kind != kind or arrays[key].tolist() != [g[column] for g in given]:
            return f"holds {key} other than its files' names give"
    return None


def _write_cache(path: Path, arrays: dict) -> None:
    """Write atomically, so a killed run never leaves half a cache.

    A cache that cannot be written costs only time, so failure is a warning.
    """
    try:
        store.write_npz(path, arrays, compressed=True)
    except OSError as err:
        warnings.warn(f"fsdd: could not write cache {path} ({err}); conversion will be repeated next time")


# ---------------------------------------------------------------------------- loading

@contextmanager
def _on_every_rank(comm):
    """Run a block on this rank, then (with a ``comm`` of several MPI ranks) hear from every
    rank: where the block failed on any, every rank raises (``comm.agree``), so that none is
    left waiting in a collective that a failed rank never reaches."""
    if comm is None or comm.size == 1:
        yield
        return
    try:
        yield
    except Exception as err:  # noqa: BLE001 - told to every rank, then raised on all
        comm.agree(err)
        raise
    comm.agree(None)


def _band_power_of(path, channels: int, dt: float, steps: int):
    """One recording's band power in dB (steps 1-3), or its UnreadableWav. Anything else that
    fails is a DataError naming the file."""
    try:
        audio, rate = read_wav(path)
        return band_power_db(audio, rate, channels, dt, steps)
    except UnreadableWav as err:
        return err
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - one line naming the file, not a traceback
        raise DataError(f"fsdd: {path} could not be converted ({type(err).__name__}: {err})") from err


def _analyse(recordings, channels: int, dt: float, steps: int, progress: bool, comm=None):
    """Steps 1-3 for every recording: (recordings read, their band power in dB, the
    UnreadableWav errors). With a ``comm`` of several ranks each rank reads and analyses every
    size-th recording, and rank 0 alone gets the whole result (the others get None); where any
    rank fails, every rank raises."""
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    results = []
    with _on_every_rank(comm):
        for position in tqdm(range(rank, len(recordings), size), desc="fsdd: converting", unit="file",
                             disable=not progress or rank > 0):
            results.append((position, _band_power_of(recordings[position][0], channels, dt, steps)))
    if size > 1:
        shares = comm.gather(results)
        if rank > 0:
            return None
        results = sorted((item for share in shares for item in share), key=lambda item: item[0])
    kept = [(recordings[i], db) for i, db in results if not isinstance(db, UnreadableWav)]
    unreadable = [err for _, err in results if isinstance(err, UnreadableWav)]
    return [r for r, _ in kept], [db for _, db in kept], unreadable


def band_powers(recordings, channels: int, dt: float, steps: int, speaker_norm: bool = True,
                progress: bool = True, skip_unreadable: bool = False, comm=None):
    """The recordings kept and each one's ``(frames, channels)`` band power in dB, less its
    speaker's colour.

    Steps 1-3 of the module docstring, then (with ``speaker_norm``) speaker normalisation.
    An unreadable recording raises DataError, which counts them all, or with
    ``skip_unreadable`` is left out with a warning that says how many were. With an MPI
    ``comm``, the ranks share the reading and rank 0 gets the result (the others None).
    """
    analysed = _analyse(recordings, channels, dt, steps, progress, comm)
    if analysed is None:
        return None
    kept, dbs, unreadable = analysed
    if unreadable:
        count = f"{len(unreadable)} of {len(recordings)} recordings"
        if not skip_unreadable:
            raise DataError(f"{unreadable[0]}; {count} are unreadable (--set skip_unreadable=true "
                            f"leaves them out)")
        if not kept:
            raise DataError(f"{unreadable[0]}; all {len(recordings)} recordings are unreadable")
        first = unreadable[0]
        warnings.warn(f"fsdd: skipped {count}, which are unreadable (the first, {first.path}, "
                      f"{first.reason})")
    if speaker_norm:
        speakers = [speaker for _, _, speaker, _ in kept]
        colour = speaker_colours(dbs, speakers)
        # Keeping each speaker's average level keeps digital silence at the silence floor.
        dbs = [db - colour[s] + colour[s].mean() for db, s in zip(dbs, speakers)]
    return kept, dbs


def convert(recordings, channels: int, dt: float, steps: int, speaker_norm: bool = True,
            augment: int = 0, progress: bool = True, skip_unreadable: bool = False, comm=None):
    """The recordings kept (see :func:`band_powers`), their spikes ``(n, steps, channels)``
    uint8, and with ``augment`` also ``(n, augment, steps, channels)`` recoloured copies
    (else None). With an MPI ``comm``, the ranks share the reading, and rank 0 gets the
    result (the others None).

    Copy k of a file depends only on its name and k (and, with ``speaker_norm``, on the
    other recordings of its speaker).
    """
    powers = band_powers(recordings, channels, dt, steps, speaker_norm, progress, skip_unreadable, comm)
    if powers is None:
        return None
    recordings, dbs = powers
    spikes = np.zeros((len(recordings), steps, channels), np.uint8)
    variants = np.zeros((len(recordings), augment, steps, channels), np.uint8) if augment else None
    for i, ((path, *_), db) in enumerate(zip(recordings, dbs)):
        spikes[i] = encode(compress(db, steps), dt)
        if augment:
            seed = zlib.crc32(path.name.encode())
            copies = [compress(recolour(db, np.random.default_rng([seed, k])), steps) for k in range(augment)]
            variants[i] = encode(np.stack(copies), dt)
    return recordings, spikes, variants


def _check_settings(channels, dt, steps, augment):
    whole("fsdd", "channels", channels)
    whole("fsdd", "steps", steps)
    real("fsdd", "dt", dt)
    whole("fsdd", "augment", augment, least=0)


def load_fsdd_all(data_dir, channels: int = 40, dt: float = 0.01, steps: int = 100,
                  speaker_norm: bool = True, augment: int = 0, cache_dir=None,
                  progress: bool = True, skip_unreadable: bool = False, comm=None) -> Dataset:
    """Every ``{digit}_{speaker}_{index}.wav`` in ``data_dir`` as one Dataset.

    ``data_dir`` is the FSDD folder or its ``recordings/`` folder (or any folder of such
    files). ``speaker_norm`` takes each speaker's colour out (step 4 of the module
    docstring). ``augment`` recoloured copies per recording go to the Dataset's ``variants``.
    ``cache_dir`` defaults to symgrad's ``fsdd`` cache folder (``$SYMGRAD_CACHE/fsdd`` if that
    variable is set, else ``~/.cache/symgrad/fsdd``). ``meta`` holds ``speaker``,
    ``index`` and ``file`` (name) per sample. One unreadable recording stops the loading
    (the error counts them all) unless ``skip_unreadable``, which leaves them out and warns.
    Settings that would make a data set larger than the memory available are refused first.

    ``comm``, the ranks of an MPI job: each reads and converts its share of the recordings,
    rank 0 alone reads and writes the cache, and every rank gets the whole Dataset; where any
    rank fails, every rank raises (RankFailed, naming the rank unless all failed alike).
    """
    lead, arrays = comm is None or comm.rank == 0, None
    with _on_every_rank(comm):  # every rank has checked the settings and found the recordings
        _check_settings(channels, dt, steps, augment)
        if not isinstance(speaker_norm, (bool, np.bool_)):
            raise DataError(f"fsdd: speaker_norm must be true or false, got {speaker_norm!r}")
        if not isinstance(skip_unreadable, (bool, np.bool_)):
            raise DataError(f"fsdd: skip_unreadable must be true or false, got {skip_unreadable!r}")
        channels, steps, dt, augment = int(channels), int(steps), float(dt), int(augment)
        recordings = list_recordings(data_dir)
        n = len(recordings)
        # Bytes per recording, step and channel: the spikes as cached (1), as float32 (4) and
        # again split into training and test sets (4), and 2 per augmented copy; and, while
        # one recording is encoded, three float64 arrays of it and of each copy.
        affordable("fsdd", f"{n} recordings x {steps} steps x {channels} channels"
                           + (f" x {1 + augment} versions" if augment else ""),
                   steps * channels * (n * (9 + 2 * augment) + 24 * (1 + augment)))
        settings = _front_end_settings(channels, dt, steps, bool(speaker_norm), augment)
        cache = Path(cache_dir).expanduser() if cache_dir is not None else store.cache_dir("fsdd")
        # A cache written while skipping may lack recordings: it has a key of its own.
        key = cache_key(recordings, {**settings, "skip_unreadable": True} if skip_unreadable else settings)
        cache_file = cache / f"fsdd-{key}.npz"
        if lead:
            arrays = _read_cache(cache_file, recordings, steps, channels, augment, bool(skip_unreadable))
    if not _shared(comm, arrays is not None):
        with _on_every_rank(comm):
            converted = convert(recordings, channels, dt, steps, bool(speaker_norm), augment, progress,
                                bool(skip_unreadable), comm)
            if converted is not None:  # on rank 0 only, in an MPI job
                arrays = _as_arrays(*converted)
                _write_cache(cache_file, arrays)
    elif lead and len(arrays["files"]) < n:
        warnings.warn(f"fsdd: skipped {n - len(arrays['files'])} of {n} recordings, which are unreadable "
                      f"(as when the cache was written)")
    arrays = _shared(comm, arrays)
    meta = dict(speaker=arrays["speakers"], index=arrays["indices"], file=arrays["files"],
                settings=settings)
    return Dataset("fsdd", arrays["spikes"].astype(np.float32), arrays["labels"].astype(np.int64),
                   "classification", N_CLASSES, meta, variants=arrays.get("variants"))


def _as_arrays(kept, spikes, variants) -> dict:
    """The converted recordings as the cache stores them."""
    arrays = dict(
        spikes=spikes,
        labels=np.array([r[1] for r in kept], np.int64),
        speakers=np.array([r[2] for r in kept]),
        indices=np.array([r[3] for r in kept], np.int64),
        files=np.array([r[0].name for r in kept]),
    )
    if variants is not None:
        arrays["variants"] = variants
    return arrays


def _shared(comm, value):
    """Rank 0's ``value`` on every rank of ``comm`` (None: this process only)."""
    return comm.broadcast(value) if comm is not None and comm.size > 1 else value


def load_fsdd(data_dir, channels: int = 40, dt: float = 0.01, steps: int = 100,
              speaker_norm: bool = True, augment: int = 0, test_speaker: str | None = None,
              cache_dir=None, progress: bool = True, skip_unreadable: bool = False, comm=None) -> Split:
    """FSDD as spike trains, split into training and test sets.

    By default the split is the official one: recording index 0-4 test, the rest train.
    With ``test_speaker`` the test set is every recording of that speaker and the training
    set every recording of the others, which measures how well a network recognises a voice
    it has never heard. Training samples carry ``augment`` recoloured copies (see
    :func:`recolour`); the test set is never augmented. Other arguments as for
    :func:`load_fsdd_all`.
    """
    full = load_fsdd_all(data_dir, channels, dt, steps, speaker_norm, augment, cache_dir, progress,
                         skip_unreadable, comm)
    if test_speaker is None:
        test = np.isin(full.meta["index"], TEST_INDICES)
        if not test.any() or test.all():
            part = "test" if not test.any() else "training"
            raise DataError(f"fsdd: {recordings_dir(data_dir)} has no {part} recordings "
                            f"(index {'0-4' if part == 'test' else '5 or above'})")
    else:
        speakers = sorted(set(full.meta["speaker"]))
        test = full.meta["speaker"] == str(test_speaker)
        if not test.any():
            raise DataError(f"fsdd: no recordings of speaker {test_speaker!r} in {recordings_dir(data_dir)} "
                            f"(speakers there: {', '.join(speakers)})")
        if test.all():
            raise DataError(f"fsdd: {recordings_dir(data_dir)} holds only speaker {test_speaker!r}, "
                            f"so no one is left to train on")
    return Split(full.subset(~test), full.subset(test, variants=False))
