"""Every gradient path against an independent route.

* e-prop equals the generated BPTT where e-prop is exact: one layer, no recurrence, a per-step
  (or sequence) loss on a leaky readout;
* the generated BPTT equals central finite differences on smooth variants of the models;
* with recurrence e-prop approximates BPTT: the cosine similarity is reported.
Every network here is checked to be active.
"""
import numpy as np
import pytest

from symgrad import models
from symgrad.runtime import bptt, eprop
from helpers import assert_active, batch, cosine, finite_difference_check, network, relative_error, smooth_variant

MODELS = list(models.BUILTIN)


@pytest.mark.parametrize("kappa", [0.0, 0.8])
@pytest.mark.parametrize("name", MODELS)
def test_eprop_equals_bptt_in_the_exact_setting(name, kappa):
    net = network(name, kappa=kappa)
    x, labels = batch()
    fast, reference = eprop(net, x, labels), bptt(net, x, labels)
    assert_active(fast, net)
    assert fast.loss == pytest.approx(reference.loss, rel=1e-12)
    assert set(fast.grads) == set(reference.grads) == set(net.params)
    for key in reference.grads:
        assert np.abs(reference.grads[key]).max() > 0, f"{key}: zero gradient proves nothing"
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-6, key


@pytest.mark.parametrize("loss", ["ce_mean", "ce_last"])
@pytest.mark.parametrize("name", ["lif", "alif", "se_adlif"])
def test_sequence_losses_are_exact(name, loss):
    net = network(name, kappa=0.9)
    x, labels = batch(steps=20)
    fast, reference = eprop(net, x, labels, loss=loss), bptt(net, x, labels, loss=loss)
    assert_active(fast, net)
    assert fast.loss == pytest.approx(reference.loss, rel=1e-12)
    for key in reference.grads:
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-6, key


@pytest.mark.parametrize("name", ["alif", "cuba_lif"])
def test_mse_and_rate_regulariser_are_exact(name):
    net = network(name, kappa=0.5)
    x, _ = batch(steps=20)
    target = np.random.default_rng(3).standard_normal((20, 3, 4))
    fast = eprop(net, x, target, loss="mse", reg=0.5, rate_target=0.02)
    reference = bptt(net, x, target, loss="mse", reg=0.5, rate_target=0.02)
    assert_active(fast, net)
    assert fast.loss == pytest.approx(reference.loss, rel=1e-12)
    for key in reference.grads:
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-6, key


@pytest.mark.parametrize("name", ["lif", "alif", "se_adlif"])
def test_recurrent_eprop_aligns_with_bptt(name):
    net = network(name, recurrent=True, kappa=0.8, hidden=12)
    x, labels = batch(steps=30)
    fast, reference = eprop(net, x, labels), bptt(net, x, labels)
    assert_active(fast, net)
    keys = ["W_in", "W_rec"]
    similarity = cosine(fast.grads, reference.grads, keys)
    print(f"\n{name}: cosine(e-prop, BPTT) with W_rec = {similarity:.4f}")
    assert 0.5 < similarity < 1.0 - 1e-9  # an approximation, and a good one
    for key in ("W_out", "b_out"):  # the readout's gradients are exact in any case
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-9


def test_two_layers_top_exact_and_bottom_aligned():
    net = network("alif", hidden=[8, 6], kappa=0.7)
    x, labels = batch(steps=25)
    fast, reference = eprop(net, x, labels), bptt(net, x, labels)
    assert_active(fast, net)
    for key in ("W_in_1", "W_out", "b_out"):
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-6, key
    similarity = cosine(fast.grads, reference.grads, ["W_in"])
    print(f"\nalif two layers: cosine(e-prop, BPTT) of the first layer = {similarity:.4f}")
    assert similarity > 0.3


def test_random_feedback_differs_from_symmetric_only_in_the_hidden_weights():
    x, labels = batch()
    symmetric = eprop(network("alif", kappa=0.5), x, labels)
    random = eprop(network("alif", kappa=0.5, feedback="random"), x, labels)
    assert relative_error(random.grads["W_out"], symmetric.grads["W_out"]) <= 1e-12
    assert relative_error(random.grads["W_in"], symmetric.grads["W_in"]) > 1e-3


def test_online_updates_apply_every_k_steps():
    net = network("alif", kappa=0.5)
    x, labels = batch(steps=20)
    whole = eprop(net, x, labels)
    calls = []
    online = eprop(net, x, labels, update_every=5, apply=lambda g: calls.append({k: v.copy() for k, v in g.items()}))
    assert len(calls) == 3  # after steps 5, 10 and 15; the rest is returned
    summed = {k: sum(c[k] for c in calls) + online.grads[k] for k in whole.grads}
    for key in whole.grads:  # weights unchanged by apply here, so the pieces add up
        assert relative_error(summed[key], whole.grads[key]) <= 1e-12


def test_float32_agrees_with_float64():
    x, labels = batch()
    single = eprop(network("alif", kappa=0.8, dtype="float32"), x, labels)
    double = eprop(network("alif", kappa=0.8), x, labels)
    assert single.grads["W_in"].dtype == np.float32
    assert relative_error(single.grads["W_in"], double.grads["W_in"]) < 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_bptt_matches_finite_differences_on_smooth_models(name):
    model = smooth_variant(models.builtin(name))
    net = network(name, model=model, recurrent=True, kappa=0.6, hidden=4, n_in=3, n_out=3)
    x, labels = batch(steps=12, size=2, n_in=3, n_out=3)
    finite_difference_check(net, x, labels)


@pytest.mark.parametrize("name", ["lif", "alif", "cuba_lif", "sigma_delta"])
def test_planned_traces_equal_dense_per_synapse_traces(name):
    x, labels = batch()
    planned = eprop(network(name, kappa=0.8, recurrent=True), x, labels)
    dense = eprop(network(name, kappa=0.8, recurrent=True, dense=True), x, labels)
    for key in planned.grads:
        assert relative_error(planned.grads[key], dense.grads[key]) <= 1e-10, key
