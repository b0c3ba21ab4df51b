"""Models with several synaptic inputs: declaration, plans per input, code, gradients, wiring.

Each input I_p has its own c^p and its own traces eps^p; the built-ins coba_lif (conductances,
whose drive depends on v: per-synapse traces) and two_compartment (presynaptic filters) are
checked through every backend, e-prop against BPTT where e-prop is exact, BPTT against finite
differences on their smooth variants, and the command line's grads and train.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from symgrad import ModelError, NeuronModel, models, render, spike, stop_gradient
from symgrad.analysis import Analysis
from symgrad.plan import plans_of
from symgrad.runtime import Network, bptt, eprop
from helpers import (assert_active, assert_eprop_equals_bptt, batch, finite_difference_check, input_weights,
                     network, relative_error, smooth_variant)

SEVERAL = ["coba_lif", "two_compartment"]
BACKENDS = ["numba", "cuda-host"]


@pytest.fixture
def run_cli(tmp_path):
    """symgrad's command line in a fresh process: (exit code, stdout, stderr)."""
    def run(*args):
        done = subprocess.run([sys.executable, "-m", "symgrad.cli", *args], capture_output=True, text=True,
                              cwd=tmp_path)
        return done.returncode, done.stdout, done.stderr
    return run


def two_inputs(**changes) -> NeuronModel:
    """A small model with an excitatory and an inhibitory current."""
    v, I_e, I_i, alpha = sp.symbols("v I_e I_i alpha")
    spec = dict(name="ei_lif", states={v: 0.0}, params={alpha: 0.9},
                update={v: alpha * v + I_e - I_i - stop_gradient(spike(v - 1))}, output=spike(v - 1),
                inputs=(I_e, I_i))
    spec.update(changes)
    return NeuronModel(**spec)


# -- declaring inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    (dict(projections={"I_x": ("input",)}), "projection to undeclared input 'I_x'"),
    (dict(signs={"I_x": 1}), "sign to undeclared input 'I_x'"),
    (dict(projections={"I_e": ("feedback",)}), "projection to 'I_e' of model 'ei_lif' from 'feedback'"),
    (dict(signs={"I_e": 2}), "sign of input 'I_e'"),
    (dict(inputs=(sp.Symbol("I_e"), sp.Symbol("I_i"), sp.Symbol("I_d"))), "declared input 'I_d'"),
    (dict(inputs=(sp.Symbol("I_e"), sp.Symbol("I_e"))), "input 'I_e' of model 'ei_lif' is declared twice"),
    (dict(inputs=(sp.Symbol("I_e"), sp.Symbol("alpha"))), "duplicate name 'alpha'"),
    (dict(inputs=(sp.Symbol("I_e"), sp.Symbol("v"))), "duplicate name 'v'"),
    (dict(input=sp.Symbol("I_e")), "gives both input=I_e and inputs="),
])
def test_bad_declarations_get_one_line_errors(changes, message):
    with pytest.raises(ModelError, match=message) as caught:
        two_inputs(**changes)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", [n for n in models.BUILTIN if n not in SEVERAL])
def test_one_input_declared_with_inputs_generates_byte_identical_code(name):
    model = models.builtin(name)
    explicit = NeuronModel(model.name, model.states, model.params, model.update, model.output,
                           learnable=model.learnable, per_neuron=model.per_neuron, doc=model.doc,
                           inputs=(model.input,))
    assert render.generate_code(explicit).texts == render.generate_code(model).texts


def test_each_input_has_its_own_c_entries_and_plan():
    analysis = Analysis(models.builtin("coba_lif"))
    names = set(analysis.entries())
    assert {"c_v_I_e", "c_v_I_i", "c_g_e_I_e", "c_g_i_I_i"} <= names
    assert not {"c_v", "c_g_e"} & names
    plans = plans_of(analysis)
    assert [p.input.name for p in plans] == ["I_e", "I_i"]
    assert [analysis.naming.per_input("Traces", x) for x in ("I_e", "I_i")] == ["Traces_I_e", "Traces_I_i"]
    # the adjoint is the model's: the same rows whichever input's plan prints it
    assert plans[0].adjoint == plans[1].adjoint
    assert [u.state for u in plans[0].updates] == ["v", "g_e"]
    assert [u.state for u in plans[1].updates] == ["v", "g_i"]


