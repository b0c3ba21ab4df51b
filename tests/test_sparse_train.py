"""Sparse connectivity through training: --connectivity, the synapses in every checkpoint (resume,
evaluate and export run exactly those, never a new draw), a checkpoint whose synapses are broken
refused in one line, the run's line and inspect's memory figures with nnz."""
import json

import numpy as np
import pytest

from symgrad import models
from symgrad.data import load_task
from symgrad.memory import size_text
from symgrad.runtime import Network
from symgrad.runtime.checkpoint import CheckpointMismatch
from symgrad.runtime.eprop import memory as eprop_memory
from symgrad.runtime.trainer import CHECKPOINT, Config, Trainer, load_checkpoint

SMALL = {"samples": 64, "test_samples": 32, "channels": 12, "steps": 20, "n_classes": 3}
# the command line's run of the same size, on the backend that runs sparse layers everywhere
OPTIONS = ["--set", "samples=64", "--set", "test_samples=32", "--set", "channels=12", "--set", "steps=20",
           "--set", "n_classes=3", "--hidden", "16", "--batch", "16", "--backend", "numpy", "--quiet"]


def sparse_run(tmp_path, name="run", **changes):
    settings = dict(model="alif", task="randman", hidden=16, epochs=3, batch=16, lr=0.02, backend="numpy",
                    connectivity=0.3, task_settings=SMALL)
    trainer = Trainer(Config(**{**settings, **changes}), models.builtin("alif"), load_task("randman", **SMALL),
                      tmp_path / name, progress=False)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    return trainer


def killed(line):  # the process dies right after the first epoch's checkpoint
    raise KeyboardInterrupt


def test_a_sparse_run_resumes_to_exactly_the_uninterrupted_weights(tmp_path):
    whole = sparse_run(tmp_path, "whole")
    whole.fit(log=lambda line: None)
    net = whole.net
    assert set(net.connectivity) == {"W_in", "W_rec"}
    assert net.params["W_in"].shape == (16 * round(0.3 * 12),)  # one value per synapse
    assert whole.metrics["train_loss"][-1] < whole.metrics["train_loss"][0]  # it learned something
    first = sparse_run(tmp_path, "split")
    with pytest.raises(KeyboardInterrupt):
        first.fit(log=killed)
    resumed = sparse_run(tmp_path, "split")
    resumed.restore()
    assert resumed.epoch == 1
    resumed.fit(log=lambda line: None)
    for key, value in net.params.items():
        np.testing.assert_array_equal(resumed.net.params[key], value, err_msg=key)
    assert resumed.net.connectivity == net.connectivity


def moved_synapse(state: dict, key: str, n_pre: int) -> dict:
    """The checkpoint ``state`` with the first synapse of ``key`` moved to a column its row lacks."""
    changed = dict(state)
    col, row_start = state[f"connectivity/{key}/col"].copy(), state[f"connectivity/{key}/row_start"]
    col[0] = next(c for c in range(n_pre) if c not in col[row_start[0]:row_start[1]] and c != 0)
    changed[f"connectivity/{key}/col"] = col
    return changed


def test_whatever_loads_a_checkpoint_runs_its_synapses_not_a_new_draw(tmp_path):
    trainer = sparse_run(tmp_path, epochs=1)
    trainer.fit(log=lambda line: None)
    path = trainer.run_dir / CHECKPOINT
    state = moved_synapse(load_checkpoint(path), "W_rec", 16)
    np.savez(path, **state)
    again = sparse_run(tmp_path, epochs=1)
    drawn = again.net.connectivity["W_rec"].col.copy()
    again.restore()
    held = again.net.connectivity["W_rec"]
    np.testing.assert_array_equal(held.col, state["connectivity/W_rec/col"])
    assert not np.array_equal(held.col, drawn)
    # the layer's port runs the moved synapse too (W_rec's columns follow the 12 inputs' in u)
    synapses = again.net.layers[0].ports[0].synapses
    assert synapses.col[synapses.positions["W_rec"][0]] == 12 + held.col[0]


def test_train_evaluate_and_export_a_sparse_run(tmp_path, symgrad):
    (tmp_path / "lif.py").write_text('from symgrad.nir import neuron\nmodel = neuron("LIF")\n')  # NIR exports it
    done = symgrad("train", "lif.py", *OPTIONS, "--connectivity", "0.3", "--epochs", "1", "--out", "run")
    assert done.code == 0, done.err
    # 16 neurons: 4 of 12 inputs and 5 of 16 recurrent partners each
    assert "connectivity 0.3: 144 of 448 synapses (32.1%); run folder run" in done.out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["connectivity"] == 0.3
    final = done.out.split("final test accuracy: ")[1].strip()
    evaluated = symgrad("evaluate", "run", "--model", "lif.py")
    assert evaluated.code == 0, evaluated.err
    assert evaluated.out.startswith(f"randman: {final} on 32 examples")
    exported = symgrad("export", "run", "--nir", "run.nir", "--model", "lif.py")
    assert exported.code == 0, exported.err
    import nir

    graph = nir.read(tmp_path / "run.nir")
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    weights = [node.weight for node in graph.nodes.values() if getattr(node, "weight", None) is not None
               and np.shape(node.weight) == (16, 12)]
    assert len(weights) == 1 and np.count_nonzero(weights[0]) == 64  # zeros where no synapse is
    rows = np.repeat(np.arange(16), np.diff(state["connectivity/W_in/row_start"]))
    np.testing.assert_array_equal(weights[0][rows, state["connectivity/W_in/col"]], state["param/W_in"])


