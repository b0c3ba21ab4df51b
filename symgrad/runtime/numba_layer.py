"""The fused CPU backend: the generated Numba kernels (``numba_layer.py``) behind a KernelLayer.

The kernels are those of the CUDA backend, with the same arguments, compiled by Numba on their
first call and cached on disk (``cache=True``), so a second run compiles nothing. Arrays are
passed flat or with their axes, as each kernel indexes them; a sparse layout's index arrays
(int32) as unsigned views (``unsigned``).

Numba would keep its cache beside the module and unpickle whatever it finds there, so
``cache_kernels`` moves it to ``$SYMGRAD_CACHE/numba/<model>-<hash>``, a private folder whose
files are read and written through a ``store.Manifest``: a file symgrad did not write there,
or one damaged since, is dropped with a warning and compiled again. Where the cache cannot be
used (a full disk), the kernels are compiled in memory, after one warning.
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import warnings
from pathlib import Path

import numba
import numpy as np
from numba.core.caching import FunctionCache, IndexDataCacheFile, InTreeCacheLocator, NullCache
from numba.core.dispatcher import Dispatcher

from .. import store
from ..model import ModelError
from . import compiled
from .kernel_layer import KernelLayer, Kernels

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNUSABLE: set = set()  # cache folders that failed a read or write: warned of once


def layer(code, reference, backend) -> KernelLayer:
    """The loader of the "numba" backend (``runtime/backends.py``): the generated module's
    kernels, their compiled code cached in symgrad's cache folder, behind a KernelLayer."""
    target = backend.target.name
    name = store.code_name(code.model.name, code.texts[target])
    module = compiled.module(code, target, prepare=lambda fresh: cache_kernels(fresh, name))
    kernels = NumbaKernels(Path(module.__file__), {k.name: k for k in code.kernels}, module, code.model.name)
    return KernelLayer(code, reference, kernels)


def set_threads(count: int) -> None:
    """Run the kernels on ``count`` threads (at most the pool Numba started with)."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))


def cache_kernels(module, name: str):
    """Cache the compiled kernels of the generated ``module`` in the folder ``name`` of
    symgrad's Numba cache (before their first call, which loads or compiles them)."""
    try:
        manifest = store.Manifest(store.code_cache("numba", name))
    except OSError as err:
        manifest = None
        _cannot_cache(store.cache_dir("numba") / name, err)
    for function in vars(module).values():
        if isinstance(function, Dispatcher) and isinstance(function._cache, FunctionCache):
            function._cache = _VerifiedCache(function.py_func, manifest) if manifest else NullCache()


def _cannot_cache(folder: Path, err: OSError):
    if folder not in _UNUSABLE:
        _UNUSABLE.add(folder)
        reason = (err.strerror or str(err)) + (f": {err.filename}" if err.filename else "")
        warnings.warn(f"cannot use the Numba cache {folder} ({reason}); compiling in memory, "
                      "without caching", stacklevel=3)


class _VerifiedCache(FunctionCache):
    """Numba's cache of one kernel (``cache=True``), kept in a symgrad cache folder. It sets
    attributes Numba's caches keep to themselves (tests/test_cache_integrity.py would fail if
    a Numba release renamed them): the folder, its locator and the files' reader and writer."""

    def __init__(self, py_func, manifest: store.Manifest):
        super().__init__(py_func)  # finds Numba's own folder, as the decorator did: left unused
        self._manifest = manifest
        self._cache_path = str(manifest.folder)
        self._impl._locator = _Folder(py_func, manifest.folder)
        self._cache_file = _VerifiedFiles(manifest, self._impl.filename_base,
                                          self._impl.locator.get_source_stamp())

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except OSError as err:
            self._give_up(err)

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except OSError as err:
            self._give_up(err)

    def _give_up(self, err: OSError):
        self.disable()
        _cannot_cache(self._manifest.folder, err)


class _Folder(InTreeCacheLocator):
    """Numba's locator of a function's cache, pointed at a symgrad cache folder."""

    def __init__(self, py_func, folder: Path):
        super().__init__(py_func, py_func.__code__.co_filename)
        self._cache_path = str(folder)


class _VerifiedFiles(IndexDataCacheFile):
    """Numba's index (.nbi) and data (.nbc) files of one kernel, read and written through a
    Manifest: Numba's own methods, less their opening of the files."""

    def __init__(self, manifest: store.Manifest, filename_base: str, source_stamp):
        super().__init__(str(manifest.folder), filename_base, source_stamp)
        self._manifest = manifest

    def _load_index(self):
        data = self._manifest.read(self._index_name)
        if data is None:
            return {}
        stream = io.BytesIO(data)
        if pickle.load(stream) != self._version:
            return {}
        stamp, overloads = pickle.loads(stream.read())
        return overloads if stamp == self._source_stamp else {}

    def _load_data(self, name):
        data = self._manifest.read(name)
        return None if data is None else pickle.loads(data)

    @contextlib.contextmanager
    def _open_for_write(self, filepath):
        buffer = io.BytesIO()
        yield buffer
        self._manifest.write(os.path.basename(filepath), buffer.getvalue())


class NumbaKernels(Kernels):
    """Calls the generated module's kernels, binding arguments by name like the CUDA launchers."""

    def __init__(self, path: Path, kernels: dict, module, model_name: str):
        super().__init__(path, kernels)
        self.functions = {name: getattr(module, name) for name in kernels}
        self.module = module  # what e-prop's whole-pass driver calls (runtime/fused.py)
        self.model_name = model_name
        self.rest_decays = getattr(module, "rest_decays", None)  # models with rows at rest

    def _int(self, value):
        return int(value)

    def _real(self, value, dtype):
        return dtype.type(value)  # arithmetic in the arrays' precision

    def _null(self):
        return None  # Numba compiles the None case without the branch

    def _pointer(self, array, kernel):
        if array.dtype.kind == "i":  # only a layout's index arrays hold integers
            return unsigned(array)
        return array if kernel.nested else array.reshape(-1)  # as the kernel indexes it

    def _run(self, name, real, count, args):
        from numba.core.errors import NumbaError

        try:
            self.functions[name](*args)
        except NumbaError as err:
            raise ModelError(f"model {self.model_name!r}: Numba cannot compile its {name} kernel "
                             f"({reason(err)}); run it with --backend numpy") from None
        except SystemError as err:  # raised in a compiled kernel: a division by zero, where C gives inf
            if not isinstance(err.__cause__, ArithmeticError):
                raise
            raise FloatingPointError(f"{err.__cause__} in the {name} kernel of model "
                                     f"{self.model_name!r}") from None


def unsigned(indices):
    """Index arrays (never negative) as Numba code takes them: unsigned 32-bit (a view of int32
    ones), so that an element they index is one load, without the test for a negative index
    Numba adds for a signed one (a third of the time of a sparse synapse step)."""
    return indices.view(np.uint32) if indices.dtype == np.int32 else indices.astype(np.uint32)


def reason(err: Exception) -> str:
    """The line of a Numba error that says what failed (the rest is its pipeline's trace)."""
    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Failed in", "During:", "File ", "^"))]
    return (said or lines or [type(err).__name__])[0]
