"""Neuron models from differential equations (symgrad.odes.from_odes).

* ``exact`` gives the closed forms (checked symbolically against hand-derived ones), the other
  methods the steps written by hand here;
* spikes fall on the steps of Brian2's order (integrate, threshold, reset), checked against a
  loop written that way;
* e-prop equals BPTT where it is exact, BPTT equals finite differences on smooth variants
  (a learnable time constant included), and Numba equals NumPy, on active networks;
* every refusal is one line naming the term or setting; ``symgrad inspect`` shows the ODEs.
"""
import json
import math

import numpy as np
import pytest
import sympy as sp

from symgrad import NeuronModel
from symgrad import nir as snir
from symgrad.model import ModelError, stop_gradient
from symgrad.runtime import bptt, eprop
from symgrad.surrogates import Pseudo, Spike
from helpers import (assert_active, assert_eprop_equals_bptt, batch, finite_difference_check, network,
                     relative_error, smooth_variant)

v, w, i, I = sp.symbols("v w i I")
tau, tau_m, tau_s, tau_w, R, dt = sp.symbols("tau tau_m tau_s tau_w R dt")
v_th, v_r, v_rest, v_T, delta, a, b = sp.symbols("v_th v_r v_rest v_T Delta_T a b")
DT = 1e-3


def lif(method="exact", **options):
    """dv/dt = (v_rest - v + R I) / tau, reset to v_r; tau learnable."""
    declaration = dict(name=f"lif_{method}", states={v: 0.0},
                       params={tau: 20e-3, R: 20.0, v_rest: 0.0, v_th: 1.0, v_r: 0.0},
                       odes={v: (v_rest - v + R * I) / tau}, dt=DT, method=method, threshold=v > v_th,
                       reset={v: v_r}, learnable=(tau,))
    return NeuronModel.from_odes(**{**declaration, **options})


def cuba(**options):
    """Current-based synapse: dv/dt = (R i - v) / tau_m, di/dt = -i / tau_s, i += I each step."""
    declaration = dict(name="cuba_exact", states={v: 0.0, i: 0.0},
                       params={tau_m: 20e-3, tau_s: 5e-3, R: 4.0, v_th: 1.0, v_r: 0.0},
                       odes={v: (R * i - v) / tau_m, i: -i / tau_s}, jumps={i: I}, dt=DT, threshold=v > v_th,
                       reset={v: v_r}, learnable=(tau_m, tau_s))
    return NeuronModel.from_odes(**{**declaration, **options})


def adex(method="euler"):
    """Adaptive exponential integrate-and-fire (in units of the threshold); tau_m learnable."""
    return NeuronModel.from_odes(
        name=f"adex_{method}", states={v: 0.0, w: 0.0},
        params={tau_m: 10e-3, tau_w: 50e-3, v_th: 1.0, v_r: 0.0, v_T: 0.8, delta: 0.1, a: 0.5, b: 0.2},
        odes={v: (-v + delta * sp.exp((v - v_T) / delta) - w) / tau_m, w: (a * v - w) / tau_w}, jumps={v: I},
        dt=DT, method=method, threshold=v > v_th, reset={v: v_r, w: w + b}, learnable=(tau_m,))


def forward(expr):
    """The forward pass of an update: spikes as steps, stop_gradient dropped."""
    return expr.replace(lambda e: isinstance(e, Spike), lambda e: sp.Piecewise((1, e.args[0] > 0), (0, True))) \
        .replace(lambda e: isinstance(e, stop_gradient), lambda e: e.args[0])


def same(a, b):
    return sp.simplify(a - b) == 0


# -- the derived maps -------------------------------------------------------------------------
def test_exact_lif_decays_by_exp_of_minus_dt_over_tau():
    model = lif(threshold=v > v_th, reset=None, dt=dt, params={tau: 20e-3, R: 1.5, v_rest: 0.0, v_th: 1.0, dt: DT})
    alpha = sp.exp(-dt / tau)
    assert sp.diff(model.update[v], v) == alpha
    assert same(model.update[v], alpha * v + (1 - alpha) * (v_rest + R * I))
    # a learnable tau is trained through the exact derivative of exp(-dt/tau)
    assert same(sp.diff(model.update[v], tau), (v - v_rest - R * I) * alpha * dt / tau**2)


