"""The CUDA backend: generated kernels, checked without a GPU and, where one is, on it.

* the generated .cu files are committed, up to date, deterministic and read well;
* every one compiles with nvcc for sm_80 and sm_90 (both precisions; the float kernels never
  promote a value to double), and with NVRTC as CuPy compiles it, where NVRTC is found;
* the same source compiled for the CPU through the host shim ("cuda-host") gives the NumPy
  backend's losses and gradients, for e-prop (kappa 0 and > 0, with and without W_rec, per-step
  and sequence losses, the rate regulariser, learnable neuron parameters) and for BPTT;
* with a GPU and CuPy, the "cupy" backend gives them too (skipped, with the reason, elsewhere).
"""
from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from symgrad import models, render
from symgrad.runtime import bptt, cuda, eprop
from helpers import batch, input_weights, network, nvrtc, nvrtc_compile, relative_error

ROOT = Path(__file__).resolve().parent.parent
MODELS = list(models.BUILTIN)
NVCC = shutil.which("nvcc")


def compile_ptx(source: Path, folder: Path, archs=("sm_80", "sm_90")) -> list:
    """nvcc -ptx of ``source`` for each architecture, two at a time: (arch, the finished run,
    the .ptx written into ``folder``) of each."""
    def compile_for(arch):
        out = folder / f"{arch}.ptx"
        done = subprocess.run([NVCC, "-ptx", f"-arch={arch}", "-std=c++17", "-o", str(out), str(source)],
                              capture_output=True, text=True)
        return arch, done, out

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(compile_for, archs))


def _gpu_reason() -> str | None:
    """Why the CuPy tests cannot run here, or None when they can."""
    try:
        import cupy
    except ImportError:
        return "cupy is not installed (pip install cupy-cuda12x, on a machine with a GPU)"
    except Exception as err:  # installed, but its CUDA libraries do not load
        return f"cupy does not import ({type(err).__name__}: {err})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "cupy finds no GPU"
    except Exception as err:  # no driver, no device
        return f"cupy finds no GPU ({type(err).__name__}: {err})"
    return None


GPU_REASON = _gpu_reason()
REQUIRE_GPU = os.environ.get("SYMGRAD_REQUIRE_GPU") == "1"  # scripts/gpu_check.sh sets it
needs_gpu = pytest.mark.skipif(GPU_REASON is not None and not REQUIRE_GPU, reason=f"CuPy tests: {GPU_REASON}")
BACKENDS = ["cuda-host", pytest.param("cupy", marks=needs_gpu)]


@pytest.mark.skipif(not REQUIRE_GPU, reason="SYMGRAD_REQUIRE_GPU is not set")
def test_the_gpu_is_there_when_required():
    assert GPU_REASON is None, GPU_REASON


@functools.lru_cache(maxsize=None)
def rendered(name: str) -> str:
    return render.render(models.builtin(name), "cuda")


@functools.lru_cache(maxsize=None)
def kernels(name: str) -> tuple:
    return tuple(render.cuda_kernels(models.builtin(name)))


def host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


# -- the generated source -----------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_generated_cuda_is_committed_and_up_to_date(name):
    committed = ROOT / "generated" / name / "cuda_layer.cu"
    assert committed.is_file(), f"run `symgrad generate --all --backend numpy cuda`: {committed} is missing"
    assert committed.read_text() == rendered(name), (
        f"{committed} is stale: run `symgrad generate --all --backend numpy cuda` and commit it")


def test_cuda_generation_is_deterministic():
    assert render.render(models.builtin("alif"), "cuda") == rendered("alif")


