"""Every parameter of a network has its own key (symgrad.runtime.projection.parameter_keys).

Keys were composed by string: layer 1's weights onto input I (``W_in_I`` + ``_1``) were keyed
like layer 0's onto input I_1, learnable ``tau`` of layer 1 like ``tau_1`` of layer 0, and a
learnable ``W_out`` like the readout. Readable keys stay where they are unique; colliding ones
are qualified (``layer1.W_in.I``).
"""
import numpy as np
import pytest
import sympy as sp

from symgrad import NeuronModel, models, spike, stop_gradient
from symgrad.runtime import Network, bptt, eprop
from symgrad.runtime.checkpoint import load_checkpoint, parameters
from symgrad.runtime.projection import Source
from helpers import assert_active, batch

# Inputs I and I_1: in two layers, "W_in_I" + "_1" (layer 1) is "W_in_I_1" (layer 0).
CLASHING_MODEL = """
import sympy as sp
from symgrad import NeuronModel, spike, stop_gradient

v, I, I_1, alpha = sp.symbols("v I I_1 alpha")
model = NeuronModel(name="two_in", states={v: 0.0}, params={alpha: 0.9},
                    update={v: alpha * v + I + I_1 - 0.5 * stop_gradient(spike(v - 0.5))},
                    output=spike(v - 0.5), inputs=(I, I_1))
"""
# The randman task, small: 8 channels, 12 steps, 3 classes.
SMALL = ["--set", "samples=32", "--set", "test_samples=16", "--set", "channels=8", "--set", "steps=12",
         "--set", "n_classes=3", "--hidden", "8", "--batch", "16", "--quiet", "--dtype", "float64"]


def clashing_model() -> NeuronModel:
    space = {}
    exec(CLASHING_MODEL, space)
    return space["model"]


def learnable_model(*names: str) -> NeuronModel:
    """A leaky neuron whose leak is the product of learnable parameters ``names``."""
    v, I = sp.symbols("v I")
    leaks = sp.symbols(names)
    return NeuronModel(name="leaky", states={v: 0.0}, params=dict.fromkeys(leaks, 0.95),
                       update={v: sp.Mul(*leaks) * v + I - stop_gradient(spike(v - 1))},
                       output=spike(v - 1), learnable=leaks)


def weight_keys(net) -> list:
    return [p.key for layer in net.layers for p in layer.projections]


def driven(net, gain=2.0):
    """``net`` with its input weights scaled, so that both layers spike."""
    for key in (p.key for layer in net.layers for p in layer.projections if p.source is Source.INPUT):
        net.params[key] *= gain
    return net


def test_inputs_I_and_I_1_in_two_layers_have_eight_weight_matrices():
    net = Network(clashing_model(), 6, [5, 4], 3, recurrent=True, seed=0)
    keys = weight_keys(net)
    assert len(keys) == len(set(keys)) == 8
    assert set(net.params) == {"W_in_I", "W_rec_I", "layer0.W_in.I_1", "layer0.W_rec.I_1",
                               "layer1.W_in.I", "layer1.W_rec.I", "W_in_I_1_1", "W_rec_I_1_1", "W_out", "b_out"}
    shapes = {Source.INPUT: [(5, 6), (4, 5)], Source.RECURRENT: [(5, 5), (4, 4)]}
    for layer in net.layers:
        for input_name in ("I", "I_1"):
            for source in (Source.INPUT, Source.RECURRENT):
                projection = layer.projection(source, input_name)
                assert net.params[projection.key].shape == shapes[source][layer.index], projection


@pytest.mark.parametrize("rule", [eprop, bptt])
def test_every_parameter_has_its_own_gradient(rule):
    net = driven(Network(clashing_model(), 6, [5, 4], 3, recurrent=True, seed=0))
    x, labels = batch(n_in=6, n_out=3)
    result = rule(net, x, labels)
    assert_active(result, net)
    assert set(result.grads) == set(net.params)
    for key, value in net.params.items():
        assert result.grads[key].shape == value.shape, key
    # Both of layer 1's input matrices carry a gradient of their own (the signal from the readout).
    for input_name in ("I", "I_1"):
        assert np.abs(result.grads[net.layers[1].projection(Source.INPUT, input_name).key]).max() > 0


