"""Sparse connectivity on the NumPy reference: the sparse run equals the dense run with masked
weights, its gradients gathered at the synapses; e-prop equals BPTT where exact; memory as the
plan predicts it with nnz; every bad mask gets one line.

The other backends are checked against this one (tests/test_sparse_numba.py, test_sparse_cuda.py).
"""
from dataclasses import replace

import numpy as np
import pytest

from symgrad import models
from symgrad.cli import main
from symgrad.layouts import DENSE
from symgrad.runtime import bptt, eprop
from symgrad.runtime.connectivity import Connectivity, ConnectivityError
from symgrad.runtime.network import Network
from symgrad.runtime.projection import Source
from helpers import DRIVE, assert_active, batch, relative_error

MODELS = list(models.BUILTIN)


def masks_for(net, probability=0.5, seed=5) -> dict:
    """A random boolean mask per input and recurrent weight of ``net`` (every row keeps one)."""
    rng = np.random.default_rng(seed)
    found = {}
    for layer in net.layers:
        for p in layer.projections:
            if p.source is Source.BIAS:
                continue
            shape = net.params[p.key].shape
            mask = rng.random(shape) < probability
            mask[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] = True
            found[p.key] = mask
    return found


def pair(name, *, hidden=6, n_in=6, n_out=4, model=None, **options):
    """A sparse network and the dense one with the same weights, zero where no synapse is; both
    driven hard enough to spike."""
    model = model or models.builtin(name)
    dense = Network(model, n_in, hidden, n_out, seed=2, dtype="float64", backend="numpy", **options)
    sparse = Network(model, n_in, hidden, n_out, seed=2, dtype="float64", backend="numpy",
                     connectivity=masks_for(dense), **options)
    for layer in sparse.layers:
        for p in layer.projections:
            if p.source is Source.INPUT:
                sparse.params[p.key] *= 3.0 * DRIVE.get(name, 1.0)
    dense.set_params({key: sparse.dense(key) for key in sparse.params})
    return sparse, dense


def assert_same_gradients(sparse, dense, a, b, tolerance=1e-12):
    assert a.loss == pytest.approx(b.loss, rel=tolerance, abs=1e-300)
    assert set(a.grads) == set(b.grads)
    for key, value in a.grads.items():
        expected = sparse.connectivity[key].gather(b.grads[key]) if key in sparse.connectivity else b.grads[key]
        assert value.shape == expected.shape, key
        assert relative_error(value, expected) <= tolerance, key


@pytest.mark.parametrize("name", MODELS)
def test_sparse_equals_dense_with_masked_weights(name):
    sparse, dense = pair(name, recurrent=True, bias=True)
    assert all(layer.layout.sparse for layer in sparse.layers)
    x, labels = batch(steps=25)
    for rule in (eprop, bptt):
        a, b = rule(sparse, x, labels), rule(dense, x, labels)
        assert_active(a, sparse)
        assert_same_gradients(sparse, dense, a, b)
        recurrent = [key for key in a.grads if key.startswith("W_rec")]
        assert recurrent and all(np.abs(a.grads[key]).max() > 0 for key in recurrent), "zero proves nothing"


@pytest.mark.parametrize("loss, kappa", [("ce", 0.8), ("ce_mean", 0.8), ("ce_last", 0.9), ("mse", 0.5)])
@pytest.mark.parametrize("name", ["alif", "se_adlif"])
def test_every_loss_and_the_regulariser(name, loss, kappa):
    sparse, dense = pair(name, recurrent=True, kappa=kappa)
    x, labels = batch(steps=20)
    target = np.random.default_rng(3).standard_normal((20, 3, 4)) if loss == "mse" else labels
    reg = 0.5 if loss == "mse" else 0.0
    for rule in (eprop, bptt):
        a, b = rule(sparse, x, target, loss=loss, reg=reg), rule(dense, x, target, loss=loss, reg=reg)
        assert_active(a, sparse)
        assert_same_gradients(sparse, dense, a, b)


