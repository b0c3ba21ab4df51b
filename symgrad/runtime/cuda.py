"""The CUDA backend: the generated kernels, run by CuPy on a GPU or on the CPU ("cuda-host").

The generated ``cuda_layer.cu`` of a model defines kernels templated on ``real`` (float or
double): ``fixed_entries``, ``neuron_step``, the fused ``synapse_step``, and where the plan has
them ``presynaptic_step`` and ``param_traces``. ``render.cuda_kernels`` lists their arguments;
the drivers here bind values to them by name, so the template is the one place that says what a
kernel takes.

* backend "cupy": the source is compiled by NVRTC through ``cupy.RawModule`` (both precisions)
  and launched on CuPy arrays;
* backend "cuda-host": the same source is compiled by the host C++ compiler through
  ``templates/cuda/host_shim.h`` into a shared library (cached under ``$SYMGRAD_CACHE``, default
  ~/.cache/symgrad, keyed by a hash of everything compiled and the compiler's command line) and
  launched through ctypes on NumPy arrays. It exists to check the kernels without a GPU.

``load`` returns a ``CudaLayer``, which offers what the runtime uses from a generated NumPy
module (STATES, fixed_entries, neuron_step, Traces, ParamTraces, input_gain, backward_step,
param_gradients) plus the fused ``synapse_step`` that ``eprop`` calls when a module has one.
The per-neuron BPTT functions (input_gain, backward_step, param_gradients) are element-wise
array code and are taken from the NumPy module, which runs unchanged on CuPy arrays.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .. import render
from ..model import NeuronModel
from .compiled import cache_dir, repository_generated

BLOCK = 256  # threads per block for every kernel
BACKENDS = ("cuda-host", "cupy")
CTYPES = {np.dtype("float32"): "float", np.dtype("float64"): "double"}

_LAYERS: dict = {}


def load(model: NeuronModel, backend: str, numpy_module, dense: bool | None = None) -> "CudaLayer":
    """The CUDA layer of ``model`` for ``backend`` ("cuda-host" or "cupy"), built once per process.

    numpy_module: the model's generated NumPy module (its plan and BPTT functions are shared).
    dense: every trace per synapse; by default, whatever ``numpy_module`` was generated with.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown CUDA backend {backend!r}; choose {' or '.join(BACKENDS)}")
    key = (backend, numpy_module.__name__, tuple(p.name for p in model.neuron_params), dense)
    if key not in _LAYERS:
        context = _context_like(model, numpy_module, dense)
        source = render.render_context("cuda", context)
        path = source_file(model, source)
        kernels = {k.name: k for k in context["kernels"]}
        runner = HostKernels(path, kernels) if backend == "cuda-host" else CupyKernels(path, kernels)
        _LAYERS[key] = CudaLayer(context, numpy_module, runner)
    return _LAYERS[key]


def _context_like(model: NeuronModel, numpy_module, dense: bool | None) -> dict:
    """The CUDA context with the plan the NumPy module was generated with."""
    context = render.cuda_context(model, bool(dense))
    if dense is None and context["per_synapse"] != list(numpy_module.PER_SYNAPSE):
        context = render.cuda_context(model, True)  # the module was generated dense
    if context["per_synapse"] != list(numpy_module.PER_SYNAPSE):
        raise RuntimeError(f"{model.name}: the NumPy module's trace plan differs from the CUDA code's")
    return context


def source_file(model: NeuronModel, source: str) -> Path:
    """The committed generated/<model>/cuda_layer.cu when it is this text, else a cached copy."""
    _, filename = render.BACKENDS["cuda"]
    committed = repository_generated() / model.name / filename
    if committed.is_file() and committed.read_text() == source:
        return committed
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    path = cache_dir() / f"{model.name}-{digest}" / filename
    _write_if_changed(path, source)
    return path


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def shim_path() -> Path:
    return render.template_dir() / "cuda" / "host_shim.h"


def instantiations(kernels) -> str:
    """Explicit instantiations of every kernel for float and double (for nvcc -ptx checks)."""
    lines = []
    for kernel in kernels:
        for ctype in ("float", "double"):
            args = ", ".join(_declare(a, ctype) for a in kernel.args)
            lines.append(f"template __global__ void {kernel.name}<{ctype}>({args});")
    return "\n".join(lines) + "\n"


def _declare(arg: render.KernelArg, ctype: str) -> str:
    """The declaration of ``arg`` with ``real`` spelled ``ctype``."""
    return render.KernelArg(arg.name, arg.ctype.replace("real", ctype), arg.note).declaration


