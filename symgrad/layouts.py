"""How a layer's synapses are laid out: which (post, pre) pairs exist, and how kernels reach one.

A layout owns the shape of every per-synapse array and gradient (which the runtime allocates
and the plan's memory figures predict), and the index expressions the kernels use to walk a
post neuron's synapses and to reach one synapse's element: the loop nest of the backends that
loop (Numba's ``nest``) and the thread numbering of those with one thread per synapse (CUDA's
``grid``). Printers and templates place these; nothing else assumes (batch, post, pre).

A layer is ``DENSE`` (every pair (post, pre) is a synapse) or ``CSR``: compressed sparse rows,
post-major, where per-synapse arrays are (batch, nnz) and gradients (nnz,), post neuron i's
synapses are k = row_start[i] .. row_start[i + 1] - 1 with presynaptic column col[k], and
one thread of a one-thread-per-synapse backend takes one stored synapse (post[k] its post
neuron). The index arrays are arguments of the synapse kernels (``indices``); which synapses
exist is the runtime's (``symgrad.connectivity``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Nest:
    """A loop-nest backend's walk of one post neuron's synapses, inside loops over blocks of post
    neurons (in parallel), samples and the block's neurons: ``loop`` opens it and ``where``
    begins its body (giving ``pre``, the presynaptic column, where the loop does not);
    ``synapse`` indexes a per-synapse array, ``weight`` a gradient; ``walk`` says in words what
    the loop visits; ``unread``: the synapse kernels' count and index arguments that only a
    one-thread-per-synapse backend reads."""

    loop: str
    where: tuple
    synapse: str
    weight: str
    walk: str
    unread: tuple = ()


@dataclass(frozen=True)
class Grid:
    """A one-thread-per-synapse backend's numbering: ``threads`` synapses, ``where`` the lines
    that give a thread its post neuron and presynaptic column from ``syn``; ``synapse`` the
    offset of its element of a per-synapse array in sample ``bi`` = (sample, post), ``weight``
    its element of a gradient; ``doc`` says in words (comment lines) which synapses there are and
    which one a thread takes; ``unread``: the synapse kernels' index arguments that only a
    loop-nest backend reads."""

    threads: str
    where: str
    synapse: str
    weight: str
    doc: tuple
    unread: tuple = ()


@dataclass(frozen=True)
class Layout:
    """name: the layout's; suffix: what its generated files add to their names
    (``numba_layer_csr.py``); counts: the synapse kernels' count arguments after batch and n,
    (name, note); indices: their index arrays, (name, note); synapse_shape, weight_shape: a
    per-synapse array's and a gradient's shape, as notes and docstrings spell them."""

    name: str
    nest: Nest
    grid: Grid
    suffix: str = ""
    counts: tuple = (("n_pre", "presynaptic inputs; one thread per synapse (post, pre)"),)
    indices: tuple = ()
    synapse_shape: str = "(batch, n, pre)"
    weight_shape: str = "(n, pre)"

    @property
    def sparse(self) -> bool:
        return bool(self.indices)

    def synapses(self, batch, n, n_pre, nnz=None) -> tuple:
        """The shape of a per-synapse array (a trace, the filtered eligibility, a sequence sum);
        ``nnz``: the synapses a sparse layer stores."""
        return (batch, nnz) if self.sparse else (batch, n, n_pre)

    def weights(self, n, n_pre, nnz=None) -> tuple:
        """The shape of a gradient: one value per synapse."""
        return (nnz,) if self.sparse else (n, n_pre)

    def count(self, n: int, n_pre: int, nnz=None) -> int:
        """How many synapses there are: the threads of a one-thread-per-synapse kernel."""
        return nnz if self.sparse else n * n_pre


DENSE = Layout(
    "dense",
    Nest(loop="for pre in range(n_pre):", where=(), synapse="sample, post, pre", weight="post, pre",
         walk="the presynaptic inputs (contiguous)"),
    Grid(threads="(size_t)n * n_pre", where="const int post = syn / n_pre, pre = syn % n_pre;",
         synapse="bi * n_pre + pre", weight="syn",
         doc=("Synapses are every pair (post, pre): per-synapse arrays are (batch, n, pre) with pre",
              "fastest, gradients (n, pre). Thread syn takes the pair (syn / n_pre, syn % n_pre), so",
              "that neighbouring threads touch neighbouring addresses.")),
)

CSR = Layout(
    "csr",
    Nest(loop="for k in range(row_start[post], row_start[post + 1]):", where=("pre = col[k]",),
         synapse="sample, k", weight="k", walk="its stored synapses k (columns rising)",
         unread=("n_pre", "nnz", "post_of")),
    Grid(threads="(size_t)nnz", where="const int post = post_of[syn], pre = col[syn];",
         synapse="(size_t)sample * nnz + syn", weight="syn",
         doc=("Synapses are stored in compressed sparse rows, post-major: post neuron i's synapses are",
              "k = row_start[i] .. row_start[i + 1] - 1, synapse k's presynaptic column is col[k] and its",
              "post neuron post_of[k]. Per-synapse arrays are (batch, nnz) and gradients (nnz), both in",
              "that order. Thread syn takes stored synapse syn, so that neighbouring threads touch",
              "neighbouring addresses."),
         unread=("row_start",)),
    suffix="_csr",
    counts=(("n_pre", "presynaptic inputs (the columns of u)"), ("nnz", "synapses stored; one thread each")),
    indices=(("row_start", "(n + 1): post neuron i's synapses are row_start[i] .. row_start[i + 1] - 1"),
             ("col", "(nnz): each synapse's presynaptic column"),
             ("post_of", "(nnz): each synapse's post neuron")),
    synapse_shape="(batch, nnz)",
    weight_shape="(nnz)",
)

LAYOUTS = {layout.name: layout for layout in (DENSE, CSR)}