def test_two_layers_and_online_updates():
    sparse, dense = pair("alif", hidden=[7, 5], recurrent=True, kappa=0.7)
    x, labels = batch(steps=24)
    a, b = bptt(sparse, x, labels), bptt(dense, x, labels)
    assert_same_gradients(sparse, dense, a, b)
    seen = {id(sparse): [], id(dense): []}

    def keep(net):  # the gradients so far, copied: their arrays are summed from zero again
        return lambda grads: seen[id(net)].append({key: np.array(value) for key, value in grads.items()})

    a = eprop(sparse, x, labels, update_every=8, apply=keep(sparse))
    b = eprop(dense, x, labels, update_every=8, apply=keep(dense))
    assert_active(a, sparse)
    assert_same_gradients(sparse, dense, a, b)
    assert len(seen[id(sparse)]) == 2
    for early, late in zip(seen[id(sparse)], seen[id(dense)]):
        for key in early:
            expected = sparse.connectivity[key].gather(late[key]) if key in sparse.connectivity else late[key]
            assert relative_error(early[key], expected) <= 1e-12, key


def test_several_inputs():
    sparse, dense = pair("coba_lif", recurrent=True, kappa=0.8)
    assert len(sparse.layers[0].ports) == 2 and len(sparse.connectivity) == 4
    x, labels = batch(steps=25)
    for rule in (eprop, bptt):
        a, b = rule(sparse, x, labels, loss="ce_mean"), rule(dense, x, labels, loss="ce_mean")
        assert_active(a, sparse)
        assert_same_gradients(sparse, dense, a, b)


@pytest.mark.parametrize("name", ["lif", "alif", "se_adlif", "brf", "izhikevich"])
def test_eprop_equals_bptt_where_exact(name):
    """One layer, no recurrence, a leaky readout: e-prop is exact, sparse or not."""
    sparse, _ = pair(name, kappa=0.8, recurrent=False)
    x, labels = batch()
    fast, reference = eprop(sparse, x, labels), bptt(sparse, x, labels)
    assert_active(fast, sparse)
    assert fast.loss == pytest.approx(reference.loss, rel=1e-12)
    for key in reference.grads:
        assert np.abs(reference.grads[key]).max() > 0, key
        assert relative_error(fast.grads[key], reference.grads[key]) <= 1e-6, key


def test_a_sparse_weight_holds_one_value_per_synapse():
    sparse, dense = pair("alif", recurrent=True)
    for key, synapses in sparse.connectivity.items():
        assert sparse.params[key].shape == (synapses.nnz,)
        assert synapses.nnz < dense.params[key].size
        assert np.array_equal(sparse.dense(key) != 0, synapses.mask() & (dense.params[key] != 0))
    assert sparse.params["W_out"].shape == dense.params["W_out"].shape  # the readout stays dense


def test_random_connectivity_gives_each_neuron_its_partners():
    net = Network(models.builtin("lif"), 40, 30, 3, connectivity=0.1, seed=4, backend="numpy")
    w_in, w_rec = net.connectivity["W_in"], net.connectivity["W_rec"]
    assert np.all(np.diff(w_in.row_start) == 4) and np.all(np.diff(w_rec.row_start) == 3)
    assert not np.any(w_rec.mask()[np.arange(30), np.arange(30)]), "a recurrent synapse onto itself"
    again = Network(models.builtin("lif"), 40, 30, 3, connectivity=0.1, seed=4, backend="numpy")
    other = Network(models.builtin("lif"), 40, 30, 3, connectivity=0.1, seed=5, backend="numpy")
    assert again.connectivity["W_in"] == w_in and other.connectivity["W_in"] != w_in
    dense = Network(models.builtin("lif"), 40, 30, 3, seed=4, backend="numpy")
    assert np.array_equal(net.params["W_out"], dense.params["W_out"]), "connectivity moved the dense draws"


def test_products_equal_the_dense_ones():
    rng = np.random.default_rng(0)
    mask = rng.random((7, 9)) < 0.3
    mask[2] = False  # an empty row and, likely, empty columns
    synapses = Connectivity.from_mask(mask, mask.shape)
    w = rng.standard_normal(synapses.nnz)
    x, signal = rng.standard_normal((4, 9)), rng.standard_normal((4, 7))
    assert np.allclose(synapses.matvec(x, w), x @ synapses.scatter(w).T, rtol=1e-14, atol=1e-14)
    assert np.allclose(synapses.rmatvec(signal, w), signal @ synapses.scatter(w), rtol=1e-14, atol=1e-14)
    post, pre = np.nonzero(mask)
    order = rng.permutation(len(post))
    assert Connectivity.from_indices(post[order], pre[order], mask.shape) == synapses


