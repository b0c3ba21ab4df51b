"""Losses on the readout y_t and their derivatives dL/dy_t.

Per-step losses are summed over time and averaged over the batch; sequence losses apply once
to the mean or the last readout. Each returns (loss, dL/dy) for the batch.
"""
from __future__ import annotations

import numpy as np

PER_STEP = ("ce", "mse")
SEQUENCE = ("ce_mean", "ce_last")
LOSSES = PER_STEP + SEQUENCE


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


def squared_error(y, target):
    """Sum over the batch of (1/2)|y_b - target_b|^2 divided by B, and its gradient."""
    batch = y.shape[0]
    diff = y - target
    return float(0.5 * (diff * diff).sum() / batch), diff / batch


def step_loss(kind, y, target, xp=np):
    """The loss at one step of a per-step loss; target is labels (B,) or values (B, K)."""
    if kind == "ce":
        return cross_entropy(y, target, xp)
    return squared_error(y, target)
