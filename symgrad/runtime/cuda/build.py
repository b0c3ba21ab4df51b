"""Compiling a generated .cu for the CPU: the host compiler, its flags and the library cache.

The host shim (``templates/cuda/host_shim.h``) defines the few CUDA built-ins the kernels use,
so the very source the GPU runs compiles with g++ into a shared library that ctypes calls
(symgrad's "cuda-host" backend). Libraries are cached under ``$SYMGRAD_CACHE/cuda-host``,
keyed by a hash of everything compiled and the compiler's command line, each in a private
folder whose ``store.Manifest`` records the library's hash: one that does not match is dropped
and built again, never loaded.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from ... import render, store
from ...layouts import DENSE

HOST_FLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-w"]
PRECISIONS = ("float", "double")


def shim_path() -> Path:
    return render.template_dir() / "cuda" / "host_shim.h"


def source_file(model, source: str, layout=DENSE) -> Path:
    """The committed generated/<model>/cuda_layer.cu (cuda_layer_csr.cu for sparse rows) when it
    is this text, else a cached copy."""
    return store.committed_or_cached(model.name, render.filename("cuda", layout), source)


def _parameter(arg, real: str) -> str:
    """An argument as a C++ parameter of precision ``real`` (the kernel's own qualifiers, const
    and __restrict__, are the callee's business: a caller's types match without them)."""
    return f"{arg.ctype.replace('real', real)} {arg.name}"


def instantiations(kernels) -> str:
    """Explicit instantiations of every kernel for float and double (for nvcc -ptx checks)."""
    lines = []
    for kernel in kernels:
        for real in PRECISIONS:
            args = ", ".join(_parameter(a, real) for a in kernel.args)
            lines.append(f"template __global__ void {kernel.name}<{real}>({args});")
    return "\n".join(lines) + "\n"


def host_compiler() -> list[str]:
    """The C++ compiler command: $CXX, else g++, else c++."""
    command = shlex.split(os.environ.get("CXX", "")) or [
        next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), "g++")]
    if not shutil.which(command[0]):
        raise RuntimeError("the cuda-host backend needs a C++ compiler: install g++ or set CXX")
    return command


def host_flags() -> list[str]:
    """The compiler flags; SYMGRAD_OPENMP=1 adds -fopenmp, to share a launch's blocks among
    threads (off by default: on a busy machine the threads' barriers cost more than they save
    at the sizes the host backend is for)."""
    return HOST_FLAGS + (["-fopenmp"] if os.environ.get("SYMGRAD_OPENMP") == "1" else [])


def launcher_name(kernel, real: str) -> str:
    """The extern "C" function that launches ``kernel`` in precision ``real`` (a C++ type)."""
    return f"symgrad_{kernel.name}_{real}"


def launcher_source(path: Path, kernels: dict) -> str:
    """extern "C" launchers, one per kernel and precision, for ctypes."""
    lines = ["// Launchers of the kernels in " + path.name + " for symgrad's cuda-host backend.",
             "// Written by symgrad.runtime.cuda.build; compiled with the host shim.",
             '#include "host_shim.h"', f'#include "{path.name}"', ""]
    for kernel in kernels.values():
        for real in PRECISIONS:
            params = ", ".join(["unsigned grid", "unsigned block"] + [_parameter(a, real) for a in kernel.args])
            call = ", ".join(a.name for a in kernel.args)
            lines += [f'extern "C" void {launcher_name(kernel, real)}({params})', "{",
                      f"    symgrad_launch(grid, block, [&] {{ {kernel.name}<{real}>({call}); }});",
                      "}", ""]
    return "\n".join(lines)


def build_host_library(path: Path, kernels: dict) -> Path:
    """Compile the .cu at ``path`` for the CPU (once: cached by a hash of all its inputs)."""
    compiler = host_compiler()
    source, shim = path.read_text(), shim_path().read_text()
    launchers = launcher_source(path, kernels)
    version = subprocess.run(compiler + ["--version"], capture_output=True, text=True).stdout
    key = store.digest("\0".join([source, shim, launchers, " ".join(compiler + host_flags()), version]))
    folder = store.code_cache("cuda-host", f"{path.parent.name}-{key}")
    manifest = store.Manifest(folder)
    library = folder / "layer.so"
    # ctypes runs a library's code as it loads it: only one symgrad built, unchanged since.
    if manifest.read(library.name) is not None:
        return library
    for name, text in ((path.name, source), ("host_shim.h", shim), ("launchers.cpp", launchers)):
        store.write_if_changed(folder / name, text)
    tmp = folder / f"layer.{os.getpid()}.so"
    command = compiler + host_flags() + ["-o", str(tmp), "launchers.cpp"]
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"compiling {path} for the host failed ({' '.join(command)} in {folder}):\n"
                               f"{done.stderr}")
        manifest.write(library.name, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    return library