def traffic(kernel: render.Kernel, values: dict) -> int:
    """Bytes a launch of ``kernel`` must move at least: each array given is read once, and
    written once more when the kernel may write it (``real*``). An array that several threads
    read (a presynaptic trace, a per-neuron entry) counts once: it is served from cache."""
    total = 0
    for arg in kernel.args:
        value = values.get(arg.name)
        if arg.ctype.endswith("*") and value is not None:
            total += value.nbytes * (1 if arg.ctype.startswith("const") else 2)
    return total


# -- running kernels --------------------------------------------------------------------------
class _Kernels:
    """Launches the kernels of one generated source; subclasses say how to pass arguments."""

    xp = np

    def __init__(self, path: Path, kernels: dict):
        self.path, self.kernels = path, kernels

    def launch(self, name: str, dtype, count: int, values: dict) -> None:
        """Run kernel ``name`` with one thread per item of ``count``; arguments from ``values``."""
        if count <= 0:
            return
        dtype = np.dtype(dtype)
        if dtype not in CTYPES:
            raise TypeError(f"the CUDA backends run float32 or float64, not {dtype}")
        kernel = self.kernels[name]
        args = [self._arg(kernel, a, values[a.name], dtype) for a in kernel.args]
        grid = (count + BLOCK - 1) // BLOCK
        self._run(name, CTYPES[dtype], grid, args)

    def _arg(self, kernel, arg, value, dtype):
        if arg.ctype == "int":
            if not 0 <= value < 2**31:
                raise ValueError(f"{kernel.name}: {arg.name} = {value} does not fit the kernel's int")
            return self._int(value)
        if arg.ctype == "real":
            return self._real(value, dtype)
        if value is None:
            return self._null()
        if not isinstance(value, self.xp.ndarray):
            raise TypeError(f"{kernel.name}: {arg.name} must be a {self.xp.__name__} array, "
                            f"not {type(value).__name__}")
        if value.dtype != dtype:
            raise TypeError(f"{kernel.name}: {arg.name} is {value.dtype}, expected {dtype}")
        if not value.flags.c_contiguous:
            raise ValueError(f"{kernel.name}: {arg.name} must be C-contiguous")
        return self._pointer(value)


class HostKernels(_Kernels):
    """The kernels compiled by the host C++ compiler through the shim, called through ctypes."""

    def __init__(self, path: Path, kernels: dict):
        super().__init__(path, kernels)
        self.library = ctypes.CDLL(str(build_host_library(path, kernels)))
        self.functions = {}
        for kernel in kernels.values():
            for ctype in ("float", "double"):
                function = getattr(self.library, f"symgrad_{kernel.name}_{ctype}")
                real = ctypes.c_float if ctype == "float" else ctypes.c_double
                function.argtypes = [ctypes.c_uint, ctypes.c_uint] + [
                    ctypes.c_int if a.ctype == "int" else real if a.ctype == "real" else ctypes.c_void_p
                    for a in kernel.args]
                function.restype = None
                self.functions[kernel.name, ctype] = function

    def _int(self, value):
        return int(value)

    def _real(self, value, dtype):
        return float(value)

    def _null(self):
        return None

    def _pointer(self, array):
        return array.ctypes.data

    def _run(self, name, ctype, grid, args):
        self.functions[name, ctype](grid, BLOCK, *args)


class CupyKernels(_Kernels):
    """The kernels compiled by NVRTC through cupy.RawModule, both precisions in one module."""

    def __init__(self, path: Path, kernels: dict):
        super().__init__(path, kernels)
        import cupy

        self.xp = cupy
        names = [f"{k}<{t}>" for k in kernels for t in ("float", "double")]
        self.module = cupy.RawModule(code=path.read_text(), options=("--std=c++14",),
                                     name_expressions=names)
        self.functions = {}

    def _int(self, value):
        return np.int32(value)

    def _real(self, value, dtype):
        return dtype.type(value)

    def _null(self):
        return np.uint64(0)  # a null pointer (None would not be one: cupy issue 9046)

    def _pointer(self, array):
        return array

    def _run(self, name, ctype, grid, args):
        key = f"{name}<{ctype}>"
        if key not in self.functions:
            self.functions[key] = self.module.get_function(key)
        self.functions[key]((grid,), (BLOCK,), tuple(args))


def host_compiler() -> list[str]:
    """The C++ compiler command: $CXX, else g++, else c++."""
    command = shlex.split(os.environ.get("CXX", "")) or [
        next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), "g++")]
    if not shutil.which(command[0]):
        raise RuntimeError("the cuda-host backend needs a C++ compiler: install g++ or set CXX")
    return command