def test_exact_current_based_neuron_is_the_closed_form():
    model = cuba(reset=None)
    h = sp.Float(DT)
    decay_m, decay_s = sp.exp(-h / tau_m), sp.exp(-h / tau_s)
    # by hand: v(t) = (v0 - A i0) e^{-t/tau_m} + A i0 e^{-t/tau_s}, A = R tau_s / (tau_s - tau_m)
    coupling = R * tau_s / (tau_s - tau_m) * (decay_s - decay_m)
    assert same(model.update[v], v * decay_m + coupling * i)
    assert same(model.update[i], i * decay_s + I)
    # the input inside the ODE, held over the step: what it adds to v is what keeps the fixed
    # point v = R I, i = I where it is
    held = cuba(odes={v: (R * i - v) / tau_m, i: (I - i) / tau_s}, jumps=None, reset=None)
    assert same(held.update[i], i * decay_s + I * (1 - decay_s))
    assert same(held.update[v], v * decay_m + coupling * i + R * I * (1 - decay_m - coupling / R))
    assert same(held.update[v].subs({v: R * I, i: I}), R * I)


def fhn():
    """A nonlinear two-state system (FitzHugh-Nagumo-like) for the explicit methods."""
    return {v: I - v * w, w: v - w**3 / 3}


def by_hand(method, x, h, current):
    """One step of ``method`` on fhn() written out with floats."""
    def f(state):
        return np.array([current - state[0] * state[1], state[0] - state[1] ** 3 / 3])
    x = np.array(x)
    if method in ("euler", "heun"):  # Brian2's heun: the stochastic Heun, whose drift is Euler's
        return x + h * f(x)
    if method == "rk2":
        return x + h * f(x + h * f(x) / 2)
    if method == "rk4":
        k1 = h * f(x)
        k2 = h * f(x + k1 / 2)
        k3 = h * f(x + k2 / 2)
        k4 = h * f(x + k3)
        return x + (k1 + 2 * k2 + 2 * k3 + k4) / 6
    assert method == "sequential_euler"
    v1 = x[0] + h * f(x)[0]
    return np.array([v1, x[1] + h * f([v1, x[1]])[1]])


@pytest.mark.parametrize("method", ["euler", "rk2", "rk4", "heun", "sequential_euler"])
def test_explicit_methods_take_the_step_computed_by_hand(method):
    model = NeuronModel.from_odes(name="fhn", states={v: 0.0, w: 0.0}, params={v_th: 1.0}, odes=fhn(),
                                  dt=0.1, method=method, threshold=v > v_th)
    point = {v: 0.3, w: -0.7, I: 0.5}
    got = [float(model.update[x].subs(point)) for x in (v, w)]
    expected = by_hand(method, [0.3, -0.7], 0.1, 0.5)
    assert np.abs(np.array(got) - expected).max() <= 1e-12
    assert np.abs(expected - by_hand("rk4" if method != "rk4" else "euler", [0.3, -0.7], 0.1, 0.5)).max() > 1e-6


def test_exponential_euler_solves_each_state_linear_in_itself():
    # Brian2's example: dv/dt = (-v + w^2)/tau, dw/dt = -w/tau; and a state with no self-term
    model = NeuronModel.from_odes(name="cond", states={v: 0.0, w: 0.0, i: 0.0}, params={tau: 0.02, v_th: 1.0},
                                  odes={v: (-v + w**2) / tau, w: -w / tau, i: v - w}, dt=DT,
                                  method="exponential_euler", threshold=v > v_th)
    decay = sp.exp(-sp.Float(DT) / tau)
    assert same(model.update[v], (v - w**2) * decay + w**2)
    assert same(model.update[w], w * decay)
    assert same(model.update[i], i + sp.Float(DT) * (v - w))


def test_spikes_fall_on_brian2s_steps():
    """Brian2 integrates, tests the threshold and resets within a step; the model's state is the
    value before the reset. The same spike steps, and the same membrane where none is reset."""
    rng = np.random.default_rng(0)
    for model, reference, scale in ((lif(), _lif_loop, 0.08), (adex("euler"), _adex_loop, 0.1)):
        current = scale * (0.8 + rng.random(300))
        step = sp.lambdify([*model.states, I], [forward(model.update[x]).subs(model.params) for x in model.states])
        states, spikes, stored = np.zeros(len(model.states)), [], []
        for t, value in enumerate(current):
            states = np.array(step(*states, value), dtype=float)
            stored.append(states[0])
            if states[0] > 1.0:
                spikes.append(t)
        expected_spikes, membrane = reference(current)
        assert len(spikes) > 5, model.name
        assert spikes == expected_spikes, model.name
        unreset = np.setdiff1d(np.arange(len(current)), spikes)
        assert np.abs(np.array(stored)[unreset] - np.array(membrane)[unreset]).max() <= 1e-12, model.name


