"""The fused CPU backend: the generated Numba kernels (``numba_layer.py``) behind a KernelLayer.

The kernels are those of the CUDA backend, with the same arguments, compiled by Numba on their
first call and cached on disk beside the generated module (``cache=True``), so a second run
compiles nothing. Arrays are passed flat or with their axes, as each kernel indexes them.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..model import ModelError
from ..printers.numba_code import flat
from .kernel_layer import Kernels

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NumbaKernels(Kernels):
    """Calls the generated module's kernels, binding arguments by name like the CUDA launchers."""

    def __init__(self, path: Path, kernels: dict, module, model_name: str):
        super().__init__(path, kernels)
        self.functions = {name: getattr(module, name) for name in kernels}
        self.model_name = model_name
        self.rest_decays = getattr(module, "rest_decays", None)  # models with rows at rest

    def _int(self, value):
        return int(value)

    def _real(self, value, dtype):
        return dtype.type(value)  # arithmetic in the arrays' precision

    def _null(self):
        return None  # Numba compiles the None case without the branch

    def _pointer(self, array, kernel):
        return array.reshape(-1) if flat(kernel) else array  # as the kernel indexes it

    def _run(self, name, real, count, args):
        from numba.core.errors import NumbaError

        try:
            self.functions[name](*args)
        except NumbaError as err:
            raise ModelError(f"model {self.model_name!r}: Numba cannot compile its {name} kernel "
                             f"({_reason(err)}); run it with --backend numpy") from None


def _reason(err: Exception) -> str:
    """The line of a Numba error that says what failed (the rest is its pipeline's trace)."""
    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Failed in", "During:", "File ", "^"))]
    return (said or lines or [type(err).__name__])[0]
