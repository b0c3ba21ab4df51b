"""e-prop's memory does not grow with the sequence length; BPTT's does.

Peaks are measured with tracemalloc (numpy reports its buffers to it) over one gradient pass,
after a warm-up pass, with the input made beforehand.
"""
import tracemalloc

import numpy as np
import pytest

from symgrad.runtime import bptt, eprop
from helpers import batch, network


def peak_bytes(fn) -> int:
    fn()  # warm-up: first-call caches are not the pass's memory
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def pass_peak(rule, steps, loss="ce_mean", kappa=0.9, backend="numpy"):
    net = network("alif", recurrent=True, hidden=24, kappa=kappa, backend=backend)
    x, labels = batch(steps=steps)
    assert rule(net, x, labels, loss=loss).spikes[0] > 0, "a silent network proves nothing"
    return peak_bytes(lambda: rule(net, x, labels, loss=loss))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("loss", ["ce", "ce_mean", "ce_last"])
def test_eprop_memory_is_independent_of_sequence_length(loss, backend):
    short, long = pass_peak(eprop, 20, loss, backend=backend), pass_peak(eprop, 400, loss, backend=backend)
    assert long <= short * 1.05 + 4096, (short, long)
    grown = pass_peak(bptt, 400, loss) - pass_peak(bptt, 20, loss)
    assert grown > 10 * short, "BPTT should store every step: is the measurement working?"


def test_the_mean_loss_keeps_no_filtered_eligibility():
    """For ce_mean the readout's filter is folded into a weight per step, so a leaky readout
    costs no (batch, post, pre) buffer beside the sum itself."""
    net = network("alif", recurrent=True, hidden=24)
    x, _ = batch(steps=20)
    per_synapse = x.shape[1] * 24 * (x.shape[2] + 24) * np.dtype(net.dtype).itemsize
    leaky, plain = pass_peak(eprop, 20, kappa=0.9), pass_peak(eprop, 20, kappa=0.0)
    assert leaky < plain + per_synapse / 2, (leaky, plain, per_synapse)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("loss, kappa", [("ce", 0.0), ("ce", 0.8), ("ce_mean", 0.9), ("ce_last", 0.9)])
@pytest.mark.parametrize("name", ["lif", "alif", "brf", "se_adlif"])
def test_the_plan_predicts_exactly_what_eprop_allocates(name, loss, kappa, backend):
    """TracePlan.memory and e-prop's buffers come from one description: they cannot drift."""
    from symgrad.runtime.eprop import _LayerState
    from symgrad.runtime.losses import loss_kind

    def held(owner) -> list:  # the arrays an object holds, as attributes or in dicts
        values = [v for value in vars(owner).values() for v in (value.values() if isinstance(value, dict) else [value])]
        return [a for a in values if isinstance(a, np.ndarray)]

    net = network(name, kappa=kappa, recurrent=True, hidden=5, backend=backend)
    layer, kind = net.layers[0], loss_kind(loss)
    flags = dict(filtered=kind.keeps_filtered(kappa), sequence_sum=kind.keeps_sum)
    state = _LayerState(net, layer, 3, flags["filtered"], flags["sequence_sum"], False)
    (port,) = state.ports  # a one-input model
    flags.update(fused=backend == "numba", events=port.buffers.last is not None)
    arrays = [a for key, a in vars(port.buffers).items() if key != "u" and isinstance(a, np.ndarray)]
    arrays += held(port.traces)
    if layer.model.learnable:
        arrays += held(state.ptraces)
    predicted = layer.plan.memory(3, layer.n, layer.n_pre, itemsize=8, **flags)
    assert predicted["total"] == sum(a.nbytes for a in arrays)
