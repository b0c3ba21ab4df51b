"""How a layer's synapses are laid out: which (post, pre) pairs exist, and how kernels reach one.

A layout owns the shape of every per-synapse array and gradient (which the runtime allocates
and the plan's memory figures predict), and the index expressions the kernels use to walk a
post neuron's synapses and to reach one synapse's element: the loop nest of the backends that
loop (Numba's ``nest``) and the thread numbering of those with one thread per synapse (CUDA's
``grid``). Printers and templates place these; nothing else assumes (batch, post, pre).

Today every layer is ``DENSE``: every pair (post, pre) is a synapse. A compressed-sparse-row
layout is one more ``Layout``: per-synapse arrays (batch, nnz) and gradients (nnz,), a post
neuron's synapses walked from ``row_start[post]`` to ``row_start[post + 1]`` with ``pre =
col[k]``, one thread per stored synapse; plus the arguments that carry its index arrays.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Nest:
    """A loop-nest backend's walk of one post neuron's synapses, inside loops over post neurons
    (in parallel) and samples: ``loop`` opens it and ``where`` begins its body (giving ``pre``,
    the presynaptic column, where the loop does not); ``synapse`` indexes a per-synapse array,
    ``weight`` a gradient."""

    loop: str
    where: tuple
    synapse: str
    weight: str


@dataclass(frozen=True)
class Grid:
    """A one-thread-per-synapse backend's numbering: ``threads`` synapses, ``where`` the lines
    that give a thread its post neuron and presynaptic column from ``syn``; ``synapse`` the
    offset of its element of a per-synapse array in sample ``bi`` = (sample, post), ``weight``
    its element of a gradient."""

    threads: str
    where: str
    synapse: str
    weight: str


@dataclass(frozen=True)
class Layout:
    name: str
    nest: Nest
    grid: Grid

    def synapses(self, batch, n, n_pre) -> tuple:
        """The shape of a per-synapse array (a trace, the filtered eligibility, a sequence sum)."""
        return (batch, n, n_pre)

    def weights(self, n, n_pre) -> tuple:
        """The shape of a gradient: one value per synapse."""
        return (n, n_pre)

    def count(self, n: int, n_pre: int) -> int:
        """How many synapses there are: the threads of a one-thread-per-synapse kernel."""
        return n * n_pre


DENSE = Layout(
    "dense",
    Nest(loop="for pre in range(n_pre):", where=(), synapse="sample, post, pre", weight="post, pre"),
    Grid(threads="(size_t)n * n_pre", where="const int post = syn / n_pre, pre = syn % n_pre;",
         synapse="bi * n_pre + pre", weight="syn"),
)
