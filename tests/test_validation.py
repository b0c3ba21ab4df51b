"""Values checked before they are used, and one numerical verdict on every backend.

- a model without parameters runs in float32 on the typed kernels (Numba, the CUDA host shim);
- a state that overflows stops training with exit 3 on every backend, naming the state;
- ``symgrad grads`` checks its input values as ``train`` checks its settings (exit 1, one line)
  and refuses non-finite results (exit 3), writing nothing;
- a NIR file's weights, biases, time step and declared array sizes are checked, and a file
  only NIR's type check refuses is read with a warning;
- a network or a run too large for the memory available is refused before its folder is written.
"""
import os
import re

import h5py
import nir
import numpy as np
import pytest

from symgrad import cli, models
from symgrad import nir as snir
from symgrad.runtime import bptt, eprop
from helpers import assert_active, batch, network, relative_error
from test_nir import paper_graph

PLAIN = """
import sympy as sp
from symgrad import NeuronModel, spike, stop_gradient
v, I = sp.symbols("v I")
model = NeuronModel(name="m_plain", states={v: 0.0}, params={},
                    update={v: 0.9 * v + I - stop_gradient(spike(v - 1))}, output=spike(v - 1))
"""
RATE = """
import sympy as sp
from symgrad import NeuronModel
v, I = sp.symbols("v I")
model = NeuronModel(name="m_rate", states={v: 0.0}, params={}, update={v: 0.8 * v + I}, output=sp.tanh(v))
"""
# Grows a thousandfold per step: float32 overflows within 13 steps of the first input.
BOOM = """
import sympy as sp
from symgrad import NeuronModel, spike
v, I, a = sp.symbols("v I a")
model = NeuronModel(name="m_boom", states={v: 0.0}, params={a: 1000.0}, update={v: a * v + I},
                    output=spike(v - 1))
"""
# A surrogate of width 0: NaN on NumPy and in C, a ZeroDivisionError inside Numba's kernel.
ZERO_WIDTH = """
import sympy as sp
from symgrad import NeuronModel, spike, surrogates
v, I, w = sp.symbols("v I w")
model = NeuronModel(name="m_zero_width", states={v: 0.0}, params={w: 0.0}, update={v: 0.9 * v + I},
                    output=spike(v - 1, surrogates.triangle(0.3, w)))
"""
SMALL_RUN = ["--epochs", "1", "--hidden", "4", "--batch", "8", "--set", "samples=16", "--set", "test_samples=8",
             "--quiet"]


def model_file(tmp_path, source: str) -> str:
    path = tmp_path / f"model_{abs(hash(source))}.py"
    path.write_text(source)
    return str(path)


def grads_inputs(path, **changes):
    """An IN.npz for ``symgrad grads`` with a lif layer of 5 neurons (arrays replaced by ``changes``)."""
    rng = np.random.default_rng(0)
    T, B, M, N, K = 20, 3, 6, 5, 4
    arrays = dict(x=(rng.random((T, B, M)) < 0.3).astype(float), labels=rng.integers(0, K, B),
                  W_in=rng.standard_normal((N, M)) * 2, W_out=rng.standard_normal((K, N)),
                  b_out=rng.standard_normal(K), kappa=np.array(0.7))
    np.savez(path, **{**arrays, **changes})
    return str(path)


# -- 1. float32 without parameters --------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "cuda-host"])
@pytest.mark.parametrize("source", [PLAIN, RATE], ids=["spiking", "tanh"])
def test_a_model_without_parameters_runs_in_float32_on_the_typed_kernels(tmp_path, source, backend):
    model = models.load(model_file(tmp_path, source))
    x, labels = batch()
    for rule, kappa in ((eprop, 0.0), (eprop, 0.8), (bptt, 0.8)):
        reference = network(model.name, model=model, kappa=kappa, recurrent=True, dtype="float32")
        expected = rule(reference, x, labels)
        assert_active(expected, reference)
        got = rule(network(model.name, model=model, kappa=kappa, recurrent=True, dtype="float32",
                           backend=backend), x, labels)
        assert got.overflowed is None and got.spikes == pytest.approx(expected.spikes, rel=1e-5)
        assert got.loss == pytest.approx(expected.loss, rel=1e-5), rule.__name__
        for key, value in expected.grads.items():
            assert got.grads[key].dtype == np.float32, (rule.__name__, key)
            assert relative_error(got.grads[key].astype(float), value.astype(float)) < 1e-4, (rule.__name__, key)


def test_grads_runs_a_model_without_parameters_in_float32(tmp_path, capsys):
    out = tmp_path / "out.npz"
    code = cli.main(["grads", model_file(tmp_path, PLAIN), "--inputs", grads_inputs(tmp_path / "in.npz"),
                     "--out", str(out), "--dtype", "float32", "--backend", "numba"])
    assert code == 0, capsys.readouterr().err
    result = np.load(out)
    assert result["W_in"].dtype == np.float32 and np.abs(result["W_in"]).max() > 0


