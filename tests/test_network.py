"""The general network: a model per layer, per-neuron parameter values, input biases, a readout
with a gain and an offset, and networks whose output is their last layer itself.

Each is checked against an independent route: e-prop against BPTT where e-prop is exact (one
layer, no recurrent weights), BPTT against central finite differences on smooth variants, and
the compiled backends against NumPy.
"""
import numpy as np
import pytest

from symgrad import nir as snir
from symgrad.runtime import Network, eprop
from symgrad.runtime.compiled import generated
from symgrad.runtime.projection import Source

from helpers import (assert_active, assert_eprop_equals_bptt, batch, finite_difference_check, relative_error,
                     smooth_variant)

DT = snir.DT
SPIKING, INTEGRATING = ("LIF", "CubaLIF", "IF"), ("LI", "CubaLI", "I")


def per_neuron_values(kind: str, n: int, rng) -> dict:
    """Values that differ across neurons, scaled so that an input of 1 moves v by about 1."""
    values = {"dt": DT}
    if "tau" in snir.models.KINDS[kind].fields:
        values["tau"] = rng.uniform(6e-4, 2e-3, n)
    if "tau_mem" in snir.models.KINDS[kind].fields:
        values["tau_mem"] = rng.uniform(6e-4, 2e-3, n)
    if kind in ("IF", "I"):
        values["r"] = rng.uniform(0.3, 1.0, n) / DT
    if "v_threshold" in snir.models.KINDS[kind].fields:
        values["v_threshold"] = rng.uniform(0.8, 1.2, n)
    return values


def nir_network(kinds, hidden, n_out, *, n_in=6, recurrent=False, bias=True, readout=True, kappa=0.0,
                shaped_readout=False, smooth=False, seed=0, backend="numpy", detach_reset=False):
    rng = np.random.default_rng(seed)
    values = [per_neuron_values(kind, n, rng) for kind, n in zip(kinds, hidden)]
    models = [snir.neuron(kind, [k for k, v in vals.items() if np.ndim(v)], detach_reset=detach_reset)
              for kind, vals in zip(kinds, values)]
    if smooth:
        models = [smooth_variant(model) for model in models]
    options = {}
    if shaped_readout:
        options = dict(readout_gain=rng.uniform(0.5, 1.5, n_out), readout_offset=rng.uniform(-0.1, 0.1, n_out))
    net = Network(models, n_in, hidden, n_out, recurrent=recurrent, bias=bias, readout=readout, kappa=kappa,
                  neuron_params=values, seed=seed, dtype="float64", backend=backend, **options)
    for layer in net.layers:
        net.params[layer.projection(Source.INPUT).key] *= 2.0
        if layer.bias:
            net.params[layer.projection(Source.BIAS).key][...] = rng.uniform(-0.1, 0.2, layer.n)
    return net


