"""symgrad against snnTorch, through NIR files, in both directions (the ``interop`` extra).

snnTorch is one of the NIR reference frameworks; ``snntorch_peer`` builds, runs, exports and
imports its networks and states its discrete-time conventions. symgrad runs in float64 and
snnTorch in float32, so spikes must be identical and voltages equal to float32 rounding.
"""
import nir
import numpy as np
import pytest

pytest.importorskip("snntorch", reason="snnTorch is not installed: pip install -e '.[interop]'")

import snntorch_peer as peer  # noqa: E402

from symgrad import nir as snir  # noqa: E402
from symgrad.runtime import eprop  # noqa: E402

STEPS, BATCH, N_IN, HIDDEN, N_OUT = 100, 4, 6, 16, 3


def after_reset(net, records):
    """symgrad keeps the membrane before the reset; snnTorch's is after it."""
    return [np.where(r["z"] > 0, net.layer_values[l]["v_reset"], r["v"]) for l, r in enumerate(records)]


def assert_same(net, ours, theirs):
    for l, (mine, voltage, ref) in enumerate(zip(ours, after_reset(net, ours), theirs)):
        assert ref["spikes"].mean() > 0.01, f"layer {l} of the snnTorch network is nearly silent"
        assert np.array_equal(mine["z"], ref["spikes"]), f"layer {l}: spikes differ"
        scale = np.maximum(1.0, np.abs(ref["mem"]))
        assert (np.abs(voltage - ref["mem"]) / scale).max() <= 2e-6, f"layer {l}: voltages differ beyond rounding"


@pytest.mark.parametrize("per_neuron", [True, False], ids=["per-neuron", "uniform"])
@pytest.mark.parametrize("recurrent", [True, False], ids=["recurrent", "feed-forward"])
@pytest.mark.parametrize("kind", ["lif", "cuba_lif"])
def test_a_network_built_in_snntorch_runs_here_as_there(tmp_path, kind, recurrent, per_neuron):
    torch_net = peer.build(kind, N_IN, HIDDEN, N_OUT, recurrent=recurrent, seed=1, per_neuron=per_neuron)
    x = peer.random_input(STEPS, BATCH, N_IN, seed=2)
    theirs = peer.run(torch_net, x)
    nir.write(tmp_path / "snntorch.nir", peer.export(torch_net, N_IN))
    net = snir.load(tmp_path / "snntorch.nir", dtype="float64")
    assert [layer.recurrent for layer in net.layers] == [recurrent, False]
    assert_same(net, net.record(x), theirs)


@pytest.mark.parametrize("kind", ["lif", "cuba_lif"])
def test_a_network_trained_here_runs_in_snntorch_with_the_same_spikes(tmp_path, kind):
    torch_net = peer.build(kind, N_IN, HIDDEN, N_OUT, recurrent=True, seed=3)
    net = snir.load(peer.export(torch_net, N_IN), dtype="float64")
    x = peer.random_input(STEPS, BATCH, N_IN, seed=4)
    labels = np.arange(BATCH) % N_OUT
    before = {key: value.copy() for key, value in net.params.items()}
    for _ in range(5):  # e-prop on the spikes of the output layer, online within each pass
        result = eprop(net, x, labels, loss="ce")
        for key, grad in result.grads.items():
            net.params[key] -= 0.003 * grad
    assert all(not np.array_equal(before[key], net.params[key]) for key in net.params), "training changed nothing"
    path = snir.save(net, tmp_path / "trained.nir")
    theirs = peer.run_imported(peer.load(nir.read(path)), x)
    assert_same(net, net.record(x), theirs)
