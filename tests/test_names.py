"""One owner for every generated name (symgrad.names): models whose names used to collide in the
generated code are right on every backend, and a name that cannot be used is refused when the
model is declared, in one line.

* a state named I beside an input x (the NumPy printer named the input's adjoint g_I, which was
  also the state's: BPTT was 208% off, silently);
* learnable a, a_b with states b_c, c (both parameter traces were a_b_c: rendering failed);
* names the generated code declares itself (n, z, size, bi, real, s, p, ...) as model names;
* a one-input model's parameter named like its per-input names (current, settle, ...: the fuzz
  suite's ODE model with a parameter ``current`` was refused as a bug in symgrad);
* names that cannot be used: leading or double underscores, C++ keywords, library names.
"""
import numpy as np
import pytest
import sympy as sp

from helpers import batch, finite_difference_check, relative_error
from symgrad import NeuronModel, render, spike
from symgrad.analysis import Analysis
from symgrad.model import ModelError
from symgrad.names import KERNEL_WORDS, MODEL_WORDS, Names
from symgrad.runtime import Network, bptt, eprop

BACKENDS = ["numpy", "numba", "cuda-host"]


def state_named_like_the_input() -> NeuronModel:
    """The issue's first model: its input x, its state I."""
    I, v, x, a, b = sp.symbols("I v x a b")
    return NeuronModel("state_I", {I: 0.0, v: 0.0}, {a: 0.8, b: 0.7},
                       {I: a * I + 0.5 * x, v: b * v + 0.5 * sp.tanh(I)}, sp.tanh(v), input=x)


def concatenations_that_collide() -> NeuronModel:
    """The issue's second model: parameter traces a + b_c and a_b + c."""
    b_c, c, a, a_b = sp.symbols("b_c c a a_b")
    I = sp.Symbol("I")
    return NeuronModel("collide", {b_c: 0.0, c: 0.0}, {a: 0.7, a_b: 0.6},
                       {b_c: a * b_c + 0.4 * sp.tanh(I), c: a_b * c + 0.3 * sp.tanh(b_c) + 0.2 * I},
                       sp.tanh(c + b_c), learnable=(a, a_b))


def smooth_net(model, backend="numpy", **kwargs):
    net = Network(model, 3, 4, 3, recurrent=True, kappa=0.6, seed=4, backend=backend, **kwargs)
    for key in ("W_in", "W_rec"):
        net.params[key] *= 2.0
    return net


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_state_named_like_an_input_gets_the_gradient_of_finite_differences(backend):
    x, labels = batch(steps=10, size=2, n_in=3, n_out=3)
    net = smooth_net(state_named_like_the_input(), backend)
    result = finite_difference_check(net, x, labels)
    assert np.abs(result.grads["W_in"]).max() > 1e-6


def test_the_input_adjoint_and_the_state_adjoint_are_two_names():
    text = render.render(state_named_like_the_input())
    assert 'return {"I": g_I, "v": g_v}, {"x": g_x}' in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameter_traces_whose_names_would_collide_are_two_traces(backend):
    model = concatenations_that_collide()
    names = Names(model)
    from symgrad.names import PARAM_TRACE_ARG
    assert names.of(PARAM_TRACE_ARG, "a", "b_c") != names.of(PARAM_TRACE_ARG, "a_b", "c")
    x, labels = batch(steps=10, size=2, n_in=3, n_out=3)
    net = smooth_net(model, backend)
    result = finite_difference_check(net, x, labels)
    assert np.abs(result.grads["a"]).max() > 1e-6 and np.abs(result.grads["a_b"]).max() > 1e-6
    # e-prop's parameter traces are the model's own: equal to BPTT without recurrence
    feedforward = Network(model, 3, 4, 3, recurrent=False, seed=4, backend=backend)
    forward, exact = eprop(feedforward, x, labels), bptt(feedforward, x, labels)
    for key in ("a", "a_b"):
        assert relative_error(forward.grads[key], exact.grads[key]) <= 1e-10, key