@pytest.mark.parametrize("name", MODELS)
def test_generated_cuda_reads_well(name):
    text = rendered(name)
    model = models.builtin(name)
    head = text[:text.index("template")]
    assert "Jacobian classes" in head and "Trace plan" in head
    for state in model.state_names:
        assert f"{state}_t = " in head
    body = text[text.index("__global__ void neuron_step"):]
    for line in body.splitlines():  # every state, output and entry line names its equation
        if re.match(r"\s+const real (\w+_new|D_\w+|c_\w+|h_\w+|q_\w+|z) = ", line):
            assert "  // " in line, line
    for line in text[text.index("__global__ void synapse_step"):].splitlines():
        if re.match(r"\s+const real eps_\w+_new = ", line):
            assert "  // eps" in line, line
    code = re.sub(r"//.*", "", text)
    assert not re.search(r"\b(double|float)\b|M_PI", code)  # the precision comes from `real` alone
    # parameters are arguments, not literals (surrogate shapes aside)
    code = re.sub(r"\w+_psi\([^)]*\)", "", code)
    for p, value in model.params.items():
        if value not in (0.0, 1.0):
            assert not re.search(rf"real\({re.escape(repr(value))}\)", code), (p, value)


@pytest.mark.parametrize("name", MODELS)
def test_the_fused_kernel_reads_and_writes_each_per_synapse_array_once(name):
    """Each input's synapse kernel (synapse_step, or synapse_step_<input> of each of several)."""
    text = rendered(name)
    model = models.builtin(name)
    for kernel_name in (render.generate_code(model, backends=()).names.per_input("synapse_step", i)
                        for i in model.input_names):
        kernel = text[text.index(f"__global__ void {kernel_name}("):]
        kernel = kernel[:kernel.index("\n}\n")]
        args = {a.name: a for k in kernels(name) if k.name == kernel_name for a in k.args}
        assert args
        for state in model.state_names:
            reads = kernel.count(f"= trace_{state}[bij];")
            writes = kernel.count(f"trace_{state}[bij] = ")
            per_synapse = f"trace_{state}" in args and args[f"trace_{state}"].ctype == "real*"
            assert (reads, writes) == ((1, 1) if per_synapse else (0, 0)), (kernel_name, state)
        assert kernel.count("ebar[bij]") == 2 and kernel.count("seq_sum[bij]") == 1
        assert kernel.count("grad[syn]") == 1 and kernel.count("reg_sum[syn]") == 1


def test_lif_stores_nothing_per_synapse():
    text = rendered("lif")
    assert "(batch, n, pre), per-synapse" not in text
    assert "trace_v[bj] = D_v_v * eps_v + u_j;" in text


# -- compiling for the GPU -----------------------------------------------------------------------
def _ptx_kernels(ptx: str) -> dict:
    """Each kernel's PTX body, keyed by its mangled name."""
    parts = re.split(r"\.entry\s+(\w+)", ptx)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH")
def test_every_generated_cu_compiles_with_nvcc(tmp_path):
    # One translation unit holds every model, each in its own namespace, with the float and
    # double instantiation of each kernel: one nvcc run per architecture.
    source = tmp_path / "all_models.cu"
    source.write_text("".join(
        f'namespace {name} {{\n#include "{ROOT / "generated" / name / "cuda_layer.cu"}"\n'
        f"{cuda.instantiations(kernels(name))}}}\n" for name in MODELS))

    for arch, done, out in compile_ptx(source, tmp_path):
        assert done.returncode == 0, f"{arch}:\n{done.stderr}"
        assert "warning" not in done.stderr, f"{arch}:\n{done.stderr}"
        entries = _ptx_kernels(out.read_text())
        for name in MODELS:
            mine = [m for m in entries if m.startswith(f"_ZN{len(name)}{name}")]
            assert len(mine) == 2 * len(kernels(name)), (arch, name, sorted(mine))
        for mangled, body in entries.items():
            if "IfE" in mangled:  # float kernels never promote a float to double
                assert not re.search(r"cvt(\.\w+)*\.f64\.f32|(ld|st)\.\w+\.f64", body), (
                    f"{arch}: {mangled} computes in double")


@pytest.mark.skipif(nvrtc() is None, reason="libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12)")
@pytest.mark.parametrize("name", MODELS)
def test_every_generated_cu_compiles_with_nvrtc_as_cupy_does(name):
    lib = nvrtc()
    source = (ROOT / "generated" / name / "cuda_layer.cu").read_bytes()
    names = [f"{k.name}<{t}>".encode() for k in kernels(name) for t in ("float", "double")]
    program = nvrtc_compile(lib, source, b"cuda_layer.cu", names)
    for expression in names:
        lowered = ctypes.c_char_p()
        assert lib.nvrtcGetLoweredName(program, expression, ctypes.byref(lowered)) == 0
        assert lowered.value
    lib.nvrtcDestroyProgram(ctypes.byref(program))


