"""Failures that tests/test_fuzz.py found, each cut down to a minimal model and written out.

Every test names what broke before the fix. Models that symgrad cannot support must now be
rejected with a one-line ModelError naming the culprit; the others must run and stay exact.
"""
import pytest
import sympy as sp

from symgrad import ModelError, NeuronModel, render, spike, stop_gradient, surrogates
from symgrad.runtime import Network, eprop
from helpers import assert_eprop_equals_bptt, batch, relative_error
from test_fuzz import check_backend_equals_numpy, check_backend_runs_float32, check_cuda_compiles_with_nvrtc

v, I, alpha = sp.symbols("v I alpha")


def rejected(build, match):
    """The message of the ModelError that ``build()`` raises, checked to be one line that
    matches ``match``."""
    with pytest.raises(ModelError, match=match) as info:
        build()
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("role", ["state", "parameter", "input"])
@pytest.mark.parametrize("word", ["lambda", "for", "None"])
def test_python_keywords_are_rejected_as_names(word, role):
    # Was: the model was accepted and generate_code raised GenerationError ("invalid Python ...
    # this is a bug in symgrad"), since the generated module declared `lambda = ...`.
    k = sp.Symbol(word)
    states, params, update, output, inp = {v: 0.0}, {alpha: 0.9}, {v: alpha * v + I}, spike(v - 1), None
    if role == "state":
        states, update, output = {k: 0.0}, {k: alpha * k + I}, spike(k - 1)
    elif role == "parameter":
        params, update = {k: 0.9}, {v: k * v + I}
    else:
        update, inp = {v: alpha * v + k}, k
    message = rejected(lambda: NeuronModel("keyword", states, params, update, output, input=inp),
                       f"'{word}' is a Python keyword")
    assert "rename it" in message


@pytest.mark.parametrize("name", ["v'", "v.t", "1v"])
def test_names_that_are_not_identifiers_are_rejected(name):
    # Was: GenerationError ("invalid Python ... unterminated string literal", "invalid decimal
    # literal"): every backend declares a variable of each state's name.
    k = sp.Symbol(name)
    rejected(lambda: NeuronModel("not_identifier", {k: 0.0}, {}, {k: 0.9 * k + I}, spike(k - 1)),
             f"name {name!r} is not an identifier")


@pytest.mark.parametrize("name", ["np", "spike", "range", "exp"])
def test_a_name_the_generated_code_calls_is_rejected_when_declared(name):
    # Was: `np = p["np"]` in the generated step shadowed numpy ("'numpy.ndarray' object has no
    # attribute 'tanh'"); `spike = p["spike"]` the spike helper the next line calls; a per-neuron
    # `range` the Numba loop `for neuron in range(n)` ("Variable 'range' is not defined"). Each was
    # then refused by one backend's printer; now by symgrad.names, when the model is declared.
    k = sp.Symbol(name)
    rejected(lambda: NeuronModel("shadow", {v: 0.0}, {k: 0.8}, {v: k * v + sp.tanh(I)}, spike(v - 0.5),
                                 per_neuron=(k,)),
             f"name '{name}' is one the generated code takes from its languages and libraries")


@pytest.mark.parametrize("input_name, state_name", [("s", "v"), ("p", "v"), ("I", "p"), ("I", "s")])
def test_names_like_the_step_arguments_run_on_every_backend(input_name, state_name):
    # Was: neuron_step(s, s, p) ("duplicate argument 's'") for an input named s; for a state named
    # p, `alpha = p["alpha"]` indexed the state's array (IndexError); then both were refused. Now
    # the step's own arguments move aside (neuron_step(_s, s, _p)) and the model runs.
    k, w = sp.Symbol(input_name), sp.Symbol(state_name)
    states = {v: 0.0} if state_name == "v" else {v: 0.0, w: 0.0}
    update = {v: alpha * v + k - spike(v - 1)} | ({} if state_name == "v" else {w: 0.5 * w + 0.2 * v})
    model = NeuronModel("step_words", states, {alpha: 0.9}, update, spike(v + 0.1 * w - 1) if w in states
                        else spike(v - 1), input=k)
    x, labels = batch(steps=12, size=2, n_in=3, n_out=3)
    results = {}
    for backend in ("numpy", "numba", "cuda-host"):
        net = Network(model, 3, 4, 3, seed=1, backend=backend)
        net.params["W_in"] *= 3
        results[backend] = eprop(net, x, labels)
    assert results["numpy"].spikes[0] > 0
    for backend in ("numba", "cuda-host"):
        for key, value in results["numpy"].grads.items():
            assert relative_error(results[backend].grads[key], value) <= 1e-12, (backend, key)


def test_an_output_of_no_state_is_rejected():
    # Was: accepted; the NumPy step computed `z = spike(-1.0)`, a Python bool, and failed at
    # run time with "'bool' object has no attribute 'astype'".
    x = sp.Symbol("I_syn")
    rejected(lambda: NeuronModel("constant_output", {v: 0.0}, {}, {v: 0.5 * v}, spike(-1.0), input=x),
             r"output spike\(-1.0\) depends on no state")


def test_names_near_the_rejected_ones_still_work():
    # The checks reject exact clashes only: lambda_, np1, spike_th and p_v are ordinary names.
    lam, np1, th, p_v = sp.symbols("lambda_ np1 spike_th p_v")
    model = NeuronModel("near_misses", {lam: 0.0, p_v: 0.0}, {np1: 0.8, th: 0.6},
                        {lam: np1 * lam + I - th * spike(lam - th), p_v: 0.7 * p_v + sp.tanh(lam)},
                        spike(lam - th), learnable=(th,))
    for backend in render.BACKENDS:
        render.render(model, backend)
    net = Network(model, 3, 4, 3, recurrent=False, kappa=0.5, seed=1)
    net.params["W_in"] *= 3
    x, labels = batch(steps=10, size=2, n_in=3, n_out=3)
    assert_eprop_equals_bptt(net, x, labels, 1e-9)


