"""The CUDA backend: the generated kernels, run by CuPy on a GPU or on the CPU ("cuda-host").

* ``build``: compiling a .cu for the CPU through the host shim, and the library cache;
* ``launch``: binding values to kernel arguments by name, through ctypes or CuPy;
* ``layer``: ``CudaLayer``, the kernels behind the runtime's ``LayerCode`` interface.
"""
from .build import build_host_library, instantiations, shim_path, source_file
from .launch import BLOCK, traffic
from .layer import CudaLayer, load

__all__ = ["CudaLayer", "load", "build_host_library", "instantiations", "shim_path", "source_file",
           "traffic", "BLOCK"]
