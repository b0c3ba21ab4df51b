"""NIR import and export (symgrad.nir), on symgrad's side: round trips, the recurrent network of
the NIR paper, the symbolic check of the export, one-line errors for graphs symgrad cannot
represent, and the commands. The cross-framework checks against snnTorch are in
test_nir_snntorch.py."""
import json

import nir
import numpy as np
import pytest

from symgrad import cli, models, render
from symgrad import nir as snir
from symgrad.runtime import Network, eprop
from symgrad.runtime.projection import Source

import ctypes

from helpers import assert_eprop_equals_bptt, batch, nvrtc, nvrtc_compile

DT = snir.DT


def cuba_values(n, rng):
    """Per-neuron CubaLIF values in snnTorch's convention (r = tau_mem/dt, w_in = tau_syn/dt)."""
    tau_syn, tau_mem = rng.uniform(3e-4, 8e-4, n), rng.uniform(8e-4, 3e-3, n)
    return dict(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / DT, v_leak=np.zeros(n),
                v_threshold=rng.uniform(0.8, 1.2, n), v_reset=np.zeros(n), w_in=tau_syn / DT)


def paper_graph(n_in=12, hidden=38, n_out=7, seed=0, nested=False) -> nir.NIRGraph:
    """The recurrent network of the NIR paper (Pedersen et al. 2024, the Braille task): input ->
    Affine -> CubaLIF with a recurrent Affine -> Affine -> CubaLIF -> output, per-neuron values
    everywhere. ``nested``: the recurrent layer as a subgraph, as snnTorch writes it."""
    rng = np.random.default_rng(seed)
    w = lambda shape, scale: rng.normal(0, scale / np.sqrt(shape[1]), shape)  # noqa: E731
    nodes = {
        "input": nir.Input(input_type=np.array([n_in])),
        "fc1": nir.Affine(weight=w((hidden, n_in), 3.0), bias=rng.uniform(0, 0.05, hidden)),
        "lif1": nir.CubaLIF(**cuba_values(hidden, rng)),
        "rec1": nir.Affine(weight=w((hidden, hidden), 1.0), bias=rng.uniform(-0.02, 0.02, hidden)),
        "fc2": nir.Affine(weight=w((n_out, hidden), 3.0), bias=np.zeros(n_out)),
        "lif2": nir.CubaLIF(**cuba_values(n_out, rng)),
        "output": nir.Output(output_type=np.array([n_out])),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "rec1"), ("rec1", "lif1"), ("lif1", "fc2"),
             ("fc2", "lif2"), ("lif2", "output")]
    if nested:
        inner = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([hidden])), "lif": nodes.pop("lif1"),
                                    "w_rec": nodes.pop("rec1"), "output": nir.Output(output_type=np.array([hidden]))},
                             edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
        nodes["rnn1"] = inner
        edges = [("input", "fc1"), ("fc1", "rnn1"), ("rnn1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def spikes_in(n_in=12, steps=60, size=4, seed=1):
    return batch(steps, size, n_in, seed=seed, rate=0.2)[0]


# -- import ----------------------------------------------------------------------------------
@pytest.mark.parametrize("nested", [False, True])
def test_the_papers_recurrent_network_loads_runs_and_learns(nested):
    graph = paper_graph(nested=nested)
    net = snir.load(graph)
    assert [layer.model.name for layer in net.layers] == ["nir_cubalif", "nir_cubalif"]
    assert [(layer.n, layer.recurrent, layer.bias) for layer in net.layers] == [(38, True, True), (7, False, True)]
    assert not net.readout and net.n_out == 7
    # per-neuron values stay per neuron, and the biases of both Affine nodes are one input current
    assert np.array_equal(net.layer_values[0]["tau_mem"], graph.nodes["lif1" if not nested else "rnn1"].nodes[
        "lif"].tau_mem if nested else graph.nodes["lif1"].tau_mem)
    rec = graph.nodes["rnn1"].nodes["w_rec"] if nested else graph.nodes["rec1"]
    assert np.allclose(net.params["b_in"], graph.nodes["fc1"].bias + rec.bias, rtol=0, atol=1e-15)
    x = spikes_in()
    _, spikes = net.forward(x)
    assert spikes[0].mean() > 0.01 and spikes[1].sum() > 0, "the network must spike"
    # a spiking output is trained with a per-step loss on its spikes, so e-prop passes the
    # learning signal down the two layers; a few steps of plain gradient descent lower the loss
    labels = np.arange(4) % 7
    before = eprop(net, x, labels, loss="ce").loss
    for _ in range(15):
        result = eprop(net, x, labels, loss="ce")
        for key, grad in result.grads.items():
            net.params[key] -= 0.5 * grad
    assert eprop(net, x, labels, loss="ce").loss < before - 0.05


def test_a_leaky_integrator_output_is_the_leaky_readout():
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=rng.normal(0, 1, (6, 4)), bias=np.zeros(6)),
        nir.LIF(tau=np.full(6, 1e-3), r=np.full(6, 10.0), v_leak=np.zeros(6), v_threshold=np.ones(6)),
        nir.Affine(weight=rng.normal(0, 1, (3, 6)), bias=rng.normal(0, 1, 3)),
        nir.LI(tau=np.full(3, 5e-4), r=np.array([5.0, 6.0, 7.0]), v_leak=np.array([0.0, 0.1, 0.0])))
    net = snir.load(graph)
    assert net.readout and len(net.layers) == 1
    assert net.kappa == 1 - DT / 5e-4
    assert np.array_equal(net.gain, DT * np.array([5.0, 6.0, 7.0]) / 5e-4)
    assert np.array_equal(net.offset, DT * np.array([0.0, 0.1, 0.0]) / 5e-4)
    # with time constants that differ across outputs it is a layer of leaky integrators instead
    graph.nodes[list(graph.nodes)[-2]].tau = np.array([5e-4, 6e-4, 7e-4])
    net = snir.load(graph)
    assert not net.readout and [layer.model.name for layer in net.layers] == ["nir_lif", "nir_li"]


