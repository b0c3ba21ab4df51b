"""Losses on the readout y_t, their derivatives dL/dy_t, and what each asks of e-prop.

Per-step losses are summed over time and averaged over the batch; sequence losses apply once
to the mean or the last readout. Each loss function returns (loss, dL/dy) for the batch.
:data:`LOSSES` names every loss kind; e-prop and BPTT read what they need from its record.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def softmax(y, xp=np):
    e = xp.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(y, labels, xp=np):
    """Sum over the batch of CE(softmax(y_b), labels_b) divided by B, and its gradient."""
    batch = y.shape[0]
    p = softmax(y, xp)
    rows = xp.arange(batch)
    loss = -xp.log(xp.maximum(p[rows, labels], 1e-30)).sum() / batch
    err = p
    err[rows, labels] -= 1
    return float(loss), err / batch


def squared_error(y, target, xp=np):
    """Sum over the batch of (1/2)|y_b - target_b|^2 divided by B, and its gradient.

    ``xp`` is unused; it gives every loss function the same signature."""
    batch = y.shape[0]
    diff = y - target
    return float(0.5 * (diff * diff).sum() / batch), diff / batch


# How the readout is reduced for the loss.
PER_STEP_READOUT = "per step"  # y_t at every step, the losses summed over time
MEAN_READOUT = "mean"  # the mean of y_t over time, one loss for the sequence
LAST_READOUT = "last"  # y_T, one loss for the sequence

# What the target holds.
LABELS = "labels"  # class labels (B,)
VALUES = "values"  # values per step (T, B, K)


@dataclass(frozen=True)
class LossKind:
    """One kind of loss: which readout it compares with which target, and what e-prop keeps
    per synapse for it."""

    name: str
    readout: str  # PER_STEP_READOUT, MEAN_READOUT or LAST_READOUT
    target: str  # LABELS or VALUES
    value: Callable  # (y, target, xp) -> (loss, dL/dy) for the batch

    @property
    def per_step(self) -> bool:
        return self.readout == PER_STEP_READOUT

    @property
    def keeps_sum(self) -> bool:
        """Whether e-prop keeps, per synapse, the weighted sum over time sum_t w_t e_t: the mean
        readout needs sum_t ebar_t, which the weights w_t fold the filter into."""
        return self.readout == MEAN_READOUT

    def keeps_filtered(self, kappa: float) -> bool:
        """Whether e-prop keeps, per synapse, the filtered eligibility ebar_t = kappa ebar_{t-1}
        + e_t: the last readout needs ebar_T; a per-step loss needs every ebar_t, which is e_t
        itself when the readout does not leak (kappa = 0)."""
        return self.readout == LAST_READOUT or (self.per_step and kappa != 0)

    def step_target(self, target, t: int):
        """The target the readout of step t is compared with."""
        return target[t] if self.target == VALUES else target

    def sum_weights(self, kappa: float, steps: int) -> np.ndarray:
        """w_t = 1 + kappa + ... + kappa^(T-1-t), so that sum_t ebar_t = sum_t w_t e_t;
        ones when no sum is kept."""
        if not self.keeps_sum:
            return np.ones(steps)
        return np.cumsum(kappa ** np.arange(steps))[::-1]

    def scale(self, steps: int) -> float:
        """The factor between the kept per-synapse value and the readout's dependence on it:
        1/T for the mean of T steps."""
        return 1.0 / steps if self.readout == MEAN_READOUT else 1.0

    def reduce(self, total, last, steps: int):
        """The sequence loss's readout from a running sum over time and the last value (also
        for the readout's filtered inputs, which it reduces alike)."""
        return total / steps if self.readout == MEAN_READOUT else last

    def reduce_stack(self, ys):
        """The sequence loss's readout from the readouts of every step, ys (T, B, K)."""
        return ys.mean(axis=0) if self.readout == MEAN_READOUT else ys[-1]

    def spread(self, err, dy) -> None:
        """Write dL/dy_t for every step into dy (T, B, K), given err = dL/d(reduced readout)."""
        if self.readout == MEAN_READOUT:
            dy[...] = err / dy.shape[0]
        else:
            dy[-1] = err


LOSSES: dict[str, LossKind] = {kind.name: kind for kind in (
    LossKind("ce", PER_STEP_READOUT, LABELS, cross_entropy),
    LossKind("ce_mean", MEAN_READOUT, LABELS, cross_entropy),
    LossKind("ce_last", LAST_READOUT, LABELS, cross_entropy),
    LossKind("mse", PER_STEP_READOUT, VALUES, squared_error),
)}
PER_STEP = tuple(name for name, kind in LOSSES.items() if kind.per_step)
SEQUENCE = tuple(name for name, kind in LOSSES.items() if not kind.per_step)


def loss_kind(name: str) -> LossKind:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose {', '.join(LOSSES)}")
    return LOSSES[name]