def test_a_sign_by_weight_name_holds_in_every_layer_and_only_there():
    net = Network(clashing_model(), 6, [5, 4], 3, recurrent=True, seed=0, signs={"W_in_I_1": -1})
    assert net.signs == {"layer0.W_in.I_1": -1, "W_in_I_1_1": -1}
    assert (net.params["layer0.W_in.I_1"] <= 0).all() and (net.params["W_in_I_1_1"] <= 0).all()
    assert (net.params["layer1.W_in.I"] > 0).any()  # layer 1's weights onto I keep their signs


def test_symgrad_train_two_layers_of_inputs_I_and_I_1(symgrad, tmp_path):
    (tmp_path / "two_in.py").write_text(CLASHING_MODEL)
    done = symgrad("train", "two_in.py", "--layers", "2", "--loss", "ce", "--epochs", "1", *SMALL,
                   "--out", "run")
    assert done.code == 0, done.err
    assert "did not spike" not in done.err  # the trainer warns of a silent layer
    state = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    params = parameters(state)
    assert len(params) == 10 and params["layer1.W_in.I"].shape == (8, 8)
    assert params["W_in_I"].shape == params["layer0.W_in.I_1"].shape == (8, 8)  # 8 channels, 8 neurons
    # The checkpoint reads back into the run's network, key by key.
    again = symgrad("evaluate", "run", "--model", "two_in.py")
    assert again.code == 0, again.err


def test_learnable_tau_and_tau_1_in_two_layers_are_four_parameters():
    values = [{"tau": 0.91, "tau_1": 0.92}, {"tau": 0.93, "tau_1": 0.94}]
    net = Network(learnable_model("tau", "tau_1"), 4, [3, 2], 2, neuron_params=values, seed=0)
    learnable = {layer.key(name) for layer in net.layers for name in ("tau", "tau_1")}
    assert learnable == {"tau", "layer0.tau_1", "layer1.tau", "tau_1_1"}
    for layer, given in zip(net.layers, values):
        read = net.neuron_params(layer)
        for name, value in given.items():
            assert read[name].shape == (layer.n,) and np.all(read[name] == value), (layer.index, name)
    result = bptt(driven(net), *batch(n_in=4, n_out=2))
    assert_active(result, net)
    assert all(result.grads[key].shape == net.params[key].shape for key in learnable)


def test_a_learnable_named_W_out_is_not_the_readout():
    net = Network(learnable_model("W_out"), 4, 3, 2, neuron_params={"W_out": 0.9}, seed=0)
    assert net.layers[0].key("W_out") == "layer0.W_out"
    assert net.params["W_out"].shape == (2, 3) and np.all(net.params["layer0.W_out"] == 0.9)
    result = bptt(driven(net), *batch(n_in=4, n_out=2))
    assert_active(result, net)
    assert result.grads["W_out"].shape == (2, 3) and result.grads["layer0.W_out"].shape == (3,)


def test_the_keys_of_ordinary_networks_are_unchanged():
    """Checkpoints, the README and other tests name these keys: a guard (they held before)."""
    net = Network([models.builtin("lif"), models.builtin("se_adlif")], 4, [3, 3], 2, recurrent=True,
                  bias=True, seed=0)
    assert [net.layers[1].projection(source).key for source in Source] == ["W_in_1", "W_rec_1", "b_in_1"]
    assert set(net.params) == {"W_in", "W_rec", "b_in", "W_in_1", "W_rec_1", "b_in_1", "alpha_1", "beta_1",
                               "W_out", "b_out"}
    coba = Network(models.builtin("coba_lif"), 4, [3, 3], 2, recurrent=True, seed=0)
    assert set(coba.params) == {f"{stem}_{input_name}{layer}" for stem in ("W_in", "W_rec")
                                for input_name in ("I_e", "I_i") for layer in ("", "_1")} | {"W_out", "b_out"}