# -- running: every backend against NumPy --------------------------------------------------------
def pair(name: str, backend: str, recurrent: bool = False, hidden=5, dtype="float64", dense=False):
    """The same small active network on NumPy and on ``backend`` (built once per test session)."""
    return _pair(name, backend, recurrent, hidden, dtype, dense)


@functools.lru_cache(maxsize=None)
def _pair(name, backend, recurrent, hidden, dtype, dense):
    kwargs = dict(recurrent=recurrent, hidden=hidden, dtype=dtype, dense=dense)
    return network(name, **kwargs), network(name, backend=backend, **kwargs)


def compare(name, backend, rule, loss="ce", kappa=0.0, recurrent=False, reg=0.0, steps=25,
            tolerance=1e-12, **kwargs):
    reference, net = pair(name, backend, recurrent, **kwargs)
    reference.kappa = net.kappa = kappa
    x, labels = batch(steps=steps)
    target = np.random.default_rng(3).standard_normal((steps, 3, 4)) if loss == "mse" else labels
    expected = rule(reference, x, target, loss=loss, reg=reg)
    got = rule(net, x, net.xp.asarray(target), loss=loss, reg=reg)
    assert all(abs(count) > 0 for count in expected.spikes), "the network is silent: this proves nothing"
    assert got.spikes == pytest.approx(expected.spikes, rel=1e-12)
    assert got.loss == pytest.approx(expected.loss, rel=tolerance)
    assert set(got.grads) == set(expected.grads)
    for key in input_weights(reference.layers[0]):  # W_in, or W_in_<input> of each input
        assert np.abs(expected.grads[key]).max() > 0, f"{key}: a zero gradient proves nothing"
    for key, value in expected.grads.items():
        assert relative_error(host(got.grads[key]), value) <= tolerance, key
    return got


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kappa", [0.0, 0.8])
@pytest.mark.parametrize("name", MODELS)
def test_eprop_matches_numpy(name, kappa, backend):
    compare(name, backend, eprop, kappa=kappa)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MODELS)
def test_recurrent_eprop_matches_numpy(name, backend):
    compare(name, backend, eprop, kappa=0.8, recurrent=True, hidden=8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MODELS)