HOST_FLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-w"]


def host_flags() -> list[str]:
    """The compiler flags; SYMGRAD_OPENMP=1 adds -fopenmp, to share a launch's blocks among
    threads (off by default: on a busy machine the threads' barriers cost more than they save
    at the sizes the host backend is for)."""
    return HOST_FLAGS + (["-fopenmp"] if os.environ.get("SYMGRAD_OPENMP") == "1" else [])


def launcher_source(path: Path, kernels: dict) -> str:
    """extern "C" launchers, one per kernel and precision, for ctypes."""
    lines = ["// Launchers of the kernels in " + path.name + " for symgrad's cuda-host backend.",
             "// Written by symgrad.runtime.cuda; compiled with the host shim.",
             '#include "host_shim.h"', f'#include "{path.name}"', ""]
    for kernel in kernels.values():
        for ctype in ("float", "double"):
            params = ", ".join(["unsigned grid", "unsigned block"] + [_declare(a, ctype) for a in kernel.args])
            call = ", ".join(a.name for a in kernel.args)
            lines += [f'extern "C" void symgrad_{kernel.name}_{ctype}({params})', "{",
                      f"    symgrad_launch(grid, block, [&] {{ {kernel.name}<{ctype}>({call}); }});",
                      "}", ""]
    return "\n".join(lines)


def build_host_library(path: Path, kernels: dict) -> Path:
    """Compile the .cu at ``path`` for the CPU (once: cached by a hash of all its inputs)."""
    compiler = host_compiler()
    source, shim = path.read_text(), shim_path().read_text()
    launchers = launcher_source(path, kernels)
    version = subprocess.run(compiler + ["--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256("\0".join([source, shim, launchers, " ".join(compiler + host_flags()),
                                       version]).encode()).hexdigest()[:16]
    folder = cache_dir().parent / "cuda-host" / f"{path.parent.name}-{digest}"
    library = folder / "layer.so"
    if library.is_file():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    _write_if_changed(folder / path.name, source)
    _write_if_changed(folder / "host_shim.h", shim)
    _write_if_changed(folder / "launchers.cpp", launchers)
    tmp = folder / f"layer.{os.getpid()}.so"
    command = compiler + host_flags() + ["-o", str(tmp), "launchers.cpp"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"compiling {path} for the host failed ({' '.join(command)} in {folder}):\n"
                           f"{done.stderr}")
    os.replace(tmp, library)
    return library


