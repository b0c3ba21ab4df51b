"""Reading a run's checkpoint and metrics back, each checked before anything uses it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import store
from ..errors import UserError


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    try:
        state = store.read_npz(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no checkpoint here") from None
    except store.NotNpz as err:
        raise UserError(f"{path}: corrupt checkpoint ({err})") from None
    if "epoch" not in state or not any(k.startswith("param/") for k in state):
        raise UserError(f"{path}: not a symgrad checkpoint (no epoch or parameters)")
    return state


class CheckpointMismatch(UserError):
    """A checkpoint whose arrays are not those the run's config builds."""


def check_arrays(state: dict, layout: dict, path: Path):
    """Every array of ``layout`` present in ``state`` with its shape and dtype (None: any
    integer), finite, and nothing else; else CheckpointMismatch naming the first array."""
    for name, (shape, dtype) in layout.items():
        if name not in state:
            raise CheckpointMismatch(f"{path}: array {name!r} is missing")
        value = state[name]
        if value.shape != tuple(shape):
            raise CheckpointMismatch(f"{path}: array {name!r} has shape {value.shape}, but the network "
                                     f"built from config.json has {tuple(shape)}")
        kind_ok = np.issubdtype(value.dtype, np.integer) if dtype is None else value.dtype == dtype
        if not kind_ok:
            raise CheckpointMismatch(f"{path}: array {name!r} is {value.dtype}, but the network built "
                                     f"from config.json needs {dtype or 'an integer'}")
        if not np.isfinite(value).all():
            raise CheckpointMismatch(f"{path}: array {name!r} holds values that are not finite")
    unexpected = sorted(set(state) - set(layout))
    if unexpected:
        raise CheckpointMismatch(f"{path}: unexpected array {unexpected[0]!r} (not part of this run)")


def read_metrics(path: Path, epochs: int) -> dict:
    """The per-epoch metrics of a run's first ``epochs`` epochs."""
    empty = {"train_loss": [], "train_acc": [], "test_acc": []}
    if epochs == 0 and not path.exists():
        return empty
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing, but the checkpoint has reached epoch {epochs}; the "
                        f"checkpoint is untouched; restore metrics.json to resume") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({getattr(err, 'msg', err)}); the checkpoint is "
                        f"untouched; restore metrics.json to resume") from None
    if not isinstance(metrics, dict) or set(metrics) != set(empty) or not all(
            isinstance(v, list) and len(v) >= epochs for v in metrics.values()):
        raise UserError(f"{path}: expected lists {', '.join(empty)} of at least {epochs} epochs each")
    return {k: metrics[k][:epochs] for k in empty}
