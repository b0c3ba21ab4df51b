"""symgrad.brian2: Brian2's equation strings in, checked against Brian2's own simulation (numpy
target, float64, the same input current, 1,000 steps): the same spike steps and membrane traces
within 1e-9 relative. Each refusal is one line naming what it refuses. The comparisons are
skipped, with the reason, where Brian2 cannot be imported (pip install 'symgrad[brian2]')."""
import subprocess
import sys

import numpy as np
import pytest

from symgrad import surrogates
from symgrad.brian2 import from_equations, import_brian2
from symgrad.model import ModelError
from symgrad.runtime import Network
from helpers import relative_error

try:
    b2 = import_brian2()
    UNAVAILABLE = None
except ModelError as err:  # not installed, or failing to import with this NumPy
    b2, UNAVAILABLE = None, str(err)
needs_brian2 = pytest.mark.skipif(b2 is None, reason=f"Brian2 unavailable: {UNAVAILABLE}")

STEPS, NEURONS, DT = 1000, 4, 1e-4
# Brian2's parsing library deprecates the calls Brian2 makes: their warnings are not symgrad's
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:brian2"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:pyparsing")]


def cases() -> dict:
    """{name: (from_equations' arguments, the input current's scale in amperes)}."""
    from brian2 import Mohm, ms, mV, nA, nS, pF

    lif = dict(equations="dv/dt = (v_rest - v + R*I)/tau : volt\nI : amp", threshold="v > v_th", reset="v = v_r",
               method="exact", namespace=dict(v_rest=-70 * mV, R=100 * Mohm, tau=20 * ms, v_th=-50 * mV, v_r=-65 * mV),
               values={"v": -70 * mV})
    # Brette & Gerstner (2005), the spike cut at V_T + 5 Delta_T
    adex = dict(equations="""
        dv/dt = (g_L*(E_L - v) + g_L*Delta_T*exp((v - V_T)/Delta_T) - w + I)/C : volt
        dw/dt = (a*(v - E_L) - w)/tau_w : amp
        I : amp""", threshold="v > V_cut", reset="v = V_r; w += b",
                namespace=dict(C=281 * pF, g_L=30 * nS, E_L=-70.6 * mV, V_T=-50.4 * mV, Delta_T=2 * mV,
                               tau_w=144 * ms, a=4 * nS, b=0.0805 * nA, V_r=-70.6 * mV, V_cut=-40.4 * mV),
                values={"v": -70.6 * mV})
    izhikevich = dict(equations="""
        dv/dt = (0.04/ms/mV)*v**2 + (5/ms)*v + 140*mV/ms - u + I/nF : volt
        du/dt = a*(b*v - u) : volt/second
        I : amp""", threshold="v > v_peak", reset="v = c; u += d", method="euler",
                      namespace=dict(a=0.02 / ms, b=0.2 / ms, c=-65 * mV, d=8 * mV / ms, v_peak=30 * mV),
                      values={"v": -65 * mV, "u": -13 * mV / ms})
    current_based = dict(equations="""
        dv/dt = (v_rest - v + R*i_syn)/tau : volt
        di_syn/dt = -i_syn/tau_s + I/ms : amp
        I : amp""", threshold="v > v_th", reset="v = v_r", method="exact",
                         namespace=dict(lif["namespace"], tau_s=5 * ms), values={"v": -70 * mV})
    return {"lif_exact": (lif, 0.3e-9), "adex_euler": (dict(adex, method="euler"), 1.5e-9),
            "adex_rk4": (dict(adex, method="rk4"), 1.5e-9), "izhikevich_euler": (izhikevich, 15e-9),
            "current_based_exact": (current_based, 0.1e-9)}


def brian2_run(case: dict, current):
    """Brian2's simulation of ``case`` driven by ``current`` (steps, neurons) in amperes: each
    state after the integration and before the reset (the value symgrad's state holds), and the
    spikes (steps, neurons)."""
    from brian2.codegen.runtime.numpy_rt import NumpyCodeObject

    steps, n = current.shape
    numpy_target = dict(codeobj_class=NumpyCodeObject)
    group = b2.NeuronGroup(n, case["equations"], threshold=case["threshold"], reset=case["reset"],
                           method=case["method"], dt=DT * b2.second, dtype=np.float64, **numpy_target)
    for name, value in case["values"].items():
        setattr(group, name, value)
    drive = b2.TimedArray(current * b2.amp, dt=DT * b2.second)
    group.run_regularly("I = drive(t, i)", when="start", **numpy_target)  # held over the step
    states = [name for name, eq in group.equations.items() if eq.type == "differential equation"]
    trace = b2.StateMonitor(group, states, record=True, when="thresholds", **numpy_target)
    fired = b2.SpikeMonitor(group, **numpy_target)
    b2.Network(group, trace, fired).run(steps * DT * b2.second, namespace={**case["namespace"], "drive": drive})
    spikes = np.zeros((steps, n))
    spikes[np.round(np.asarray(fired.t) / DT).astype(int), np.asarray(fired.i)] = 1
    return {name: np.asarray(getattr(trace, name)).T for name in states}, spikes


