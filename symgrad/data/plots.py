"""Figures for looking at inputs and training: spike rasters, the FSDD audio-to-spikes
pipeline, a run's learning curves.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so they work under
any backend (Agg included), do not pile up in pyplot's registry, and still display in
notebooks. Every function returns the Figure.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import fsdd


def raster(spikes, ax=None, title: str | None = None, dt: float | None = None) -> Figure:
    """Spike raster of a ``(T, n)`` array (nonzero = spike); time in s if ``dt`` is given."""
    spikes = np.asarray(spikes)
    if spikes.ndim != 2:
        raise ValueError(f"raster: spikes must be (T, n), got shape {spikes.shape}")
    if ax is None:
        ax = Figure(figsize=(6, 3), layout="constrained").add_subplot()
    t, n = np.nonzero(spikes)
    scale = dt if dt else 1.0
    ax.scatter(t * scale, n, s=4, marker="|", color="k", linewidths=0.8)
    ax.set_xlim(0, spikes.shape[0] * scale)
    ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
    ax.set_xlabel("time (s)" if dt else "time step")
    ax.set_ylabel("channel")
    if title:
        ax.set_title(title)
    return ax.figure


def training_curves(metrics: dict, title: str, chance: float | None = None) -> Figure:
    """Train loss, and train and test accuracy (or score), per epoch, from a run's metrics.

    ``chance``: a classification task's chance accuracy (1 / classes), drawn as a line, the
    accuracy axis then spanning [0, 1]. Both axes are fixed where they can be (the loss from 0),
    so a run that learns nothing shows flat lines, not autoscaled noise that looks like learning.
    """
    epochs = np.arange(1, len(metrics["train_loss"]) + 1)
    # Fixed margins rather than a layout engine, which takes as long as the rest of the drawing:
    # the trainer draws this figure during training.
    fig = Figure(figsize=(9, 3.4))
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.15, top=0.8, wspace=0.3)
    fig.suptitle(title)
    left, right = fig.subplots(1, 2)
    left.plot(epochs, metrics["train_loss"], marker="o")
    left.set(ylabel="train loss", title="loss")
    highest = max(metrics["train_loss"], default=0)
    # every loss symgrad trains with is at least 0; the margin keeps the top point off the frame
    left.set_ylim(0, 1.1 * highest if 0 < highest < np.inf else None)
    right.plot(epochs, metrics["train_acc"], marker="o", label="train")
    right.plot(epochs, metrics["test_acc"], marker="s", label="test")
    if chance is not None:
        right.axhline(chance, color="grey", linestyle="--", label=f"chance ({100 * chance:.3g}%)")
        right.set_ylim(0, 1)
        right.set(ylabel="accuracy", title="accuracy")
    else:
        right.set(ylabel="score (negative MSE)", title="score")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.legend()
    return fig


def audio_to_spikes(source, spikes, dt: float = 0.01, title: str | None = None) -> Figure:
    """Waveform, filterbank levels and spike raster of one recording, on one time axis.

    ``source`` is a WAV path or ``(audio, rate)``; ``spikes`` is its ``(T, channels)``
    encoding by :mod:`symgrad.data.fsdd` with time step ``dt``. The levels are recomputed
    with the same front end, so the panels show exactly what the encoder saw.
    """
    audio, rate = fsdd.read_wav(source) if not isinstance(source, tuple) else source
    audio = np.asarray(audio, np.float64)
    spikes = np.asarray(spikes)
    steps, channels = spikes.shape
    levels = fsdd.band_levels(audio, rate, channels, dt, steps)

    fig = Figure(figsize=(7, 7), layout="constrained")
    wave_ax, level_ax, spike_ax = fig.subplots(3, 1, sharex=True, height_ratios=(1, 2, 2))
    wave_ax.plot(np.arange(len(audio)) / rate, audio, lw=0.5, color="k")
    wave_ax.set_ylabel("amplitude")
    image = level_ax.imshow(levels.T, origin="lower", aspect="auto", cmap="magma",
                            extent=(0, steps * dt, -0.5, channels - 0.5), vmin=0, vmax=1)
    fig.colorbar(image, ax=level_ax, label="level")
    level_ax.set_ylabel("mel channel")
    raster(spikes, ax=spike_ax, dt=dt)
    if title:
        wave_ax.set_title(title)
    return fig