def test_names_the_generated_code_uses_itself_are_fine_as_model_names():
    """A model naming its states and parameters like the neuron step's own words runs on every
    backend, equal to NumPy: the words move aside (``_n``), the model's names stay verbatim."""
    n, z, size, bi, real, s, p, neuron, out_z = sp.symbols("n z size bi real s p neuron out_z")
    I = sp.Symbol("I")
    model = NeuronModel(
        "words", {n: 0.0, z: 0.0}, {size: 0.8, bi: 0.3, real: 0.6, s: 1.0, p: 0.2, neuron: 1.2, out_z: 0.5},
        {n: size * n + neuron * I + bi * z - real * spike(n - s), z: out_z * z + p * spike(n - s)},
        spike(n - s), per_neuron=(neuron,))
    table = Names(model)
    assert all(table.word(word) == ("_" + word if word in {"n", "z", "size", "bi", "real", "s", "p", "neuron",
                                                            "out_z"} else word) for word in MODEL_WORDS)
    x, labels = batch(steps=15, size=2)
    results = {b: eprop(Network(model, 6, 5, 4, seed=2, backend=b), x * 3, labels) for b in BACKENDS}
    assert results["numpy"].spikes[0] > 0, "the network is silent: this proves nothing"
    for backend in BACKENDS[1:]:
        for key, value in results["numpy"].grads.items():
            assert relative_error(results[backend].grads[key], value) <= 1e-12, (backend, key)


def test_a_one_input_models_names_for_its_input_are_fine_as_model_names():
    """``current`` (the neuron step's argument for the input) and the per-input kernels' names
    (``settle``, ``synapse_step``, ``Traces``, ...) as a one-input model's parameters and state:
    they move aside (``_current``), and every backend equals NumPy."""
    current, settle, synapse_step, Traces, active_rows = sp.symbols("current settle synapse_step Traces active_rows")
    I = sp.Symbol("I")
    model = NeuronModel(
        "per_input_words", {current: 0.0, Traces: 0.0}, {settle: 0.8, synapse_step: 0.5, active_rows: 0.7},
        {current: settle * current + I - spike(current - 1.0),
         Traces: active_rows * Traces + synapse_step * spike(current - 1.0)},
        spike(current + 0.2 * Traces - 1.0))
    table = Names(model)
    assert table.per_input("settle", "I") == "_settle" and table.per_input("Traces", "I") == "_Traces"
    x, labels = batch(steps=15, size=2)
    results = {b: eprop(Network(model, 6, 5, 4, seed=2, backend=b), x * 3, labels) for b in BACKENDS}
    assert results["numpy"].spikes[0] > 0, "the network is silent: this proves nothing"
    for backend in BACKENDS[1:]:
        for key, value in results["numpy"].grads.items():
            assert relative_error(results[backend].grads[key], value) <= 1e-12, (backend, key)


@pytest.mark.parametrize("name, why", [
    ("_v", "underscore"), ("v__1", "double one"), ("new", "C\\+\\+ keyword"), ("threadIdx", "keyword"),
    ("np", "languages and libraries"), ("exp", "languages and libraries"), ("spike", "languages"),
    ("triangle_psi", "languages"), ("range", "languages"),
])
def test_a_name_that_cannot_be_used_is_refused_when_the_model_is_declared(name, why):
    symbol, I = sp.Symbol(name), sp.Symbol("I")
    with pytest.raises(ModelError, match=why) as raised:
        NeuronModel("refused", {symbol: 0.0}, {}, {symbol: 0.5 * symbol + I}, sp.tanh(symbol))
    assert "\n" not in str(raised.value) and repr(name) in str(raised.value)


def test_every_generated_identifier_of_a_model_is_allocated_once():
    """Models built to collide: the table gives every (family, parts) its own spelling, and the
    readable one wherever it is unique."""
    b_c, c, a, a_b, eps_c = sp.symbols("b_c c a a_b eps_c")
    I = sp.Symbol("I")
    model = NeuronModel("tricky", {b_c: 0.0, c: 0.0, eps_c: 0.0}, {a: 0.7, a_b: 0.6},
                        {b_c: a * b_c + I, c: a_b * c + b_c, eps_c: 0.5 * eps_c + c}, sp.tanh(c), learnable=(a, a_b))
    names = Names(model)
    spelled = list(names._spelled.values())
    assert len(spelled) == len(set(spelled))
    assert not set(spelled) & (names.user | KERNEL_WORDS)
    from symgrad.names import TRACE
    assert names.of(TRACE, "b_c") == "eps_b_c"  # readable where unique
    assert names.of(TRACE, "c") == "eps__c"  # eps_c is the model's own state
    Analysis(model)  # and the rest of the pipeline takes them
    render.generate_code(model)
