"""Sparse connectivity on the CUDA backends: the generated kernels in sparse rows
(``layouts.CSR``, cuda_layer_csr.cu), one thread per stored synapse.

* every built-in model's CSR source reads well and compiles with nvcc for sm_80 and sm_90 (both
  precisions; the float kernels never promote a value to double) and with NVRTC as CuPy does;
* compiled for the CPU through the host shim ("cuda-host"), it equals the NumPy reference with
  the same synapses to 1e-12 in float64 (tests/test_sparse.py checks that reference against the
  dense run with masked weights): every built-in for e-prop (ce, kappa 0); a few models for a
  sequence loss with a leaky readout, mse with the rate regulariser, two layers, several inputs,
  learnable parameters, a dense projection in a sparse port, BPTT and float32;
* with a GPU and CuPy, the "cupy" backend gives them too (skipped, with the reason, elsewhere);
* a sparse layer launches the same kernels per step as a dense one.

Every network is active (its spikes are asserted) and every input weight's gradient nonzero.
"""
from __future__ import annotations

import ctypes
import functools
import re
from collections import Counter

import numpy as np
import pytest

from symgrad import models, render
from symgrad.layouts import CSR, DENSE
from symgrad.runtime import bptt, cuda, eprop
from symgrad.runtime.connectivity import Connectivity
from symgrad.runtime.network import Network
from helpers import DRIVE, assert_active, batch, input_weights, nvrtc, nvrtc_compile, relative_error
from test_cuda import BACKENDS, NVCC, _ptx_kernels, compile_ptx, host, needs_gpu
from test_sparse import masks_for

MODELS = list(models.BUILTIN)
EXACT = 1e-12


@functools.lru_cache(maxsize=None)
def code(name: str) -> render.Generated:
    return render.generate_code(models.builtin(name), backends=("cuda",), layout=CSR)


def rendered(name: str) -> str:
    return code(name).texts["cuda"]


def kernels(name: str) -> list:
    return [k for k in code(name).kernels if not k.cpu_only]


# -- the generated source -----------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_the_csr_source_reads_well(name):
    text, dense = rendered(name), render.render(models.builtin(name), "cuda")
    head = text[:text.index("\ntemplate <")]
    assert "compressed sparse rows" in head and "(batch, n, pre)" not in text
    assert "(batch, nnz)" in head and "row_start" in head  # the one index array its kernels leave unread
    for kernel in (k for k in kernels(name) if k.kind == "synapse_step"):
        body = text[text.index(f"__global__ void {kernel.name}("):]
        body = body[:body.index("\n}\n")]
        for index in ("row_start", "col", "post_of"):
            assert re.search(rf"const int\* __restrict__ {index},\s+// \(", body), index
        assert "if (syn >= (size_t)nnz) return;" in body
        assert "const int post = post_of[syn], pre = col[syn];" in body
        assert "const size_t bij = (size_t)sample * nnz + syn;  // (sample, synapse)" in body
        assert "    if (L) grad[syn] += grad_ij;" in body
        # the dense kernel's lines, but for how a thread finds its synapse: one template
        theirs = dense[dense.index(f"__global__ void {kernel.name}("):]
        theirs = theirs[theirs.index("{\n"):theirs.index("\n}\n")]
        mine = body[body.index("{\n"):]
        differ = set(mine.splitlines()) ^ set(theirs.splitlines())
        layouts = [s for layout in (DENSE, CSR) for s in (layout.grid.threads, layout.grid.where, layout.grid.synapse)]
        assert all(any(s in line for s in layouts) for line in differ), differ
    code_only = re.sub(r"//.*", "", text)
    assert not re.search(r"\b(double|float)\b", code_only)  # the precision comes from `real` alone


