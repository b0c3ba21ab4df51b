"""Procedurally generated tasks: nothing to download, reproducible from a seed.

Each generator returns a :class:`Split`. The seed is expanded with
``numpy.random.SeedSequence(seed).spawn`` into independent streams for the task's frozen
structure, the training set and the test set, so changing the number of test samples
never changes the training set. Default sizes are chosen so that a small recurrent network
learns each task within a minute or two on a laptop CPU.
"""
from __future__ import annotations

import numpy as np

from .base import DataError, Dataset, Split, affordable, counts, real, whole


def _streams(seed: int, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def _balanced_labels(rng: np.random.Generator, samples: int, n_classes: int) -> np.ndarray:
    """Labels with every class equally often (up to one), in random order."""
    return rng.permutation(np.arange(samples) % n_classes).astype(np.int64)


# ---------------------------------------------------------------------------- pattern generation

def pattern_generation(seed: int = 0, samples: int = 1, steps: int = 1000, channels: int = 100,
                       outputs: int = 3, rate: float = 10.0, dt: float = 1e-3,
                       freqs=(1.0, 2.0, 3.0, 5.0)) -> Split:
    """The pattern generation task of e-prop (Bellec et al. 2020, Fig. 2).

    Each sample is a frozen Poisson spike pattern (``rate`` Hz on ``channels`` inputs, time
    step ``dt`` s) paired with ``outputs`` target curves, each a sum of sinusoids at ``freqs``
    Hz with amplitudes drawn from [0.5, 2] and phases from [0, 2 pi). The network has to
    memorise the mapping, so the test set is the training set.
    """
    seed = whole("pattern", "seed", seed, least=0)
    samples, steps, channels, outputs = counts("pattern", samples=samples, steps=steps, channels=channels,
                                               outputs=outputs)
    dt = real("pattern", "dt", dt)
    rate = real("pattern", "rate", rate, 0.0, 1.0 / dt, open_low=False)  # at most one spike a step
    freqs = np.asarray(freqs, np.float64)
    # Per step of a sample: the input's random draw, its test and its float32 copy; the targets'
    # sinusoids, three float64 temporaries per frequency, and their float32 sum.
    affordable("pattern", f"{samples} samples x {steps} steps x {channels} channels",
               samples * steps * (13 * channels + outputs * (24 * freqs.size + 4)))
    rng = np.random.default_rng(seed)
    x = (rng.random((samples, steps, channels)) < rate * dt).astype(np.float32)
    amp = rng.uniform(0.5, 2.0, (samples, 1, outputs, len(freqs)))
    phase = rng.uniform(0.0, 2 * np.pi, (samples, 1, outputs, len(freqs)))
    t = np.arange(steps)[None, :, None, None] * dt
    y = (amp * np.sin(2 * np.pi * freqs * t + phase)).sum(-1).astype(np.float32)
    data = Dataset("pattern", x, y, "regression", 0, dict(dt=dt))
    return Split(data, data)


# ---------------------------------------------------------------------------- evidence accumulation

def evidence_accumulation(seed: int = 0, samples: int = 500, test_samples: int = 200,
                          cues: int = 7, population: int = 10, cue_steps: int = 10,
                          gap_steps: int = 5, delay_steps: int = 50, recall_steps: int = 15,
                          cue_rate: float = 0.4, noise_rate: float = 0.1) -> Split:
    """The evidence accumulation task of e-prop (Bellec et al. 2020, Fig. 3).

    Four input populations of ``population`` neurons each: left cues, right cues, recall,
    background noise. ``cues`` cues (each ``cue_steps`` long, ``gap_steps`` apart) appear
    on a random side, the side population firing with probability ``cue_rate`` per step;
    after ``delay_steps`` steps the recall population fires for ``recall_steps`` steps, and
    the label is the side that got more cues (0 left, 1 right). The noise population fires
    throughout with probability ``noise_rate``. At 10 ms per step the defaults match the
    paper's 40 Hz cues and 10 Hz noise, with a shorter delay.

    ``meta["recall"]`` is the (start, stop) step range of the recall cue, where the
    decision is due.
    """
    seed = whole("evidence", "seed", seed, least=0)
    samples, test_samples, cues, population, cue_steps = counts(
        "evidence", samples=samples, test_samples=test_samples, cues=cues, population=population,
        cue_steps=cue_steps)
    gap_steps = whole("evidence", "gap_steps", gap_steps, least=0)
    delay_steps = whole("evidence", "delay_steps", delay_steps, least=0)
    recall_steps = whole("evidence", "recall_steps", recall_steps)
    cue_rate = real("evidence", "cue_rate", cue_rate, 0.0, 1.0)
    noise_rate = real("evidence", "noise_rate", noise_rate, 0.0, 1.0, open_low=False)
    if cues % 2 == 0:
        raise DataError(f"evidence: cues must be odd so that one side wins, got {cues}")
    period = cue_steps + gap_steps
    steps = cues * period + delay_steps + recall_steps
    recall = (steps - recall_steps, steps)
    channels, total = 4 * population, samples + test_samples
    # Both sets as float32, and while the larger is drawn, its random draw (float64), its test,
    # and the rates and populations driven per step.
    affordable("evidence", f"{total} samples x {steps} steps x {channels} channels",
               total * steps * channels * 4 + max(samples, test_samples) * steps * (9 * channels + 36))

    def draw(rng, n):
        sides = rng.integers(0, 2, (n, cues))
        active = np.zeros((n, steps, 4), bool)  # which population is driven per step
        for i in range(cues):
            window = np.arange(i * period, i * period + cue_steps)
            active[np.arange(n)[:, None], window, sides[:, i][:, None]] = True
        active[:, recall[0]:, 2] = True
        rates = np.where(active, cue_rate, 0.0)
        rates[:, :, 3] = noise_rate
        x = rng.random((n, steps, 4, population)) < rates[..., None]
        y = (sides.sum(1) * 2 > cues).astype(np.int64)
        return Dataset("evidence", x.reshape(n, steps, 4 * population).astype(np.float32), y,
                       "classification", 2, dict(cues_right=sides.sum(1), recall=recall))

    train_rng, test_rng = _streams(seed, 2)
    return Split(draw(train_rng, samples), draw(test_rng, test_samples))


# ---------------------------------------------------------------------------- random manifolds

def _manifold_params(rng, n_classes, channels, dim, alpha, harmonics):
    """Amplitudes and phases of one smooth random function per (class, channel, latent dim).

    Harmonic k gets an amplitude U(0, 1) / (k + 1)**alpha, so larger ``alpha`` gives
    smoother manifolds.
    """
    shape = (n_classes, channels, dim, harmonics)
    amp = rng.random(shape) / (np.arange(harmonics) + 1.0) ** alpha
    phase = rng.random(shape)
    return amp, phase


def _manifold(amp, phase, z):
    """Points ``z`` (n, dim) in [0, 1]^dim mapped to (n, channels) values by one class's manifold."""
    k = np.arange(amp.shape[-1])
    waves = np.sin(2 * np.pi * (z[:, None, :, None] * k + phase[None]))
    return (amp[None] * waves).sum(-1).prod(-1)


def randman(seed: int = 0, samples: int = 500, test_samples: int = 200, n_classes: int = 10,
            channels: int = 30, steps: int = 50, dim: int = 1, alpha: float = 2.0,
            harmonics: int = 32) -> Split:
    """The random manifolds task (Zenke & Vogels 2021).

    Each class is a smooth random manifold: a map from a ``dim``-dimensional latent cube to
    ``channels`` spike times, each coordinate a product over latent dimensions of random
    Fourier series (``harmonics`` terms, amplitudes decaying as ``(k+1)**-alpha``). A sample
    draws a latent point uniformly and emits exactly one spike per channel at the time the
    manifold gives, scaled to ``steps`` steps. Per channel and class, times are scaled to
    span the whole window (measured on a fixed reference set of latent points), so no single
    channel's timing reveals the class; only their joint pattern does.

    Harder variants: larger ``dim``, smaller ``alpha``, more classes, fewer steps.
    """
    seed = whole("randman", "seed", seed, least=0)
    n_classes = whole("randman", "n_classes", n_classes, least=2)
    samples, test_samples, channels, steps, dim, harmonics = counts(
        "randman", samples=samples, test_samples=test_samples, channels=channels, steps=steps, dim=dim,
        harmonics=harmonics)
    alpha = real("randman", "alpha", alpha, open_low=False)
    total = samples + test_samples
    affordable("randman", f"{total} samples x {steps} steps x {channels} channels", total * steps * channels * 4)
    # The manifolds' amplitudes and phases, and a class's waves and their weighted copy at once
    # for the reference points or the class's samples, whichever are more.
    points = max(1024, -(-max(samples, test_samples) // n_classes))
    affordable("randman", f"manifolds of {n_classes} classes x {channels} channels x {dim} dimensions x "
                          f"{harmonics} harmonics", 16 * (n_classes + points) * channels * dim * harmonics)
    structure, train_rng, test_rng = _streams(seed, 3)
    amp, phase = _manifold_params(structure, n_classes, channels, dim, alpha, harmonics)
    reference = [_manifold(amp[c], phase[c], structure.random((1024, dim))) for c in range(n_classes)]
    lo, hi = np.stack([r.min(0) for r in reference]), np.stack([r.max(0) for r in reference])

    def draw(rng, n):
        y = _balanced_labels(rng, n, n_classes)
        z = rng.random((n, dim))
        x = np.zeros((n, steps, channels), np.float32)
        for c in range(n_classes):
            idx = np.flatnonzero(y == c)
            value = (_manifold(amp[c], phase[c], z[idx]) - lo[c]) / (hi[c] - lo[c] + 1e-12)
            t = np.clip((value * steps).astype(np.int64), 0, steps - 1)
            x[idx[:, None], t, np.arange(channels)] = 1.0
        return Dataset("randman", x, y, "classification", n_classes, dict(latent=z))

    return Split(draw(train_rng, samples), draw(test_rng, test_samples))