def test_a_spiking_output_can_be_trained_through_an_added_readout(tmp_path):
    net = snir.load(paper_graph(), add_readout=0.8)
    assert net.readout and net.kappa == 0.8 and net.params["W_out"].shape == (7, 7)
    x, labels = spikes_in(), np.arange(4) % 7
    assert set(eprop(net, x, labels, loss="ce").grads) == set(net.params)
    back = snir.load(snir.save(net, tmp_path / "with_readout.nir"))
    assert back.readout and back.kappa == 0.8 and np.array_equal(back.params["W_out"], net.params["W_out"])
    with pytest.raises(snir.NirError, match="node 'li_out' \\(LI\\) is the graph's readout already"):
        snir.load(tmp_path / "with_readout.nir", add_readout=0.8)


def test_dt_comes_from_the_argument_else_the_graph_else_snntorchs_step(tmp_path):
    net = Network(snir.neuron("LIF"), 3, 4, 2, neuron_params={"dt": 5e-5, "tau": 1e-3}, kappa=0.5)
    snir.save(net, tmp_path / "a.nir")
    assert snir.load(tmp_path / "a.nir").layer_values[0]["dt"] == 5e-5
    assert snir.load(tmp_path / "a.nir", dt=8e-5).layer_values[0]["dt"] == 8e-5
    with pytest.raises(snir.NirError, match="node .li_out. \\(LI\\): tau is below dt = 0.0002"):
        snir.load(tmp_path / "a.nir", dt=2e-4)  # the readout's tau is 1e-4: kappa would be negative
    assert snir.load(paper_graph()).layer_values[0]["dt"] == 1e-4


# -- export and round trips --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["LIF", "CubaLIF"])
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("readout", [True, False])
def test_round_trips_are_exact(tmp_path, kind, recurrent, readout):
    """symgrad -> NIR -> symgrad: every parameter survives bit for bit and the forward pass is
    identical; per-neuron values included, a trained readout leak included."""
    rng = np.random.default_rng(3)
    field = "tau" if kind == "LIF" else "tau_mem"
    values = {field: rng.uniform(8e-4, 2e-3, 5), "v_threshold": rng.uniform(0.5, 1.0, 5)}
    model = snir.neuron(kind, list(values))
    net = Network(model, 6, [5, 3], 3, recurrent=recurrent, bias=[True, False], kappa=0.93 if readout else 0.0,
                  readout=readout, neuron_params=[values, {}], seed=4)
    for layer in net.layers:
        net.params[layer.projection(Source.INPUT).key] *= 3
    net.params["b_in"][...] = rng.uniform(0, 0.1, 5)
    back = snir.load(snir.save(net, tmp_path / "net.nir"))
    assert set(back.params) == set(net.params)
    for key, value in net.params.items():
        assert back.params[key].dtype == value.dtype and np.array_equal(back.params[key], value), key
    for ours, theirs in zip(net.layer_values, back.layer_values):
        for name, value in ours.items():
            assert np.array_equal(theirs[name], value), name
    assert back.kappa == net.kappa and back.readout == net.readout
    x = spikes_in(n_in=6)
    (ys, spikes), (ys2, spikes2) = net.forward(x), back.forward(x)
    assert spikes[0].sum() > 0 and all(np.array_equal(a, b) for a, b in zip(spikes, spikes2))
    assert (ys is None and ys2 is None) or np.array_equal(ys, ys2)