@pytest.mark.parametrize("loss, kappa", [("ce", 0.0), ("ce_mean", 0.9), ("ce", 0.8)])
@pytest.mark.parametrize("name", ["lif", "alif", "se_adlif"])
def test_the_plan_predicts_what_a_sparse_pass_allocates(name, loss, kappa):
    from symgrad.runtime.eprop import _LayerState
    from symgrad.runtime.losses import loss_kind

    sparse, _ = pair(name, recurrent=True, kappa=kappa)
    layer, kind = sparse.layers[0], loss_kind(loss)
    flags = dict(filtered=kind.keeps_filtered(kappa), sequence_sum=kind.keeps_sum)
    state = _LayerState(sparse, layer, 3, flags["filtered"], flags["sequence_sum"], False)
    (port,) = state.ports
    floats = [a for key, a in vars(port.buffers).items()
              if key != "u" and isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    floats += [a for a in vars(port.traces).values() if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    if layer.model.learnable:
        floats += [a for group in vars(state.ptraces).values()
                   for a in (group.values() if isinstance(group, dict) else [group]) if isinstance(a, np.ndarray)]
    nnz = port.port.synapses.count
    predicted = layer.plan.memory(3, layer.n, layer.n_pre, itemsize=8, nnz=nnz, **flags)
    assert predicted["total"] == sum(a.nbytes for a in floats)
    dense = replace(layer.plan, layout=DENSE).memory(3, layer.n, layer.n_pre, itemsize=8, **flags)
    if layer.plan.per_synapse or flags["filtered"] or flags["sequence_sum"]:
        assert predicted["total"] < dense["total"]


@pytest.mark.parametrize("connectivity, message", [
    ({"W_in": np.ones((6, 6))}, "the mask of W_in holds float64 values: give a boolean array"),
    ({"W_in": np.ones((6, 5), bool)}, "the mask of W_in has shape (6, 5); W_in is (6, 6)"),
    ({"W_out": 0.5}, "connectivity of W_out: the network has no such weight (weights: W_in, W_rec)"),
    ({"W_in": 1.5}, "connectivity of W_in is 1.5: a probability in (0, 1]"),
    (0.0, "connectivity of W_in is 0: a probability in (0, 1]"),
    (0.05, "connectivity 0.05 gives each neuron round(0.05 x 6) = 0 of W_in's 6 inputs; 0.167 or more keeps one"),
    ({"W_in": (np.array([0, 0]), np.array([1, 1]))}, "the synapses of W_in: a synapse is listed twice"),
    ({"W_in": (np.array([0]), np.array([9]))}, "the synapses of W_in: a presynaptic index outside 0 .. 5"),
    ({"W_in": np.eye(6, dtype=bool) & (np.arange(6) < 5)[:, None], "W_rec": np.zeros((6, 6), bool)},
     "neuron 5 of layer 0 has no synapse on its input I: every mask leaves its row empty"),
])
def test_bad_connectivity_gets_one_line(connectivity, message):
    with pytest.raises(ConnectivityError) as err:
        Network(models.builtin("lif"), 6, 6, 3, recurrent=True, connectivity=connectivity, backend="numpy")
    assert str(err.value) == message


def _grads_inputs(rng, mask=None):
    steps, size, n_in, n, n_out = 20, 3, 5, 6, 2
    arrays = dict(x=(rng.random((steps, size, n_in)) < 0.5) * 2.0, labels=np.array([0, 1, 1]),
                  W_in=rng.standard_normal((n, n_in)), W_rec=0.3 * rng.standard_normal((n, n)),
                  W_out=rng.standard_normal((n_out, n)), b_out=np.zeros(n_out), kappa=np.array(0.0))
    if mask is not None:
        arrays["mask_W_in"] = mask
    return arrays


def test_grads_reads_masks_and_writes_dense_gradients(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.random((6, 5)) < 0.5
    mask[:, 0] = True
    given = _grads_inputs(rng, mask)
    masked = {k: v for k, v in given.items() if k != "mask_W_in"} | {"W_in": given["W_in"] * mask}
    np.savez(tmp_path / "sparse.npz", **given)
    np.savez(tmp_path / "masked.npz", **masked)
    for stem in ("sparse", "masked"):
        assert main(["grads", "lif", "--inputs", str(tmp_path / f"{stem}.npz"),
                     "--out", str(tmp_path / f"{stem}_out.npz"), "--backend", "numpy"]) == 0
    sparse, masked = np.load(tmp_path / "sparse_out.npz"), np.load(tmp_path / "masked_out.npz")
    assert sparse["W_in"].shape == mask.shape
    assert np.all(sparse["W_in"][~mask] == 0) and np.abs(sparse["W_in"][mask]).max() > 0
    assert float(sparse["loss"]) == pytest.approx(float(masked["loss"]), rel=1e-12)
    assert relative_error(sparse["W_in"], masked["W_in"] * mask) <= 1e-12
    assert relative_error(sparse["W_rec"], masked["W_rec"]) <= 1e-12


@pytest.mark.parametrize("mask, message", [
    (np.ones((6, 5)), "mask_W_in holds float64 values: a mask is boolean"),
    (np.ones((5, 5), bool), "mask_W_in has shape (5, 5); W_in is (6, 5)"),
])
def test_grads_refuses_a_bad_mask_in_one_line(tmp_path, capsys, mask, message):
    np.savez(tmp_path / "in.npz", **_grads_inputs(np.random.default_rng(0), mask))
    code = main(["grads", "lif", "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"),
                 "--backend", "numpy"])
    assert code == 1
    assert capsys.readouterr().err == f"symgrad: error: {tmp_path / 'in.npz'}: {message}\n"
    assert not (tmp_path / "out.npz").exists()


def test_nir_writes_zeros_and_reads_them_back_as_absent(tmp_path):
    pytest.importorskip("nir")
    from symgrad import nir as symgrad_nir

    net = Network(symgrad_nir.neuron("LIF"), 8, 6, 3, recurrent=True, connectivity=0.5, seed=1,
                  backend="numpy", dtype="float64")
    path = symgrad_nir.save(net, tmp_path / "net.nir")
    dense = symgrad_nir.load(path, backend="numpy", dtype="float64")
    assert not dense.connectivity and np.array_equal(dense.params["W_in"], net.dense("W_in"))
    back = symgrad_nir.load(path, sparse_from_zeros=True, backend="numpy", dtype="float64")
    for key, synapses in net.connectivity.items():
        assert back.connectivity[key] == synapses, key
        assert np.array_equal(back.params[key], net.params[key]), key


def test_train_reads_a_graphs_zeros_as_absent_synapses(tmp_path, capsys):
    pytest.importorskip("nir")
    from symgrad import nir as symgrad_nir

    net = Network(symgrad_nir.neuron("LIF"), 20, 16, 4, recurrent=True, connectivity=0.4, seed=1, backend="numpy")
    for layer in net.layers:
        for p in layer.projections:
            if p.source is Source.INPUT:
                net.params[p.key] *= 20.0  # drive the LIF neurons to spike
    graph = symgrad_nir.save(net, tmp_path / "sparse.nir")
    task = ["--task", "randman", "--set", "channels=20", "--set", "n_classes=4", "--set", "samples=32",
            "--set", "test_samples=16", "--set", "steps=30"]
    run = tmp_path / "run"
    assert main(["train", str(graph), *task, "--epochs", "1", "--loss", "ce", "--batch", "16", "--sparse-from-zeros",
                 "--out", str(run), "--quiet", "--backend", "numpy"]) == 0
    checkpoint = np.load(run / "checkpoint.npz")
    for key, synapses in net.connectivity.items():
        assert np.array_equal(checkpoint[f"connectivity/{key}/col"], synapses.col), key
        assert checkpoint[f"param/{key}"].shape == (synapses.nnz,)
    capsys.readouterr()
    assert main(["train", "alif", "--sparse-from-zeros", "--epochs", "1", "--out", str(tmp_path / "no")]) == 1
    assert "--sparse-from-zeros is for NIR graphs" in capsys.readouterr().err