def symgrad_run(model, current):
    """The model's states and spikes through a network whose input is the current itself."""
    n = current.shape[1]
    net = Network(model, n, n, n, recurrent=False, readout=False, dtype="float64")
    net.set_params({"W_in": np.eye(n)})
    (record,) = net.record(current[:, None, :])
    return {name: values[:, 0] for name, values in record.items()}


@needs_brian2
@pytest.mark.parametrize("name", ["lif_exact", "adex_euler", "adex_rk4", "izhikevich_euler", "current_based_exact"])
def test_spikes_and_states_equal_brian2s_own_simulation(name):
    case, scale = cases()[name]
    # A non-compact surrogate: with a compact one the plan simplifies every Jacobian entry to find
    # rows at rest, which takes minutes on rk4's large expressions. The forward pass ignores it.
    model = from_equations(**case, dt=DT, name=name, surrogate=surrogates.fast_sigmoid(beta=1000.0))
    current = scale * np.random.default_rng(0).uniform(0, 2, (STEPS, NEURONS))
    ours = symgrad_run(model, current)
    theirs, spikes = brian2_run(case, current)
    assert (spikes.sum(axis=0) >= 3).all(), "every neuron spikes and resets, or the test proves little"
    np.testing.assert_array_equal(np.argwhere(ours["z"]), np.argwhere(spikes))
    for state in model.state_names:
        assert relative_error(ours[state], theirs[state]) <= 1e-9, state


@needs_brian2
def test_units_become_si_numbers_and_parameters_stay_symbols():
    from brian2 import ms

    case, _ = cases()["lif_exact"]
    model = from_equations(**case, dt=0.1 * ms, name="lif", learnable=("tau",))
    params = {p.name: value for p, value in model.params.items()}
    assert params == pytest.approx({"v_rest": -0.07, "R": 1e8, "tau": 0.02, "v_th": -0.05, "v_r": -0.065}, rel=1e-12)
    assert model.states == {model.state_symbols[0]: pytest.approx(-0.07)}
    assert [p.name for p in model.learnable] == ["tau"] and model.input_names == ["I"]
    tau = next(p for p in model.params if p.name == "tau")
    assert any(e.has(tau) for e in model.update.values())  # 20*ms became the parameter tau = 0.02, not a number
    mv = from_equations("dv/dt = (-v + 10*mV + R*I)/tau : volt\nI : amp", reset="", threshold="v > 15*mV",
                        dt=0.1 * ms, namespace=case["namespace"], name="with_units")
    assert {p.name for p in mv.params} == {"R", "tau"}  # mV is a unit: a number, not a parameter
    assert "0.01" in str(mv.update[mv.state_symbols[0]]) and "0.015" in str(mv.output)


@needs_brian2
def test_subexpressions_are_inlined_and_resets_run_in_order():
    from brian2 import ms, mV, nA, Mohm

    model = from_equations("""
        dv/dt = (E_L - v + R*I_total)/tau : volt
        I_total = I + I_bias : amp
        I : amp""", threshold="v > v_th", reset="jump = v - v_th; v = E_L + jump/2", dt=0.1 * ms,
        namespace=dict(E_L=-70 * mV, R=100 * Mohm, tau=20 * ms, I_bias=0.1 * nA, v_th=-50 * mV), name="inlined")
    text = " ".join(str(e) for e in model.update.values())
    assert "I_bias" in text and "I_total" not in text
    v = model.state_symbols[0]
    assert model.origin.reset[v].free_symbols == {v} | {p for p in model.params if p.name in ("E_L", "v_th")}


