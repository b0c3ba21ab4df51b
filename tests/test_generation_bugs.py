"""Models that used to generate wrong or invalid code, each checked by an independent route.

* entry names that collide when state names are joined with "_";
* a learnable parameter used only in the output (its gradient comes from dz/dp alone);
* an update that ignores the input (the weights get zero gradients, with a warning);
and every rendered Python module is compiled before it is written or imported.
"""
import numpy as np
import pytest
import sympy as sp

from symgrad import NeuronModel, models, render, spike
from symgrad.analysis import Analysis
from symgrad.runtime import Network, bptt, eprop
from helpers import batch, finite_difference_check, relative_error


def test_entry_names_that_collide_when_joined_stay_apart():
    # D[a][b_c] and D[a_b][c] were both named D_a_b_c, and one of them was silently dropped.
    a, a_b, b_c, c, I, k = sp.symbols("a a_b b_c c I k")
    model = NeuronModel(
        "collide", {a: 0.0, a_b: 0.0, b_c: 0.0, c: 0.0}, {k: 0.5},
        {a: 0.9 * a + 0.5 * b_c * b_c + I, a_b: 0.8 * a_b + k * c + I, b_c: 0.7 * b_c + 0.5 * I,
         c: 0.6 * c + I},
        sp.tanh(a + a_b - b_c + c))
    analysis = Analysis(model)
    nonzero = sum(not e.is_zero for row in analysis.D for e in row) + sum(
        not e.is_zero for e in analysis.c + analysis.h)
    assert len(analysis.entries()) == nonzero
    assert analysis.entry_name("D", 0, 2) != analysis.entry_name("D", 1, 3)
    net = Network(model, 3, 4, 3, recurrent=False, kappa=0.6, seed=1)
    x, labels = batch(steps=10, size=2, n_in=3, n_out=3)
    reference = finite_difference_check(net, x, labels)
    fast = eprop(net, x, labels)
    for key in reference.grads:
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-8, key


def threshold_model():
    """A LIF whose threshold is learnable and appears only in the output."""
    v, I, alpha, th = sp.symbols("v I alpha th")
    return NeuronModel("output_param", {v: 0.0}, {alpha: 0.9, th: 0.5},
                       {v: alpha * v + I}, sp.tanh(2 * (v - th)), learnable=(th,))


def test_a_learnable_parameter_used_only_in_the_output():
    model = threshold_model()
    assert Analysis(model).dz[sp.Symbol("th")].kind == "dynamic"
    text = render.render(model)
    compile(text, "output_param.py", "exec")
    net = Network(model, 3, 4, 3, recurrent=False, kappa=0.7, seed=1)
    x, labels = batch(steps=10, size=2, n_in=3, n_out=3)
    reference = finite_difference_check(net, x, labels)
    assert np.abs(reference.grads["th"]).max() > 0
    fast = eprop(net, x, labels)
    for key in reference.grads:
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-8, key


@pytest.mark.parametrize("backend", ["cuda-host"])
def test_a_parameter_used_only_in_the_output_on_the_cuda_kernels(backend):
    x, labels = batch(steps=10, size=2, n_in=3, n_out=3)
    nets = [Network(threshold_model(), 3, 4, 3, recurrent=True, kappa=0.7, seed=1, backend=b)
            for b in ("numpy", backend)]
    expected, got = (eprop(net, x, net.xp.asarray(labels)) for net in nets)
    for key in expected.grads:
        assert relative_error(np.asarray(got.grads[key]), expected.grads[key]) <= 1e-10, key


def silent_input_model():
    v, I, alpha = sp.symbols("v I alpha")
    return NeuronModel("deaf", {v: 0.5}, {alpha: 0.9}, {v: alpha * v}, spike(v - 1))


def test_an_update_that_ignores_the_input_gives_valid_code_and_zero_weight_gradients():
    model = silent_input_model()
    for backend in render.BACKENDS:
        render.render(model, backend)  # renders, and the Python module compiles
    with pytest.warns(UserWarning, match="reaches no state"):
        net = Network(model, 3, 4, 3, recurrent=True, kappa=0.5, seed=1)
    x, labels = batch(steps=8, size=2, n_in=3, n_out=3)
    for rule in (eprop, bptt):
        result = rule(net, x, labels)
        assert np.abs(result.grads["b_out"]).max() > 0  # the readout still learns
        for key in ("W_in", "W_rec"):
            assert not np.any(result.grads[key]), (rule.__name__, key)


def test_inspect_says_when_the_input_is_never_heard():
    from symgrad import report
    from symgrad.plan import TracePlan

    text = report.as_text(Analysis(silent_input_model()), TracePlan(Analysis(silent_input_model())), 4, 8, 8, 4)
    assert "warning: the input I reaches no state the output depends on" in text
    lif = models.builtin("lif")
    assert "warning" not in report.as_text(Analysis(lif), TracePlan(Analysis(lif)), 4, 8, 8, 4)


def test_every_python_module_is_compiled_before_use(monkeypatch):
    from symgrad.printers import numpy_code

    real = numpy_code.input_gain
    monkeypatch.setattr(numpy_code, "input_gain", lambda blueprint: real(blueprint) + " +")
    with pytest.raises(render.GenerationError, match="'lif'.*numpy_layer.py.*bug in symgrad"):
        render.render(models.builtin("lif"))


def test_invalid_generated_code_is_one_line_from_the_command_line(monkeypatch, capsys, tmp_path):
    from symgrad import cli
    from symgrad.printers import numpy_code

    real = numpy_code.input_gain
    monkeypatch.setattr(numpy_code, "input_gain", lambda blueprint: real(blueprint) + " +")
    assert cli.main(["inspect", "lif"]) == 0  # inspecting renders nothing
    assert cli.main(["generate", "lif", "--out", str(tmp_path)]) == 1
    assert not any(tmp_path.iterdir())  # nothing half-written
    err = capsys.readouterr().err.strip()
    assert err.startswith("symgrad: internal error:") and "\n" not in err and "lif" in err
