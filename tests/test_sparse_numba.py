"""Sparse connectivity on the Numba backend: its kernels in sparse rows (``layouts.CSR``), run
step by step and as e-prop's whole pass, equal the NumPy reference with the same synapses to
1e-12 in float64, and the dense Numba run with the masked weights, its gradients gathered at
the synapses (tests/test_sparse.py checks the NumPy reference against the dense one).

Every network is active (its spikes are asserted) and every input weight's gradient nonzero.
Numba compiles each model's kernels once per process and each whole-pass driver once per
network shape and loss: every model is checked for one setting, a few for the rest.
"""
import numpy as np
import pytest

from symgrad import models
from symgrad.runtime import eprop, fused
from symgrad.runtime.network import Network
from helpers import DRIVE, assert_active, batch, input_weights, relative_error
from test_sparse import masks_for

pytest.importorskip("numba")
EXACT = 1e-12


def sparse(name, backend, *, hidden=6, model=None, dtype="float64", **options):
    """A network of ``name`` on ``backend`` with a random half of each weight's synapses (drawn
    as tests/test_sparse.py draws them: the same on every backend), driven hard enough to spike."""
    model = model or models.builtin(name)
    shaped = Network(model, 6, hidden, 4, seed=2, backend="numpy", **options)
    net = Network(model, 6, hidden, 4, seed=2, dtype=dtype, backend=backend, connectivity=masks_for(shaped),
                  **options)
    for layer in net.layers:
        for key in input_weights(layer):
            net.params[key] *= 3.0 * DRIVE.get(name, 1.0)
    assert all(layer.layout.sparse for layer in net.layers)
    return net


def masked(net, backend):
    """The dense network of ``net``'s shape on ``backend``, its weights ``net``'s, zero where no
    synapse is."""
    layer = net.layers[0]
    dense = Network(layer.model, net.n_in, [l.n for l in net.layers], net.n_out, seed=2, dtype=net.dtype,
                    backend=backend, kappa=net.kappa, recurrent=layer.recurrent, bias=layer.bias,
                    events=net.events)
    dense.set_params({key: net.dense(key) for key in net.params})
    return dense


def run(net, loss="ce", reg=0.0, steps=25, update_every=None, x=None, whole_pass=False):
    """e-prop on ``net``: its result, and the gradients of each online update (the last is the
    result's). An update takes a gradient step, so that later steps run on the new weights."""
    if x is None:
        x, labels = batch(steps=steps)
    else:
        labels = np.random.default_rng(1).integers(0, 4, x.shape[1])
    target = np.random.default_rng(3).standard_normal((len(x), x.shape[1], 4)) if loss == "mse" else labels
    updates = []

    def apply(grads):
        updates.append({key: np.array(value) for key, value in grads.items()})
        for key, value in grads.items():
            net.params[key] -= 0.5 * value

    online = dict(update_every=update_every, apply=apply) if update_every else {}
    result = eprop(net, x, target, loss=loss, reg=reg, whole_pass=whole_pass, **online)
    assert_active(result, net)
    return result, updates + [result.grads]


def assert_equal(net, got, expected, gather=None, tolerance=EXACT):
    """Two runs' losses, readouts and every update's gradients, ``expected``'s gathered at
    ``net``'s synapses by ``gather`` (a dense run's)."""
    (got, got_updates), (expected, expected_updates) = got, expected
    assert got.spikes == pytest.approx(expected.spikes, rel=EXACT)
    assert got.loss == pytest.approx(expected.loss, rel=tolerance)
    assert relative_error(got.readout, expected.readout) <= tolerance
    assert len(got_updates) == len(expected_updates)
    for key in input_weights(net.layers[0]):
        assert any(np.abs(grads[key]).max() > 0 for grads in got_updates), f"{key}: a zero gradient proves nothing"
    for got_grads, expected_grads in zip(got_updates, expected_updates):
        assert set(got_grads) == set(expected_grads)
        for key, value in expected_grads.items():
            if gather and key in net.connectivity:
                value = net.connectivity[key].gather(value)
            assert got_grads[key].shape == value.shape, key
            assert relative_error(got_grads[key], value) <= tolerance, key


def check(make, whole_pass=False, tolerance=EXACT, **options):
    """e-prop on ``make("numba")`` (step by step, or as the whole pass) against ``make("numpy")``."""
    fast = make("numba")
    assert fused.available(fast), "the whole pass runs sparse layers"
    got = run(fast, whole_pass=whole_pass, **options)
    assert_equal(fast, got, run(make("numpy"), **options), tolerance=tolerance)
    return got[0]


def built(name, **options):
    return lambda backend: sparse(name, backend, **options)


@pytest.mark.parametrize("name", list(models.BUILTIN))
def test_every_built_in_model_equals_numpy(name):
    check(built(name, recurrent=True, bias=True, kappa=0.8))