def test_bptt_matches_numpy(name, backend):
    compare(name, backend, bptt, kappa=0.6, recurrent=True, hidden=8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss, kappa", [("ce_mean", 0.0), ("ce_mean", 0.9), ("ce_last", 0.9)])
@pytest.mark.parametrize("name", ["lif", "alif", "se_adlif"])
def test_sequence_losses_match_numpy(name, kappa, loss, backend):
    compare(name, backend, eprop, loss=loss, kappa=kappa, steps=20)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kappa", [0.0, 0.5])
@pytest.mark.parametrize("name", ["lif", "alif", "cuba_lif", "brf"])
def test_mse_and_rate_regulariser_match_numpy(name, kappa, backend):
    compare(name, backend, eprop, loss="mse", kappa=kappa, reg=0.5, steps=20)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_traces_match_numpy(backend):
    compare("alif", backend, eprop, kappa=0.8, dense=True)
    compare("cuba_lif", backend, eprop, kappa=0.0, dense=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_layers_match_numpy(backend):
    compare("alif", backend, eprop, kappa=0.7, hidden=(8, 6))
    compare("se_adlif", backend, bptt, kappa=0.7, hidden=(8, 6))


def _user_models():
    import sympy as sp

    from symgrad import NeuronModel
    from symgrad.model import spike, stop_gradient

    v, w, alpha, tau, I = sp.symbols("v w alpha tau I")
    linear = NeuronModel("linear_rate", {v: 0.0}, {alpha: 0.8}, {v: alpha * v + I}, v)  # no dynamic entry
    two = NeuronModel("two_state", {v: 0.0, w: 0.0}, {alpha: 0.9, tau: 0.7},
                      {v: alpha * v + I - stop_gradient(spike(v - 1.0)), w: tau * w + v},
                      spike(v + 0.3 * w - 1.0), learnable=(alpha,), per_neuron=(tau,))
    return [linear, two]


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_models_match_numpy(backend):
    """Models outside generated/ (their .cu is rendered into the cache): no dynamic entry at all;
    a learnable and a per-neuron parameter feeding a second state."""
    from symgrad.runtime import Network

    x, labels = batch()
    for model in _user_models():
        nets = [Network(model, 6, 5, 4, recurrent=True, kappa=0.7, seed=2, backend=b)
                for b in ("numpy", backend)]
        for net in nets:
            net.params["W_in"] *= 3.0
        for rule, reg in ((eprop, 0.3), (bptt, 0.0)):
            expected, got = (rule(net, x, net.xp.asarray(labels), reg=reg) for net in nets)
            assert abs(expected.spikes[0]) > 0
            assert got.loss == pytest.approx(expected.loss, rel=1e-12)
            for key, value in expected.grads.items():
                assert relative_error(host(got.grads[key]), value) <= 1e-12, (model.name, key)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_matches_numpy_float32(backend):
    got = compare("alif", backend, eprop, kappa=0.8, dtype="float32", tolerance=1e-4)
    assert host(got.grads["W_in"]).dtype == np.float32


# -- the host driver -----------------------------------------------------------------------------
def test_the_host_shim_ships_with_the_package():
    import tomllib

    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(Path("cuda/host_shim.h").match(glob) for glob in shipped["symgrad.templates"])
    assert cuda.shim_path().is_file()


def test_host_library_is_built_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path))
    path = cuda.source_file(models.builtin("lif"), rendered("lif"))
    table = {k.name: k for k in kernels("lif")}
    first = cuda.build_host_library(path, table)
    stamp = first.stat().st_mtime_ns
    assert cuda.build_host_library(path, table) == first and first.stat().st_mtime_ns == stamp
    assert first.is_relative_to(tmp_path)


def test_kernels_reject_wrong_arrays():
    _, net = pair("alif", "cuda-host")
    code = net.layers[0].code
    port = code.ports["I"]
    traces = port.traces(2, 5, 6, "float64")
    J = {name: np.zeros((2, 5)) for name in code.DYNAMIC}
    K = code.fixed_entries(net.neuron_params(net.layers[0]))
    with pytest.raises(TypeError, match="float32, expected float64"):
        port.advance(traces, {**J, "h_v": np.zeros((2, 5), np.float32)}, K, np.zeros((2, 6)))
    with pytest.raises(ValueError, match="C-contiguous"):
        port.advance(traces, {**J, "h_v": np.zeros((5, 2)).T}, K, np.zeros((2, 6)))
    with pytest.raises(ValueError, match="u has shape"):
        port.advance(traces, J, K, np.zeros((2, 7)))


def test_traces_follow_the_numpy_module_step_by_step():
    reference, net = pair("brf", "cuda-host")
    mine, theirs = net.layers[0].code, reference.layers[0].code
    p = reference.neuron_params(reference.layers[0])
    K_mine, K_theirs = mine.fixed_entries(p), theirs.fixed_entries(p)
    rng = np.random.default_rng(0)
    s = {name: rng.standard_normal((3, 5)) for name in theirs.STATES}
    a, b = mine.ports["I"].traces(3, 5, 6, "float64"), theirs.ports["I"].traces(3, 5, 6, "float64")
    scratch = np.empty((3, 5, 6))
    for _ in range(6):
        I, u = rng.standard_normal((3, 5)) * 3, (rng.random((3, 6)) < 0.4).astype(float)
        new_mine, z_mine, J_mine = mine.neuron_step(s, I, p)
        new, z, J = theirs.neuron_step(s, I, p)
        assert np.array_equal(z_mine, z)
        for key in J:
            assert relative_error(J_mine[key], J[key]) <= 1e-12, key
        a.update(J_mine, K_mine, u)
        b.update(J, K_theirs, u, scratch)
        s = new
    plan = theirs.ports["I"].plan
    for name in plan.per_synapse + plan.presynaptic:
        assert relative_error(mine.ports["I"].trace(a, name), theirs.ports["I"].trace(b, name)) <= 1e-12, name