def test_inspect_shows_every_input(run_cli):
    code, out, _ = run_cli("inspect", "coba_lif")
    assert code == 0
    assert "synaptic inputs: I_e, I_i" in out
    assert "c_I_e[v]  dynamic" in out and "c_I_i[g_i]  constant" in out
    for input_name, conductance in (("I_e", "g_e"), ("I_i", "g_i")):
        section = out[out.index(f"trace plan of input {input_name}:"):]
        assert "eps_v: per-synapse" in section.splitlines()[1]
        assert f"eps_{conductance}: presynaptic" in section
    code, out, _ = run_cli("inspect", "coba_lif", "--json")
    report = json.loads(out)
    assert report["inputs"] == ["I_e", "I_i"]
    assert report["plan"]["I_e"] == {"v": "per-synapse", "g_e": "presynaptic", "g_i": "unreachable"}
    assert report["jacobian"]["c"]["I_i"] == ["dynamic", "zero", "constant"]


@pytest.mark.parametrize("name", SEVERAL)
def test_generated_code_holds_one_trace_set_per_input(name):
    model = models.builtin(name)
    texts = render.generate_code(model).texts
    assert "Trace plan, one set of traces per input:" in texts["numpy"]
    for input_name in model.input_names:
        assert f"class Traces_{input_name}:" in texts["numpy"]
        assert f"def input_gain_{input_name}(J, K):" in texts["numpy"]
        assert f"void synapse_step_{input_name}(" in texts["cuda"]
        assert f"def synapse_step_{input_name}(" in texts["numba"]
        assert f"    input {input_name}:" in texts["cuda"]  # the header, in every file
    assert "class Traces:" not in texts["numpy"]


# -- gradients ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy"] + BACKENDS)
@pytest.mark.parametrize("kappa", [0.0, 0.8])
@pytest.mark.parametrize("name", SEVERAL)
def test_eprop_equals_bptt_for_every_weight_matrix(name, kappa, backend):
    net = network(name, kappa=kappa, backend=backend)
    assert len(input_weights(net.layers[0])) == 2  # one W_in per input
    x, labels = batch()
    assert_eprop_equals_bptt(net, x, labels, 1e-9)


@pytest.mark.parametrize("loss", ["ce_mean", "ce_last", "mse"])
def test_eprop_equals_bptt_with_other_losses(loss):
    net = network("coba_lif", kappa=0.9)
    x, labels = batch()
    target = np.random.default_rng(3).standard_normal((25, 3, 4)) if loss == "mse" else labels
    assert_eprop_equals_bptt(net, x, target, 1e-9, loss=loss)