def _lif_loop(current):
    """Brian2's order for lif(): the exact step, then threshold, then reset (after recording)."""
    v, spikes, membrane = 0.0, [], []
    for t, value in enumerate(current):
        v = 20.0 * value + (v - 20.0 * value) * math.exp(-DT / 20e-3)
        membrane.append(v)
        if v > 1.0:
            spikes.append(t)
            v = 0.0
    return spikes, membrane


def _adex_loop(current):
    """Brian2's order for adex("euler"): both states by Euler from the old values, the jump,
    then threshold and reset (v = v_r; w += b)."""
    v, w, spikes, membrane = 0.0, 0.0, [], []
    for t, value in enumerate(current):
        v, w = (v + DT * (-v + 0.1 * math.exp((v - 0.8) / 0.1) - w) / 10e-3 + value,
                w + DT * (0.5 * v - w) / 50e-3)
        membrane.append(v)
        if v > 1.0:
            spikes.append(t)
            v, w = 0.0, w + 0.2
    return spikes, membrane


def test_the_reset_is_differentiated_only_on_request():
    def surrogate_terms(model):
        return [e for e in sp.preorder_traversal(sp.diff(model.update[v], v)) if isinstance(e, Pseudo)]
    assert not surrogate_terms(lif())  # the spike that resets is in stop_gradient
    assert surrogate_terms(lif(reset_gradient=True))  # differentiated through its surrogate
    assert forward(lif().update[v]) == forward(lif(reset_gradient=True).update[v])


# -- gradients and backends --------------------------------------------------------------------
ODE_MODELS = {"lif_exact": lif, "cuba_exact": cuba, "adex_euler": adex, "adex_rk2": lambda: adex("rk2")}


@pytest.mark.parametrize("kappa", [0.0, 0.8])
@pytest.mark.parametrize("name", ["lif_exact", "cuba_exact", "adex_euler"])
def test_eprop_equals_bptt_for_models_from_odes(name, kappa):
    model = ODE_MODELS[name]()
    fast, reference = assert_eprop_equals_bptt(network(name, model=model, kappa=kappa), *batch(), 1e-6)
    assert fast.loss == pytest.approx(reference.loss, rel=1e-12)
    assert {p.name for p in model.learnable} <= set(reference.grads)  # the time constants too


@pytest.mark.parametrize("name", ["lif_exact", "cuba_exact", "adex_euler", "adex_rk2"])
def test_bptt_equals_finite_differences_on_smooth_ode_models(name):
    model = ODE_MODELS[name]()
    options = dict(recurrent=True, kappa=0.6, hidden=4, n_in=3, n_out=3)
    x, labels = batch(steps=12, size=2, n_in=3, n_out=3)
    spiking = network(name, model=model, **options)
    assert_active(bptt(spiking, x, labels), spiking)
    net = network(name, model=smooth_variant(model), **options)
    reference = finite_difference_check(net, x, labels)
    learnable = model.learnable[0].name
    assert np.abs(reference.grads[learnable]).max() > 0, learnable


def test_numba_equals_numpy_for_a_model_from_odes():
    """One model: compiling a fresh model's kernels takes Numba most of this file's time."""
    pytest.importorskip("numba")
    from symgrad.runtime.kernel_layer import KernelLayer

    model = lif()
    nets = [network(model.name, model=model, recurrent=True, kappa=0.7, backend=backend)
            for backend in ("numpy", "numba")]
    assert isinstance(nets[1].layers[0].code, KernelLayer)  # compiled, not NumPy's fallback
    x, labels = batch()
    for rule in (eprop, bptt):
        expected, got = (rule(net, x, labels) for net in nets)
        assert_active(expected, nets[0])
        assert got.spikes == expected.spikes
        for key, value in expected.grads.items():
            assert relative_error(got.grads[key], value) <= 1e-12, key


# -- NIR goes through from_odes ----------------------------------------------------------------
def test_nir_neurons_are_derived_from_their_odes():
    euler = snir.neuron("CubaLIF")
    assert euler.origin.method == "sequential_euler"  # the current first, as snnTorch has it
    exact = snir.neuron("LIF", method="exact")
    dt_, tau_ = (next(p for p in exact.params if p.name == name) for name in ("dt", "tau"))
    membrane = next(iter(exact.states))
    between_spikes = exact.update[membrane].replace(lambda e: isinstance(e, stop_gradient), lambda e: sp.S.Zero)
    assert sp.diff(between_spikes, membrane) == sp.exp(-dt_ / tau_)
    assert exact.name == "nir_lif_exact" and snir.kind_of(exact) is None  # not NIR's Euler node


