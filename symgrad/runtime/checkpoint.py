"""Reading a run's checkpoint and metrics back, each checked before anything uses it.

The one place that says what a valid checkpoint is: resume, evaluate and export all read
theirs with ``load_checkpoint`` and ``check_checkpoint``, and give it to the network with
``load_network``. Besides each parameter, a checkpoint holds each sparse weight's synapses
(``connectivity/<key>/shape``, ``row_start`` and ``col``), so that whatever loads it runs
exactly those synapses, never a new draw.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import store
from ..errors import UserError
from .connectivity import Connectivity, ConnectivityError
from .projection import Source

PARAM = "param/"  # a checkpoint holds each network parameter as PARAM + its key
CONNECTIVITY = "connectivity/"  # + a sparse weight's key + "/shape", "/row_start" or "/col"


def to_host(array) -> np.ndarray:
    """A NumPy array of a network's array (on a GPU or not)."""
    return array.get() if hasattr(array, "get") else np.asarray(array)


def network_arrays(net) -> dict:
    """The arrays a checkpoint holds of ``net``: its parameters and its sparse weights' synapses."""
    arrays = {PARAM + key: to_host(value) for key, value in net.params.items()}
    for key, connectivity in net.connectivity.items():
        arrays[f"{CONNECTIVITY}{key}/shape"] = np.array(connectivity.shape, np.int64)
        arrays[f"{CONNECTIVITY}{key}/row_start"] = connectivity.row_start
        arrays[f"{CONNECTIVITY}{key}/col"] = connectivity.col
    return arrays


def parameters(state: dict) -> dict:
    """{parameter key: array} of the network parameters a checkpoint holds."""
    return {name[len(PARAM):]: value for name, value in state.items() if name.startswith(PARAM)}


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    try:
        state = store.read_npz(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no checkpoint here") from None
    except store.NotNpz as err:
        raise UserError(f"{path}: corrupt checkpoint ({err})") from None
    if "epoch" not in state or not parameters(state):
        raise UserError(f"{path}: not a symgrad checkpoint (no epoch or parameters)")
    epoch = state["epoch"]  # its shape and dtype are check_arrays's to name
    if np.issubdtype(epoch.dtype, np.number) and (epoch < 0).any():
        raise UserError(f"{path}: 'epoch' must be a whole number of at least 0, got {epoch.tolist()!r}")
    return state


class CheckpointMismatch(UserError):
    """A checkpoint whose arrays are not those the run's config builds."""


def check_checkpoint(state: dict, net, optimizer, path: Path, rewiring=None):
    """``state`` (from load_checkpoint) holds exactly the arrays of a checkpoint of ``net``
    trained with ``optimizer`` (and ``rewiring``, a rewiring.Rewiring, where the run rewires),
    each with its shape and dtype, finite, its synapses and signs sound; else CheckpointMismatch."""
    check_arrays(state, checkpoint_layout(state, net, optimizer, rewiring), path)
    connectivity_of(state, net, path)
    if rewiring is not None:
        rewiring.check_state(state, path)


def load_network(state: dict, net, path) -> None:
    """Give ``net`` the synapses and parameters of a checked checkpoint ``state``."""
    net.reconnect(connectivity_of(state, net, path))
    net.set_params(parameters(state))


def connectivity_of(state: dict, net, path) -> dict:
    """{key: Connectivity} of the sparse weights of ``net`` as checkpoint ``state`` holds them
    (its arrays' shapes checked already); else CheckpointMismatch naming the array."""
    found = {}
    for key, held in net.connectivity.items():
        prefix = CONNECTIVITY + key + "/"
        shape = tuple(int(extent) for extent in state[prefix + "shape"])
        if shape != held.shape:
            raise CheckpointMismatch(f"{path}: array {prefix + 'shape'!r} makes {key} {shape}, but the network "
                                     f"built from config.json has {held.shape}")
        try:
            found[key] = Connectivity(*shape, state[prefix + "row_start"], state[prefix + "col"], key)
        except ConnectivityError as err:
            raise CheckpointMismatch(f"{path}: array {prefix + (err.array or 'col')!r}: {err}") from None
    return found


def checkpoint_layout(state: dict, net, optimizer, rewiring=None) -> dict:
    """``{array: (shape, dtype)}`` a checkpoint of ``net`` holds; dtype None: any integer.
    Its optimiser state is there once an epoch has finished."""
    layout = {PARAM + k: (v.shape, np.dtype(v.dtype)) for k, v in net.params.items()}
    for key, connectivity in net.connectivity.items():  # a synapse per entry of the weight's (nnz,)
        layout.update({f"{CONNECTIVITY}{key}/shape": ((2,), None),
                       f"{CONNECTIVITY}{key}/row_start": ((connectivity.n_post + 1,), None),
                       f"{CONNECTIVITY}{key}/col": (net.params[key].shape, None)})
    if rewiring is not None:
        layout.update(rewiring.state_layout())
    layout["epoch"] = ((), None)
    if np.ndim(state["epoch"]) == 0 and state["epoch"] > 0:
        layout.update({f"optim/{k}": (shape, np.dtype(dtype)) for k, (shape, dtype)
                       in optimizer.state_layout(net.params).items()})
    if "baseline_loss" in state:  # absent in checkpoints written before it was kept
        layout["baseline_loss"] = ((), np.dtype(np.float64))
    return layout


def checkpoint_sizes(state: dict, probe, path: Path) -> tuple[int, int]:
    """The input channels and outputs of the network whose checkpoint ``state`` is, read off its
    weights by asking ``probe``, the run's network built with any sizes (its parameters' keys
    do not depend on them), which of them hold the sizes; a UserError if they are missing."""
    params = parameters(state)
    first = next((p.key for p in probe.layers[0].projections if p.source is Source.INPUT), None)
    if first is None:
        raise UserError(f"{path}: the network's first layer hears no input, so its input size is unknown")

    def shape(key: str) -> tuple:  # a sparse weight's shape is its synapses', a dense one's its own
        given = state.get(f"{CONNECTIVITY}{key}/shape")
        if given is not None and given.shape == (2,) and np.issubdtype(given.dtype, np.integer):
            return tuple(int(extent) for extent in given)
        if np.ndim(params.get(key)) != 2:
            raise CheckpointMismatch(f"{path}: holds no matrix {PARAM + key!r}: it does not fit the run's "
                                     f"config.json")
        return params[key].shape

    n_out = shape("W_out")[0] if probe.readout else probe.layers[-1].n
    return shape(first)[1], n_out


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
    for name in empty:
        for epoch, value in enumerate(metrics[name][:epochs], 1):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{path}: {name} of epoch {epoch} is {value!r}, not a number; the "
                                f"checkpoint is untouched; restore metrics.json to resume")
    return {k: metrics[k][:epochs] for k in empty}
