"""Which synapses exist: a projection's sparse rows, and the synapses of a port they add up to.

A projection's ``Connectivity`` lists its synapses in compressed sparse rows, post-major: post
neuron i's synapses are k = row_start[i] .. row_start[i + 1] - 1, with presynaptic columns
col[k], each listed once in a row. A row built from a mask or a draw lists its columns in
increasing order; rewiring (runtime/rewiring.py) moves a synapse to another column in its own
slot k, so a rewired row's columns are in any order. The projection's weights, gradients and
optimiser moments are (nnz,) arrays in slot order; a dense projection has no Connectivity.

A port hears u_t = [input_t, z_{t-1}, 1]; its ``Synapses`` merge the projections that drive it
into the rows the sparse kernels walk (``layouts.CSR``): row i holds row i of each projection
in u's order, its columns shifted to u's, a dense projection's every column, and the bias as
one synapse. ``Synapses.split`` hands each projection its part of a gradient over the port's
synapses. ``DenseSynapses`` answers the same questions for a dense port (u's every column in
every row). Both answer with the array module of what they are given (NumPy or CuPy).

Every check names the projection and the problem in one line (``ConnectivityError``).
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import UserError
from ..layouts import CSR, DENSE
from .projection import Source


class ConnectivityError(UserError, ValueError):
    """A mask, index list or connection probability that cannot be used: one line. ``array``:
    which of a Connectivity's arrays is at fault ("row_start" or "col"), where one is."""

    def __init__(self, message: str, array: str | None = None):
        super().__init__(message)
        self.array = array


def _index(values) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