def two_surrogate_families():
    """A reset through a triangle spike and a gate through a sigmoid spike of the same state."""
    return NeuronModel("two_families", {v: 0.0}, {alpha: 0.8},
                       {v: alpha * v + I - spike(v - 1) + 0.1 * spike(v - 0.5, surrogates.sigmoid(5.0))},
                       spike(v - 1))


def test_two_surrogate_families_define_one_spike_helper():
    # Was: the CUDA source defined the `spike` helper once per family, and NVRTC, nvcc and the
    # host compiler all refused it: 'function template "spike" has already been defined'.
    text = render.render(two_surrogate_families(), "cuda")
    assert text.count("real spike(const real x)") == 1
    check_cuda_compiles_with_nvrtc(two_surrogate_families())
    check_backend_equals_numpy(two_surrogate_families(), 3.0, "cuda-host")


@pytest.mark.parametrize("backend", ["numba", "cuda-host"])
def test_models_that_differ_only_in_their_initial_state_do_not_share_a_layer(backend):
    # Was: the Numba and CUDA layers were cached by their kernels' text alone, which holds no
    # initial state, so the second model ran from the first one's: 30 spikes where NumPy
    # counted 60, and W_in's e-prop gradient 1% off.
    x, labels = batch(steps=10, size=2, n_in=3, n_out=3)
    for start in (0.0, 1.0):
        model = NeuronModel("restart", {v: start}, {}, {v: I + 0.75 * v}, spike(v - 0.4))
        nets = [Network(model, 3, 4, 3, recurrent=False, kappa=0.5, seed=1, backend=b) for b in ("numpy", backend)]
        assert nets[1].layers[0].code.INITIAL == {"v": start}
        expected, got = (eprop(net, x, labels) for net in nets)
        assert got.spikes == pytest.approx(expected.spikes, rel=1e-12)
        for key in expected.grads:
            assert relative_error(got.grads[key], expected.grads[key]) <= 1e-9, key


def kinked(kink):
    """A LIF with a kink of its membrane inside stop_gradient (counted forward only)."""
    return NeuronModel("kinked", {v: 0.0}, {alpha: 0.8},
                       {v: alpha * v + I - stop_gradient(spike(v - 1)) + stop_gradient(kink) / 10},
                       spike(v - 1))


@pytest.mark.parametrize("kink", [sp.Heaviside(v), sp.Piecewise((v, v > 0), (v / 2, True))],
                         ids=["Heaviside", "Piecewise"])
def test_conditions_inside_stop_gradient_on_numba(kink):
    # Was: "Numba cannot compile its neuron_step kernel (No implementation of function
    # select ...)": the kernels printed Heaviside and Piecewise as np.select, which has no
    # scalar form in Numba.
    check_backend_equals_numpy(kinked(kink), 3.0, "numba")


def test_mod_of_a_negative_value_on_cuda():
    # Was: Mod(v, 1/2) printed as fmod(v, 1/2), which takes the sign of v where SymPy's Mod (and
    # np.mod) take the divisor's: the CUDA kernels disagreed with NumPy whenever v < 0.
    model = kinked(sp.Mod(v, sp.Rational(1, 2)) * 8)
    assert "fmod" not in render.render(model, "cuda")
    check_backend_equals_numpy(model, 3.0, "cuda-host")


@pytest.mark.parametrize("kink", [sp.Abs(v), sp.Heaviside(v)], ids=["Abs", "Heaviside"])
def test_kinks_inside_a_spike_are_rejected(kink):
    # Was: accepted, then generation failed outside ModelError: "Can't calculate derivative wrt
    # 0.706..." for Abs (its derivative for a complex symbol), "Unsupported by NumPyPrinter:
    # DiracDelta" for Heaviside. The surrogate is chained with the argument's derivative.
    w = sp.Symbol("w")
    rejected(lambda: NeuronModel("kink_in_spike", {v: 0.0, w: 0.0}, {},
                                 {v: 0.9 * v + I, w: 0.8 * w + I}, spike(v - kink.subs(v, w))),
             "inside a spike in output")


@pytest.mark.parametrize("backend", ["numba", "cuda-host"])
def test_a_model_without_parameters_in_float32(backend):
    # Was: "synapse_step: K_D_v_v is float64, expected float32": the kernels' layer took the
    # dtype of its fixed Jacobian entries from the parameter arrays, and fell back to float64
    # where a model has none.
    check_backend_runs_float32(NeuronModel("no_params", {v: 0.0}, {}, {v: 0.5 * v + I}, spike(v - 1)), 3.0, backend)


def test_the_smooth_variant_of_a_model_that_ignores_its_input():
    # Was: "declared input 'I' of model 'fuzz_smooth' is used by no update": the finite-difference
    # check rebuilt the model with inputs=(I,) named explicitly, which a model that never reads
    # its input may not declare; the variant now declares its inputs as the model did.
    from helpers import smooth_variant

    w = sp.Symbol("w")
    deaf = NeuronModel("deaf", {v: 0.9, w: 0.0}, {}, {v: 0.5 * v + 0.1, w: 0.8 * w - stop_gradient(spike(v - 1))},
                       spike(v - 1))
    assert [s.name for s in smooth_variant(deaf).inputs] == ["I"]
