"""A batch split into shards on threads gives the whole batch's loss and gradients."""
import numpy as np
import pytest

from symgrad.runtime import bptt, eprop
from symgrad.runtime.parallel import Sharded
from helpers import batch, network, relative_error


@pytest.mark.parametrize("loss", ["ce", "ce_mean", "ce_last", "mse"])
@pytest.mark.parametrize("rule", [eprop, bptt])
def test_shards_sum_to_the_whole_batch(rule, loss):
    net = network("alif", recurrent=True, hidden=10, kappa=0.8)
    x, labels = batch(steps=20, size=7)
    target = np.random.default_rng(4).standard_normal((20, 7, 4)) if loss == "mse" else labels
    whole = rule(net, x, target, loss=loss)
    sharded = Sharded(3)(rule, net, x, target, loss=loss)  # uneven: 2, 3 and 2 samples
    assert whole.spikes[0] > 0, "a silent network proves nothing"
    assert sharded.loss == pytest.approx(whole.loss, rel=1e-12)
    assert sharded.spikes == pytest.approx(whole.spikes, rel=1e-12)
    np.testing.assert_allclose(sharded.readout, whole.readout, rtol=1e-12)
    for key, value in whole.grads.items():
        assert np.abs(value).max() > 0, key
        assert relative_error(sharded.grads[key], value) <= 1e-12, key


def test_batch_coupled_settings_are_not_sharded():
    """The rate regulariser penalises the whole batch's rate, and online updates change the
    weights mid-batch: both run as one pass, so they are exact too."""
    net = network("alif", kappa=0.5)
    x, labels = batch(steps=15, size=6)
    whole = eprop(net, x, labels, loss="ce", reg=0.7)
    sharded = Sharded(2)(eprop, net, x, labels, loss="ce", reg=0.7)
    for key, value in whole.grads.items():
        np.testing.assert_array_equal(sharded.grads[key], value, err_msg=key)


def test_more_workers_than_samples():
    net = network("lif", kappa=0.5)
    x, labels = batch(steps=10, size=2)
    whole, sharded = eprop(net, x, labels), Sharded(5)(eprop, net, x, labels)
    for key, value in whole.grads.items():
        assert relative_error(sharded.grads[key], value) <= 1e-12, key


def test_the_worker_count(monkeypatch):
    from symgrad.errors import UserError
    from symgrad.runtime.parallel import default_workers

    monkeypatch.setenv("SYMGRAD_WORKERS", "3")
    assert default_workers("numpy") == 3 and default_workers("cupy") == 1
    monkeypatch.setenv("SYMGRAD_WORKERS", "lots")
    with pytest.raises(UserError, match="SYMGRAD_WORKERS"):
        default_workers("numpy")
    monkeypatch.delenv("SYMGRAD_WORKERS")
    assert 1 <= default_workers("numpy") <= 8


def test_cuda_host_kernels_run_from_several_threads():
    """The host shim keeps CUDA's thread indices per OS thread, so shards may launch at once."""
    net = network("alif", recurrent=True, hidden=10, kappa=0.8, backend="cuda-host")
    reference = network("alif", recurrent=True, hidden=10, kappa=0.8)
    x, labels = batch(steps=20, size=8)
    whole = eprop(reference, x, labels, loss="ce_mean")
    sharded = Sharded(4)(eprop, net, x, labels, loss="ce_mean")
    assert whole.spikes[0] > 0
    for key, value in whole.grads.items():
        assert relative_error(sharded.grads[key], value) <= 1e-12, key
