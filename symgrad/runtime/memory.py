"""What a network and its training need in memory, checked against what the machine has
(``symgrad.memory``).

Checked before allocating, so that a network or a run too large to fit is refused in one line
naming the figure, instead of failing midway with a MemoryError (and a run folder holding
nothing but its config). The estimates count the large arrays only: they are lower bounds,
so a refusal is certain, never a guess.
"""
from __future__ import annotations

import math

import numpy as np

from ..memory import TooLarge, available, size_text


def require(needed: int, what: str, xp=np, advice: str = "") -> None:
    """Refuse ``what`` (its ``needed`` bytes) in one line when it cannot fit."""
    free = available(xp)
    if needed > free:
        where = "GPU memory" if xp is not np else "memory"
        raise TooLarge(f"{what} needs at least {size_text(needed)}, more than the {size_text(free)} of "
                       f"{where} available" + (f"; {advice}" if advice else ""))


def synapses(layer, port) -> int:
    """How many synapses ``port`` of ``layer`` has: every pair (post, pre), or its sparse rows'."""
    return layer.n * port.n_pre if port.synapses.count is None else port.synapses.count


def weights(net) -> int:
    """Bytes of a network's parameters, from its layers' shapes (before they are allocated), and
    of the float64 draw its largest weight is made from."""
    largest = max(layer.n * port.n_pre for layer in net.layers for port in layer.ports)
    count = sum(sum(synapses(layer, port) for port in layer.ports) + layer.n * len(layer.model.learnable)
                for layer in net.layers)
    if net.readout:  # W_out, b_out and the random feedback matrix shaped like W_out
        count += net.n_out * (2 * net.layers[-1].n + 1)
    return count * net.dtype.itemsize + largest * 8


def check_training(trainer) -> None:
    """Refuse, in one line, a run whose gradient pass and optimiser cannot fit beside its
    network: e-prop's traces and buffers (as ``TracePlan.memory`` predicts them) or BPTT's
    history, for this rank's share of a batch, times the ranks on this machine."""
    from .bptt import history
    from .eprop import memory as eprop_memory

    config, net, world = trainer.config, trainer.net, trainer.world
    batch = math.ceil(config.batch / world.size)
    if config.rule == "eprop":
        parts = {"e-prop's traces and buffers": eprop_memory(net, batch, trainer.loss, config.reg)}
    else:
        parts = {"BPTT's history": history(net, batch, trainer.split.train.steps)}
    state = trainer.optimizer.state_layout(net.params)
    parts["the gradients and optimiser state"] = sum(
        math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in state.values()) + _nbytes(net.params)
    needed = sum(parts.values()) * world.local_size
    ranks = f" for each of {world.local_size} ranks" if world.local_size > 1 else ""
    detail = ", ".join(f"{name} {size_text(value)}" for name, value in parts.items())
    require(needed, f"training with batch {config.batch} ({detail}{ranks})", net.xp,
            "choose a smaller --batch or --hidden" + (", or --rule eprop" if config.rule == "bptt" else ""))


def _nbytes(arrays: dict) -> int:
    return sum(int(value.nbytes) for value in arrays.values())
