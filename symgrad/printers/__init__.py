"""The generator backends: each is a printer of the blueprint and a template that places its lines.

Every backend's template lives at ``templates/<name>/<template>.j2`` and is rendered into
``generated/<model>/<filename>``. Adding a backend means a printer module here (a ``context``
function of a :class:`~symgrad.kernels.Blueprint`) and a template; nothing in the analysis or
the plan. To run the file, a record in ``symgrad/runtime/backends.py`` points to its target.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import cuda_code, numba_code, numpy_code


@dataclass(frozen=True)
class Target:
    name: str
    template: str  # under templates/<name>/, without ".j2"
    filename: str  # written under generated/<model>/
    context: Callable  # Blueprint -> the template's own names
    python: bool  # the file is a Python module (checked with compile() before use)
    # The reference (one target): render.generate writes it when no backend is named, so its
    # header's command to write it again names none, and every runtime backend's layer takes the
    # element-wise functions and initial states of its module (symgrad.runtime.compiled.load).
    default: bool = False
    # The target whose kernels e-prop's whole-pass driver calls (symgrad.passes): its template
    # folder holds the driver's template, and generate writes the driver beside its kernels.
    whole_pass: bool = False


TARGETS = {t.name: t for t in (
    Target("numpy", "layer.py", "numpy_layer.py", numpy_code.context, True, default=True),
    Target("cuda", "layer.cu", "cuda_layer.cu", cuda_code.context, False),
    Target("numba", "layer.py", "numba_layer.py", numba_code.context, True, whole_pass=True),
)}
DEFAULT = next(name for name, target in TARGETS.items() if target.default)
WHOLE_PASS = next(name for name, target in TARGETS.items() if target.whole_pass)
