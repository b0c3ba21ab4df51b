"""Every function a model may call (symgrad.printing.SUPPORTED) works on every backend, and any
other is refused when the model is declared.

One model calls every supported function at once: its NumPy step equals SymPy's own value of the
update, BPTT on NumPy equals finite differences (smooth functions) and e-prop (all of them), and
Numba, the CUDA host shim (and CuPy, with a GPU) equal NumPy, forward and gradients.

Also what the generator says about a model: the command that regenerates a file (in its
header), each trace filter with its brackets (inspect), each model's files once (generate).
"""
import ctypes
import importlib.util
import math
import re

import nir
import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import exp2, expm1, hypot, log1p, log2, log10
from sympy.core.function import Application

from symgrad import ModelError, NeuronModel, cli, models, printing, render, spike, stop_gradient
from symgrad import nir as snir
from symgrad.analysis import Analysis
from symgrad.model import NON_DIFFERENTIABLE
from symgrad.plan import plans_of
from symgrad.report import as_text
from symgrad.runtime import Network, bptt, eprop
from symgrad.surrogates import Spike
from helpers import (assert_active, assert_eprop_equals_bptt, batch, finite_difference_check, nvrtc,
                     nvrtc_compile, relative_error, smooth_variant)
from test_cuda import host, needs_gpu
from test_nir import paper_graph

v, a, I = sp.symbols("v a I")
alpha, beta, v_th = sp.symbols("alpha beta v_th")


def smooth(x, y):
    """Each differentiable function, small, at arguments where it is defined (and none grows
    faster than x or y) for any x and y."""
    t = sp.tanh
    terms = 0.05 * (sp.exp(-y**2) + sp.log(2 + t(x)) + exp2(-x**2) + log2(2 + t(y)) + log10(10 + x**2)
                   + expm1(t(x)) + log1p(y**2) + sp.sin(x) + sp.cos(y) + sp.tan(0.3 * t(x))
                   + sp.asin(0.5 * t(y)) + sp.acos(0.5 * t(x)) + sp.atan(x) + sp.atan2(y, 2 + x**2)
                   + hypot(x, 1) + sp.sinh(t(y)) + sp.cosh(t(x)) + sp.asinh(y) + sp.acosh(2 + y**2)
                   + sp.atanh(0.5 * t(x)) + sp.erf(y) + sp.erfc(x))
    return terms - terms.subs({x: 0, y: 0}).evalf()  # no drift at rest


def steps(x, y):
    """Each function without a useful derivative, and conditions of every kind."""
    choice = sp.Piecewise((y, sp.And(x > 0.3, y < 1)), (-y, sp.Or(x < -0.5, sp.Not(sp.And(y > 0, x > 0)))),
                          (0.5, True))
    return 0.01 * (sp.Abs(y) + sp.sign(x) + sp.Min(x, y, 0.5) + sp.Max(x, 0.2) + sp.floor(2 * x)
                   + sp.ceiling(y) + sp.Mod(3 * x, 1) + sp.frac(-1.5 * y) + sp.Heaviside(y - 0.1) + choice
                   + sp.Piecewise((y, x < 100))  # no default: NaN where no condition holds
                   + 1 / (2 + sp.Piecewise((1, x > 0), (0, True))) + 1 / (2 + sp.sign(y)))  # never int / int


def kitchen(with_steps=True) -> NeuronModel:
    z = spike(v - v_th)
    jump = stop_gradient(steps(v, a)) if with_steps else 0
    return NeuronModel(
        name="kitchen" if with_steps else "kitchen_smooth_part",
        states={v: 0.0, a: 0.0}, params={alpha: 0.9, beta: 0.3, v_th: 0.6},
        update={v: alpha * v + I + smooth(v, a) + jump - v_th * stop_gradient(z),
                a: sp.erfc(beta) * a + 0.3 * sp.tanh(v) + stop_gradient(z)},
        output=z, learnable=(alpha,), per_neuron=(beta,))


