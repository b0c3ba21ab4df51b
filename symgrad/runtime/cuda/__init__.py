"""The CUDA backend: the generated kernels, run by CuPy on a GPU or on the CPU ("cuda-host").

* ``build``: compiling a .cu for the CPU through the host shim, and the library cache;
* ``launch``: binding values to kernel arguments by name, through ctypes or CuPy;
* ``layer``: loading a model's kernels into a ``KernelLayer`` (``runtime/kernel_layer.py``): the
  loaders the backends' records name (``runtime/backends.py``).
"""
from .build import build_host_library, instantiations, shim_path, source_file
from .launch import BLOCK, traffic

__all__ = ["build_host_library", "instantiations", "shim_path", "source_file",
           "traffic", "BLOCK"]
