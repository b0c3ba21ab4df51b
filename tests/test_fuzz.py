"""Random neuron models (tests/fuzz_models.py) through the whole of symgrad.

For every drawn model exactly one of two things holds:

* symgrad rejects it with a one-line ModelError, when the model is built or when its code is
  generated (a name that clashes with the generated code is only known there); or
* every backend's code is generated and compiles, and on a small spiking network (one layer,
  float64, inputs scaled until it fires; examples that stay silent are discarded):
  - e-prop equals BPTT to 1e-9 where e-prop is exact: one layer, no W_rec (for a model with
    several inputs every input hears the layer's input, each through its own W_in), a leaky readout
    with kappa 0 and 0.8, and a drawn loss (ce, mse per step, or ce_mean, ce_last);
  - BPTT equals central finite differences on the model's smooth variant (with W_rec);
  - with drawn masks on W_in and W_rec, the sparse network equals the dense one whose weights
    are zero where no synapse is (e-prop and BPTT, NumPy, 1e-9);
  - ``test_random_models_from_odes`` does the same for models from differential equations
    (``ode_specs``: NeuronModel.from_odes with a drawn integration method, 10 examples);
  - and, in ``test_compiled_backends_equal_numpy``, the generated CUDA compiles with NVRTC as
    CuPy compiles it, and the Numba and CUDA host-shim backends give NumPy's results, in float64
    and (the host shim for every model, Numba for those without parameters) in float32.

What a run covers. By default the examples are fixed (``derandomize``), so CI sees the same
models every time: ``test_random_models`` draws 100 models, of which symgrad accepts about 60 and
these are checked on NumPy (about 80 s on two cores), and ``test_compiled_backends_equal_numpy``
draws 20 other models, of which 13 are accepted and checked on every backend (about 80 s: Numba
and the host shim compile each model for seconds, so they see a subset; 6 of the 20 have no
parameters). Silent networks are
discarded and redrawn; --hypothesis-show-statistics prints the counts and the reasons for
rejection. The long run draws fresh models instead, as many as the environment asks:

    SYMGRAD_FUZZ_EXAMPLES=5000 SYMGRAD_FUZZ_COMPILED_EXAMPLES=200 python -m pytest -m fuzz tests/test_fuzz.py

(add --hypothesis-seed=N to repeat one). ``-m "not fuzz"`` leaves the whole suite out.
Every failure Hypothesis shrinks goes to tests/test_fuzz_regressions.py, written out.
"""
from __future__ import annotations

import ctypes
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from symgrad import ModelError, NeuronModel, render
from symgrad.model import NON_DIFFERENTIABLE
from symgrad.runtime import Network, bptt, eprop
from fuzz_models import model_specs, ode_specs
from helpers import (finite_difference_check, input_weights, nvrtc, nvrtc_compile, relative_error,
                     smooth_variant)

pytestmark = pytest.mark.fuzz

LONG_RUN = "SYMGRAD_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("SYMGRAD_FUZZ_EXAMPLES", 100))
COMPILED_EXAMPLES = int(os.environ.get("SYMGRAD_FUZZ_COMPILED_EXAMPLES", 20))
ODE_EXAMPLES = int(os.environ.get("SYMGRAD_FUZZ_ODE_EXAMPLES", 10))
SCALES = (1.0, 3.0, 10.0, 30.0)  # input weight scales tried until the network fires
N_IN, HIDDEN, N_OUT, STEPS, BATCH = 3, 4, 3, 12, 2