class Connectivity:
    """The synapses of one projection of ``n_post`` neurons from ``n_pre`` sources."""

    def __init__(self, n_post: int, n_pre: int, row_start, col, name: str = "the projection"):
        self.n_post, self.n_pre, self.name = int(n_post), int(n_pre), name
        self.row_start, self.col = _index(row_start), _index(col)
        if self.row_start.shape != (self.n_post + 1,) or self.row_start[0] != 0 \
                or np.any(np.diff(self.row_start) < 0) or self.row_start[-1] != len(self.col):
            raise ConnectivityError(f"{name}: row_start must rise from 0 to the {len(self.col)} synapses "
                                    f"over {self.n_post} + 1 entries", "row_start")
        if len(self.col) and (self.col.min() < 0 or self.col.max() >= self.n_pre):
            raise ConnectivityError(f"{name}: a presynaptic column outside 0 .. {self.n_pre - 1}", "col")
        self.post = np.repeat(np.arange(self.n_post, dtype=np.int64), np.diff(self.row_start))
        if len(np.unique(self.post * self.n_pre + self.col)) != len(self.col):
            raise ConnectivityError(f"{name}: a row lists a presynaptic column twice", "col")
        # the same synapses column by column, for the transposed product (pass_back)
        self.by_col = np.argsort(self.col, kind="stable")
        self.col_start = np.searchsorted(self.col[self.by_col], np.arange(self.n_pre + 1))

    @property
    def nnz(self) -> int:
        return len(self.col)

    @property
    def shape(self) -> tuple:
        return (self.n_post, self.n_pre)

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.n_post * self.n_pre)

    def __eq__(self, other):
        return (isinstance(other, Connectivity) and self.shape == other.shape
                and np.array_equal(self.row_start, other.row_start) and np.array_equal(self.col, other.col))

    def __repr__(self):
        return f"<Connectivity {self.name}: {self.nnz} of {self.n_post} x {self.n_pre} ({self.density:.1%})>"

    # -- building one ----------------------------------------------------------------------
    @classmethod
    def from_mask(cls, mask, shape: tuple, name: str = "the projection") -> "Connectivity":
        """From a boolean (n_post, n_pre) array: True where a synapse exists."""
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise ConnectivityError(f"the mask of {name} holds {mask.dtype} values: give a boolean array")
        if mask.shape != tuple(shape):
            raise ConnectivityError(f"the mask of {name} has shape {mask.shape}; {name} is {tuple(shape)}")
        rows, cols = np.nonzero(mask)
        return cls(shape[0], shape[1], np.concatenate([[0], np.cumsum(mask.sum(axis=1))]), cols, name)

    @classmethod
    def from_indices(cls, post, pre, shape: tuple, name: str = "the projection") -> "Connectivity":
        """From the post and presynaptic index of each synapse, in any order."""
        post, pre = np.asarray(post), np.asarray(pre)
        if post.shape != pre.shape or post.ndim != 1 or not np.issubdtype(post.dtype, np.integer) \
                or not np.issubdtype(pre.dtype, np.integer):
            raise ConnectivityError(f"the synapses of {name}: give two integer arrays of equal length "
                                    "(post, pre)")
        for what, index, extent in (("post", post, shape[0]), ("presynaptic", pre, shape[1])):
            if len(index) and (index.min() < 0 or index.max() >= extent):
                raise ConnectivityError(f"the synapses of {name}: a {what} index outside 0 .. {extent - 1}")
        mask = np.zeros(shape, bool)
        mask[post, pre] = True
        if mask.sum() != len(post):
            raise ConnectivityError(f"the synapses of {name}: a synapse is listed twice")
        return cls.from_mask(mask, shape, name)

    @classmethod
    def random(cls, shape: tuple, probability: float, rng, name: str = "the projection",
               no_self: bool = False) -> "Connectivity":
        """Each post neuron gets round(probability x n_pre) presynaptic partners, drawn without
        replacement by ``rng``; ``no_self``: never itself (a recurrent projection)."""
        n_post, n_pre = shape
        per_row = cls.partners(probability, n_pre, name, no_self)
        keys = rng.random((n_post, n_pre))
        if no_self:
            np.fill_diagonal(keys, 2.0)  # drawn last, never among the first per_row
        cols = np.sort(np.argpartition(keys, per_row - 1, axis=1)[:, :per_row], axis=1)
        return cls(n_post, n_pre, np.arange(n_post + 1) * per_row, cols.ravel(), name)

    @staticmethod
    def partners(probability: float, n_pre: int, name: str = "the projection", no_self: bool = False) -> int:
        """How many of ``n_pre`` inputs each post neuron of a ``random`` draw has a synapse from."""
        per_row = min(round(probability * n_pre), n_pre - 1 if no_self else n_pre)
        if per_row < 1:
            least = 1 / n_pre
            raise ConnectivityError(f"connectivity {probability:g} gives each neuron round({probability:g} x "
                                    f"{n_pre}) = 0 of {name}'s {n_pre} inputs; {least:.3g} or more keeps one")
        return per_row

    @classmethod
    def full(cls, n_post: int, n_pre: int, name: str = "the projection") -> "Connectivity":
        """Every pair: a dense projection as sparse rows (within a sparse port)."""
        return cls(n_post, n_pre, np.arange(n_post + 1) * n_pre, np.tile(np.arange(n_pre), n_post), name)

    # -- using one -------------------------------------------------------------------------
    def mask(self) -> np.ndarray:
        found = np.zeros(self.shape, bool)
        found[self.post, self.col] = True
        return found

    def scatter(self, values, xp=np):
        """The dense (n_post, n_pre) matrix of (nnz,) ``values``, zero where no synapse is."""
        dense = xp.zeros(self.shape, values.dtype)
        dense[xp.asarray(self.post), xp.asarray(self.col)] = values
        return dense

    def gather(self, dense, xp=np):
        """The (nnz,) values of a dense (n_post, n_pre) matrix at the synapses."""
        return dense[xp.asarray(self.post), xp.asarray(self.col)]

    def matvec(self, x, weights, xp=np):
        """sum over each row's synapses of w_k x[:, col_k]: x (batch, n_pre) -> (batch, n_post)."""
        return _segment_sums(x[:, xp.asarray(self.col)] * weights, self.row_start, xp)

    def rmatvec(self, signal, weights, xp=np):
        """The transposed product, signal (batch, n_post) -> (batch, n_pre)."""
        order = xp.asarray(self.by_col)
        return _segment_sums((signal[:, xp.asarray(self.post)] * weights)[:, order], self.col_start, xp)


def _segment_sums(values, starts: np.ndarray, xp):
    """Sums over consecutive segments of axis 1, segment i = starts[i] .. starts[i + 1] - 1;
    an empty segment sums to 0 (which ``reduceat`` alone would not give). On CuPy, which has
    no ``reduceat`` in every version, one thread per (sample, segment) adds its segment."""
    if xp is not np:
        out = xp.empty((values.shape[0], len(starts) - 1), values.dtype)
        _device_segment_sums()(xp.ascontiguousarray(values), xp.asarray(starts, dtype=np.int64), values.shape[1],
                               out.shape[1], out)
        return out
    out = xp.zeros((values.shape[0], len(starts) - 1), values.dtype)
    filled = np.flatnonzero(np.diff(starts) > 0)
    if len(filled):
        out[:, xp.asarray(filled)] = xp.add.reduceat(values, xp.asarray(starts[filled]), axis=1)
    return out


@functools.cache
def _device_segment_sums():
    """CuPy's kernel of ``_segment_sums``: out (batch, segments), in order within a segment."""
    import cupy

    return cupy.ElementwiseKernel(
        "raw T values, raw int64 starts, int64 width, int64 segments", "T out",
        """
        const ptrdiff_t sample = i / segments, segment = i % segments;
        T total = 0;
        for (ptrdiff_t k = starts[segment]; k < starts[segment + 1]; ++k) total += values[sample * width + k];
        out = total;
        """,
        "symgrad_segment_sums")