def resting() -> NeuronModel:
    """An adaptive LIF whose adaptation decays by erfc(beta): rows at rest scale its per-synapse
    trace by that, computed by the Numba module's rest_decays."""
    z = spike(v - v_th - 1.8 * a)
    return NeuronModel("resting", {v: 0.0, a: 0.0}, {alpha: 0.9, beta: 0.1, v_th: 0.6},
                       {v: alpha * v + I - v_th * stop_gradient(z), a: sp.erfc(beta) * a + z}, z)


def net_of(model, backend="numpy", drive=2.0, recurrent=False):
    net = Network(model, 6, 5, 4, recurrent=recurrent, seed=2, backend=backend)
    net.params["W_in"] *= drive
    return net


def test_the_model_calls_every_supported_function():
    called = {type(f) for e in kitchen().update.values() for f in sp.preorder_traversal(e)}
    assert set(printing.SUPPORTED) <= called, set(printing.SUPPORTED) - called


def test_the_derivative_of_every_smooth_function_is_supported_too():
    """The Jacobians call what the update calls, differentiated: that must print as well."""
    x, y = sp.symbols("x y")
    steps = set(NON_DIFFERENTIABLE) | {sp.And, sp.Or, sp.Not}
    for function in set(printing.SUPPORTED) - steps:
        call = function(*[x, y][:1 if function not in (sp.atan2, hypot) else 2])
        for derivative in (call.diff(x), call.diff(y)):
            called = {type(f) for f in sp.preorder_traversal(derivative) if isinstance(f, Application)}
            assert called <= set(printing.SUPPORTED), (function, derivative)


def test_the_numpy_step_is_the_models_own_value():
    """The generated NumPy step against SymPy evaluating the update, on a grid that takes every
    branch of the steps (signs, floors, the pieces of each Piecewise)."""
    model = kitchen()
    module = {}
    exec(compile(render.render(model, "numpy"), "kitchen", "exec"), module)
    values = {v: np.linspace(-1.0, 1.5, 11), a: np.linspace(1.3, -0.9, 11)}
    inputs = np.linspace(-0.5, 0.5, 11)
    params = {p.name: value for p, value in model.params.items()}
    new, _, _ = module["neuron_step"]({s.name: x[None] for s, x in values.items()}, inputs[None], params)

    def forward(expr):  # a spike is a step of its argument; stop_gradient counts
        return expr.replace(lambda e: isinstance(e, Spike), lambda e: sp.Heaviside(e.args[0], 0)).replace(
            stop_gradient, lambda e: e)

    for state, update in model.update.items():
        update = forward(update).subs(model.params)
        expected = [float(update.subs({v: values[v][k], a: values[a][k], I: inputs[k]}))
                    for k in range(len(inputs))]
        assert np.allclose(new[state.name][0], expected, rtol=1e-12, atol=1e-12), state


def test_bptt_equals_finite_differences_through_every_smooth_function():
    net = net_of(smooth_variant(kitchen(with_steps=False)), drive=3.0)
    x, labels = batch(steps=15)
    assert_active(finite_difference_check(net, x, labels), net)


@pytest.mark.parametrize("model", [kitchen, resting])
def test_eprop_equals_bptt_on_numpy(model):
    assert_eprop_equals_bptt(net_of(model()), *batch(), 1e-9)


@pytest.mark.parametrize("model, backend", [
    (kitchen, "numba"), (kitchen, "cuda-host"), (resting, "cuda-host"),
    pytest.param(kitchen, "cupy", marks=needs_gpu), pytest.param(resting, "cupy", marks=needs_gpu)])
def test_every_backend_equals_numpy(model, backend):
    x, labels = batch(steps=40)
    x[10:30] = 0.0  # a long silence: rows rest
    reference, net = net_of(model(), recurrent=True), net_of(model(), backend, recurrent=True)
    for rule in (eprop, bptt):
        expected, got = rule(reference, x, labels), rule(net, net.xp.asarray(x), net.xp.asarray(labels))
        assert abs(expected.spikes[0]) > 0, "the network is silent: this proves nothing"
        assert got.spikes == pytest.approx(expected.spikes, rel=1e-12)
        assert got.loss == pytest.approx(expected.loss, rel=1e-9)
        for key, value in expected.grads.items():
            assert np.abs(value).max() > 0, f"{key}: a zero gradient proves nothing"
            assert relative_error(host(got.grads[key]), value) <= 1e-9, (rule.__name__, key)