def test_the_csr_source_has_its_own_file_name():
    assert code("alif").filename("cuda") == "cuda_layer_csr.cu"
    path = cuda.source_file(models.builtin("alif"), rendered("alif"), CSR)
    assert path.name == "cuda_layer_csr.cu" and path.read_text() == rendered("alif")


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH")
def test_every_csr_source_compiles_with_nvcc(tmp_path):
    # As tests/test_cuda.py does for the dense sources: one translation unit, each model in its
    # namespace with both instantiations of each kernel, one nvcc run per architecture.
    for name in MODELS:
        (tmp_path / f"{name}.cu").write_text(rendered(name))
    source = tmp_path / "all_models.cu"
    source.write_text("".join(f'namespace {name} {{\n#include "{tmp_path / name}.cu"\n'
                              f"{cuda.instantiations(kernels(name))}}}\n" for name in MODELS))

    for arch, done, out in compile_ptx(source, tmp_path):
        assert done.returncode == 0 and "warning" not in done.stderr, f"{arch}:\n{done.stderr}"
        entries = _ptx_kernels(out.read_text())
        for name in MODELS:
            mine = [m for m in entries if m.startswith(f"_ZN{len(name)}{name}")]
            assert len(mine) == 2 * len(kernels(name)), (arch, name, sorted(mine))
        for mangled, body in entries.items():
            if "IfE" in mangled:  # float kernels never promote a float to double
                assert not re.search(r"cvt(\.\w+)*\.f64\.f32|(ld|st)\.\w+\.f64", body), (
                    f"{arch}: {mangled} computes in double")


@pytest.mark.skipif(nvrtc() is None, reason="libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12)")
def test_every_csr_source_compiles_with_nvrtc_as_cupy_does():
    lib = nvrtc()
    for name in MODELS:
        names = [f"{k.name}<{t}>".encode() for k in kernels(name) for t in ("float", "double")]
        program = nvrtc_compile(lib, rendered(name).encode(), b"cuda_layer_csr.cu", names)
        for expression in names:
            lowered = ctypes.c_char_p()
            assert lib.nvrtcGetLoweredName(program, expression, ctypes.byref(lowered)) == 0, (name, expression)
            assert lowered.value
        lib.nvrtcDestroyProgram(ctypes.byref(program))


# -- running: the CUDA kernels against the NumPy reference, both sparse ---------------------------
@needs_gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sparse_products_on_cupy_equal_numpys(dtype):
    """The synaptic input and its transpose (Connectivity.matvec, rmatvec) on CuPy arrays, with
    an empty row and empty columns, which sum to zero."""
    import cupy

    rng = np.random.default_rng(0)
    mask = rng.random((7, 9)) < 0.3
    mask[2], mask[:, 4] = False, False
    synapses = Connectivity.from_mask(mask, mask.shape)
    w, x, signal = (rng.standard_normal(shape).astype(dtype) for shape in ((synapses.nnz,), (4, 9), (4, 7)))
    tolerance = 1e-15 if dtype == "float64" else 1e-6
    for product, given in ((synapses.matvec, x), (synapses.rmatvec, signal)):
        expected = product(given, w)
        got = product(cupy.asarray(given), cupy.asarray(w), cupy)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert relative_error(host(got), expected) <= tolerance, product.__name__
    assert np.all(host(synapses.matvec(cupy.asarray(x), cupy.asarray(w), cupy))[:, 2] == 0)
    assert np.all(host(synapses.rmatvec(cupy.asarray(signal), cupy.asarray(w), cupy))[:, 4] == 0)


def pair(name, backend, *, hidden=6, dtype="float64", masks=None, **options):
    """The same sparse network on NumPy (float64) and on ``backend``: a random half of each
    weight's synapses, as tests/test_sparse.py draws them (``masks``: which weights are sparse,
    by default all), driven hard enough to spike."""
    model = models.builtin(name)
    drawn = masks_for(Network(model, 6, hidden, 4, seed=2, backend="numpy", **options))
    masks = drawn if masks is None else {key: drawn[key] for key in masks}
    nets = [Network(model, 6, hidden, 4, seed=2, dtype=dtype, backend=b, connectivity=masks, **options)
            for b in ("numpy", backend)]
    for net in nets:
        for layer in net.layers:
            for key in input_weights(layer):
                net.params[key] *= 3.0 * DRIVE.get(name, 1.0)
    reference, net = nets
    for layer in net.layers:  # the layer runs the CSR kernels
        assert layer.layout is CSR and layer.code.kernels.path.name == "cuda_layer_csr.cu"
    return reference, net


