"""The containers every task loader returns, and the one error type they raise.

All tasks share one layout so that training code never needs to know where the data came
from: inputs are ``(samples, T, channels)`` float32 arrays (0/1 spikes, or real values for
regression), time-major within each sample.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("classification", "regression")


class DataError(Exception):
    """A problem with the user's data (missing, unreadable, malformed).

    The message always names the offending file or folder, so that it can be shown to the
    user as it is, without a traceback.
    """


@dataclass
class Dataset:
    """One set of samples.

    name:       task name, e.g. ``"fsdd"``.
    x:          ``(samples, T, channels)`` float32 input.
    y:          classification: ``(samples,)`` int64 labels in ``[0, n_classes)``;
                regression: ``(samples, T, outputs)`` float32 targets.
    kind:       ``"classification"`` or ``"regression"``.
    n_classes:  number of classes; 0 for regression.
    meta:       optional per-sample metadata; any value that is an array or list with one
                entry per sample is subset together with ``x`` and ``y``.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    kind: str
    n_classes: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Dataset {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.x.ndim != 3:
            raise ValueError(f"Dataset {self.name!r}: x must be (samples, T, channels), got shape {self.x.shape}")
        if len(self.y) != len(self.x):
            raise ValueError(f"Dataset {self.name!r}: {len(self.x)} inputs but {len(self.y)} targets")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def steps(self) -> int:
        """Time steps per sample."""
        return self.x.shape[1]

    @property
    def channels(self) -> int:
        """Input channels."""
        return self.x.shape[2]

    @property
    def outputs(self) -> int:
        """Readout size a network needs: classes, or regression targets per step."""
        return self.n_classes if self.kind == "classification" else self.y.shape[2]

    def subset(self, idx) -> "Dataset":
        """The samples selected by ``idx`` (indices, a slice or a boolean mask), meta included."""
        n = len(self)
        meta = {}
        for key, value in self.meta.items():
            if isinstance(value, (np.ndarray, list)) and len(value) == n:
                value = np.asarray(value)[idx]
            meta[key] = value
        return Dataset(self.name, self.x[idx], self.y[idx], self.kind, self.n_classes, meta)


@dataclass
class Split:
    """A task's training and test sets."""

    train: Dataset
    test: Dataset