@pytest.mark.parametrize("readout", ["leaky", "shaped", "none"])
@pytest.mark.parametrize("kind", SPIKING + INTEGRATING)
def test_eprop_equals_bptt_for_every_nir_neuron(kind, readout):
    """One layer without recurrent weights, with a bias, read out through a leaky readout (with a
    gain and an offset per output: "shaped"), or with no readout: the loss on the layer itself."""
    hidden = 4 if readout == "none" else 5
    net = nir_network([kind], [hidden], 4, readout=readout != "none", kappa=0.0 if readout == "none" else 0.8,
                      shaped_readout=readout == "shaped")
    fast, reference = assert_eprop_equals_bptt(net, *batch(), 1e-9)
    assert set(fast.grads) == set(net.params)
    assert fast.loss == pytest.approx(reference.loss, rel=1e-12)
    assert np.allclose(fast.readout, reference.readout, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kind", SPIKING)
def test_eprop_equals_bptt_with_the_reset_detached(kind):
    """The reset wholly in stop_gradient: the same forward pass, another gradient, which e-prop
    still gets exactly; with one time constant per layer every trace is presynaptic."""
    net = nir_network([kind], [5], 4, kappa=0.8, detach_reset=True)
    attached = nir_network([kind], [5], 4, kappa=0.8)
    assert net.layers[0].model.name.endswith("_detached")
    x, labels = batch()
    assert_eprop_equals_bptt(net, x, labels, 1e-9, nonzero=False)
    assert all(np.array_equal(a, b) for a, b in zip(net.forward(x)[1], attached.forward(x)[1]))
    assert not generated(snir.neuron(kind, detach_reset=True)).plan.per_synapse


@pytest.mark.parametrize("loss", ["ce_mean", "ce_last"])
def test_sequence_losses_through_a_shaped_readout_are_exact(loss):
    net = nir_network(["CubaLIF"], [5], 4, kappa=0.7, shaped_readout=True)
    assert_eprop_equals_bptt(net, *batch(), 1e-9, loss=loss, nonzero=False)


@pytest.mark.parametrize("readout", ["shaped", "none"])
def test_bptt_equals_finite_differences_through_mixed_layers(readout):
    """Two layers of different models, recurrent, with biases and per-neuron values."""
    net = nir_network(["LIF", "CubaLIF"], [5, 4], 4, recurrent=True, smooth=True, readout=readout != "none",
                      kappa=0.0 if readout == "none" else 0.6, shaped_readout=readout == "shaped")
    x, labels = batch(steps=12)
    result = finite_difference_check(net, x, labels)
    assert {"b_in", "b_in_1", "W_rec", "W_rec_1"} <= set(result.grads)


def test_a_model_per_layer_runs_each_layers_own_code():
    net = nir_network(["IF", "CubaLIF"], [5, 4], 3)
    assert [layer.model.name for layer in net.layers] == ["nir_if", "nir_cubalif"]
    assert [layer.n_pre for layer in net.layers] == [6 + 1, 5 + 1]  # the bias column
    ys, spikes = net.forward(batch()[0])
    assert ys.shape == (25, 3, 3) and all(s.sum() > 0 for s in spikes)


def test_a_network_without_readout_outputs_its_last_layer():
    net = nir_network(["LIF"], [4], 4, readout=False)
    assert "W_out" not in net.params and "b_out" not in net.params
    ys, spikes = net.forward(batch()[0])
    assert ys is None and spikes[-1].sum() > 0
    with pytest.raises(ValueError, match="n_out must be 4"):
        nir_network(["LIF"], [4], 3, readout=False)


def test_parameter_values_are_checked_against_the_model():
    model = snir.neuron("LIF", ["tau"])
    with pytest.raises(ValueError, match="has no parameter 'alpha'"):
        Network(model, 3, 4, 2, neuron_params={"alpha": 0.9})
    with pytest.raises(ValueError, match="parameter r of layer 0 has shape \\(4,\\); it takes a number"):
        Network(model, 3, 4, 2, neuron_params={"r": np.ones(4)})
    with pytest.raises(ValueError, match="parameter tau of layer 1 has shape \\(3,\\)"):
        Network(model, 3, [4, 5], 2, neuron_params=[{}, {"tau": np.full(3, 1e-3)}])
    with pytest.raises(ValueError, match="model: 1 values for 2 layers"):
        Network([model], 3, [4, 5], 2)


@pytest.mark.parametrize("backend", ["numba", "cuda-host"])
def test_compiled_backends_equal_numpy_on_a_general_network(backend):
    pytest.importorskip("numba") if backend == "numba" else None
    x, labels = batch()
    results = {}
    for name in ("numpy", backend):
        net = nir_network(["CubaLIF", "LIF"], [5, 4], 4, recurrent=True, kappa=0.5, shaped_readout=True,
                          backend=name)
        results[name] = eprop(net, x, labels)
    assert_active(results["numpy"], net)
    for key, value in results["numpy"].grads.items():
        assert relative_error(results[backend].grads[key], value) <= 1e-9, key