class DenseSynapses:
    """A dense port: u's every column in every row; per-synapse arrays (batch, n, n_pre)."""

    layout = DENSE
    count = None  # not a sparse layout's nnz

    def __init__(self, n: int, n_pre: int):
        self.n, self.n_pre = n, n_pre

    def on(self, xp) -> "DenseSynapses":
        return self

    def contract(self, xp, L, per_synapse, out=None):
        """sum_b L_bi a_bij: a gradient from a per-synapse array."""
        return xp.einsum("bi,bij->ij", L, per_synapse, out=out)

    def outer(self, xp, signal, presynaptic, out=None):
        """sum_b signal_bi x_bj: a gradient from a (batch, n) signal and a (batch, pre) array."""
        return xp.matmul(signal.T, presynaptic, out=out)

    def per_post(self, values):
        """(n,) values broadcast over a gradient's shape."""
        return values[:, None]

    def split(self, grad, projections) -> dict:
        """A gradient over u's columns (n, n_pre), by projection key."""
        return {p.key: grad[:, p.columns.start] if p.source is Source.BIAS else grad[:, p.columns]
                for p in projections}

    def from_dense(self, grad, xp=np):
        """A gradient given as (n, n_pre) in this port's shape."""
        return grad


class Synapses:
    """A sparse port: the rows the CSR kernels walk, merged from its projections' parts.

    parts: (projection, Connectivity or None for dense, its width in u) in u's order.
    """

    layout = CSR

    def __init__(self, n: int, parts: list):
        self.n = n
        posts, cols, self.positions, offset, total = [], [], {}, 0, 0
        self.sparse = {projection.key for projection, connectivity, _ in parts if connectivity is not None}
        for projection, connectivity, width in parts:
            connectivity = connectivity or Connectivity.full(n, width, projection.key)
            posts.append(connectivity.post)
            cols.append(connectivity.col + offset)
            self.positions[projection.key] = (total, connectivity.nnz)
            offset, total = offset + width, total + connectivity.nnz
        self.n_pre = offset
        post = np.concatenate(posts)
        order = np.argsort(post, kind="stable")  # row by row; in a row, the parts in u's order
        place = np.empty_like(order)
        place[order] = np.arange(len(order))
        self.positions = {key: place[start:start + count] for key, (start, count) in self.positions.items()}
        self.post_of = post[order]
        self.col = np.concatenate(cols)[order]
        counts = np.bincount(self.post_of, minlength=n)
        self.row_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.empty_rows = np.flatnonzero(counts == 0)

    @property
    def count(self) -> int:
        """nnz: how many synapses the port stores."""
        return len(self.col)

    def on(self, xp) -> "Synapses":
        """The index arrays on ``xp``'s device (NumPy: these)."""
        if xp is np:
            return self
        moved = object.__new__(Synapses)
        moved.__dict__.update(self.__dict__)
        moved.post_of, moved.col, moved.row_start = (xp.asarray(a) for a in (self.post_of, self.col, self.row_start))
        moved.positions = {k: xp.asarray(v) for k, v in self.positions.items()}
        return moved

    def contract(self, xp, L, per_synapse, out=None):
        """sum_b L_b,post(k) a_bk: a gradient from a per-synapse array."""
        # take, not fancy indexing: the same gather, several times faster
        return xp.einsum("bk,bk->k", xp.take(L, self.post_of, axis=1), per_synapse, out=out)

    def outer(self, xp, signal, presynaptic, out=None):
        """sum_b signal_b,post(k) x_b,col(k): a gradient at the synapses."""
        # a sum rather than einsum, whose ``out`` CuPy refuses
        return (xp.take(signal, self.post_of, axis=1) * xp.take(presynaptic, self.col, axis=1)).sum(axis=0, out=out)

    def per_post(self, values):
        return values[self.post_of]

    def split(self, grad, projections) -> dict:
        """A gradient over the port's synapses (nnz,), by projection key: a sparse projection's
        (its nnz,), a dense one's (n, width), the bias's (n,)."""
        found = {}
        for p in projections:
            part = grad[self.positions[p.key]]
            dense = p.key not in self.sparse and p.source is not Source.BIAS
            found[p.key] = part.reshape(self.n, p.columns.stop - p.columns.start) if dense else part
        return found

    def from_dense(self, grad, xp=np):
        """A gradient given over every (post, pre) pair of u: its values at the synapses."""
        return grad[self.post_of, self.col]
