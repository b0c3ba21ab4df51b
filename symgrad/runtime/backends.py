"""The runtime backends: one table, which the command line and the loaders read."""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """A way to run a model's generated code.

    source: the generator backend whose file it runs ("numpy" or "cuda");
    arrays: the array module its arrays live in.
    """

    name: str
    source: str
    arrays: str
    summary: str


BACKENDS = {b.name: b for b in (
    Backend("numpy", "numpy", "numpy", "the generated NumPy module (the readable reference)"),
    Backend("cuda-host", "cuda", "numpy", "the generated CUDA kernels, compiled for the CPU through the host shim"),
    Backend("cupy", "cuda", "cupy", "the generated CUDA kernels on a GPU, through CuPy"),
)}
DEFAULT = "numpy"


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose {', '.join(BACKENDS)}")
    return BACKENDS[name]


def array_module(name: str):
    """numpy or cupy: where ``name``'s arrays live."""
    return importlib.import_module(get(name).arrays)