# -- 2. one verdict on an overflowing state -------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "numba", "cuda-host"])
def test_an_overflowing_state_stops_training_with_exit_3_on_every_backend(tmp_path, capsys, backend):
    run_dir = tmp_path / "run"
    code = cli.main(["train", model_file(tmp_path, BOOM), "--backend", backend, "--dtype", "float32",
                     "--out", str(run_dir), *SMALL_RUN])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "training stopped: state v of layer 0 (m_boom) overflowed float32 at epoch 1" in err
    assert not (run_dir / "checkpoint.npz").exists()


@pytest.mark.parametrize("backend", ["numpy", "numba", "cuda-host"])
def test_a_division_by_zero_stops_training_with_exit_3_on_every_backend(tmp_path, capsys, backend):
    code = cli.main(["train", model_file(tmp_path, ZERO_WIDTH), "--backend", backend, "--out", str(tmp_path / "run"),
                     *SMALL_RUN])
    err = capsys.readouterr().err
    assert code == 3 and "symgrad: training stopped: " in err and "Traceback" not in err, err


# -- 3. grads: its inputs' values, and its results -------------------------------------------------
BAD_GRADS_INPUTS = {
    "param nan": (dict(param_alpha=np.array(np.nan)), "param_alpha must hold finite numbers"),
    "param inf": (dict(param_v_th=np.array(np.inf)), "param_v_th must hold finite numbers"),
    "param text": (dict(param_alpha=np.array("abc")), "param_alpha must hold finite numbers"),
    "kappa 2": (dict(kappa=np.array(2.0)), "kappa must be a number in [0, 1), got 2.0"),
    "kappa -5": (dict(kappa=np.array(-5.0)), "kappa must be a number in [0, 1), got -5.0"),
    "complex x": (dict(x=np.ones((20, 3, 6), complex)), "x must hold finite numbers; it holds complex ones"),
    "no channels": (dict(x=np.zeros((20, 3, 0)), W_in=np.zeros((5, 0))), "x has no steps, samples or input channels"),
    "no neurons": (dict(W_in=np.zeros((0, 6)), W_out=np.zeros((4, 0))), "W_in has no rows"),
}