# -- the layer ---------------------------------------------------------------------------------
class CudaLayer:
    """One model's generated kernels, with the interface of its generated NumPy module."""

    def __init__(self, context: dict, numpy_module, kernels: _Kernels):
        self.kernels, self.xp = kernels, kernels.xp
        self.model = context["model"]
        self.name = self.model.name
        for name in ("STATES", "PARAMS", "LEARNABLE", "INITIAL", "PRESYNAPTIC", "PER_SYNAPSE"):
            setattr(self, name, getattr(numpy_module, name))
        self.DYNAMIC = context["dynamic"]
        self.ELIGIBLE = context["eligible"]
        self._kind = context["kind"]
        self._per_neuron = {p.name for p in self.model.neuron_params}
        self._fixed_names = [f["name"] for f in context["fixed"]]
        self._fixed_params = context["fixed_params"]
        self._step_params = context["step_params"]
        self._param_rows = [(pt["param"], [row["state"] for row in pt["rows"]])
                            for pt in context["param_traces"]]
        self.Traces = functools.partial(Traces, self)
        self.ParamTraces = functools.partial(ParamTraces, self)
        # element-wise array code: runs on NumPy and CuPy arrays alike
        self.input_gain = numpy_module.input_gain
        self.backward_step = numpy_module.backward_step
        if self.LEARNABLE:
            self.param_gradients = numpy_module.param_gradients

    def __repr__(self):
        return f"<CudaLayer {self.name} ({type(self.kernels).__name__}) from {self.kernels.path}>"

    # -- parameters and fixed entries ----------------------------------------------------
    def _param(self, p: dict, name: str, dtype, n: int | None = None):
        """A parameter as the kernels read it: an (n) array per neuron, else one value."""
        value = p[name]
        if not isinstance(value, self.xp.ndarray) or value.dtype != dtype:
            value = self.xp.asarray(value, dtype=dtype)
        value = self.xp.ascontiguousarray(value)
        if name in self._per_neuron:
            if value.ndim != 1 or (n is not None and value.shape[0] != n):
                raise ValueError(f"{self.name}: parameter {name} holds one value per neuron: "
                                 f"expected shape ({n if n is not None else 'n'},), got {value.shape}")
        elif value.size != 1:
            raise ValueError(f"{self.name}: parameter {name} is shared by the layer: expected one "
                             f"value, got shape {value.shape}")
        return value

    def fixed_entries(self, p: dict) -> dict:
        """Jacobian entries that depend on parameters only, as (n) arrays (constant ones: (1))."""
        if not self._fixed_names:
            return {}
        dtype = self._dtype(p)
        params = {q: self._param(p, q, dtype) for q in self._fixed_params}
        n = max((v.size for q, v in params.items() if q in self._per_neuron), default=1)
        K = {f: self.xp.empty(n, dtype) for f in self._fixed_names}
        values = {"n": n, **{f"p_{q}": v for q, v in params.items()}, **{f"K_{f}": K[f] for f in K}}
        self.kernels.launch("fixed_entries", dtype, n, values)
        return K

    def _dtype(self, p: dict):
        dtypes = {v.dtype for v in p.values() if hasattr(v, "dtype")}
        return dtypes.pop() if len(dtypes) == 1 else np.dtype("float64")

    def _fixed(self, K: dict, names, n: int) -> dict:
        """K_<name> arguments; per-neuron entries must have one value per neuron."""
        values = {}
        for name in names:
            if self._kind[name] == "per-neuron" and K[name].size != n:
                raise ValueError(f"{self.name}: {name} holds {K[name].size} values for {n} neurons")
            values[f"K_{name}"] = K[name]
        return values

    # -- the neuron step -----------------------------------------------------------------
    def neuron_step(self, s: dict, I, p: dict):
        """s_t, z_t and the dynamic Jacobian entries (fresh arrays, as the NumPy module returns)."""
        xp = self.xp
        I = xp.ascontiguousarray(I)
        dtype, (batch, n) = I.dtype, I.shape
        values = {"size": batch * n, "n": n, "input": I}
        values.update({f"s_{name}": self._state(s[name], dtype, I.shape) for name in self.STATES})
        values.update({f"p_{q}": self._param(p, q, dtype, n) for q in self._step_params})
        new = {name: xp.empty((batch, n), dtype) for name in self.STATES}
        z = xp.empty((batch, n), dtype)
        J = {name: xp.empty((batch, n), dtype) for name in self.DYNAMIC}
        values.update({f"s_{name}_new": new[name] for name in self.STATES})
        values.update({f"J_{name}": J[name] for name in self.DYNAMIC})
        values["out_z"] = z
        self.kernels.launch("neuron_step", dtype, batch * n, values)
        return new, z, J

    def _state(self, value, dtype, shape):
        value = self.xp.ascontiguousarray(value, dtype=dtype)
        if value.shape != shape:
            raise ValueError(f"{self.name}: a state has shape {value.shape}, expected {shape}")
        return value

    # -- traces --------------------------------------------------------------------------
    def advance(self, traces: "Traces", J: dict, K: dict, u, L=None, kappa=0.0, ebar=None,
                seq_sum=None, grad=None, reg_sum=None, seq_weight=1.0) -> None:
        """One step of the traces and of whatever sums are given: synapse_step (when there is
        per-synapse work), then presynaptic_step (when there are presynaptic traces)."""
        batch, n, n_pre = traces.shape
        u = self.xp.ascontiguousarray(u, dtype=traces.dtype)
        if u.shape != (batch, n_pre):
            raise ValueError(f"{self.name}: u has shape {u.shape}, expected {(batch, n_pre)}")
        if L is not None and grad is None:
            raise ValueError(f"{self.name}: a learning signal needs a gradient to add to")
        if self.PER_SYNAPSE or any(a is not None for a in (L, ebar, seq_sum, reg_sum)):
            values = self.synapse_values(traces, J, K, u, L, kappa, ebar, seq_sum, grad, reg_sum,
                                         seq_weight)
            self.kernels.launch("synapse_step", traces.dtype, n * n_pre, values)
        if self.PRESYNAPTIC:
            kernel = self.kernels.kernels["presynaptic_step"]
            values = {"size": batch * n_pre, "u": u, **self._entries(kernel, J, K, n)}
            values.update({f"trace_{s}": getattr(traces, f"eps_{s}") for s in self.PRESYNAPTIC})
            self.kernels.launch("presynaptic_step", traces.dtype, batch * n_pre, values)

    def synapse_values(self, traces: "Traces", J: dict, K: dict, u, L=None, kappa=0.0, ebar=None,
                       seq_sum=None, grad=None, reg_sum=None, seq_weight=1.0) -> dict:
        """The arguments of synapse_step by name (``advance`` launches it with them)."""
        batch, n, n_pre = traces.shape
        values = {"batch": batch, "n": n, "n_pre": n_pre, "u": u, "L": L, "kappa": kappa,
                  "ebar": ebar, "seq_sum": seq_sum, "seq_weight": seq_weight, "grad": grad,
                  "reg_sum": reg_sum}
        values.update(self._entries(self.kernels.kernels["synapse_step"], J, K, n))
        values.update({f"trace_{s}": getattr(traces, f"eps_{s}") for s in self.PRESYNAPTIC + self.PER_SYNAPSE})
        return values

    def _entries(self, kernel, J: dict, K: dict, n: int) -> dict:
        """The J_<entry> and K_<entry> arguments ``kernel`` declares."""
        dynamic = {a.name: J[a.name[2:]] for a in kernel.args if a.name.startswith("J_")}
        fixed = [a.name[2:] for a in kernel.args if a.name.startswith("K_")]
        return {**dynamic, **self._fixed(K, fixed, n)}

    def synapse_step(self, layer, L, kappa, weight=1.0) -> None:
        """eprop's per-synapse work for one step, fused (see eprop.synapse_step for the contract)."""
        xp, traces, J, K = self.xp, layer.traces, layer.J, layer.K
        if not self.PER_SYNAPSE and layer.ebar is None and layer.seq_sum is None:
            # Nothing per synapse is stored: the gradient is a matrix product of (L * h) and
            # the presynaptic traces, as in the NumPy module's Traces.accumulate.
            self.advance(traces, J, K, layer.u)
            for target, signal in ((layer.reg_sum, layer.ones), (layer.grad, L)):
                if target is None or signal is None:
                    continue
                for s in self.ELIGIBLE:
                    h = J[f"h_{s}"] if f"h_{s}" in J else K[f"h_{s}"]
                    xp.matmul((signal * h).T, getattr(traces, f"eps_{s}"), out=layer.product)
                    target += layer.product
            return
        self.advance(traces, J, K, layer.u, L=L, kappa=kappa, ebar=layer.ebar,
                     seq_sum=layer.seq_sum, grad=layer.grad, reg_sum=layer.reg_sum, seq_weight=weight)


