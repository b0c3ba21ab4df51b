"""The whole pass compiled: e-prop's (symgrad.passes, runtime/fused.py) and BPTT's
(symgrad.bptt_pass, runtime/fused_bptt.py).

On the Numba backend an e-prop pass runs as one call of a generated driver per segment between
online updates, a BPTT pass as two (the forward and the backward sweep), and inference (the
trainer's scoring) as one, the forward sweep keeping nothing for a backward one. Each equals the
NumPy backend's Python loop to 1e-12 in float64: every built-in model (e-prop with and without a
leaky readout), every loss with the regulariser, one and two layers, several inputs, learnable
parameters, online updates and rows at rest skipped or not (e-prop's), no readout, a readout
with gain and offset, a bias, and sparse weights. (The rest of the suite runs the Python loops on
the Numba kernels, see conftest.py: each driver compiles for seconds.)
"""
import numpy as np
import pytest

from symgrad import models
from symgrad.model import ModelError
from symgrad.runtime import Network, bptt, eprop
from helpers import batch, input_weights, network, relative_error

pytest.importorskip("numba")
EXACT = 1e-12


def check(make, loss="ce", reg=0.0, steps=25, update_every=None, tolerance=EXACT, x=None, method=eprop):
    """``method`` (e-prop, or BPTT) on ``make("numba")`` compiled against ``make("numpy")``,
    step by step: the loss, the activity, the readout and every gradient (each update's too)."""
    if x is None:
        x, labels = batch(steps=steps)
    else:
        labels = np.random.default_rng(1).integers(0, 4, x.shape[1])
    target = np.random.default_rng(3).standard_normal((len(x), x.shape[1], 4)) if loss == "mse" else labels
    results = []
    for backend, whole in (("numpy", False), ("numba", True)):
        net, applied = make(backend), []
        options = dict(update_every=update_every, apply=lambda g: applied.append({k: np.array(v) for k, v in g.items()}))
        result = method(net, x, target, loss=loss, reg=reg, whole_pass=whole, **(options if update_every else {}))
        results.append((net, result, applied + [result.grads]))
    (net, expected, expected_updates), (_, got, got_updates) = results
    assert all(abs(count) > 0 for count in expected.spikes), "the network is silent: this proves nothing"
    assert got.spikes == pytest.approx(expected.spikes, rel=EXACT)
    assert got.loss == pytest.approx(expected.loss, rel=tolerance)
    assert relative_error(got.readout, expected.readout) <= tolerance
    for key in input_weights(net.layers[0]):
        assert np.abs(expected.grads[key]).max() > 0, f"{key}: a zero gradient proves nothing"
    assert len(got_updates) == len(expected_updates)
    for got_grads, expected_grads in zip(got_updates, expected_updates):
        assert set(got_grads) == set(expected_grads)
        for key, value in expected_grads.items():
            assert relative_error(got_grads[key], value) <= tolerance, key
    if method is bptt:
        check_inference(net, results[1][0], x, tolerance)
    return got


def check_inference(reference, compiled, x, tolerance):
    """BPTT's driver's ``forward`` (inference) on ``compiled`` against the NumPy loop's
    ``Network.forward`` on ``reference``: the readout, or the last layer's spikes without one."""
    from symgrad.runtime import fused_bptt

    ys, top = fused_bptt.forward(compiled, x)
    expected_ys, spikes = reference.forward(x)
    assert spikes[-1].any(), "the last layer is silent: this proves nothing"
    assert relative_error(top, spikes[-1]) <= tolerance
    assert (ys is None) == (expected_ys is None)
    if ys is not None:
        assert relative_error(ys, expected_ys) <= tolerance


def built(name, **kwargs):
    return lambda backend: network(name, backend=backend, **kwargs)


@pytest.mark.parametrize("loss, kappa", [("ce", 0.0), ("ce_mean", 0.8)])
@pytest.mark.parametrize("name", list(models.BUILTIN))
def test_every_built_in_model_equals_numpy(name, loss, kappa):
    check(built(name, kappa=kappa, recurrent=True, hidden=8), loss=loss)


@pytest.mark.parametrize("name", list(models.BUILTIN))
def test_bptt_of_every_built_in_model_equals_numpy(name):
    check(built(name, kappa=0.8, recurrent=True, hidden=8), loss="ce_mean", reg=0.3, method=bptt)


METHODS = pytest.mark.parametrize("method", [eprop, bptt], ids=["eprop", "bptt"])


@METHODS
@pytest.mark.parametrize("loss, kappa, reg", [("ce", 0.8, 0.3), ("ce_last", 0.9, 0.0), ("mse", 0.5, 0.3)])
def test_every_loss_and_the_regulariser(loss, kappa, reg, method):
    check(built("alif", kappa=kappa, recurrent=True, hidden=8), loss=loss, reg=reg, method=method)


def test_two_layers_with_online_updates():
    check(built("alif", kappa=0.8, recurrent=True, hidden=(8, 6)), update_every=7)


def test_bptt_through_two_layers_and_sparse_weights():
    check(built("alif", kappa=0.8, recurrent=True, hidden=(8, 6)), reg=0.3, method=bptt)
    check(built("alif", kappa=0.8, recurrent=True, hidden=(8, 6), connectivity=0.5), reg=0.3, method=bptt)


