"""What e-prop and BPTT share: the rate regulariser, the readout's gradients and the pass-down
of a signal through a layer's projections, each one piece of code both rules call."""
import numpy as np
import pytest

from symgrad.runtime import bptt, eprop
from symgrad.runtime.projection import Source
from symgrad.runtime.readout import ReadoutGradient
from symgrad.runtime.regulariser import rate_regulariser
from helpers import assert_active, batch, network, relative_error


def test_rate_regulariser_by_hand():
    sums = [np.array([4.0, 0.0]), np.array([1.0, 2.0, 3.0])]  # spikes over 10 steps of 2 samples
    value, (first, second) = rate_regulariser(sums, steps=10, batch=2, reg=0.5, rate_target=0.1)
    # rates 0.2, 0 and 0.05, 0.1, 0.15: excess 0.1, -0.1 and -0.05, 0, 0.05
    assert value == pytest.approx(0.25 * (0.01 + 0.01 + 0.0025 + 0.0025), rel=1e-14)
    np.testing.assert_allclose(first, [0.0025, -0.0025], rtol=1e-14)  # reg * excess / (10 * 2)
    np.testing.assert_allclose(second, [-0.00125, 0.0, 0.00125], rtol=1e-14, atol=1e-18)


def test_rate_regulariser_penalises_the_whole_batch_and_weights_the_slice():
    asked = []

    def whole_batch(sums, size):  # this slice of 2 samples and another, of 2, together
        asked.append(size)
        return [sums[0] + np.array([0.0, 4.0]), sums[1] + np.array([3.0, 2.0, 1.0])], 4

    sums = [np.array([4.0, 0.0]), np.array([1.0, 2.0, 3.0])]
    value, coefficients = rate_regulariser(sums, 10, 2, reg=0.5, rate_target=0.05, rate_scope=whole_batch)
    assert asked == [2]
    # every rate of the whole batch is 4 / 40 = 0.1: excess 0.05 for each of 5 neurons
    assert value == pytest.approx(0.25 * 5 * 0.05 ** 2, rel=1e-14)
    for coefficient in coefficients:  # divided by this slice's size, 2, not the whole batch's
        np.testing.assert_allclose(coefficient, 0.5 * 0.05 / (10 * 2), rtol=1e-14)
    # without the regulariser the ranks are never asked (a collective only where it is wanted)
    value, coefficients = rate_regulariser(sums, 10, 2, reg=0.0, rate_target=0.05, rate_scope=whole_batch)
    assert asked == [2] and value == 0.0
    assert all(not coefficient.any() for coefficient in coefficients)


@pytest.mark.parametrize("loss", ["ce", "mse", "ce_mean", "ce_last"])
def test_eprop_and_bptt_take_the_same_readout_gradient_from_one_place(loss, monkeypatch):
    """The readout's gradient is exact in both rules, summed forward (e-prop) or backward
    (BPTT), with a gain and an offset, and through the one ReadoutGradient.add."""
    calls = []
    add = ReadoutGradient.add
    monkeypatch.setattr(ReadoutGradient, "add", lambda self, *args: calls.append(type(self)) or add(self, *args))
    net = network("alif", kappa=0.8, recurrent=True, readout_gain=[1.0, 2.0, 0.5, 3.0],
                  readout_offset=[0.1, 0.0, 0.0, -0.2])
    x, labels = batch(steps=15)
    target = np.random.default_rng(3).standard_normal((15, 3, 4)) if loss == "mse" else labels
    fast = eprop(net, x, target, loss=loss)
    forward = len(calls)
    reference = bptt(net, x, target, loss=loss)
    assert_active(fast, net)
    assert forward == (15 if loss in ("ce", "mse") else 1) and len(calls) - forward == 15
    for key in ("W_out", "b_out"):
        assert np.abs(reference.grads[key]).max() > 0, f"{key}: zero gradient proves nothing"
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-12, key


def test_pass_back_is_the_synaptic_input_transposed():
    """sum_p <s_p, I_p> is linear in the input and in z_{t-1}; pass_back is its gradient by
    either (a port ``source`` does not drive takes None)."""
    net = network("two_compartment", recurrent=True, bias=True, hidden=5, n_in=6)
    (layer,) = net.layers
    rng = np.random.default_rng(4)
    inp, z = rng.random((3, 6)), rng.random((3, 5))
    signals = {port.input: rng.standard_normal((3, 5)) for port in layer.ports}
    names = layer.model.input_names

    def pairing(inp, z):
        currents = dict(zip(names, net.synaptic_input(layer, inp, z)))
        return sum(float((signals[name] * currents[name]).sum()) for name in signals)

    by_input = net.pass_back(layer, [signals[port.input] for port in layer.ports], Source.INPUT, 3)
    assert by_input.shape == (3, 6)
    assert float((by_input * inp).sum()) == pytest.approx(pairing(inp, z) - pairing(0 * inp, z), rel=1e-12)
    recurrent = [signals[port.input] if port.n_rec else None for port in layer.ports]
    assert None in recurrent  # I_s hears no recurrent spikes
    by_z = net.pass_back(layer, recurrent, Source.RECURRENT, 3)
    assert float((by_z * z).sum()) == pytest.approx(pairing(inp, z) - pairing(inp, 0 * z), rel=1e-12)
    # where no projection carries the source: zeros of its width
    plain = network("lif", hidden=5, n_in=6)
    nothing = plain.pass_back(plain.layers[0], [signals["I_s"]], Source.RECURRENT, 3)
    assert nothing.shape == (3, 5) and not nothing.any()