def test_nir_to_symgrad_to_nir_keeps_every_array(tmp_path):
    graph = paper_graph()
    again = nir.read(snir.save(snir.load(graph), tmp_path / "again.nir"))
    for ours, theirs in (("lif1", "cubalif0"), ("lif2", "cubalif1")):
        for field in snir.models.KINDS["CubaLIF"].fields:
            assert np.array_equal(getattr(again.nodes[theirs], field), getattr(graph.nodes[ours], field)), field
    assert np.array_equal(again.nodes["fc0"].weight, graph.nodes["fc1"].weight)
    assert np.array_equal(again.nodes["rec0"].weight, graph.nodes["rec1"].weight)


@pytest.mark.parametrize("kind", list(snir.models.KINDS))
def test_the_export_is_checked_symbolically(kind):
    """The node an exported model becomes, discretised again, is that model: kind_of compares
    the forward maps symbolically (here also against an equivalent model written by hand)."""
    model = snir.neuron(kind, ["r"])
    assert snir.kind_of(model) == kind
    if kind == "LIF":
        import sympy as sp

        from symgrad import NeuronModel, spike, stop_gradient
        v, I, dt, tau, r, v_leak, v_th, v_reset = sp.symbols("v I dt tau r v_leak v_threshold v_reset")
        z = spike(v - v_th)
        v_r = v * (1 - stop_gradient(z)) + v_reset * stop_gradient(z)
        mine = NeuronModel("mine", {v: 0.0}, dict.fromkeys((dt, tau, r, v_leak, v_th, v_reset), 1.0),
                           {v: (1 - dt / tau) * v_r + dt / tau * v_leak + dt * r / tau * I}, z)
        assert snir.kind_of(mine) == "LIF"
        wrong = NeuronModel("wrong", {v: 0.0}, dict.fromkeys((dt, tau, r, v_leak, v_th, v_reset), 1.0),
                            {v: (1 - dt / tau) * v_r + dt * r / tau * I}, z)  # v_leak lost
        assert snir.kind_of(wrong) is None


@pytest.mark.parametrize("name, missing", [("lif", "subtract v_th"), ("cuba_lif", "subtract v_th"),
                                           ("alif", "none of NIR's neuron primitives")])
def test_models_without_a_nir_primitive_are_refused_in_one_line(tmp_path, name, missing):
    net = Network(models.builtin(name), 3, 4, 2)
    with pytest.raises(snir.NirError, match=missing) as err:
        snir.save(net, tmp_path / "x.nir")
    assert "\n" not in str(err.value) and f"model {name!r}" in str(err.value)
    assert not (tmp_path / "x.nir").exists()


# -- graphs symgrad cannot represent -------------------------------------------------------------
def _edit(graph, nodes=None, edges=None):
    return nir.NIRGraph(nodes={**graph.nodes, **(nodes or {})}, edges=edges or graph.edges, type_check=False)