@METHODS
def test_two_layers_of_a_model_with_several_inputs_and_a_per_step_squared_error(method):
    check(built("coba_lif", kappa=0.5, recurrent=True, hidden=(8, 6)), loss="mse", reg=0.2, method=method)


def test_rows_at_rest_skipped_or_swept_alike():
    x, _ = batch(steps=40)
    x[8:30] = 0.0  # a long silence: rows rest, then wake
    for events in (True, False):
        check(built("alif", kappa=0.8, recurrent=True, hidden=8, events=events), x=x)


@METHODS
def test_learnable_and_per_neuron_parameters(method):
    import sympy as sp

    from symgrad import NeuronModel
    from symgrad.model import spike, stop_gradient

    v, w, alpha, tau, I = sp.symbols("v w alpha tau I")
    model = NeuronModel("whole_pass_learnable", {v: 0.0, w: 0.0}, {alpha: 0.9, tau: 0.7},
                        {v: alpha * v + I - stop_gradient(spike(v - 1.0)), w: tau * w + v},
                        spike(v + 0.3 * w - 1.0), learnable=(alpha,), per_neuron=(tau,))
    for loss, kappa in (("ce", 0.7), ("ce_mean", 0.7)):
        got = check(lambda backend: network("x", model=model, backend=backend, kappa=kappa, recurrent=True,
                                            hidden=5, neuron_params={"tau": np.linspace(0.5, 0.8, 5)}),
                    loss=loss, reg=0.3, method=method)
        assert np.abs(got.grads["alpha"]).max() > 0


@METHODS
def test_no_readout_a_readout_with_gain_and_offset_and_a_bias(method):
    check(lambda backend: Network(models.builtin("lif"), 6, 4, 4, readout=False, backend=backend, seed=2,
                                  params=None), loss="ce", method=method)
    check(lambda backend: network("alif", backend=backend, kappa=0.6, recurrent=True, bias=True,
                                  readout_gain=np.array([1.0, 0.5, 2.0, 1.5]), readout_offset=0.1),
          loss="mse", method=method)


@METHODS
def test_float32(method):
    got = check(built("alif", kappa=0.8, recurrent=True, dtype="float32"), tolerance=1e-4, method=method)
    assert got.grads["W_in"].dtype == np.float32


def test_the_default_training_network_runs_the_committed_driver():
    from pathlib import Path

    from symgrad.runtime import fused
    from symgrad.runtime.losses import loss_kind

    net = Network(models.builtin("alif"), 40, 16, 10, kappa=0.9, backend="numba")
    for printed, name in ((fused.EPROP, "numba_eprop.py"), (fused.BPTT, "numba_bptt.py")):
        driver = fused.driver(net, loss_kind("ce_mean"), printed)
        committed = Path(__file__).resolve().parent.parent / "generated" / "alif" / name
        assert Path(driver.module.__file__) == committed


@METHODS
def test_a_kernel_numba_cannot_compile_is_one_line(monkeypatch, method):
    import types

    import sympy as sp
    from numba import njit

    from symgrad import NeuronModel, spike

    v, I = sp.symbols("v I")
    model = NeuronModel("whole_pass_broken", {v: 0.0}, {}, {v: 0.9 * v + I}, spike(v - 1))
    net = Network(model, 6, 5, 4, backend="numba")
    kernels = net.layers[0].code.kernels

    @njit
    def neuron_step(*args):
        return undefined_function(args)  # noqa: F821

    fake = types.ModuleType("broken_kernels")
    vars(fake).update({name: getattr(kernels.module, name) for name in kernels.functions}, neuron_step=neuron_step)
    monkeypatch.setattr(kernels, "module", fake)
    x, labels = batch()
    with pytest.raises(ModelError) as caught:
        method(net, x, labels, whole_pass=True)
    message = str(caught.value)
    assert "\n" not in message and "neuron_step" in message and "--backend numpy" in message


@pytest.mark.parametrize("rule, online", [("eprop", {"update_every": 5}), ("bptt", {})])
def test_training_takes_the_whole_pass_and_ends_where_the_python_loop_ends(tmp_path, monkeypatch, rule, online):
    """The trainer's e-prop (online updates every 5 steps) and BPTT, in float64, with the whole
    pass end with the weights and the test accuracy of the same run through the Python loop."""
    from test_train import mkdir, small_run

    from symgrad.runtime import fused

    weights, scores = {}, {}
    for whole in ("1", "0"):
        monkeypatch.setenv(fused.SWITCH, whole)
        trainer = mkdir(small_run(tmp_path, name=f"run{whole}", loss="ce", epochs=1, dtype="float64", rule=rule,
                                  **online))
        scores[whole] = trainer.fit(log=lambda line: None)["test_acc"]  # scored by inference's driver, or the loop
        weights[whole] = {k: np.array(v) for k, v in trainer.net.params.items()}
    assert scores["1"] == scores["0"]
    for key, value in weights["0"].items():
        assert np.abs(value - weights["1"][key]).max() <= 1e-9 * max(1.0, np.abs(value).max()), key
    assert any(np.abs(weights["0"][key] - small_run(tmp_path, name="fresh").net.params[key]).max() > 1e-3
               for key in weights["0"]), "training should have moved the weights"
