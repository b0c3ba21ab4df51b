"""The runtime backends: one record each, in one table, which the command line, the loaders and
the training loop ask. No other module compares a backend's name (tests/test_backend_record.py).

Adding a backend is a generator target (``symgrad/printers``), a launcher module that builds
its layer, and one record here.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass

from ..printers import TARGETS, Target


@dataclass(frozen=True)
class Backend:
    """A way to run a model's generated code, and what it can do.

    title: its name in messages; target: the generator target whose file it runs;
    loader: "module:function" of ``(code, reference, backend) -> layer code`` (a
    ``render.Generated``, the generated module of the default target, this record), imported
    when first used, so that Numba and CuPy are imported only by the backends that need them;
    arrays: the array module its arrays live in.

    Capabilities (a network's record is ``get(net.backend)``; its layer's ports say the same,
    as tests/test_backend_record.py checks):
    fused: e-prop's per-synapse work is one kernel (``PortCode.synapse_step``), which needs no
    scratch arrays;
    events: its kernels can skip rows at rest, for the models that have them (``PortCode.events``);
    threads: where its kernels spread a batch over threads themselves (no shards), the
    "module:function" that sets how many threads they use; None: a batch is split into shards
    that run on threads;
    device: its arrays live on a GPU (one worker per process; MPI sums go through the host);
    whole_pass: e-prop runs a whole pass (or segment) as one compiled call of the kernels
    (``runtime/fused.py``); else its loop runs them step by step in Python;
    sparse: it runs layers whose synapses are stored in sparse rows (``layouts.CSR``);
    needs, fallback: a module it cannot run without, and the backend run instead (once said)
    when that module does not import.
    """

    name: str
    title: str
    summary: str
    target: Target
    loader: str
    arrays: str = "numpy"
    fused: bool = False
    events: bool = False
    threads: str | None = None
    device: bool = False
    whole_pass: bool = False
    sparse: bool = False
    needs: str | None = None
    fallback: str | None = None

    def __post_init__(self):
        if (self.needs is None) != (self.fallback is None):
            raise ValueError(f"backend {self.name!r}: give needs and fallback together")

    def layer(self, code, reference):
        """The layer code of the generated ``code`` on this backend (see ``layer_code.LayerCode``)."""
        return _imported(self.loader)(code, reference, self)

    def set_threads(self, count: int) -> None:
        """Have its kernels use ``count`` threads (a backend whose kernels thread themselves)."""
        _imported(self.threads)(count)


def _imported(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


# In order of preference: the first whose needs are installed is the default.
BACKENDS = {b.name: b for b in (
    Backend("numba", "Numba", "the generated fused kernels, compiled for the CPU by Numba (the fastest there)",
            TARGETS["numba"], "symgrad.runtime.numba_layer:layer", fused=True, events=True,
            threads="symgrad.runtime.numba_layer:set_threads", whole_pass=True, sparse=True,
            needs="numba", fallback="numpy"),
    Backend("numpy", "NumPy", "the generated NumPy module (the readable reference)",
            TARGETS["numpy"], "symgrad.runtime.module_layer:layer", sparse=True),
    Backend("cuda-host", "CUDA on the host", "the generated CUDA kernels, compiled for the CPU through the host shim",
            TARGETS["cuda"], "symgrad.runtime.cuda.layer:host", fused=True, sparse=True),
    Backend("cupy", "CuPy", "the generated CUDA kernels on a GPU, through CuPy",
            TARGETS["cuda"], "symgrad.runtime.cuda.layer:gpu", arrays="cupy", fused=True, device=True,
            sparse=True),
)}
DEFAULT = next(b.name for b in BACKENDS.values() if b.needs is None or importlib.util.find_spec(b.needs))
_FELL_BACK: set = set()


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose {', '.join(BACKENDS)}")
    return BACKENDS[name]


def resolve(name: str) -> str:
    """``name``, or its fallback when the module it needs does not import (said once, on one line)."""
    backend = get(name)
    if backend.needs is None:
        return name
    try:
        importlib.import_module(backend.needs)
    except Exception as err:  # missing, or broken against this NumPy
        if name not in _FELL_BACK:
            print(f"symgrad: {backend.title} is not usable ({type(err).__name__}: {err}); running the "
                  f"{get(backend.fallback).title} backend", file=sys.stderr)
            _FELL_BACK.add(name)
        return resolve(backend.fallback)
    return name


def array_module(name: str):
    """numpy or cupy: where ``name``'s arrays live."""
    return importlib.import_module(get(name).arrays)