def test_the_numba_modules_rows_at_rest_decay_by_erfc(tmp_path):
    text = render.render(resting(), "numba")
    assert '"a": erfc(beta),  # eps_a,t = erfc(beta) * eps_a,t-1 at rest' in text
    (tmp_path / "resting_numba.py").write_text(text)
    spec = importlib.util.spec_from_file_location("resting_numba", tmp_path / "resting_numba.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its kernels compile when first called: this compiles none
    assert module.rest_decays({"beta": 0.1}) == {"a": pytest.approx(math.erfc(0.1), rel=1e-15)}


@pytest.mark.skipif(nvrtc() is None, reason="libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12)")
def test_the_cuda_code_compiles_with_nvrtc_as_cupy_does():
    model = kitchen()
    names = [f"{k.name}<{t}>".encode() for k in render.cuda_kernels(model) for t in ("float", "double")]
    lib = nvrtc()
    lib.nvrtcDestroyProgram(ctypes.byref(nvrtc_compile(lib, render.render(model, "cuda").encode(),
                                                       b"layer.cu", names)))


# -- functions no backend prints are refused when the model is declared ------------------------
@pytest.mark.parametrize("call", [sp.besselj(0, v), sp.gamma(v + 2), sp.Function("f")(v)])
def test_an_unsupported_function_is_refused_in_one_line(call):
    with pytest.raises(ModelError) as caught:
        NeuronModel("bessel", {v: 0.0}, {alpha: 0.9}, {v: alpha * v + I + 0.1 * call}, spike(v - 1))
    message = str(caught.value)
    assert "\n" not in message and f"unsupported function {call.func}" in message
    assert "update of v" in message and "erf" in message and "inside stop_gradient(), Abs" in message


BESSEL = """import sympy as sp
from symgrad import NeuronModel, spike
v, I = sp.symbols("v I")
model = NeuronModel("bessel", {v: 0.0}, {}, {v: 0.9 * v + I + sp.besselj(0, v)}, spike(v - 1))
"""


@pytest.mark.parametrize("command", ["inspect", "generate", "train"])
def test_the_commands_refuse_an_unsupported_function(command, tmp_path, capsys):
    path = tmp_path / "bessel.py"
    path.write_text(BESSEL)
    out = [] if command == "inspect" else ["--out", str(tmp_path / "out")]
    assert cli.main([command, str(path), *out]) == 1
    err = capsys.readouterr().err
    assert err.startswith("symgrad: error:") and "besselj" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# -- the header says how to regenerate the file --------------------------------------------------
def test_a_model_files_header_names_its_file(tmp_path, capsys):
    path = tmp_path / "two.py"
    path.write_text("import test_functions as f\nkitchen, resting = f.kitchen(), f.resting()\n")  # two models
    out = tmp_path / "code"
    assert cli.main(["generate", f"{path}:resting", "--out", str(out), "--backend", "numpy", "cuda"]) == 0
    files = capsys.readouterr().out.split()
    texts = {name: (out / "resting" / name).read_text() for name in ("numpy_layer.py", "cuda_layer.cu")}
    assert f"`symgrad generate {path}:resting` rather than editing" in texts["numpy_layer.py"]
    assert f"`symgrad generate {path}:resting --backend cuda` rather than editing" in texts["cuda_layer.cu"]
    # the command the header gives writes the same files again
    for name in texts:
        (out / "resting" / name).unlink()
    assert cli.main(["generate", f"{path}:resting", "--out", str(out), "--backend", "cuda"]) == 0
    assert capsys.readouterr().out.split() == files[1:]
    assert (out / "resting" / "cuda_layer.cu").read_text() == texts["cuda_layer.cu"]


def test_a_model_built_in_python_says_how_to_regenerate_it():
    text = render.render(kitchen(), "numba")
    assert '`symgrad.render.generate(model, backends=["numba"])`, where the model is built,' in text
    assert "symgrad generate kitchen" not in text
    assert "`symgrad generate lif --backend numba`" in render.render(models.builtin("lif"), "numba")


# -- inspect writes each filter with its brackets ------------------------------------------------
def adapting() -> NeuronModel:
    """A synaptic current filtered by 1 - dt/tau_s and an adaptation decaying by 1 - beta."""
    i, dt, tau_s = sp.symbols("i dt tau_s")
    z = spike(v - v_th - a)
    return NeuronModel("adapting", {i: 0.0, v: 0.0, a: 0.0},
                       {dt: 1.0, tau_s: 5.0, alpha: 0.9, beta: 0.1, v_th: 1.0},
                       {i: (1 - dt / tau_s) * i + I, v: alpha * v + i - v_th * stop_gradient(z),
                        a: (1 - beta) * a + z}, z)


@pytest.mark.parametrize("model", [adapting, lambda: models.builtin("two_compartment"),
                                   lambda: snir.neuron("CubaLIF", detach_reset=True)])
def test_inspect_prints_each_filter_as_the_map_it_is(model):
    """Every filter and decay at rest that inspect prints, read back by SymPy, is the map of its
    trace: D eps + c u, and D at rest times the trace."""
    model = model()
    analysis = Analysis(model)
    plans = plans_of(analysis)
    names = {f"eps_{s}": sp.Symbol(f"eps_{s}") for s in analysis.names} | {"u": sp.Symbol("u")}
    names |= {f"eps_{s}_before": sp.Symbol(f"eps_{s}_before") for s in analysis.names}
    names |= {p.name: p for p in model.params}
    expected = []
    for plan in plans:
        expected += [(f"eps_{s}", sum(c * names[f"eps_{j}"] for j, c in coefs["D"].items())
                      + coefs["c"] * names["u"]) for s, coefs in plan.filter_coefficients().items()]
        if plan.quiescence.event_driven:
            expected += [(f"eps_{s}", d * names[f"eps_{s}_before"]) for s, d in plan.quiescence.decays.items()]
    text = as_text(analysis, plans, 2, 3, 4, 8).replace(",t-1", "_before")
    printed = re.findall(r"(eps_\w+),t = (.*)", text)
    assert [trace for trace, _ in printed] == [trace for trace, _ in expected] and expected
    for (trace, rhs), (_, value) in zip(printed, expected):
        assert sp.simplify(sp.sympify(rhs, locals=names) - value) == 0, (trace, rhs)
    if model.name == "adapting":  # with the brackets where they belong, as a reader expects them
        assert "eps_i,t = (-dt/tau_s + 1) * eps_i + u" in text and "eps_a,t = (1 - beta) * eps_a_before" in text


# -- generate lists each file once ------------------------------------------------------------
def test_generate_writes_a_model_shared_by_layers_and_graphs_once(tmp_path, capsys):
    for name, nested in (("a.nir", False), ("b.nir", True)):
        nir.write(tmp_path / name, paper_graph(nested=nested))
    out = tmp_path / "code"
    assert cli.main(["generate", str(tmp_path / "a.nir"), str(tmp_path / "b.nir"), "lif", "lif", "--out", str(out),
                     "--backend", "numpy", "cuda", "numpy"]) == 0
    written = capsys.readouterr().out.split()
    assert written == [str(out / model / name) for model in ("nir_cubalif", "lif")
                       for name in ("numpy_layer.py", "cuda_layer.cu")]
    header = f"`symgrad generate {tmp_path / 'a.nir'} --backend cuda`"  # the first graph holding it
    assert header in (out / "nir_cubalif" / "cuda_layer.cu").read_text()


def test_generate_refuses_layers_with_different_models_of_one_name(tmp_path, capsys):
    graph = paper_graph()
    second = graph.nodes["lif2"]  # one value for every neuron: no field of its model is per neuron
    graph.nodes["lif2"] = nir.CubaLIF(**{field: np.full(7, np.mean(getattr(second, field))) for field in (
        "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")})
    nir.write(tmp_path / "mixed.nir", graph)
    assert cli.main(["generate", str(tmp_path / "mixed.nir"), "--out", str(tmp_path / "code")]) == 1
    err = capsys.readouterr().err
    assert "different models named 'nir_cubalif'" in err and err.count("\n") == 1
    assert not (tmp_path / "code").exists()
