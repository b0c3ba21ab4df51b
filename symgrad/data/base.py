"""The containers every task loader returns, and the one error type they raise.

All tasks share one layout so that training code never needs to know where the data came
from: inputs are ``(samples, T, channels)`` float32 arrays (0/1 spikes, or real values for
regression), time-major within each sample.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from .. import memory
from ..errors import UserError

KINDS = ("classification", "regression")


class DataError(UserError):
    """A problem with the user's data (missing, unreadable, malformed) or with a loader's
    setting.

    The message always names the offending file, folder or setting, so that it can be shown
    to the user as it is, without a traceback.
    """


def affordable(task: str, what: str, nbytes: float) -> None:
    """Refuse, before allocating it, what needs ``nbytes`` of memory when this machine has
    not that much available: in one line, with ``what`` (the sizes behind it) and the figure,
    rather than a MemoryError, or the swapping that comes before one."""
    free = memory.available()
    if nbytes > free:
        raise DataError(f"{task}: {what} would need {memory.size_text(nbytes)} of memory, more than the "
                        f"{memory.size_text(free)} available")


def whole(task: str, name: str, value, least: int = 1) -> int:
    """A loader's setting that counts something: a whole number of at least ``least``."""
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least):
        raise DataError(f"{task}: {name} must be a whole number of at least {least}, got {value!r}")
    return int(value)


def counts(task: str, **values) -> list[int]:
    """Several settings that count something, each a whole number of at least 1, in order."""
    return [whole(task, name, value) for name, value in values.items()]


def real(task: str, name: str, value, low: float = 0.0, high: float = math.inf, *,
         open_low: bool = True) -> float:
    """A loader's setting that measures something: a finite number above ``low`` (or at least
    ``low`` when not ``open_low``) and at most ``high``."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and (value > low if open_low else value >= low) and value <= high)
    if not ok:
        bounds = f"{'above' if open_low else 'at least'} {low:g}" + (f" and at most {high:g}" if high < math.inf else "")
        raise DataError(f"{task}: {name} must be a number {bounds}, got {value!r}")
    return float(value)


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
    variants:   optional ``(samples, copies, T, channels)`` augmented copies of ``x`` that
                training may use in its place (:meth:`inputs`).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    kind: str
    n_classes: int
    meta: dict = field(default_factory=dict)
    variants: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Dataset {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.x.ndim != 3:
            raise ValueError(f"Dataset {self.name!r}: x must be (samples, T, channels), got shape {self.x.shape}")
        if len(self.y) != len(self.x):
            raise ValueError(f"Dataset {self.name!r}: {len(self.x)} inputs but {len(self.y)} targets")
        if self.variants is not None and (self.variants.ndim != 4 or self.variants.shape[0] != len(self.x)
                                          or self.variants.shape[2:] != self.x.shape[1:]):
            raise ValueError(f"Dataset {self.name!r}: variants must be (samples, copies, T, channels) "
                             f"matching x {self.x.shape}, got {self.variants.shape}")

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

    @property
    def copies(self) -> int:
        """Augmented copies per sample (0 without augmentation)."""
        return 0 if self.variants is None else self.variants.shape[1]

    def inputs(self, index, choice=None) -> np.ndarray:
        """float32 ``x[index]``; where ``choice[index]`` is k > 0, sample copy k - 1 instead.

        ``choice`` has one entry per sample of the whole set, in ``[0, copies]``.
        """
        x = self.x[index]
        if choice is None or self.variants is None:
            return x
        index = np.asarray(index)
        pick = choice[index]
        use = pick > 0
        x[use] = self.variants[index[use], pick[use] - 1]
        return x

    def subset(self, idx, variants: bool = True) -> "Dataset":
        """The samples selected by ``idx`` (indices, a slice or a boolean mask), meta included.

        ``variants=False`` drops the augmented copies (a test set has no use for them).
        """
        n = len(self)
        meta = {}
        for key, value in self.meta.items():
            if isinstance(value, (np.ndarray, list)) and len(value) == n:
                value = np.asarray(value)[idx]
            meta[key] = value
        copies = self.variants[idx] if variants and self.variants is not None else None
        return Dataset(self.name, self.x[idx], self.y[idx], self.kind, self.n_classes, meta, copies)


@dataclass
class Split:
    """A task's training and test sets."""

    train: Dataset
    test: Dataset
