"""Gradient passes on several threads: the kernels' own threads where a backend's kernels
thread themselves (its record's ``threads``), else a batch split into shards that run on threads.

Samples are independent in e-prop and BPTT alike, so the gradient of a batch is the
size-weighted mean of its shards' gradients. NumPy releases the GIL inside its array
operations (and ctypes around the cuda-host kernels), so the per-synapse trace sweeps that
dominate an e-prop step run on several cores at once. BLAS is held to one thread meanwhile,
so that the shards do not oversubscribe the cores.

Two settings couple the samples and are never sharded: the firing-rate regulariser (its
penalty is on the whole batch's rate) and online updates (which change the weights mid-batch).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import UserError
from . import backends
from .eprop import Result

MAX_AUTO_WORKERS = 8


def default_workers(backend: str) -> int:
    """Threads for a gradient pass: $SYMGRAD_WORKERS, else the CPU count (at most 8) on the
    host; one on a GPU."""
    if backends.get(backend).device:
        return 1
    given = os.environ.get("SYMGRAD_WORKERS", "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise UserError(f"SYMGRAD_WORKERS must be a whole number of threads (1 or more), got {given!r}")
        return int(given)
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))


def gradient_pass(net, workers: int, shard: bool):
    """How a batch's gradient runs on ``workers`` threads. Kernels that thread themselves (the
    fused Numba kernels, over post neurons, each thread owning its gradient rows) give a result
    that does not depend on the thread count; other backends' steps are sharded over the batch
    where ``shard`` says they sweep per-synapse arrays."""
    backend = backends.get(net.backend)
    if backend.threads:
        # Two thread pools on the same cores slow each other down many times over (measured:
        # 0.26 ms against 10 ms per LIF step), so the cores go to whichever does the work: the
        # fused kernels where per-synapse arrays are swept, else BLAS's matrix products.
        return FusedThreads(backend, workers, blas=1) if shard else FusedThreads(backend, 1)
    return Sharded(workers if shard else 1)


# Below this many synapse-samples per step (the batch times every layer's synapses), the fused
# kernels' threads cost more in waking and joining than they share, and one thread is faster.
# Measured on 2 cores (`python -m benchmarks --only overhead`, e-prop of recurrent ALIF, B=32,
# M=40, ms per step on one thread and on two): N=16 (29 thousand) 0.022 and 0.038; N=32 (74
# thousand) 0.029 and 0.044; N=64 (213 thousand) 0.051 and 0.064; N=128 (688 thousand) 0.107
# and 0.110; N=256 (2.4 million) 0.308 and 0.228. On the trained FSDD network (688 thousand,
# few rows awake) two threads take 6.7 ms a batch against 8.7 on one. The kernels' results do
# not depend on their thread count.
SHARED_FROM = 400_000


def synapse_samples(net, batch: int) -> int:
    """Synapses times samples: the per-synapse work of one step."""
    return batch * sum(port.synapses.count or layer.n * port.n_pre for layer in net.layers for port in layer.ports)


class FusedThreads:
    """Calls ``rule(net, x, target, **options)`` with ``backend``'s kernels set to ``workers``
    threads (one where a step has too little work to share, ``SHARED_FROM``), and BLAS held to
    ``blas`` threads when given."""

    def __init__(self, backend: backends.Backend, workers: int, blas: int | None = None):
        from threadpoolctl import ThreadpoolController

        self.backend, self.workers, self.blas_threads = backend, int(workers), blas
        self.blas = ThreadpoolController() if blas else None

    def __call__(self, rule, net, x, target, **options) -> Result:
        self.backend.set_threads(self.workers if synapse_samples(net, x.shape[1]) >= SHARED_FROM else 1)
        if self.blas is None:
            return rule(net, x, target, **options)
        with self.blas.limit(limits=self.blas_threads, user_api="blas"):
            return rule(net, x, target, **options)


def shardable(options: dict) -> bool:
    return not options.get("reg") and not options.get("update_every")


class Sharded:
    """Calls ``rule(net, x, target, **options)`` on up to ``workers`` slices of the batch."""

    def __init__(self, workers: int):
        self.workers = int(workers)
        self.pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self.blas = None
        if self.pool:
            from threadpoolctl import ThreadpoolController

            self.blas = ThreadpoolController()

    def __call__(self, rule, net, x, target, **options) -> Result:
        batch = x.shape[1]
        shards = min(self.workers, batch)
        if shards <= 1 or not shardable(options):
            return rule(net, x, target, **options)
        edges = np.linspace(0, batch, shards + 1).round().astype(int)
        parts = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]  # views, not copies
        per_step = target.ndim == 3  # regression targets are (T, B, K); labels are (B,)
        errors = np.geterr()  # NumPy's error handling is per thread: the shards take the caller's

        def run(part):
            with np.errstate(**errors):
                return rule(net, x[:, part], target[:, part] if per_step else target[part], **options)

        with self.blas.limit(limits=1, user_api="blas"):
            results = list(self.pool.map(run, parts))
        weights = [(p.stop - p.start) / batch for p in parts]
        grads = {key: sum(w * r.grads[key] for w, r in zip(weights, results)) for key in results[0].grads}
        return Result(loss=sum(w * r.loss for w, r in zip(weights, results)), grads=grads,
                      spikes=[sum(counts) for counts in zip(*(r.spikes for r in results))],
                      readout=net.xp.concatenate([r.readout for r in results], axis=0),
                      overflowed=next((r.overflowed for r in results if r.overflowed), None))