def refused(**changes) -> str:
    """The one-line message of the ModelError that from_equations raises for a LIF with ``changes``."""
    case = dict(equations="dv/dt = (v_rest - v + R*I)/tau : volt\nI : amp", threshold="v > v_th",
                reset="v = v_r", method="exact", dt=1e-4,
                namespace=dict(v_rest=-70e-3 * b2.volt, R=1e8 * b2.ohm, tau=20e-3 * b2.second,
                               v_th=-50e-3 * b2.volt, v_r=-65e-3 * b2.volt))
    with pytest.raises(ModelError) as caught:
        from_equations(**{**case, **changes})
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@needs_brian2
@pytest.mark.parametrize("changes, named", [
    (dict(equations="dv/dt = (v_rest - v + R*I)/tau : volt (unless refractory)\nI : amp"), "refractoriness"),
    (dict(threshold="v > v_th and not_refractory"), "refractoriness (not_refractory"),
    (dict(equations="dv/dt = (v_rest - v + R*I)/tau + sigma*xi*tau**-0.5 : volt\nI : amp\nsigma : volt"),
     "stochastic term xi"),
    (dict(reset="v = v_r + rand()*mV"), "stochastic term rand"),
    (dict(equations="dv/dt = (v_rest - v + R*I)/tau : volt (event-driven)\nI : amp"), "event-driven equation of v"),
    (dict(equations="dv/dt = (v_rest - v + R*I*sin(t/tau))/tau : volt\nI : amp"), "the time t"),
    (dict(equations="dv/dt = (v_rest - v + R*I_s)/tau : volt\nI_s = I : amp (constant over dt)\nI : amp"),
     "flag 'constant over dt' on I_s"),
    (dict(equations="dv/dt = (v_rest - v + R*I)/tau : volt\nI : amp\nn : integer"), "n is of type integer"),
    (dict(equations="dv/dt = (v_rest - v + R*clip(I, 0*amp, 1*amp))/tau : volt\nI : amp"), "function clip"),
    (dict(equations="dv/dt = (v_rest - v + I)/tau : volt\nI : amp"), "Brian2's unit check"),
    (dict(reset="v = v_r + 1*amp"), "Brian2's unit check"),
    (dict(threshold="v > v_top"), "v_top in threshold is not defined"),
    (dict(equations="dv/dt = (v_rest - v + R*J)/tau : volt\nJ : amp"), "input 'I' is not a parameter"),
    (dict(equations="dv/dt = (v_rest - v + R*I/tau : volt\nI : amp"), "Brian2 cannot parse the equations"),
    (dict(equations="dv/dt = (v_rest - v + R*I)/tau : vlt\nI : amp"), "Brian2 cannot parse the equations"),
    (dict(equations="dv/dt = (v_rest - v + R*I)/tau : volt\nI : amp\nE : volt", reset="E = v_r"), "reset sets E"),
    (dict(reset="v == v_r"), "Brian2 cannot parse the reset statement 'v == v_r'"),
    (dict(threshold="v"), "threshold 'v' is not a condition"),
    (dict(threshold="v >= v_th"), "a spike is a strict comparison"),
    (dict(equations="dv/dt = (v_rest - v + R*I)/tau + (v - v_rest)**2/(tau*mV) : volt\nI : amp"),
     "nonlinear term"),
    (dict(values={"v": 1 * b2.amp} if b2 else {}), "values['v'] has the wrong unit"),
    (dict(learnable=("tau_m",)), "learnable entry 'tau_m' is not a parameter"),
] if b2 else [], ids=lambda value: value if isinstance(value, str) else None)
def test_what_cannot_be_represented_is_refused_in_one_line(changes, named):
    assert named in refused(**changes)


def test_without_brian2_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "brian2", None)  # import brian2 now raises ImportError
    with pytest.raises(ModelError, match=r"pip install 'symgrad\[brian2\]'") as caught:
        from_equations("dv/dt = -v/tau : 1")
    assert "\n" not in str(caught.value)


BRIAN_MODEL = '''
from brian2 import mV, ms
from symgrad.brian2 import from_equations

# The network's current is W x, a plain number: the input is dimensionless, scaled by mV/ms here.
lif = from_equations("""
    dv/dt = (v_rest - v)/tau + I*10*mV/ms : volt
    I : 1
    """, threshold="v > v_th", reset="v = v_rest", method="exact", dt=1*ms,
    namespace={"v_rest": -70*mV, "tau": 20*ms, "v_th": -60*mV}, values={"v": -70*mV}, name="brian_lif")
'''


@needs_brian2
def test_symgrad_train_takes_a_model_file_built_from_brian2s_equations(symgrad, tmp_path):
    (tmp_path / "brian_model.py").write_text(BRIAN_MODEL)
    result = symgrad("train", "brian_model.py", "--epochs", "1", "--hidden", "8", "--batch", "16", "--out", "run",
                     "--quiet", "--set", "samples=32", "--set", "test_samples=16", "--set", "steps=20",
                     "--set", "channels=12", "--set", "n_classes=3")
    assert result.code == 0, result.err
    assert "final test accuracy" in result.out
    assert "silent" not in result.err and "saturated" not in result.err
    assert (tmp_path / "run" / "checkpoint.npz").is_file()
    inspected = symgrad("inspect", "brian_model.py")
    assert inspected.code == 0, inspected.err
    assert "dv/dt" in inspected.out


def test_a_model_file_without_brian2_names_the_extra(symgrad, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "brian2", None)
    (tmp_path / "brian_model.py").write_text(BRIAN_MODEL)
    result = symgrad("train", "brian_model.py", "--epochs", "1")
    assert result.code == 1
    assert result.err.strip().endswith("(pip install 'symgrad[brian2]')") and result.err.count("\n") == 1


@needs_brian2
def test_loading_a_model_file_that_imports_brian2_keeps_symgrads_warnings_and_errors(tmp_path):
    """Importing Brian2 takes over sys.excepthook and warnings.showwarning; loading a model file
    gives them back, so the command line still reports in its own words (a fresh process, since
    this one has imported Brian2 already)."""
    (tmp_path / "brian_model.py").write_text(BRIAN_MODEL)
    check = ("import sys, warnings; from symgrad import models; before = sys.excepthook, warnings.showwarning; "
             f"models.load({str(tmp_path / 'brian_model.py')!r}); import brian2; "
             "assert (sys.excepthook, warnings.showwarning) == before, 'taken over'")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