# -- refusals --------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    (dict(odes={v: (-v + delta * sp.exp((v - v_T) / delta) + I) / tau}),
     r"method 'exact' needs equations linear in the states: dv/dt has the nonlinear term exp\(\(v - v_T\)/Delta_T\)"),
    (dict(odes={v: (-v * w + I) / tau, w: -w / tau}, states={v: 0.0, w: 0.0}),
     r"dv/dt has the nonlinear term v\*w"),
    (dict(odes={v: -v**2 / tau + I}, method="exponential_euler"),
     r"'exponential_euler' needs each equation linear in its own state: dv/dt has the term v\*\*2"),
    (dict(method="rk45"), r"unknown integration method 'rk45' for model 'm'; one of exact, "),
    (dict(states={v: 0.0, w: 0.0}), r"state w of model 'm' has no ODE and no jump"),
    (dict(odes={w: -w / tau}), r"ODE for w in model 'm', which is not a declared state"),
    (dict(reset={w: 0.0}), r"reset for w in model 'm', which is not a declared state"),
    (dict(odes={v: -v / tau + sp.Symbol("x")}), r"undeclared symbol 'x' in dv/dt of model 'm'"),
    (dict(threshold=v >= v_th), r"threshold v >= v_th: a spike is a strict comparison"),
    (dict(threshold=sp.Eq(v, v_th)), r"threshold Eq\(v, v_th\): give one comparison such as v > v_th"),
    (dict(threshold=None), r"model 'm' has a reset but no threshold"),
    (dict(dt=-1.0), r"dt of model 'm' is -1.0: a positive number or a declared parameter"),
    (dict(dt=tau_m), r"dt of model 'm' is tau_m: a positive number or a declared parameter"),
    (dict(states={"v": 0.0}), r"state 'v' of model 'm' is not a SymPy symbol"),
])
def test_refusals_are_one_line_naming_the_term(change, message):
    declaration = dict(name="m", states={v: 0.0}, params={tau: 0.02, v_th: 1.0, v_T: 0.8, delta: 0.1},
                       odes={v: (I - v) / tau}, dt=DT, threshold=v > v_th, reset={v: 0.0})
    with pytest.raises(ModelError, match=message) as caught:
        NeuronModel.from_odes(**{**declaration, **change})
    assert "\n" not in str(caught.value)


# -- the command line --------------------------------------------------------------------------
MODEL_FILE = '''
import sympy as sp
from symgrad import NeuronModel

v, I = sp.symbols("v I")
tau, v_th, v_r = sp.symbols("tau v_th v_r")
model = NeuronModel.from_odes(
    name="lif_ode", states={v: 0.0}, params={tau: 20e-3, v_th: 1.0, v_r: 0.0},
    odes={v: OOODE}, jumps={v: I}, dt=1e-3, method="exact", threshold=v > v_th, reset={v: v_r},
    learnable=(tau,))
'''


def test_inspect_shows_the_odes_and_method_before_the_map_and_jacobians(symgrad, tmp_path):
    (tmp_path / "lif_ode.py").write_text(MODEL_FILE.replace("OOODE", "-v / tau"))
    result = symgrad("inspect", "lif_ode.py")
    assert result.code == 0, result.err
    out = result.out
    places = [out.index(text) for text in ("differential equations, integrated by exact over dt = 0.001:",
                                           "  dv/dt = -v/tau", "  threshold: v > v_th",
                                           "  reset on a spike: v = v_r", "  after each step: v += I",
                                           "equations (the map derived from them):",
                                           "exp(-0.001/tau)", "Jacobians")]
    assert places == sorted(places)
    shown = json.loads(symgrad("inspect", "lif_ode.py", "--json").out)
    assert shown["derived_from"]["odes"] == {"v": "-v/tau"} and shown["derived_from"]["method"] == "exact"


def test_a_model_file_exact_cannot_integrate_is_one_line(symgrad, tmp_path):
    (tmp_path / "bad.py").write_text(MODEL_FILE.replace("OOODE", "-v**2 / tau"))
    result = symgrad("inspect", "bad.py")
    assert result.code == 1
    assert result.err.startswith("symgrad: error: ") and result.err.count("\n") == 1
    assert "dv/dt has the nonlinear term v**2" in result.err and "Traceback" not in result.err
