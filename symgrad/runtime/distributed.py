"""Data-parallel training over MPI processes: each rank takes a slice of every global batch.

Samples are independent in e-prop and BPTT alike, so the gradient of a batch is the
size-weighted sum of its slices' mean gradients. Every rank computes its slice on its own
backend, the slices are summed with one ``Allreduce`` per batch (or per online update), and
every rank applies the same optimiser step: the weights stay equal on all ranks, and equal to
a single process's up to floating-point reassociation. The global batch, the data order and
the learning rate are the single-process run's. Before anything else the ranks compare the
settings they were given (``require_same``): ranks given other ones would train apart or hang.

``world()`` is the MPI job when the program was started by ``mpiexec`` or ``srun`` with more
than one process and mpi4py is installed, else ``SINGLE``, a world of one that communicates
nothing, so a plain run is unchanged.
"""
from __future__ import annotations

import functools
import os
import zlib

import numpy as np

from ..errors import UserError

# Environment variables that MPI launchers set in every process they start.
LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")


class RankFailed(UserError):
    """A rank failed; every rank raises this, with the failing rank and its reason."""


class Single:
    """A world of one process."""

    rank, size, local_rank, local_size = 0, 1, 0, 1

    def sum(self, buffer: np.ndarray) -> np.ndarray:
        return buffer

    def agree(self, error: BaseException | None):
        if error is not None:
            raise error

    def gather(self, value) -> list:
        return [value]

    def gather_all(self, value) -> list:
        return [value]

    def broadcast(self, value):
        return value

    def same_everywhere(self, digest: int) -> bool:
        return True


SINGLE = Single()


class MpiWorld:
    """The processes of an MPI job (mpi4py's COMM_WORLD)."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks sharing this machine
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()

    def sum(self, buffer: np.ndarray) -> np.ndarray:
        """Sum a contiguous host array over all ranks, in place: one Allreduce."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)
        return buffer

    def agree(self, error: BaseException | None):
        """Raise on every rank if any rank failed, naming the first failing rank (unless all
        failed alike), so that no rank waits forever in a collective the failed one never
        reaches."""
        if error is None or isinstance(error, UserError):
            message = error and str(error)
        else:
            message = f"{type(error).__name__}: {error}"
        failures = self.comm.allgather(message)
        if len(set(failures)) == 1 and failures[0] is not None:  # the same on every rank
            raise RankFailed(failures[0])
        for rank, message in enumerate(failures):
            if message is not None:
                raise RankFailed(f"rank {rank} of {self.size}: {message}")

    def gather(self, value) -> list | None:
        """Every rank's ``value`` in rank order on rank 0; None elsewhere."""
        return self.comm.gather(value, root=0)

    def gather_all(self, value) -> list:
        """Every rank's ``value`` in rank order, on every rank."""
        return self.comm.allgather(value)

    def broadcast(self, value):
        return self.comm.bcast(value, root=0)

    def abort(self, code: int):
        """Stop every rank of the job now: for a failure on one rank that the others cannot
        hear of (they may be waiting in a collective it will never reach)."""
        self.comm.Abort(code)

    def same_everywhere(self, digest: int) -> bool:
        low = self.comm.allreduce(digest, op=self.MPI.MIN)
        high = self.comm.allreduce(digest, op=self.MPI.MAX)
        return low == high


def launched_by_mpi() -> bool:
    """Whether a launcher started this process as one of several (read from its environment,
    so that a plain run never imports MPI)."""
    sizes = [os.environ.get(name, "") for name in LAUNCHER_SIZE]
    if "SLURM_PROCID" in os.environ:  # srun; sbatch alone sets SLURM_NTASKS but starts one process
        sizes.append(os.environ.get("SLURM_NTASKS", ""))
    return any(size.isdigit() and int(size) > 1 for size in sizes)


@functools.lru_cache(maxsize=None)
def world():
    """The MPI job this process belongs to, or SINGLE when there is none (or one process)."""
    if not launched_by_mpi():
        return SINGLE
    try:
        from mpi4py import MPI
    except ImportError:
        raise UserError("started by an MPI launcher with several processes, but mpi4py is not "
                        "installed: pip install -e \".[mpi]\"") from None
    return MpiWorld(MPI.COMM_WORLD) if MPI.COMM_WORLD.Get_size() > 1 else SINGLE


def require_same(world, settings: dict):
    """Stop every rank, in one line naming each setting that differs and its value on each
    rank, unless all ranks were given the same ``settings`` (picklable values by name; None:
    not given). Ranks that disagree would sum unlike gradients, wait for batches the others
    never run, or abort inside the MPI library, so this is the job's first collective."""
    everyone = world.gather_all(settings)
    differ = []
    for name in dict.fromkeys(name for given in everyone for name in given):
        values = [given.get(name) for given in everyone]
        if any(value != values[0] for value in values):
            differ.append(f"{name} " + " vs ".join(f"{'not given' if value is None else value} ({ranks})"
                                                   for value, ranks in _ranks_by_value(values)))
    if differ:
        raise RankFailed(f"the ranks were started with different settings: {'; '.join(differ)} "
                         f"(every rank must be given the same)")


