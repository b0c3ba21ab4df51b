"""Rewiring (--rewire, DEEP R): a synapse whose weight crossed zero moves within its row; nnz,
the other synapses and Dale's-law signs stay; a moved synapse starts with no weight, moments or
trace; resumed and MPI runs rewire exactly as an uninterrupted single process."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symgrad import models
from symgrad.data import load_task
from symgrad.errors import UserError
from symgrad.runtime import distributed, eprop
from symgrad.runtime.checkpoint import CheckpointMismatch, load_checkpoint
from symgrad.runtime.connectivity import Connectivity
from symgrad.runtime.optim import Adam
from symgrad.runtime.rewiring import Rewiring
from symgrad.runtime.trainer import CHECKPOINT, Config, Trainer
from helpers import assert_active, batch, network, relative_error

SMALL = {"samples": 64, "test_samples": 32, "channels": 12, "steps": 20, "n_classes": 3}


def stepped(name="alif", backend="numpy", **options):
    """A sparse network that spikes, after one Adam step (so that its moments exist), with its
    Rewiring and optimiser."""
    net = network(name, recurrent=True, hidden=8, n_in=10, backend=backend, connectivity=0.5, **options)
    rewiring, optimizer = Rewiring(net, seed=3), Adam(lr=0.01)
    x, labels = batch(n_in=10)
    result = eprop(net, x, labels)
    assert_active(result, net)
    optimizer.step(net.params, result.grads)
    return net, rewiring, optimizer


def test_crossed_synapses_move_within_their_rows_and_nothing_else_changes():
    net, rewiring, optimizer = stepped()
    crossing = {"W_in": [0, 1, 17], "W_rec": [4, 30]}  # two in row 0 of W_in
    before = {key: (net.connectivity[key].col.copy(), net.params[key].copy(), optimizer.m[key].copy(),
                    optimizer.v[key].copy(), rewiring.signs[key].copy()) for key in crossing}
    for key, slots in crossing.items():  # as if the step had flipped them
        net.params[key][slots] = -0.1 * rewiring.signs[key][slots]
    assert rewiring(optimizer, (0, 0)) == 5
    for key, slots in crossing.items():
        col, weight, m, v, signs = before[key]
        held = net.connectivity[key]
        kept = np.setdiff1d(np.arange(held.nnz), slots)
        assert held.nnz == len(col) and np.array_equal(held.row_start, np.arange(9) * held.row_start[1])
        np.testing.assert_array_equal(held.col[kept], col[kept])
        np.testing.assert_array_equal(net.params[key][kept], weight[kept])
        np.testing.assert_array_equal(optimizer.m[key][kept], m[kept])
        np.testing.assert_array_equal(optimizer.v[key][kept], v[kept])
        np.testing.assert_array_equal(rewiring.signs[key][kept], signs[kept])
        assert (net.params[key][slots] == 0).all() and (optimizer.m[key][slots] == 0).all()
        assert (optimizer.v[key][slots] == 0).all() and np.isin(rewiring.signs[key][slots], (-1, 1)).all()
        for slot in slots:  # to a column no remaining synapse of the row holds, never onto itself
            row = held.post[slot]
            others = np.setdiff1d(np.arange(held.row_start[row], held.row_start[row + 1]), [slot])
            assert held.col[slot] not in held.col[others]
            assert key != "W_rec" or held.col[slot] != row
    assert any((net.connectivity[key].col != before[key][0]).any() for key in crossing), "nothing moved"
    assert rewiring(optimizer, (0, 1)) == 0  # a new synapse at 0 has not crossed


@pytest.mark.parametrize("backend, whole_pass", [("numpy", False), ("numba", False), ("numba", True),
                                                 ("cuda-host", False)])
def test_the_next_pass_runs_the_moved_synapses_from_zero_traces(backend, whole_pass):
    """After rewiring, e-prop's gradients are those of a network built afresh with the new
    synapses, and those of the dense network with the weights masked by them (on NumPy): the
    ports, the kernels' index arrays and the traces run the new columns, and nothing of a
    removed synapse is left."""
    if backend == "numba":
        pytest.importorskip("numba")
    net, rewiring, optimizer = stepped(backend=backend)
    for key in ("W_in", "W_rec"):
        net.params[key][:: 3] *= -1  # cross a third of them
    assert rewiring(optimizer, (0, 0)) > 0
    for key in ("W_in", "W_rec"):  # the moved synapses get weights, to carry the input
        net.params[key][net.params[key] == 0] = 0.7
    x, labels = batch(n_in=10, seed=4)
    after = eprop(net, x, labels, whole_pass=whole_pass)
    assert_active(after, net)
    moved = {key: Connectivity(*c.shape, c.row_start, c.col, key) for key, c in net.connectivity.items()}
    fresh = network("alif", recurrent=True, hidden=8, n_in=10, backend="numpy", connectivity=moved)
    fresh.set_params({key: value for key, value in net.params.items()})
    dense = network("alif", recurrent=True, hidden=8, n_in=10, backend="numpy")
    dense.set_params({key: net.dense(key) for key in net.params})
    for other in (fresh, dense):
        expected = eprop(other, x, labels)
        assert after.loss == pytest.approx(expected.loss, rel=1e-12)
        for key, value in after.grads.items():
            reference = expected.grads[key]
            if key in net.connectivity and reference.ndim == 2:
                reference = net.connectivity[key].gather(reference)
            assert relative_error(value, reference) <= 1e-12, key


def test_dales_law_signs_are_kept():
    """A synapse whose step crossed its sign is moved, not left clipped at 0 with its moments,
    and every signed weight keeps its sign through steps, rewiring and constrain."""
    net = network("coba_lif", recurrent=True, hidden=8, n_in=10, backend="numpy", connectivity=0.5, kappa=0.8,
                  signs={"I_e": 1, "I_i": -1})
    for key in ("W_in_I_e", "W_in_I_i"):
        net.params[key] *= 4
    assert set(net.signs) == set(net.connectivity)
    rewiring, optimizer, moved = Rewiring(net, seed=0), Adam(lr=0.2), 0
    x, labels = batch(n_in=10)
    for update in range(4):
        result = eprop(net, x, labels)
        assert_active(result, net)
        optimizer.step(net.params, result.grads)
        crossed = {key: np.flatnonzero(net.params[key] * sign < 0) for key, sign in net.signs.items()}
        moved += rewiring(optimizer, (0, update))
        net.constrain()
        for key, sign in net.signs.items():
            assert (net.params[key] * sign >= 0).all() and (rewiring.signs[key] == sign).all()
            assert (net.params[key][crossed[key]] == 0).all() and (optimizer.m[key][crossed[key]] == 0).all()
    assert moved > 0, "no step crossed zero: rewiring was never exercised"
    state = rewiring.state()
    state["sign/W_rec_I_i"] = -state["sign/W_rec_I_i"]
    with pytest.raises(CheckpointMismatch, match=r"^ckpt: array 'sign/W_rec_I_i' gives a synapse a sign other "
                                                 r"than -1, the sign of W_rec_I_i \(Dale's law\)$"):
        rewiring.check_state(state, "ckpt")


def rewiring_run(tmp_path, name, **changes):
    settings = dict(model="alif", task="randman", hidden=16, epochs=3, batch=16, lr=0.05, backend="numpy",
                    connectivity=0.3, rewire=True, task_settings=SMALL)
    trainer = Trainer(Config(**{**settings, **changes}), models.builtin("alif"), load_task("randman", **SMALL),
                      tmp_path / name, progress=False)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    return trainer


def test_the_trainer_rewires_a_signed_weight_its_step_crossed(tmp_path):
    """A crossing of a signed weight is seen before ``constrain`` clips it to 0."""
    trainer = Trainer(Config(model="coba_lif", hidden=8, batch=16, lr=0.05, backend="numpy", connectivity=0.5,
                             rewire=True, task_settings=SMALL), models.builtin("coba_lif"),
                      load_task("randman", **SMALL), tmp_path / "run", progress=False)
    net = trainer.net
    assert net.signs["W_in_I_e"] == 1
    grads = {key: np.zeros_like(value) for key, value in net.params.items()}
    trainer._apply(grads)  # the optimiser's moments exist from here on
    net.params["W_in_I_e"][[2, 9]] = 1e-6
    grads["W_in_I_e"][[2, 9]] = 1.0  # a step of about lr down: across zero
    grads["W_in_I_e"][[5]] = -1.0  # up, away from zero: its moments stay
    trainer._apply(grads)
    assert trainer.rewired == 2
    assert (trainer.optimizer.m["W_in_I_e"][[2, 9]] == 0).all() and trainer.optimizer.m["W_in_I_e"][5] != 0
    assert (net.params["W_in_I_e"] >= 0).all()


def test_a_resumed_rewiring_run_ends_exactly_as_an_uninterrupted_one(tmp_path):
    whole = rewiring_run(tmp_path, "whole")
    drawn = {key: c.col.copy() for key, c in whole.net.connectivity.items()}
    lines = []
    whole.fit(log=lines.append)
    assert all("; rewired " in line for line in lines)
    later = sum(int(line.split("; rewired ")[1].split()[0]) for line in lines[1:])
    assert later > 0, "nothing was rewired after the first epoch: resuming proves nothing"
    assert any((c.col != drawn[key]).any() for key, c in whole.net.connectivity.items())

    def killed(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rewiring_run(tmp_path, "split").fit(log=killed)
    resumed = rewiring_run(tmp_path, "split")
    resumed.restore()
    assert resumed.epoch == 1
    resumed.fit(log=lambda line: None)
    for key, value in whole.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[key], value, err_msg=key)
    assert resumed.net.connectivity == whole.net.connectivity
    for key, signs in whole.rewiring.signs.items():
        np.testing.assert_array_equal(resumed.rewiring.signs[key], signs, err_msg=key)
    state = load_checkpoint(tmp_path / "whole" / CHECKPOINT)
    np.testing.assert_array_equal(state["sign/W_rec"], whole.rewiring.signs["W_rec"])


@pytest.mark.parametrize("changes, message", [
    (dict(update_every=5, loss="ce"), "--rewire moves synapses between gradient passes, and --update-every "
                                      "updates the weights within a pass: drop one of them"),
    (dict(connectivity=1.0), "--rewire moves the synapses of sparse weights, and this network has none: give "
                             "--connectivity P below 1"),
])
def test_rewiring_that_cannot_run_is_refused_in_one_line(tmp_path, changes, message):
    with pytest.raises(UserError) as err:
        rewiring_run(tmp_path, "run", **changes)
    assert str(err.value) == message


def test_a_checkpoint_with_bad_signs_is_refused_in_one_line(tmp_path, symgrad):
    options = ["--set", "samples=32", "--set", "test_samples=16", "--set", "channels=12", "--set", "steps=10",
               "--hidden", "8", "--backend", "numpy", "--quiet", "--connectivity", "0.5", "--rewire"]
    assert symgrad("train", "alif", *options, "--epochs", "1", "--out", "run").code == 0
    path = Path("run") / CHECKPOINT  # as the run folder is named
    state = dict(load_checkpoint(tmp_path / path))
    state["sign/W_in"] = state["sign/W_in"].copy()
    state["sign/W_in"][3] = 2
    np.savez(tmp_path / path, **state)
    done = symgrad("evaluate", "run")
    assert done.code == 1
    assert done.err.splitlines() == [f"symgrad: error: {path}: array 'sign/W_in' holds a value other than +1 and -1"]
    del state["sign/W_in"]
    np.savez(tmp_path / path, **state)
    done = symgrad("train", "--resume", "run", "--epochs", "2")
    assert done.err.splitlines() == [f"symgrad: error: {path}: array 'sign/W_in' is missing"]


class OtherRank0(distributed.Single):
    """Rank 1 of a job of two whose rank 0 holds ``rank0``'s network and optimiser."""

    size = 2

    def __init__(self, rank0):
        self.rank0 = rank0

    def same_everywhere(self, digest):
        return digest == distributed.digest(self.rank0._network_state())

    def broadcast(self, value):
        return self.rank0._network_state(), {k: np.asarray(v) for k, v in self.rank0.optimizer.state().items()}