@pytest.mark.parametrize("case", list(BAD_GRADS_INPUTS))
def test_grads_checks_its_values_in_one_line(tmp_path, capsys, case):
    changes, message = BAD_GRADS_INPUTS[case]
    inputs, out = grads_inputs(tmp_path / "in.npz", **changes), tmp_path / "out.npz"
    code = cli.main(["grads", "lif", "--inputs", inputs, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and f"symgrad: error: {inputs}: {message}" in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("backend", ["numpy", "numba", "cuda-host"])
def test_grads_refuses_results_that_are_not_finite_with_exit_3(tmp_path, capsys, backend):
    out = tmp_path / "out.npz"
    # lif's surrogate divides by v_th: NaN on NumPy and in C, a ZeroDivisionError inside Numba
    code = cli.main(["grads", "lif", "--inputs", grads_inputs(tmp_path / "in.npz", param_v_th=np.array(0.0)),
                     "--out", str(out), "--backend", backend])
    err = capsys.readouterr().err
    assert code == 3 and "symgrad: the gradient pass failed numerically: " in err and err.count("\n") == 1, err
    assert not out.exists()
    # a state that overflows while the loss and gradients stay finite (Numba's surrogate gives 0 for inf)
    code = cli.main(["grads", model_file(tmp_path, BOOM), "--inputs", grads_inputs(tmp_path / "in.npz"),
                     "--out", str(out), "--backend", backend, "--dtype", "float32"])
    err = capsys.readouterr().err
    assert code == 3 and "state v of layer 0 (m_boom) overflowed float32" in err, err
    assert not out.exists()


# -- 4. NIR files ---------------------------------------------------------------------------------
def small_graph(**nodes) -> nir.NIRGraph:
    g = paper_graph(n_in=4, hidden=5, n_out=3)
    return nir.NIRGraph(nodes={**g.nodes, **nodes}, edges=g.edges, type_check=False)


def _bad_weights():
    g = paper_graph(n_in=4, hidden=5, n_out=3)
    for value, message in ((np.nan, "holds values that are not finite numbers"),
                           (np.inf, "holds values that are not finite numbers"),
                           (1e300, "holds 1e+300, beyond float32's range")):
        weight = g.nodes["fc1"].weight.copy()
        weight[0, 0] = value
        yield f"weight {value}", dict(fc1=nir.Affine(weight=weight, bias=g.nodes["fc1"].bias)), \
            f"node 'fc1' (Affine): weight {message}"
        bias = g.nodes["rec1"].bias.copy()
        bias[1] = value
        yield f"bias {value}", dict(rec1=nir.Affine(weight=g.nodes["rec1"].weight, bias=bias)), \
            f"node 'rec1' (Affine): bias {message}"
    yield "bias size", dict(fc2=nir.Affine(weight=g.nodes["fc2"].weight, bias=np.zeros(5))), \
        "node 'fc2' (Affine): bias has shape (5,), expected (3,)"


@pytest.mark.parametrize("case", list(_bad_weights()), ids=lambda case: case[0])
def test_nir_weights_and_biases_are_checked(case):
    _, nodes, message = case
    with pytest.raises(snir.NirError) as err:
        snir.load(small_graph(**nodes))
    assert message in str(err.value)


@pytest.mark.parametrize("dt, shown", [(-1e-4, "-0.0001"), (0.0, "0.0"), ("abc", "'abc'"),
                                       (np.array([1e-4, 2e-4]), "[0.0001 0.0002]"), (np.nan, "nan")])
def test_a_nir_files_time_step_is_checked(tmp_path, dt, shown):
    graph = paper_graph(n_in=4, hidden=5, n_out=3)
    graph.metadata = {"dt": dt}
    nir.write(tmp_path / "g.nir", graph)
    for source in (graph, tmp_path / "g.nir"):  # as given, and as the file reads it back
        with pytest.raises(snir.NirError, match=re.escape(f"the graph's metadata.dt is {shown}: a time step "
                                                          f"must be a positive number")):
            snir.load(source)
    assert snir.load(tmp_path / "g.nir", dt=1e-4).layer_values[0]["dt"] == 1e-4  # --dt overrides it


def test_a_nir_file_declaring_more_than_memory_holds_is_refused_before_reading(tmp_path, monkeypatch, capsys):
    path = tmp_path / "big.nir"
    nir.write(path, paper_graph(n_in=4, hidden=5, n_out=3))
    with h5py.File(path, "r+") as f:  # a 3000 x 3000 weight declared, compressed, never written
        del f["node/nodes/fc1/weight"]
        f["node/nodes/fc1"].create_dataset("weight", shape=(3000, 3000), dtype="f8", compression="gzip")
    assert path.stat().st_size < 100_000
    monkeypatch.setattr("symgrad.memory._meminfo", lambda: 50 * 2**20)
    read = []
    monkeypatch.setattr(nir, "read", lambda *args, **kwargs: read.append(args))
    assert cli.main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert (f"{path}: reading its arrays (the largest, node/nodes/fc1/weight, of shape (3000, 3000)) needs at "
            f"least 68.7 MiB, more than the 50.0 MiB of memory available") in err and err.count("\n") == 1
    assert not read, "nir.read must not be reached"


def test_a_file_only_nirs_type_check_refuses_is_read_with_a_warning(tmp_path):
    """As rockpool writes its LIF: an Output node whose type disagrees with the neuron's."""
    nodes = {"input": nir.Input(input_type=np.array([1])),
             "fc": nir.Affine(weight=np.array([[2.0]]), bias=np.array([0.0])),
             "LIFNeuronTorch": nir.LIF(tau=np.array([2e-2]), r=np.array([1.0]), v_leak=np.zeros(1),
                                       v_threshold=np.array([0.1])),
             "output": nir.Output(output_type=np.array([1, 1, 1]))}
    edges = [("input", "fc"), ("fc", "LIFNeuronTorch"), ("LIFNeuronTorch", "output")]
    nir.write(tmp_path / "lif.nir", nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    with pytest.raises(ValueError, match="Type inference error"):
        nir.read(tmp_path / "lif.nir")
    with pytest.warns(UserWarning, match="lif.nir: NIR's type check fails \\(ValueError: Type inference error: "
                                         "type mismatch: .*\\); read without it"):
        net = snir.load(tmp_path / "lif.nir")
    assert (net.n_in, [layer.n for layer in net.layers]) == (1, [1])


# -- 5. memory ------------------------------------------------------------------------------------
def test_a_run_too_large_for_memory_is_refused_before_its_folder_is_written(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    monkeypatch.setattr("symgrad.memory._meminfo", lambda: 8 * 2**20)
    # alif keeps a per-synapse trace, and ce_mean a sum per synapse: 2 x 32 x 200 x 231 floats
    code = cli.main(["train", "alif", "--hidden", "200", "--batch", "32", "--loss", "ce_mean", "--epochs", "1",
                     "--set", "samples=32", "--set", "test_samples=8", "--set", "harmonics=2", "--out", str(run_dir),
                     "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "training with batch 32 (e-prop's traces and buffers 11.6 MiB" in err
    assert "more than the 8.0 MiB of memory available; choose a smaller --batch or --hidden" in err
    assert not run_dir.exists()


def test_a_network_too_large_for_memory_is_refused_before_its_weights_are_drawn(tmp_path, capsys):
    """The largest --hidden train accepts: its float64 draw of W_rec alone is 80 GB."""
    if os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") > 150 * 2**30:
        pytest.skip("this machine could allocate the network")
    run_dir = tmp_path / "run"
    code = cli.main(["train", "lif", "--hidden", "100000", "--set", "samples=8", "--set", "test_samples=8",
                     "--out", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "symgrad: error: a network of 100000 neurons needs at least 111.8 GiB" in err, err
    assert not run_dir.exists()