class Traces:
    """e-prop traces stored as planned: eps_<s> (batch, pre) presynaptic, (batch, n, pre) per synapse.

    The kernels keep every intermediate in registers, so no saved copies or scratch are needed.
    """

    def __init__(self, code: CudaLayer, batch: int, n: int, n_pre: int, dtype):
        self.code, self.shape, self.dtype = code, (batch, n, n_pre), np.dtype(dtype)
        for s in code.PRESYNAPTIC:
            setattr(self, f"eps_{s}", code.xp.zeros((batch, n_pre), dtype))
        for s in code.PER_SYNAPSE:
            setattr(self, f"eps_{s}", code.xp.zeros((batch, n, n_pre), dtype))

    def update(self, J: dict, K: dict, u, scratch=None) -> None:
        """One step of every trace: eps_t = D_t eps_t-1 + c_t u_t."""
        self.code.advance(self, J, K, u)


class ParamTraces:
    """Per-neuron traces eps^p_t = D_t eps^p_t-1 + q_t of the learnable parameters."""

    def __init__(self, code: CudaLayer, batch: int, n: int, dtype):
        self.code, self.shape, self.dtype = code, (batch, n), np.dtype(dtype)
        for param, states in code._param_rows:
            for s in states:
                setattr(self, f"{param}_{s}", code.xp.zeros((batch, n), dtype))
        self._e = {param: code.xp.zeros((batch, n), dtype) for param, _ in code._param_rows}

    def update(self, J: dict, K: dict) -> None:
        code, (batch, n) = self.code, self.shape
        kernel = code.kernels.kernels["param_traces"]
        self._e = {param: code.xp.empty((batch, n), self.dtype) for param, _ in code._param_rows}
        values = {"size": batch * n, "n": n, **code._entries(kernel, J, K, n)}
        for param, states in code._param_rows:
            values.update({f"trace_{param}_{s}": getattr(self, f"{param}_{s}") for s in states})
            values[f"e_{param}"] = self._e[param]
        code.kernels.launch("param_traces", self.dtype, batch * n, values)

    def eligibility(self, J: dict, K: dict) -> dict:
        """e^p_t = h_t . eps^p_t of each learnable parameter, (batch, n), from the last update."""
        return dict(self._e)