@pytest.mark.parametrize("loss, kappa", [("ce", 0.0), ("ce_mean", 0.0), ("ce_mean", 0.8)])
@pytest.mark.parametrize("name", ["lif", "alif", "coba_lif"])
def test_losses_and_readout_leaks(name, loss, kappa):
    """lif stores nothing per synapse (kappa 0: products at the synapses); coba_lif has two inputs."""
    check(built(name, recurrent=True, kappa=kappa), loss=loss)


def test_squared_error_with_the_regulariser():
    check(built("alif", recurrent=True, kappa=0.5), loss="mse", reg=0.3)


def test_two_layers_with_online_updates():
    check(built("alif", hidden=(7, 5), recurrent=True, kappa=0.8), update_every=8)


def learnable_model():
    import sympy as sp

    from symgrad import NeuronModel
    from symgrad.model import spike, stop_gradient

    v, w, alpha, tau, I = sp.symbols("v w alpha tau I")
    return NeuronModel("sparse_learnable", {v: 0.0, w: 0.0}, {alpha: 0.9, tau: 0.7},
                       {v: alpha * v + I - stop_gradient(spike(v - 1.0)), w: tau * w + v},
                       spike(v + 0.3 * w - 1.0), learnable=(alpha,), per_neuron=(tau,))


def test_learnable_and_per_neuron_parameters():
    got = check(built("x", model=learnable_model(), recurrent=True, kappa=0.7,
                      neuron_params={"tau": np.linspace(0.5, 0.8, 6)}), reg=0.3)
    assert np.abs(got.grads["alpha"]).max() > 0


@pytest.mark.parametrize("events", [True, False])
def test_rows_at_rest_skipped_or_swept_alike(events):
    x, _ = batch(steps=40)
    x[8:30] = 0.0  # a long silence: rows rest, then wake
    check(built("alif", recurrent=True, kappa=0.8, events=events), x=x)


def test_float32():
    got = check(built("alif", recurrent=True, kappa=0.8, dtype="float32"), tolerance=1e-4)
    assert got.grads["W_in"].dtype == np.float32 and got.grads["W_in"].ndim == 1


def test_sparse_equals_the_dense_run_with_masked_weights():
    net = sparse("alif", "numba", hidden=(7, 5), recurrent=True, bias=True, kappa=0.8)
    assert_equal(net, run(net), run(masked(net, "numba")), gather=True)


# -- e-prop's whole pass (runtime/fused.py) --------------------------------------------------
@pytest.mark.parametrize("name, loss, kappa, reg", [
    ("alif", "ce", 0.8, 0.0), ("alif", "ce_mean", 0.8, 0.0),
    ("lif", "ce", 0.0, 0.3),  # nothing per synapse: the products at the synapses
])
def test_whole_pass_equals_numpy(name, loss, kappa, reg):
    check(built(name, recurrent=True, bias=True, kappa=kappa), whole_pass=True, loss=loss, reg=reg)


def test_whole_pass_of_two_layers_with_online_updates():
    """The learning signal passes down through layer 1's sparse W_in; the synaptic input reads
    each weight column by column, copied again after each update changes the weights."""
    check(built("alif", hidden=(7, 5), recurrent=True, kappa=0.8), whole_pass=True, update_every=8)


def test_whole_pass_of_several_inputs_and_rows_at_rest():
    """Two layers of a model with two inputs, a per-step squared error and the regulariser."""
    x, _ = batch(steps=40)
    x[8:30] = 0.0  # rows rest, then wake
    check(built("coba_lif", hidden=(7, 5), recurrent=True, kappa=0.5), whole_pass=True, loss="mse", reg=0.2, x=x)


def test_a_sparse_projection_beside_a_dense_one():
    """Only W_rec sparse: the port's rows hold W_in's every column, whose gradient stays dense."""
    def make(backend):
        net = Network(models.builtin("alif"), 6, 6, 4, seed=2, backend=backend, recurrent=True, kappa=0.8,
                      connectivity={"W_rec": 0.5})
        net.params["W_in"] *= 3.0
        return net

    got = check(make, whole_pass=True)
    assert got.grads["W_in"].shape == (6, 6) and got.grads["W_rec"].shape == (18,)


@pytest.mark.parametrize("name", list(models.BUILTIN))
def test_the_generated_kernels_walk_each_rows_synapses_and_assign_nothing_unread(name):
    import ast

    from symgrad.layouts import CSR
    from symgrad.runtime import compiled

    text = compiled.generated(models.builtin(name), layout=CSR).texts["numba"]
    assert "for k in range(row_start[post], row_start[post + 1]):" in text
    assert "per-synapse arrays\n(batch, nnz), gradients (nnz)." in text
    for function in ast.walk(ast.parse(text)):
        if isinstance(function, ast.FunctionDef):
            names = [node for node in ast.walk(function) if isinstance(node, ast.Name)]
            stored = {node.id for node in names if isinstance(node.ctx, ast.Store)}
            read = {node.id for node in names if isinstance(node.ctx, ast.Load)}
            assert stored <= read, f"{function.name} assigns {sorted(stored - read)} and never reads it"
