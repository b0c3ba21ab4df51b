"""Loading a model's CUDA kernels into a KernelLayer: the loaders of the backends that run the
generated .cu (``runtime/backends.py``), for the CPU through the host shim or for CuPy on a GPU."""
from __future__ import annotations

from ...printers import DEFAULT
from ...render import Generated
from ..kernel_layer import KernelLayer
from .build import source_file
from .launch import CupyKernels, HostKernels

_LAYERS: dict = {}


def host(code: Generated, reference, backend) -> KernelLayer:
    """The layer of ``code`` on the CPU, its kernels compiled by the host compiler."""
    return _layer(code, reference, backend, HostKernels)


def gpu(code: Generated, reference, backend) -> KernelLayer:
    """The layer of ``code`` on a GPU, its kernels compiled by NVRTC through CuPy."""
    return _layer(code, reference, backend, CupyKernels)


def _layer(code: Generated, reference, backend, launcher) -> KernelLayer:
    """The layer of ``backend``'s source of ``code``, launched by ``launcher``, built once per text
    (the build runs a compiler, or checks its cached library)."""
    source = code.texts[backend.target.name]
    # The layer takes the initial states and the element-wise functions from the reference module:
    # models with the same kernels but other initial states must not share one.
    key = (backend.name, source, code.texts[DEFAULT], tuple(p.name for p in code.model.neuron_params))
    if key not in _LAYERS:
        kernels = {k.name: k for k in code.kernels if not k.cpu_only}
        path = source_file(code.model, source, code.layout)
        _LAYERS[key] = KernelLayer(code, reference, launcher(path, kernels))
    return _LAYERS[key]
