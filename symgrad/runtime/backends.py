"""The runtime backends: one table, which the command line and the loaders read."""
from __future__ import annotations

import importlib
import importlib.util
import sys
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
    Backend("numba", "numba", "numpy", "the generated fused kernels, compiled for the CPU by Numba (the fastest there)"),
    Backend("numpy", "numpy", "numpy", "the generated NumPy module (the readable reference)"),
    Backend("cuda-host", "cuda", "numpy", "the generated CUDA kernels, compiled for the CPU through the host shim"),
    Backend("cupy", "cuda", "cupy", "the generated CUDA kernels on a GPU, through CuPy"),
)}
# The fused kernels where Numba is installed; resolve() falls back when it does not import.
DEFAULT = "numba" if importlib.util.find_spec("numba") else "numpy"
_FELL_BACK: set = set()


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose {', '.join(BACKENDS)}")
    return BACKENDS[name]


def resolve(name: str) -> str:
    """``name``, or "numpy" when it is "numba" and Numba does not import (said once, on one line)."""
    get(name)
    if name != "numba":
        return name
    try:
        import numba  # noqa: F401
    except Exception as err:  # missing, or broken against this NumPy
        if name not in _FELL_BACK:
            print(f"symgrad: Numba is not usable ({type(err).__name__}: {err}); running the NumPy backend",
                  file=sys.stderr)
            _FELL_BACK.add(name)
        return "numpy"
    return name


def array_module(name: str):
    """numpy or cupy: where ``name``'s arrays live."""
    return importlib.import_module(get(name).arrays)
