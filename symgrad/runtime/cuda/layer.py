"""Loading a model's CUDA kernels, for CuPy on a GPU or for the CPU through the host shim."""
from __future__ import annotations

from ...render import Generated
from ..kernel_layer import KernelLayer
from .build import source_file
from .launch import LAUNCHERS

_LAYERS: dict = {}


def load(code: Generated, backend: str, numpy_module) -> KernelLayer:
    """The CUDA layer of ``code`` for ``backend`` ("cuda-host" or "cupy"), built once per text."""
    if backend not in LAUNCHERS:
        raise ValueError(f"unknown CUDA backend {backend!r}; choose {' or '.join(LAUNCHERS)}")
    source = code.texts["cuda"]
    # The layer takes the initial states and the element-wise functions from the NumPy module:
    # models with the same kernels but other initial states must not share one.
    key = (backend, source, code.texts["numpy"], tuple(p.name for p in code.model.neuron_params))
    if key not in _LAYERS:
        kernels = {k.name: k for k in code.kernels if not k.cpu_only}
        path = source_file(code.model, source)
        _LAYERS[key] = KernelLayer(code, numpy_module, LAUNCHERS[backend](path, kernels))
    return _LAYERS[key]