@pytest.mark.parametrize("name", SEVERAL)
def test_bptt_equals_finite_differences_on_the_smooth_variant(name):
    """With each input's input and recurrent weights, through two layers."""
    net = network(name, model=smooth_variant(models.builtin(name)), recurrent=True, kappa=0.6,
                  hidden=[4, 3], projections={i: ("input", "recurrent") for i in models.builtin(name).input_names})
    assert {"W_rec_" + i for i in net.layers[0].model.input_names} <= set(net.params)
    x, labels = batch(steps=12)
    finite_difference_check(net, x, labels, points=2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", SEVERAL)
def test_backends_equal_numpy_with_recurrence_and_two_layers(name, backend):
    x, labels = batch()
    for rule, kappa in ((eprop, 0.8), (bptt, 0.6), (eprop, 0.0)):
        kwargs = dict(recurrent=True, kappa=kappa, hidden=[6, 5])
        expected = rule(network(name, **kwargs), x, labels)
        assert_active(expected, network(name, **kwargs))
        net = network(name, backend=backend, **kwargs)
        for got in (rule(net, x, labels), rule(net, x, labels)):  # the second after events chose
            assert got.spikes == pytest.approx(expected.spikes, rel=1e-12)
            assert set(got.grads) == set(expected.grads)
            for key, value in expected.grads.items():
                assert relative_error(got.grads[key], value) <= 1e-9, (backend, rule.__name__, key)


def test_two_layers_pass_the_signal_down_through_every_input():
    """e-prop's learning signal for layer 0 goes through dz/dI_p and W_in_p of each input of
    layer 1: with one of them zeroed, layer 0's gradient changes."""
    x, labels = batch()
    net = network("two_compartment", hidden=[6, 5])
    both = eprop(net, x, labels).grads["W_in_I_s"]
    net.params["W_in_I_d_1"][...] = 0
    assert relative_error(eprop(net, x, labels).grads["W_in_I_s"], both) > 1e-3


# -- wiring and signs -----------------------------------------------------------------------------
def test_projections_name_the_weights_and_leave_unheard_inputs_at_zero():
    net = Network(two_inputs(), 6, 5, 4, projections={"I_e": ["input"], "I_i": ["recurrent"]}, seed=0)
    assert sorted(k for k in net.params if k.startswith("W_")) == ["W_in_I_e", "W_out", "W_rec_I_i"]
    net = Network(two_inputs(), 6, 5, 4, projections={"I_e": ["input"]}, seed=0)
    assert [p.input for p in net.layers[0].ports] == ["I_e"]
    x, labels = batch()
    net.params["W_in_I_e"] *= 3
    assert_eprop_equals_bptt(net, x, labels, 1e-9)


@pytest.mark.parametrize("projections, message", [
    ({"I_x": ["input"]}, "projection to undeclared input 'I_x'"),
    ({"I_e": ["lateral"]}, "from 'lateral'"),
    ({}, "no projection drives model 'ei_lif'"),
])
def test_bad_projections_are_refused(projections, message):
    with pytest.raises(ValueError, match=message):
        Network(two_inputs(), 6, 5, 4, projections=projections)


def test_signs_hold_from_the_first_weights_through_training():
    """Dale's law: excitatory weights stay >= 0, inhibitory <= 0, after every optimiser step."""
    from symgrad.runtime.optim import Adam

    model = two_inputs(signs={"I_e": 1, "I_i": -1})
    net = Network(model, 6, 5, 4, recurrent=True, seed=0, kappa=0.8)
    assert set(net.signs) == {"W_in_I_e", "W_rec_I_e", "W_in_I_i", "W_rec_I_i"}
    assert (net.params["W_in_I_e"] >= 0).all() and (net.params["W_rec_I_i"] <= 0).all()
    net = Network(model, 6, 5, 4, recurrent=True, seed=0, kappa=0.8, signs={"W_rec_I_i": -1})
    assert set(net.signs) == {"W_rec_I_i"}
    net = Network(model, 6, 5, 4, recurrent=True, seed=0, kappa=0.8)
    for key in input_weights(net.layers[0]):
        net.params[key] *= 4
    x, labels = batch()
    optimizer, clipped = Adam(lr=0.2), 0
    for _ in range(5):
        result = eprop(net, x, labels)
        optimizer.step(net.params, result.grads)
        clipped += int((net.params["W_in_I_e"] < 0).sum() + (net.params["W_in_I_i"] > 0).sum())
        net.constrain()
        assert (net.params["W_in_I_e"] >= 0).all() and (net.params["W_rec_I_e"] >= 0).all()
        assert (net.params["W_in_I_i"] <= 0).all() and (net.params["W_rec_I_i"] <= 0).all()
    assert clipped > 0, "no step crossed zero: the constraint was never exercised"
    with pytest.raises(ValueError, match="sign of 'W_out_I_e'"):
        Network(model, 6, 5, 4, signs={"W_out_I_e": 1})


# -- the command line ----------------------------------------------------------------------------
def grads_case(tmp_path, model_name="coba_lif", **weights):
    rng = np.random.default_rng(0)
    data = dict(x=(rng.random((20, 3, 6)) < 0.3).astype(float), labels=np.array([0, 1, 3]),
                W_out=rng.standard_normal((4, 5)), b_out=np.zeros(4), kappa=np.array(0.0), **weights)
    path = tmp_path / "in.npz"
    np.savez(path, **data)
    return path, data


def test_grads_contract_names_each_inputs_weights(tmp_path, run_cli):
    rng = np.random.default_rng(1)
    weights = dict(W_in_I_e=np.abs(rng.standard_normal((5, 6))), W_rec_I_i=np.abs(rng.standard_normal((5, 5))),
                   W_in_I_i=0.5 * np.abs(rng.standard_normal((5, 6))))
    path, data = grads_case(tmp_path, **weights)
    code, out, err = run_cli("grads", "coba_lif", "--inputs", str(path), "--out", str(tmp_path / "g.npz"), "--rule", "bptt",
                             "--backend", "numpy")
    assert code == 0, err
    got = np.load(tmp_path / "g.npz")
    assert set(got.files) == {"loss", *weights, "W_out", "b_out"}
    net = Network(models.builtin("coba_lif"), 6, 5, 4, projections={"I_e": ["input"], "I_i": ["input", "recurrent"]})
    net.set_params({k: v for k, v in data.items() if k in net.params})
    reference = bptt(net, data["x"], data["labels"])
    assert_active(reference, net)
    for key in weights:
        assert np.abs(reference.grads[key]).max() > 0
        assert relative_error(got[key], reference.grads[key]) <= 1e-12, key
    # e-prop through the same contract (not exact here: the case has recurrent weights)
    code, _, err = run_cli("grads", "coba_lif", "--inputs", str(path), "--out", str(tmp_path / "e.npz"), "--backend", "numpy")
    assert code == 0, err
    assert set(np.load(tmp_path / "e.npz").files) == set(got.files)


@pytest.mark.parametrize("weights, message", [
    (dict(W_in=np.ones((5, 6))), "has several inputs (I_e, I_i): name its weights W_in_<input>, not W_in"),
    (dict(W_in_I_e=np.ones((5, 6)), W_rec=np.ones((5, 5))), "not W_rec"),
    (dict(W_in_I_x=np.ones((5, 6))), "W_in_I_x names no input of model coba_lif"),
    (dict(), "no input weights"),
    (dict(W_in_I_e=np.ones((5, 6)), W_rec_I_i=np.ones((4, 4))), "W_rec_I_i has shape (4, 4), expected (5, 5)"),
])
def test_grads_case_mistakes_get_one_line_errors(tmp_path, run_cli, weights, message):
    path, _ = grads_case(tmp_path, **weights)
    code, _, err = run_cli("grads", "coba_lif", "--inputs", str(path), "--out", str(tmp_path / "g.npz"))
    assert code != 0
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_grads_of_a_one_input_model_keep_the_plain_names(tmp_path, run_cli):
    path, _ = grads_case(tmp_path, W_in=np.ones((5, 6)))
    code, _, err = run_cli("grads", "lif", "--inputs", str(path), "--out", str(tmp_path / "g.npz"))
    assert code == 0, err
    assert "W_in" in np.load(tmp_path / "g.npz").files


@pytest.mark.parametrize("name", SEVERAL)
def test_train_uses_the_models_wiring_and_keeps_its_signs(tmp_path, run_cli, name):
    from symgrad.runtime.checkpoint import load_checkpoint

    code, out, err = run_cli("train", name, "--epochs", "1", "--hidden", "16", "--out", "run", "--quiet")
    assert code == 0, err
    assert "final test accuracy" in out
    state = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    params = {k[len("param/"):]: v for k, v in state.items() if k.startswith("param/")}
    model = models.builtin(name)
    for input_name, sources in model.wiring.items():
        for source, stem in (("input", "W_in"), ("recurrent", "W_rec")):
            assert (f"{stem}_{input_name}" in params) == (source in sources), (stem, input_name)
            if source in sources and (model.signs or {}).get(input_name):
                assert (params[f"{stem}_{input_name}"] * model.signs[input_name] >= 0).all()
                assert np.abs(params[f"{stem}_{input_name}"]).max() > 0
