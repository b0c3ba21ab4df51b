"""Launching generated kernels: through ctypes on the host, or through CuPy on a GPU.

Arguments are bound by name to the kernel descriptions (``symgrad.kernels``), so the
description is the one place that says what a kernel takes.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..kernel_layer import Kernels, bind
from .build import PRECISIONS, build_host_library, launcher_name

BLOCK = 256  # threads per block for every kernel


def _grid(count: int) -> int:
    """Blocks for one thread per item."""
    return (count + BLOCK - 1) // BLOCK


def traffic(kernel, sources: dict) -> int:
    """Bytes a launch of ``kernel`` with ``sources`` (see ``Kernels.launch``) must move at least:
    each array given is read once, and written once more when the kernel may write it (``real*``).
    An array that several threads read (a presynaptic trace, a per-neuron entry) counts once: it
    is served from cache."""
    return sum(value.nbytes * (2 if a.written else 1) for a, value in bind(kernel, sources)
               if a.array and value is not None)


class HostKernels(Kernels):
    """The kernels compiled by the host C++ compiler through the shim, called through ctypes."""

    def __init__(self, path: Path, kernels: dict):
        super().__init__(path, kernels)
        self.library = ctypes.CDLL(str(build_host_library(path, kernels)))
        self.functions = {}
        for kernel in kernels.values():
            for real in PRECISIONS:
                function = getattr(self.library, launcher_name(kernel, real))
                scalar = ctypes.c_float if real == "float" else ctypes.c_double
                function.argtypes = [ctypes.c_uint, ctypes.c_uint] + [
                    ctypes.c_int if a.ctype == "int" else scalar if a.ctype == "real" else ctypes.c_void_p
                    for a in kernel.args]
                function.restype = None
                self.functions[kernel.name, real] = function

    def _int(self, value):
        return int(value)

    def _real(self, value, dtype):
        return float(value)

    def _null(self):
        return None

    def _pointer(self, array, kernel):
        return array.ctypes.data

    def _run(self, name, real, count, args):
        self.functions[name, real](_grid(count), BLOCK, *args)


class CupyKernels(Kernels):
    """The kernels compiled by NVRTC through cupy.RawModule, both precisions in one module."""

    def __init__(self, path: Path, kernels: dict):
        super().__init__(path, kernels)
        import cupy

        self.xp = cupy
        names = [f"{k}<{t}>" for k in kernels for t in PRECISIONS]
        self.module = cupy.RawModule(code=path.read_text(), options=("--std=c++14",),
                                     name_expressions=names)
        self.functions = {}

    def _int(self, value):
        return np.int32(value)

    def _real(self, value, dtype):
        return dtype.type(value)

    def _null(self):
        return np.uint64(0)  # a null pointer (None would not be one: cupy issue 9046)

    def _pointer(self, array, kernel):
        return array

    def _run(self, name, real, count, args):
        key = f"{name}<{real}>"
        if key not in self.functions:
            self.functions[key] = self.module.get_function(key)
        self.functions[key]((_grid(count),), (BLOCK,), tuple(args))