def _unsupported():
    g = paper_graph(n_in=4, hidden=5, n_out=3)
    conv = nir.Conv1d(input_shape=4, weight=np.ones((5, 1, 2)), stride=1, padding=0, dilation=1, groups=1,
                      bias=np.zeros(5))
    yield "convolution", _edit(g, {"fc1": conv}), r"node 'fc1' \(Conv1d\): .*convolutions"
    yield "delay", _edit(g, {"fc2": nir.Delay(delay=np.ones(5))}), r"node 'fc2' \(Delay\): .*delays"
    yield "branch", _edit(g, edges=g.edges + [("lif1", "output")]), r"node 'lif1' \(CubaLIF\) feeds 'fc2', 'output'"
    back_to_back = [e for e in g.edges if e not in (("fc2", "lif2"), ("lif1", "fc2"))] + [("lif1", "lif2")]
    yield "neurons back to back", _edit(g, edges=back_to_back), r"node 'lif2' \(CubaLIF\) follows 'lif1' directly"
    yield "two inputs", _edit(g, {"input2": nir.Input(input_type=np.array([4]))},
                              edges=g.edges + [("input2", "fc1")]), "2 Input and 1 Output"
    bad = nir.Affine(weight=np.ones((5, 3)), bias=np.zeros(5))
    yield "shapes", _edit(g, {"fc1": bad}), r"node 'fc1' \(Affine\): weight has shape \(5, 3\), expected \(5, 4\)"
    fast = nir.CubaLIF(**{**cuba_values(5, np.random.default_rng(0)), "tau_syn": np.full(5, 5e-5)})
    yield "tau below dt", _edit(g, {"lif1": fast}), "tau_syn is below dt"
    loop = [e for e in g.edges if e != ("lif2", "output")] + [("lif2", "fc1")]  # fc1 hears the input too
    yield "loop across layers", _edit(g, edges=loop), "the weights 'fc1' feed node 'lif1' \\(CubaLIF\\) back"
    stray = nir.LIF(tau=np.full(5, 1e-3), r=np.full(5, 10.0), v_leak=np.zeros(5), v_threshold=np.ones(5))
    yield "merge", _edit(g, {"stray": stray}, edges=g.edges + [("stray", "fc2")]), \
        "node 'stray' \\(LIF\\) is off the chain"
    yield "threshold", _edit(g, {"lif2": nir.Threshold(threshold=np.ones(3))}), \
        r"node 'lif2' \(Threshold\): .*no counterpart"
    upside_down = nir.CubaLIF(**{**cuba_values(5, np.random.default_rng(0)), "v_reset": np.full(5, 2.0)})
    yield "reset above threshold", _edit(g, {"lif1": upside_down}), "v_threshold must be above v_reset"


@pytest.mark.parametrize("case", list(_unsupported()), ids=lambda case: case[0])
def test_graphs_symgrad_cannot_represent_get_one_line_naming_the_node(case):
    _, graph, message = case
    with pytest.raises(snir.NirError, match=message) as err:
        snir.load(graph)
    assert "\n" not in str(err.value)


def test_files_that_are_not_nir_are_named(tmp_path):
    (tmp_path / "bad.nir").write_text("not hdf5")
    with pytest.raises(snir.NirError, match="bad.nir: not a readable NIR file"):
        snir.load(tmp_path / "bad.nir")
    with pytest.raises(snir.NirError, match="no such file"):
        snir.load(tmp_path / "missing.nir")