def _ranks_by_value(values: list) -> list[tuple]:
    """``(value, "rank 3" or "ranks 0-2, 5")`` for each distinct value, in order of first rank."""
    groups = []
    for rank, value in enumerate(values):
        for group in groups:
            if group[0] == value:
                group[1].append(rank)
                break
        else:
            groups.append((value, [rank]))
    return [(value, ("rank " if len(ranks) == 1 else "ranks ") + _spans(ranks)) for value, ranks in groups]


def _spans(ranks: list[int]) -> str:
    """Ascending numbers as runs: [0, 1, 2, 5] as "0-2, 5"."""
    runs = []
    for rank in ranks:
        if runs and runs[-1][1] == rank - 1:
            runs[-1][1] = rank
        else:
            runs.append([rank, rank])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class PeerFailed(Exception):
    """Another rank failed: it said so in the collective this rank just took part in."""


class BatchSum:
    """Every sum the ranks take during a batch, through one Allreduce of one buffer, allocated
    once: the gradients (each rank's slice mean, weighted by its share of the global batch, so
    the sum is the global batch's mean), the spike counts of the rate regulariser, the loss,
    the correct count and a failure flag.

    Every collective of a batch (an online update, the rate regulariser's counts, the batch's
    end) sums the same buffer, so a rank that fails anywhere joins whichever collective the
    others are in with its flag raised, and all of them then meet in ``World.agree``.

    On a GPU the buffer is summed through the host unless ``SYMGRAD_MPI_CUDA_AWARE=1`` says the
    MPI library reads device memory itself.
    """

    def __init__(self, world, params: dict, xp, rate_size: int = 0):
        self.world, self.xp = world, xp
        self.layout, offset = [], 0
        for name in sorted(params):
            self.layout.append((name, offset, params[name].shape))
            offset += params[name].size
        self.rates = slice(offset, offset + rate_size)
        self.extras = offset + rate_size  # the batch size behind the counts, loss, correct, failed
        # The gradients' own dtype: float32 sums as a single float32 process's batch would.
        self.buffer = xp.zeros(self.extras + 4, dtype=next(iter(params.values())).dtype)
        self.device_aware = xp is np or os.environ.get("SYMGRAD_MPI_CUDA_AWARE") == "1"

    def __call__(self, grads: dict | None = None, weight: float = 0.0, loss: float = 0.0, correct: int = 0,
                 rates: list | None = None, batch: int = 0, failed: bool = False):
        """The sums over the ranks: (grads, loss, correct, rates, batch); grads and rates are
        views into the buffer, valid until the next call. Raises PeerFailed if any rank failed."""
        buffer, xp = self.buffer, self.xp
        buffer[:] = 0
        if grads is not None and not failed:
            for name, offset, shape in self.layout:
                size = int(np.prod(shape))
                buffer[offset:offset + size] = grads[name].ravel()
                buffer[offset:offset + size] *= weight
        if rates is not None and not failed:
            buffer[self.rates] = xp.concatenate([xp.ravel(r) for r in rates])
        buffer[self.extras:] = xp.asarray([batch, loss * weight, correct, float(failed)], dtype=buffer.dtype)
        if self.device_aware:
            self.world.sum(buffer)
        else:
            host = buffer.get()
            self.world.sum(host)
            buffer.set(host)
        batch, loss, correct, anyone_failed = (float(v) for v in buffer[self.extras:].tolist())
        if anyone_failed:
            raise PeerFailed
        summed = {name: buffer[offset:offset + int(np.prod(shape))].reshape(shape)
                  for name, offset, shape in self.layout}
        return summed, loss, int(round(correct)), buffer[self.rates], int(round(batch))


def share(index: np.ndarray, rank: int, size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous slice of a global batch: sizes differ by at most one."""
    edges = np.linspace(0, len(index), size + 1).round().astype(int)
    return index[edges[rank]:edges[rank + 1]]


def threads_per_rank(workers: int, local_size: int) -> int:
    """Threads for one rank: the run's worker count, but no more than this machine's cores
    shared among the ranks on it, so that ranks x threads never oversubscribe the cores."""
    return max(1, min(workers, (os.cpu_count() or 1) // local_size))


def digest(arrays: dict) -> int:
    """A checksum of host arrays, to check cheaply that every rank holds the same weights."""
    total = 0
    for name in sorted(arrays):
        total = zlib.crc32(np.ascontiguousarray(arrays[name]).tobytes(), total)
    return total


def select_gpu(world) -> int:
    """Use GPU ``local_rank % device_count`` on this rank; returns its number."""
    import cupy

    device = world.local_rank % cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(device).use()
    return device