def compare(name, backend, rule=eprop, loss="ce", reg=0.0, steps=25, tolerance=EXACT, **options):
    reference, net = pair(name, backend, **options)
    x, labels = batch(steps=steps)
    target = np.random.default_rng(3).standard_normal((steps, 3, 4)) if loss == "mse" else labels
    expected = rule(reference, x, target, loss=loss, reg=reg)
    got = rule(net, x, net.xp.asarray(target), loss=loss, reg=reg)
    assert_active(expected, reference)
    assert got.spikes == pytest.approx(expected.spikes, rel=EXACT)
    assert got.loss == pytest.approx(expected.loss, rel=tolerance)
    assert set(got.grads) == set(expected.grads)
    for layer in reference.layers:
        for key in input_weights(layer):  # W_in, or W_in_<input> of each input
            assert np.abs(expected.grads[key]).max() > 0, f"{key}: a zero gradient proves nothing"
    for key, value in expected.grads.items():
        mine = host(got.grads[key])
        assert mine.shape == value.shape, key
        assert relative_error(mine, value) <= tolerance, key
    return got


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MODELS)
def test_every_model_matches_numpy(name, backend):
    compare(name, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["lif", "alif", "se_adlif"])
def test_a_sequence_loss_with_a_leaky_readout_matches_numpy(name, backend):
    compare(name, backend, loss="ce_mean", kappa=0.8, recurrent=True, steps=20)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["lif", "alif", "cuba_lif"])
def test_mse_and_the_rate_regulariser_match_numpy(name, backend):
    compare(name, backend, loss="mse", reg=0.5, kappa=0.5, steps=20)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_layers_match_numpy(backend):
    compare("alif", backend, kappa=0.7, hidden=[7, 5], recurrent=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_inputs_match_numpy(backend):
    got = compare("coba_lif", backend, loss="ce_mean", kappa=0.8, recurrent=True)
    assert {"W_in_I_e", "W_in_I_i", "W_rec_I_e", "W_rec_I_i"} <= set(got.grads)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["se_adlif", "brf"])
def test_learnable_parameters_match_numpy(name, backend):
    got = compare(name, backend, kappa=0.8, recurrent=True)
    assert {p.name for p in models.builtin(name).learnable} <= set(got.grads)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dense_projection_in_a_sparse_port_matches_numpy(backend):
    """W_in sparse, W_rec and the bias dense: the port's rows hold all three."""
    got = compare("alif", backend, kappa=0.8, recurrent=True, bias=True, masks=["W_in"])
    assert host(got.grads["W_rec"]).shape == (6, 6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bptt_matches_numpy(backend):
    compare("alif", backend, bptt, kappa=0.6, recurrent=True, bias=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_matches_numpy(backend):
    got = compare("alif", backend, kappa=0.8, dtype="float32", tolerance=1e-4)
    assert host(got.grads["W_in"]).dtype == np.float32


def test_a_sparse_layer_launches_what_a_dense_one_does(monkeypatch):
    """Per step and layer: the neuron step, the fused synapse step and the presynaptic step
    (ALIF), whichever the layout; the synaptic input is the runtime's product, not a kernel."""
    x, labels = batch(steps=12)
    launched = {}
    for layout, connectivity in ((DENSE, None), (CSR, 0.5)):
        net = Network(models.builtin("alif"), 6, 6, 4, recurrent=True, kappa=0.8, seed=2, backend="cuda-host",
                      connectivity=connectivity)
        assert net.layers[0].layout is layout
        kernels = net.layers[0].code.kernels
        counts = launched[layout.name] = Counter()

        def launch(kernel, *args, kernels=kernels, counts=counts):
            counts[kernel.kind] += 1
            return type(kernels).launch(kernels, kernel, *args)

        monkeypatch.setattr(kernels, "launch", launch)
        assert_active(eprop(net, x, labels), net)
    assert launched["csr"] == launched["dense"]
    assert launched["csr"] == {"fixed_entries": 1, "neuron_step": 12, "synapse_step": 12, "presynaptic_step": 12}