def fuzz_settings(examples: int):
    return settings(max_examples=examples, derandomize=not LONG_RUN, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


# -- building ---------------------------------------------------------------------------------
def accepted(spec: dict, build=NeuronModel) -> NeuronModel | None:
    """The model ``build(**spec)`` with its code generated for every backend, or None when
    symgrad rejects it (with a one-line ModelError, which this asserts)."""
    try:
        model = build(**spec)
        render.generate_code(model)  # every backend; the Python ones are compiled on the way
    except ModelError as err:
        assert "\n" not in str(err), f"a ModelError of several lines: {err}"
        event("rejected: " + str(err).removeprefix(f"model {spec['name']!r}: ")[:50])
        return None
    return model


def inputs():
    """Input spikes at 30% and class labels, the same for every model."""
    rng = np.random.default_rng(1)
    x = (rng.random((STEPS, BATCH, N_IN)) < 0.3).astype(float)
    return x, rng.integers(0, N_OUT, BATCH)


def network(model, scale, backend="numpy", recurrent=False, kappa=0.0, dtype="float64"):
    """One layer of ``model`` with its input weights scaled by ``scale`` (a model that ignores
    its input is expected here: its warning is not news)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "model .* reaches no state")
        net = Network(model, N_IN, HIDDEN, N_OUT, recurrent=recurrent, kappa=kappa, seed=2, backend=backend,
                      dtype=dtype)
    for layer in net.layers:
        for name in input_weights(layer):
            net.params[name] *= scale
    return net


def firing_scale(model) -> float:
    """The smallest input scale at which the network spikes (but not all the time); the
    example is discarded when none does."""
    x, _ = inputs()
    for scale in SCALES:
        with np.errstate(all="ignore"):
            readout, spikes = network(model, scale).forward(x)
        if not np.all(np.isfinite(readout)):
            break
        if 0 < spikes[0].mean() < 0.9:
            return scale
    assume(False)


def has_kinks(model) -> bool:
    """Whether the model uses a kink (inside stop_gradient): its smooth variant would not."""
    exprs = list(model.update.values()) + [model.output]
    return any(e.atoms(*NON_DIFFERENTIABLE) for e in exprs)


# -- the checks -------------------------------------------------------------------------------
def check_eprop_equals_bptt(model, scale, kappa, loss):
    """Where e-prop is exact (one layer, no W_rec), it equals BPTT to 1e-9."""
    net = network(model, scale, kappa=kappa)
    x, labels = inputs()
    target = np.random.default_rng(3).standard_normal((STEPS, BATCH, N_OUT)) if loss == "mse" else labels
    fast, reference = eprop(net, x, target, loss=loss), bptt(net, x, target, loss=loss)
    assert fast.spikes[0] > 0, "the network is silent: this test would prove nothing"
    assert fast.loss == pytest.approx(reference.loss, rel=1e-12)
    assert set(fast.grads) == set(reference.grads) == set(net.params)
    if len(model.inputs) > 1:
        event("several synaptic inputs")
    for name in input_weights(net.layers[0]):
        if not np.any(reference.grads[name]):
            event("an input weight gets a zero gradient")
    for key, value in reference.grads.items():
        assert relative_error(fast.grads[key], value) <= 1e-9, key


def check_sparse_equals_masked(model, scale, mask_seed, density):
    """A sparse network (random masks on W_in and W_rec, every row keeping a synapse) against the
    dense one with its weights zero where no synapse is, e-prop and BPTT, on NumPy."""
    dense = network(model, scale, recurrent=True, kappa=0.8)
    rng = np.random.default_rng(mask_seed)
    masks = {}
    for key in ("W_in", "W_rec"):
        if key in dense.params:
            mask = rng.random(dense.params[key].shape) < density
            mask[np.arange(HIDDEN), rng.integers(0, mask.shape[1], HIDDEN)] = True
            masks[key] = mask
    if not masks:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "model .* reaches no state")
        sparse = Network(model, N_IN, HIDDEN, N_OUT, recurrent=True, kappa=0.8, seed=2, backend="numpy",
                         dtype="float64", connectivity=masks)
    sparse.set_params(dense.params)  # a sparse weight takes the dense values at its synapses
    dense.set_params({key: sparse.dense(key) for key in sparse.params})
    x, labels = inputs()
    for rule in (eprop, bptt):
        got, expected = rule(sparse, x, labels), rule(dense, x, labels)
        assert got.loss == pytest.approx(expected.loss, rel=1e-12), rule.__name__
        for key, value in expected.grads.items():
            value = sparse.connectivity[key].gather(value) if key in sparse.connectivity else value
            assert relative_error(got.grads[key], value) <= 1e-9, (rule.__name__, key)
    if got.spikes[0] == 0:
        event("the sparse network is silent")


def check_bptt_equals_finite_differences(model, scale, points=2):
    """BPTT on the smooth variant (with W_rec) against central differences of its loss, at
    ``points`` entries of every parameter."""
    net = network(smooth_variant(model), scale, recurrent=True, kappa=0.6)
    x, labels = inputs()
    finite_difference_check(net, x, labels, points=points)


def check_backend_equals_numpy(model, scale, backend):
    """e-prop (filtered and not, with W_rec and without) and BPTT on ``backend`` against NumPy.
    Each runs twice on the same network: on Numba the second pass, where filtered or BPTT, is the
    whole pass compiled (runtime/fused.py, fused_bptt.py; the first is the Python loop)."""
    x, labels = inputs()
    for rule, kappa, recurrent in ((eprop, 0.8, True), (bptt, 0.6, True), (eprop, 0.0, False)):
        expected = rule(network(model, scale, recurrent=recurrent, kappa=kappa), x, labels)
        assert expected.spikes[0] > 0, "the network is silent: this test would prove nothing"
        net = network(model, scale, backend, recurrent=recurrent, kappa=kappa)
        whole = backend == "numba" and kappa > 0  # a driver compiles for seconds: two of the three
        for got in (rule(net, x, labels), rule(net, x, labels, whole_pass=whole)):
            assert got.spikes == pytest.approx(expected.spikes, rel=1e-12), (backend, rule.__name__)
            assert got.loss == pytest.approx(expected.loss, rel=1e-9), (backend, rule.__name__)
            assert set(got.grads) == set(expected.grads)
            for key, value in expected.grads.items():
                assert relative_error(got.grads[key], value) <= 1e-9, (backend, rule.__name__, key)


def check_backend_runs_float32(model, scale, backend):
    """e-prop and BPTT in float32 on ``backend`` against NumPy in float32: the kernels are typed,
    and every array they are given (the fixed Jacobian entries of a model without parameters
    too) must be float32. Float32 rounding differs between the two, so the bound is float32's."""
    x, labels = inputs()
    for rule, kappa in ((eprop, 0.8), (bptt, 0.6)):
        expected = rule(network(model, scale, recurrent=True, kappa=kappa, dtype="float32"), x, labels)
        assert expected.spikes[0] > 0, "the network is silent: this test would prove nothing"
        got = rule(network(model, scale, backend, recurrent=True, kappa=kappa, dtype="float32"), x, labels)
        assert got.spikes == expected.spikes, (backend, rule.__name__)
        assert got.loss == pytest.approx(expected.loss, rel=1e-4), (backend, rule.__name__)
        for key, value in expected.grads.items():
            assert got.grads[key].dtype == np.float32, (backend, rule.__name__, key)
            assert relative_error(got.grads[key].astype(float), value.astype(float)) <= 1e-3, (
                backend, rule.__name__, key)


def check_cuda_compiles_with_nvrtc(model) -> bool:
    """The generated .cu, with every kernel in float and double, compiles as CuPy compiles it;
    False where NVRTC is not found."""
    lib = nvrtc()
    if lib is None:
        return False
    code = render.generate_code(model, backends=("cuda",))
    names = [kernel.name.encode() + b"<" + real + b">" for kernel in code.kernels if not kernel.cpu_only
             for real in (b"float", b"double")]
    program = nvrtc_compile(lib, code.texts["cuda"].encode(), b"fuzz.cu", names)
    lib.nvrtcDestroyProgram(ctypes.byref(program))
    return True


# -- the properties ---------------------------------------------------------------------------
@fuzz_settings(EXAMPLES)
@given(spec=model_specs(), loss=st.sampled_from(["ce", "ce_mean", "ce_last", "mse"]),
       mask_seed=st.integers(0, 2**16), density=st.sampled_from([0.2, 0.5]))
def test_random_models(spec, loss, mask_seed, density):
    model = accepted(spec)
    scale = check_gradients(model, loss)
    if model is not None:
        check_sparse_equals_masked(model, scale, mask_seed, density)


@fuzz_settings(ODE_EXAMPLES)
@given(spec=ode_specs(), loss=st.sampled_from(["ce", "mse"]))
def test_random_models_from_odes(spec, loss):
    """Models from differential equations, by every method: refused in one line, or exact."""
    event(f"method {spec['method']}")
    check_gradients(accepted(spec, NeuronModel.from_odes), loss)


def check_gradients(model, loss):
    """e-prop equals BPTT where exact, and BPTT finite differences, for an accepted model;
    returns the input scale it fires at."""
    if model is None:
        return None
    scale = firing_scale(model)
    for kappa in (0.0, 0.8):
        check_eprop_equals_bptt(model, scale, kappa, loss)
    if has_kinks(model):
        event("kinks inside stop_gradient: no smooth variant")
    else:
        check_bptt_equals_finite_differences(model, scale)
    return scale


@fuzz_settings(COMPILED_EXAMPLES)
@given(spec=model_specs())
def test_compiled_backends_equal_numpy(spec):
    model = accepted(spec)
    if model is None:
        return
    scale = firing_scale(model)
    if not check_cuda_compiles_with_nvrtc(model):
        event("NVRTC not found: the .cu was compiled for the host only")
    if not model.params:
        event("no parameters")
    for backend in ("numba", "cuda-host"):
        check_backend_equals_numpy(model, scale, backend)
        # float32 too: on the host shim for every model (its library holds both precisions), on
        # Numba (which compiles each precision anew, for seconds) for the models without parameters
        if backend == "cuda-host" or not model.params:
            check_backend_runs_float32(model, scale, backend)