@pytest.fixture(scope="module")
def sparse_checkpoint(tmp_path_factory):
    """The checkpoint of a one-epoch sparse run and the folder holding it."""
    from symgrad.cli import main

    folder = tmp_path_factory.mktemp("sparse")
    assert main(["train", "alif", *OPTIONS, "--connectivity", "0.3", "--epochs", "1",
                 "--out", str(folder / "run")]) == 0
    return folder / "run", dict(load_checkpoint(folder / "run" / CHECKPOINT))


def _without(state, name):
    return {k: v for k, v in state.items() if k != name}


def _changed(state, name, value):
    return {**state, name: value}


def _column(state, index, value):
    col = state["connectivity/W_in/col"].copy()
    col[index] = value
    return _changed(state, "connectivity/W_in/col", col)


@pytest.mark.parametrize("break_it, message", [
    (lambda s: _without(s, "connectivity/W_rec/col"), "array 'connectivity/W_rec/col' is missing"),
    (lambda s: _changed(s, "connectivity/W_in/col", s["connectivity/W_in/col"][:-1]),
     "array 'connectivity/W_in/col' has shape (63,), but the network built from config.json has (64,)"),
    (lambda s: _changed(s, "connectivity/W_in/col", s["connectivity/W_in/col"].astype(float)),
     "array 'connectivity/W_in/col' is float64, but the network built from config.json needs an integer"),
    (lambda s: _column(s, 5, 12), "array 'connectivity/W_in/col': W_in: a presynaptic column outside 0 .. 11"),
    (lambda s: _column(s, 1, s["connectivity/W_in/col"][0]),
     "array 'connectivity/W_in/col': W_in: a row lists a presynaptic column twice"),
    (lambda s: _changed(s, "connectivity/W_in/row_start", s["connectivity/W_in/row_start"][::-1].copy()),
     "array 'connectivity/W_in/row_start': W_in: row_start must rise from 0 to the 64 synapses over 16 + 1 "
     "entries"),
    (lambda s: _changed(s, "connectivity/W_in/shape", np.array([16, 13])),
     "array 'connectivity/W_in/shape' makes W_in (16, 13), but the network built from config.json has (16, 12)"),
], ids=["missing", "short", "float", "outside", "twice", "row-start", "shape"])
def test_a_checkpoint_with_broken_synapses_is_refused_in_one_line(symgrad, sparse_checkpoint, break_it, message):
    run, state = sparse_checkpoint
    broken = run.parent / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text((run / "config.json").read_text())
    (broken / "metrics.json").write_text((run / "metrics.json").read_text())
    np.savez(broken / CHECKPOINT, **break_it(state))
    for command in (["evaluate", broken], ["train", "--resume", broken, "--epochs", "2"]):
        done = symgrad(*command)
        assert done.code == 1
        assert done.err.splitlines() == [f"symgrad: error: {broken / CHECKPOINT}: {message}"], done.err


def test_a_dense_checkpoint_does_not_fit_a_sparse_config(tmp_path):
    dense = sparse_run(tmp_path, "dense", connectivity=1.0, epochs=1)
    dense.fit(log=lambda line: None)
    sparse = sparse_run(tmp_path, "dense", epochs=1)
    with pytest.raises(CheckpointMismatch, match=r"array 'param/W_in' has shape \(16, 12\), but the network "
                                                 r"built from config.json has \(64,\)"):
        sparse.restore()


@pytest.mark.parametrize("options, code, message", [
    (["--connectivity", "0"], 2, "argument --connectivity: must be a number in (0, 1], got 0"),
    (["--connectivity", "1.5"], 2, "argument --connectivity: must be a number in (0, 1], got 1.5"),
    (["--connectivity", "0.03"], 1, "symgrad: error: connectivity 0.03 gives each neuron round(0.03 x 12) = 0 of "
                                    "W_in's 12 inputs; 0.0833 or more keeps one"),
])
def test_a_bad_connectivity_gets_one_line(tmp_path, symgrad, options, code, message):
    done = symgrad("train", "alif", *OPTIONS, *options, "--epochs", "1", "--out", "run")
    assert done.code == code
    lines = done.err.splitlines()
    assert (lines == [message]) if code == 1 else lines[-1].endswith(message), done.err
    assert not (tmp_path / "run").exists()


def test_inspect_sizes_the_traces_by_the_synapses(symgrad):
    dense = symgrad("inspect", "alif", "--hidden", "64", "--inputs", "40")
    sparse = symgrad("inspect", "alif", "--hidden", "64", "--inputs", "40", "--connectivity", "0.1")
    assert dense.code == sparse.code == 0
    # 64 neurons, each with 4 of 40 inputs and 6 of 64 recurrent partners: 640 of 6,656 pairs
    assert "(batch 32, 64 neurons, 104 presynaptic, 640 synapses (9.6%), 4-byte floats)" in sparse.out
    net = Network(models.builtin("alif"), 40, 64, 3, kappa=0.0, connectivity=0.1, dtype="float32",
                  backend="numpy")
    expected = size_text(eprop_memory(net, 32, "ce"))  # what a pass of that network allocates
    assert f"  instantaneous readout (kappa = 0): {expected} (" in sparse.out
    assert f"  instantaneous readout (kappa = 0): {expected} (" not in dense.out
