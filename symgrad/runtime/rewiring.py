"""Rewiring sparse weights (DEEP R: Bellec, Kappel, Maass & Legenstein 2018, "Deep rewiring:
training very sparse deep networks", ICLR): the synapses move, their number stays.

Each synapse of a sparse weight has a sign: the model's where the weight is signed (Dale's
law, ``Network.signs``), else that of its first value, or a random one for a synapse rewiring
made. After each optimiser update a synapse whose weight crossed zero (sign x weight < 0: it
flipped, or, for a signed weight, ``Network.constrain`` would clip it to 0) is removed, and a
new one is made in the same row, at a column drawn among those no remaining synapse of the row
holds, as DEEP R draws among all dormant connections (in a recurrent weight never the neuron
itself, unless the synapse removed was onto itself, which only a given mask makes). The new
synapse takes the removed one's slot k (only col[k] changes, so a row's columns fall out of
order; see runtime/connectivity.py): its weight starts at 0 and its optimiser moments at zero.
Every row keeps its count, so nnz, and every (nnz,) array's shape, stay fixed.

Traces belong to a gradient pass and rewiring happens between passes (the Trainer refuses it
with updates within a pass, ``--update-every``), so a new synapse's traces start at zero, and
within a pass e-prop computes exactly the gradients of the network it runs, as without rewiring.

The draws come from a generator of (seed, update): every MPI rank, holding the same weights,
rewires alike, and a resumed run as an uninterrupted one. The signs are a checkpoint's
``sign/<weight key>`` arrays.
"""
from __future__ import annotations

import numpy as np

from .checkpoint import CheckpointMismatch, to_host
from .connectivity import Connectivity
from .projection import Source

SIGN = "sign/"  # a checkpoint holds each rewired weight's signs as SIGN + its key
STREAM = 2018  # the rewiring's own random stream of a run's seed


class Rewiring:
    """Moves the synapses of every sparse weight of ``net`` whose weight crossed zero."""

    def __init__(self, net, seed: int):
        self.net, self.seed = net, int(seed)
        self.signs = {}  # {weight key: (nnz,) int8, +1 or -1 per synapse}, on the host
        for key in sorted(net.connectivity):
            if key in net.signs:
                self.signs[key] = np.full(net.connectivity[key].nnz, net.signs[key], np.int8)
            else:
                self.signs[key] = np.where(to_host(net.params[key]) < 0, -1, 1).astype(np.int8)
        self.recurrent = {p.key for layer in net.layers for p in layer.projections if p.source is Source.RECURRENT}

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {SIGN + key: signs for key, signs in self.signs.items()}

    def state_layout(self) -> dict:
        """``{array: (shape, dtype)}`` of ``state()``."""
        return {SIGN + key: (signs.shape, np.dtype(np.int8)) for key, signs in self.signs.items()}

    def check_state(self, state: dict, path) -> None:
        """The signs of a checkpoint (shapes and dtypes checked already): +1 or -1, a signed
        weight's its own; else CheckpointMismatch naming the array."""
        for key in self.signs:
            values = state[SIGN + key]
            if not np.isin(values, (-1, 1)).all():
                raise CheckpointMismatch(f"{path}: array {SIGN + key!r} holds a value other than +1 and -1")
            if key in self.net.signs and np.any(values != self.net.signs[key]):
                raise CheckpointMismatch(f"{path}: array {SIGN + key!r} gives a synapse a sign other than "
                                         f"{self.net.signs[key]:+d}, the sign of {key} (Dale's law)")

    def load_state(self, state: dict) -> None:
        self.signs = {key: np.array(state[SIGN + key], np.int8) for key in self.signs}

    # -- rewiring ----------------------------------------------------------------------------
    def __call__(self, optimizer, update: tuple) -> int:
        """Rewire after ``optimizer``'s step ``update`` (a tuple of whole numbers naming it in the
        run, such as (epoch, update within it)), before ``Network.constrain``; returns how many
        synapses moved."""
        net, xp = self.net, self.net.xp
        rng = np.random.default_rng([self.seed, STREAM, *update])
        moved, count = {}, 0
        for key, signs in self.signs.items():  # sorted keys: the same draws in every process
            crossed = np.flatnonzero(signs * to_host(net.params[key]) < 0)
            if not len(crossed):
                continue
            held = net.connectivity[key]
            col = held.col.copy()
            rows = held.post[crossed]  # ascending, as crossed is
            for slots in np.split(crossed, np.flatnonzero(np.diff(rows)) + 1):
                row = held.post[slots[0]]
                taken = np.zeros(held.n_pre, bool)
                taken[col[held.row_start[row]:held.row_start[row + 1]]] = True
                if key in self.recurrent and row not in col[slots]:  # (a mask may give a neuron itself)
                    taken[row] = True
                taken[col[slots]] = False  # the removed synapses' columns are dormant again
                col[slots] = rng.choice(np.flatnonzero(~taken), size=len(slots), replace=False)
            signs[crossed] = net.signs[key] if key in net.signs else rng.choice(np.array([-1, 1], np.int8),
                                                                                 size=len(crossed))
            index = xp.asarray(crossed)
            net.params[key][index] = 0
            optimizer.forget(key, index)
            moved[key] = Connectivity(held.n_post, held.n_pre, held.row_start, col, key)
            count += len(crossed)
        net.reconnect(moved)
        return count