def test_a_rank_whose_synapses_differ_gets_rank_0s(tmp_path):
    rank0 = rewiring_run(tmp_path, "rank0", epochs=1)
    rank0.fit(log=lambda line: None)
    mine = rewiring_run(tmp_path, "rank1", epochs=1, seed=1)
    mine.world = OtherRank0(rank0)
    with pytest.warns(UserWarning, match="rank 0's weights"):
        mine._check_ranks_agree()
    assert mine.net.connectivity == rank0.net.connectivity
    for key, value in rank0.net.params.items():
        np.testing.assert_array_equal(mine.net.params[key], value, err_msg=key)
    for key, signs in rank0.rewiring.signs.items():
        np.testing.assert_array_equal(mine.rewiring.signs[key], signs, err_msg=key)


MPIEXEC = Path(sys.executable).parent / "mpiexec"


@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec beside Python (pip install mpich)")
def test_mpi_ranks_draw_and_rewire_alike(tmp_path):
    pytest.importorskip("mpi4py")
    options = ["--set", "samples=40", "--set", "test_samples=16", "--set", "channels=8", "--set", "steps=12",
               "--set", "n_classes=3", "--hidden", "8", "--batch", "16", "--quiet", "--dtype", "float64",
               "--backend", "numpy", "--epochs", "2", "--lr", "0.05", "--connectivity", "0.5", "--rewire"]
    runs = {}
    for ranks in (0, 2):
        command = [sys.executable, "-m", "symgrad.cli", "train", "alif", *options, "--out", str(tmp_path / f"p{ranks}")]
        if ranks:
            command = [str(MPIEXEC), "-n", str(ranks), *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "weights differed" not in done.stderr  # the ranks held the same synapses every epoch
        runs[ranks] = (load_checkpoint(tmp_path / f"p{ranks}" / CHECKPOINT), done.stdout)
    (alone, said), (job, _) = runs[0], runs[2]
    assert sum(int(part.split()[0]) for part in said.split("; rewired ")[1:]) > 0, "nothing was rewired"
    assert alone.keys() == job.keys()
    for key in alone:
        if key.startswith(("connectivity/", "sign/")):
            np.testing.assert_array_equal(job[key], alone[key], err_msg=key)
        else:
            np.testing.assert_allclose(job[key], alone[key], rtol=0, atol=1e-10, err_msg=key)