# -- commands ---------------------------------------------------------------------------------
def test_inspect_shows_each_layer_and_its_model(tmp_path, capsys):
    path = tmp_path / "paper.nir"
    nir.write(path, paper_graph())
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "12 inputs, 2 layers, dt = 0.0001" in out and "the last layer's spikes (7" in out
    assert "== layer 0: nir_cubalif, 38 neurons, recurrent, bias; per neuron: r in" in out
    # tau_syn differs across neurons, so even the synaptic current's trace is per synapse
    assert "trace plan:" in out and "eps_i_syn: per-synapse" in out and "eps_v: per-synapse" in out
    assert cli.main(["inspect", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [layer["neurons"] for layer in summary["layers"]] == [38, 7]


def test_train_evaluate_and_export_a_nir_graph(tmp_path, capsys):
    path, run = tmp_path / "paper.nir", tmp_path / "run"
    nir.write(path, paper_graph(n_in=20, hidden=24, n_out=4))
    task = ["--task", "randman", "--set", "channels=20", "--set", "n_classes=4", "--set", "samples=64",
            "--set", "test_samples=32", "--set", "steps=40"]
    assert cli.main(["train", str(path), *task, "--epochs", "2", "--loss", "ce", "--batch", "16",
                     "--out", str(run), "--quiet", "--dtype", "float64"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == str(path.resolve()) and config["layers"] == 2 and config["hidden"] == 24
    capsys.readouterr()
    assert cli.main(["export", str(run), "--nir", str(tmp_path / "trained.nir")]) == 0
    assert "wrote" in capsys.readouterr().out
    trained = snir.load(tmp_path / "trained.nir")
    checkpoint = np.load(run / "checkpoint.npz")
    assert np.array_equal(trained.params["W_rec"], checkpoint["param/W_rec"])
    assert not np.array_equal(trained.params["W_rec"], snir.load(path).params["W_rec"]), "training changed nothing"
    assert cli.main(["evaluate", str(tmp_path / "trained.nir"), *task]) == 0
    assert "randman:" in capsys.readouterr().out
    # the spiking output trained through an added leaky readout, which the export keeps
    assert cli.main(["train", str(path), *task, "--epochs", "1", "--add-readout", "--kappa", "0.8", "--loss", "ce",
                     "--out", str(tmp_path / "run2"), "--quiet"]) == 0
    assert json.loads((tmp_path / "run2" / "config.json").read_text())["add_readout"] is True
    assert cli.main(["export", str(tmp_path / "run2"), "--nir", str(tmp_path / "readout.nir")]) == 0
    assert isinstance(nir.read(tmp_path / "readout.nir").nodes["li_out"], nir.LI)
    # the reset detached: the same network, exported as the same NIR nodes
    assert cli.main(["train", str(path), *task, "--epochs", "1", "--loss", "ce", "--detach-reset",
                     "--out", str(tmp_path / "run4"), "--quiet"]) == 0
    assert cli.main(["export", str(tmp_path / "run4"), "--nir", str(tmp_path / "detached.nir")]) == 0
    assert isinstance(nir.read(tmp_path / "detached.nir").nodes["cubalif0"], nir.CubaLIF)
    # time constants trained per neuron, and exported
    assert cli.main(["train", str(path), *task, "--epochs", "1", "--loss", "ce", "--learn", "tau_mem",
                     "--out", str(tmp_path / "run3"), "--quiet"]) == 0
    assert cli.main(["export", str(tmp_path / "run3"), "--nir", str(tmp_path / "taus.nir")]) == 0
    learned = nir.read(tmp_path / "taus.nir").nodes["cubalif0"].tau_mem
    assert np.array_equal(learned, np.load(tmp_path / "run3" / "checkpoint.npz")["param/tau_mem"])
    assert not np.array_equal(learned, paper_graph(n_in=20, hidden=24, n_out=4).nodes["lif1"].tau_mem)


@pytest.mark.parametrize("argv, message", [
    (["train", "{graph}", "--hidden", "20"], "fixes the network's shape; drop --hidden"),
    (["train", "{graph}", "--task", "randman"], "takes 12 inputs and gives 7 outputs; task 'randman' has 30"),
    (["train", "alif", "--dt", "1e-3"], "--dt is for NIR graphs"),
    (["train", "alif", "--add-readout"], "--add-readout is for NIR graphs"),
    (["train", "alif", "--learn", "tau"], "--learn is for NIR graphs"),
    (["train", "alif", "--detach-reset"], "--detach-reset is for NIR graphs"),
    (["train", "{graph}", "--learn", "tau"], "learn: no neuron node of the graph has a field 'tau'"),
    (["train", "{graph}", "--kappa", "0.5"], "fixes the network's shape; drop --kappa"),
    (["evaluate", "{graph}"], "needs --task"),
    (["grads", "{graph}", "--inputs", "x.npz", "--out", "y.npz"], "is a NIR graph: a whole network"),
])
def test_nir_command_mistakes_get_one_line(tmp_path, capsys, argv, message):
    graph = tmp_path / "paper.nir"
    nir.write(graph, paper_graph())
    code = cli.main([a.replace("{graph}", str(graph)) for a in argv] + ["--out", str(tmp_path / "o")]
                    if argv[0] == "train" else [a.replace("{graph}", str(graph)) for a in argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("\n") == 1


def test_export_refuses_a_run_of_a_model_nir_lacks(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "lif", "--epochs", "1", "--hidden", "8", "--set", "samples=20", "--set",
                     "test_samples=10", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(run), "--nir", str(tmp_path / "x.nir")]) == 1
    err = capsys.readouterr().err
    assert "model 'lif'" in err and "subtract v_th" in err and err.count("\n") == 1


def test_generate_writes_the_code_of_each_layer_model(tmp_path, capsys):
    path = tmp_path / "paper.nir"
    nir.write(path, paper_graph())
    assert cli.main(["generate", str(path), "--out", str(tmp_path / "code"), "--backend", "numpy"]) == 0
    written = capsys.readouterr().out.split()
    # both layers are CubaLIF with per-neuron values: one model, one file
    assert written == [str(tmp_path / "code" / "nir_cubalif" / "numpy_layer.py")]
    text = (tmp_path / "code" / "nir_cubalif" / "numpy_layer.py").read_text()
    assert "i_syn_t = dt*(I_t*w_in - i_syn_{t-1})/tau_syn + i_syn_{t-1}" in text


@pytest.mark.skipif(nvrtc() is None, reason="libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12)")
@pytest.mark.parametrize("kind", list(snir.models.KINDS))
def test_the_cuda_code_of_every_nir_neuron_compiles_with_nvrtc(kind):
    model = snir.neuron(kind, ["r"])
    names = [f"{k.name}<{t}>".encode() for k in render.cuda_kernels(model) for t in ("float", "double")]
    lib = nvrtc()
    lib.nvrtcDestroyProgram(ctypes.byref(nvrtc_compile(lib, render.render(model, "cuda").encode(),
                                                       b"layer.cu", names)))


def test_a_nir_run_resumes_from_its_checkpoint(tmp_path, capsys):
    path, run = tmp_path / "small.nir", tmp_path / "run"
    nir.write(path, paper_graph(n_in=20, hidden=10, n_out=4))
    task = ["--task", "randman", "--set", "channels=20", "--set", "n_classes=4", "--set", "samples=32",
            "--set", "test_samples=16", "--set", "steps=20", "--loss", "ce", "--quiet", "--out", str(run)]
    assert cli.main(["train", str(path), *task, "--epochs", "1"]) == 0
    assert cli.main(["train", str(path), *task, "--epochs", "2", "--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert len(json.loads((run / "metrics.json").read_text())["test_acc"]) == 2


@pytest.mark.parametrize("learn", [(), ("tau_mem", "v_threshold")], ids=["weights", "and-fields"])
def test_eprop_is_exact_on_an_imported_layer_and_learns_its_fields(tmp_path, learn):
    """One imported CubaLIF layer (no recurrent weights) read out by its LI: e-prop equals BPTT
    for every weight, and for time constants and thresholds trained per neuron, whose trained
    values are what the export writes."""
    rng = np.random.default_rng(6)
    graph = nir.NIRGraph.from_list(
        nir.Affine(weight=rng.normal(0, 1.5, (6, 5)), bias=rng.uniform(0, 0.1, 6)),
        nir.CubaLIF(**cuba_values(6, rng)),
        nir.Affine(weight=rng.normal(0, 1, (3, 6)), bias=np.zeros(3)),
        nir.LI(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.zeros(3)))
    net = snir.load(graph, dtype="float64", learn=learn)
    assert set(learn) <= set(net.params)
    assert_eprop_equals_bptt(net, spikes_in(n_in=5, steps=30), np.array([0, 1, 2, 0]), 1e-9)
    if not learn:
        return
    net.params["tau_mem"] *= 1.1
    written = nir.read(snir.save(net, tmp_path / "learned.nir"))
    assert np.array_equal(written.nodes["cubalif0"].tau_mem, net.params["tau_mem"])
    with pytest.raises(snir.NirError, match="no neuron node of the graph has a field 'tau_x'"):
        snir.load(graph, learn=("tau_x",))


def test_a_readout_whose_nearest_tau_has_no_exact_gain_still_round_trips(tmp_path):
    """Found by tests/test_nir_fuzz.py: the tau nearest dt/(1 - kappa) reproduced kappa, but no r
    then reproduced the gain; another tau that also gives kappa does."""
    tau, r = 0.001307693200666257, 8.836775542618835
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=np.ones((2, 2))),
        nir.LIF(tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2), v_threshold=np.ones(2)),
        nir.Affine(weight=np.ones((1, 2)), bias=np.zeros(1)),
        nir.LI(tau=np.array([tau]), r=np.array([r]), v_leak=np.zeros(1)))
    net = snir.load(graph)
    back = snir.load(snir.save(net, tmp_path / "g.nir"))
    assert back.kappa == net.kappa and np.array_equal(back.gain, net.gain)


def test_a_recurrent_leaky_integrator_at_the_end_is_a_layer_not_the_readout():
    """Found by tests/test_nir_fuzz.py: its recurrent weights were dropped."""
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([3])), "w0": nir.Linear(weight=rng.normal(0, 1, (4, 3))),
               "lif": nir.LIF(tau=np.full(4, 1e-3), r=np.full(4, 10.0), v_leak=np.zeros(4), v_threshold=np.ones(4)),
               "w1": nir.Linear(weight=rng.normal(0, 1, (2, 4))),
               "li": nir.LI(tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2)),
               "rec": nir.Linear(weight=rng.normal(0, 1, (2, 2))), "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "w0"), ("w0", "lif"), ("lif", "w1"), ("w1", "li"), ("li", "rec"), ("rec", "li"),
               ("li", "output")])
    net = snir.load(graph)
    assert not net.readout and net.layers[-1].recurrent
    assert np.array_equal(net.params["W_rec_1"], graph.nodes["rec"].weight)
