"""Data-parallel training over MPI: the same run on 1, 2 or 3 processes.

The jobs run under the ``mpiexec`` that the ``mpi`` extra installs beside Python (MPICH's
wheel); without mpi4py these tests are skipped, and CI installs it.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from symgrad.data import fsdd
from symgrad.runtime import distributed
from symgrad.runtime.checkpoint import load_checkpoint
from helpers import tone, write_wav

pytest.importorskip("mpi4py")
MPIEXEC = Path(sys.executable).parent / "mpiexec"
pytestmark = pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec beside Python (pip install mpich)")

# 40 samples in batches of 16: the last batch (8) is uneven across 3 ranks (3, 2, 3).
SMALL = ["--set", "samples=40", "--set", "test_samples=16", "--set", "channels=8", "--set", "steps=12",
         "--set", "n_classes=3", "--hidden", "8", "--batch", "16", "--quiet", "--dtype", "float64"]


def train(tmp_path, name, ranks, *options, env=None, check=True):
    command = [sys.executable, "-m", "symgrad.cli", "train", "alif", *SMALL, "--out", str(tmp_path / name),
               *options]
    if ranks:
        command = [str(MPIEXEC), "-n", str(ranks), *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, **(env or {})})
    if check:
        assert done.returncode == 0, done.stderr
    return done


def weights(run: Path) -> dict:
    state = load_checkpoint(run / "checkpoint.npz")
    return {k: v for k, v in state.items() if k.startswith(("param/", "optim/"))}


def assert_close(a: dict, b: dict, tolerance: float):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=tolerance, err_msg=key)


@pytest.mark.parametrize("options", [
    ["--rule", "eprop", "--backend", "numpy"],
    ["--rule", "bptt", "--backend", "numpy"],
    ["--rule", "eprop", "--backend", "numba"],
    ["--rule", "eprop", "--loss", "ce", "--update-every", "4", "--backend", "numpy"],
    ["--rule", "bptt", "--backend", "numpy", "--set", "samples=33"],  # a last batch of 1: two ranks idle
    ["--rule", "eprop", "--backend", "numpy", "--reg", "2", "--set", "samples=33"],
    ["--rule", "bptt", "--backend", "numpy", "--reg", "2"],
], ids=["eprop", "bptt", "eprop-numba", "eprop-online", "bptt-idle-ranks", "eprop-reg-idle-ranks", "bptt-reg"])
def test_the_result_does_not_depend_on_the_process_count(tmp_path, options):
    alone = train(tmp_path, "alone", 0, "--epochs", "2", *options)
    reference = weights(tmp_path / "alone")
    assert "MPI" not in alone.stdout
    for ranks in (1, 2, 3):
        done = train(tmp_path, f"p{ranks}", ranks, "--epochs", "2", *options)
        assert "final test accuracy" in done.stdout
        assert_close(weights(tmp_path / f"p{ranks}"), reference, 1e-10)
        if ranks > 1:
            assert f"{ranks} MPI ranks" in done.stdout and "all-reduce" in done.stdout
    # The network spiked and learned: the readout weights, whose gradient needs spikes, moved.
    train(tmp_path, "start", 0, "--epochs", "1", "--lr", "1e-12", *options)
    assert np.abs(reference["param/W_out"] - weights(tmp_path / "start")["param/W_out"]).max() > 1e-3


def test_resume_with_another_process_count(tmp_path):
    """A run stopped after its first epoch's checkpoint and resumed (training to 3 epochs
    from the start gives epoch 1 the same learning rate as a 1-epoch run)."""
    train(tmp_path, "whole", 2, "--epochs", "3")
    train(tmp_path, "split", 2, "--epochs", "1")
    train(tmp_path, "split", 2, "--epochs", "3", "--resume")
    assert_close(weights(tmp_path / "split"), weights(tmp_path / "whole"), 0.0)  # the same P: bit-identical
    train(tmp_path, "other", 2, "--epochs", "1")
    train(tmp_path, "other", 3, "--epochs", "3", "--resume")
    train(tmp_path, "alone", 0, "--epochs", "3")
    assert_close(weights(tmp_path / "other"), weights(tmp_path / "alone"), 1e-10)


FAILING_MODEL = """
import os
from symgrad import models
from symgrad.runtime import trainer

model = models.builtin("alif")
if os.environ.get("PMI_RANK") == "1":
    real = trainer.eprop

    def eprop(*args, **kwargs):  # rank 1 runs out of memory in its fifth batch (the second epoch)
        eprop.calls = getattr(eprop, "calls", 0) + 1
        if eprop.calls == 5:
            raise MemoryError("cannot allocate the traces")
        return real(*args, **kwargs)

    trainer.eprop = eprop
"""


@pytest.mark.parametrize("options", [[], ["--loss", "ce", "--update-every", "4"], ["--reg", "1"]],
                         ids=["batch", "online-updates", "rate-regulariser"])
def test_a_failing_rank_stops_every_rank_with_one_line(tmp_path, options):
    """Rank 1 fails before its pass while rank 0 is in a collective inside its own (an online
    update, the regulariser's counts) or at the batch's end: no hang, one line."""
    (tmp_path / "failing.py").write_text(FAILING_MODEL)
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "symgrad.cli", "train", "failing.py", *SMALL,
               "--epochs", "3", "--out", "run", *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["symgrad: error: rank 1 of 2: MemoryError: cannot allocate the traces"], done.stderr
    assert int(load_checkpoint(tmp_path / "run" / "checkpoint.npz")["epoch"]) == 1  # the last good one


def test_a_killed_rank_ends_the_job_and_the_checkpoint_stays(tmp_path):
    run = tmp_path / "run"
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "symgrad.cli", "train", "alif", *SMALL,
               "--epochs", "400", "--out", str(run)]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    checkpoint = run / "checkpoint.npz"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists()
    ranks = subprocess.run(["pgrep", "-f", f"symgrad.cli train alif .*{run}"], capture_output=True,
                           text=True).stdout.split()
    victim = [int(pid) for pid in ranks if int(pid) != job.pid][-1]
    os.kill(victim, signal.SIGKILL)
    job.communicate(timeout=60)  # not a hang
    assert job.returncode != 0
    assert int(load_checkpoint(checkpoint)["epoch"]) >= 1


def test_fsdd_conversion_is_shared_and_cached_once(tmp_path):
    folder = tmp_path / "fsdd"
    folder.mkdir()
    for digit, freq in enumerate((300.0, 900.0, 2000.0)):
        for index in range(7):
            write_wav(folder / f"{digit}_alice_{index}.wav", tone(freq, 0.2 + 0.01 * index))
    script = tmp_path / "load.py"
    script.write_text(f"""
import json, numpy as np
from symgrad.data import fsdd
from symgrad.runtime.distributed import world
job = world()
read = []
real = fsdd.read_wav
fsdd.read_wav = lambda path: read.append(path.name) or real(path)
data = fsdd.load_fsdd_all({str(folder)!r}, cache_dir={str(tmp_path / 'cache')!r}, progress=False, comm=job)
shares = job.gather(read)
if job.rank == 0:
    np.save({str(tmp_path / 'x.npy')!r}, data.x)
    json.dump(shares, open({str(tmp_path / 'shares.json')!r}, "w"))
""")
    done = subprocess.run([str(MPIEXEC), "-n", "3", sys.executable, str(script)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shares = json.loads((tmp_path / "shares.json").read_text())
    assert all(shares) and sum(len(s) for s in shares) == 21 and len(set().union(*shares)) == 21
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    alone = fsdd.load_fsdd_all(folder, cache_dir=tmp_path / "fresh", progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), alone.x)


@pytest.mark.parametrize("options, differ", [
    ((["--epochs", "1"], ["--epochs", "2"]), "--epochs 1 (rank 0) vs 2 (rank 1)"),
    (([], ["--rule", "bptt", "--seed", "3", "--kappa", "0.5"]),
     "--rule not given (rank 0) vs bptt (rank 1); --seed not given (rank 0) vs 3 (rank 1); "
     "--kappa not given (rank 0) vs 0.5 (rank 1)"),
], ids=["epochs-hung", "rule-seed-kappa-summed-unlike-gradients"])
def test_ranks_given_different_settings_stop_before_anything_in_one_line(tmp_path, options, differ):
    """Different --epochs hung the job; a different rule, seed or leak summed unlike gradients
    and ended with exit 0 (or a warning blaming the MPI library's sums)."""
    command = [str(MPIEXEC)]
    for rank, mine in enumerate(options):  # MPICH's MPMD syntax: one command per rank
        command += [":"] * (rank > 0) + ["-n", "1", sys.executable, "-m", "symgrad.cli", "train", "alif", *SMALL,
                                         "--out", "run", *mine]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"symgrad: error: the ranks were started with different settings: "
                                        f"{differ} (every rank must be given the same)"], done.stderr
    assert not (tmp_path / "run").exists()


FAILING_CONVERSION = """
import os
from symgrad import models
from symgrad.data import fsdd

model = models.builtin("alif")
if os.environ.get("PMI_RANK") == "0":
    def band_power_db(*args):  # rank 0 fails on its first recording; rank 1 converts its share
        raise ZeroDivisionError("float division by zero")

    fsdd.band_power_db = band_power_db
"""


def test_a_rank_failing_in_the_fsdd_conversion_stops_every_rank_with_one_line(tmp_path):
    """Rank 0 failed while rank 1 waited in the gather of the converted shares: a hang."""
    folder = tmp_path / "fsdd"
    folder.mkdir()
    for digit, freq in enumerate((300.0, 900.0)):
        for index in range(6):
            write_wav(folder / f"{digit}_alice_{index}.wav", tone(freq, 0.2))
    (tmp_path / "failing.py").write_text(FAILING_CONVERSION)
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "symgrad.cli", "train", "failing.py", "--task", "fsdd",
               "--data", str(folder), "--epochs", "1", "--hidden", "8", "--quiet", "--out", "run"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"symgrad: error: rank 0 of 2: fsdd: {folder / '0_alice_0.wav'} could "
                                        f"not be converted (ZeroDivisionError: float division by zero)"], done.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- in one process


def test_launchers_are_recognised(monkeypatch):
    for name in distributed.LAUNCHER_SIZE + ("SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_by_mpi()
    monkeypatch.setenv("PMI_SIZE", "1")
    assert not distributed.launched_by_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed.launched_by_mpi()
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE")
    monkeypatch.setenv("SLURM_NTASKS", "8")  # sbatch's environment, one process: not a job of 8
    assert not distributed.launched_by_mpi()
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert distributed.launched_by_mpi()


def test_threads_never_oversubscribe_the_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert distributed.threads_per_rank(8, 1) == 8
    assert distributed.threads_per_rank(8, 4) == 4
    assert distributed.threads_per_rank(8, 32) == 1


def test_shares_cover_the_batch_in_order():
    index = np.arange(10)
    parts = [distributed.share(index, rank, 3) for rank in range(3)]
    assert np.array_equal(np.concatenate(parts), index) and [len(p) for p in parts] == [3, 4, 3]
    assert [len(distributed.share(index[:1], rank, 3)) for rank in range(3)] == [0, 1, 0]


class Disagreeing(distributed.Single):
    """Rank 0 of a job of two whose MPI library summed differently on the other rank."""

    size = 2

    def same_everywhere(self, digest):
        return False


class Gathering(distributed.Single):
    """Rank 0 of a job whose ranks were given ``everyone``'s settings."""

    def __init__(self, everyone):
        self.everyone, self.size = everyone, len(everyone)

    def gather_all(self, value):
        return self.everyone


def test_differing_settings_are_told_with_every_ranks_value():
    given = [{"--seed": seed, "--lr": 0.01, "--set": [("steps", 12)]} for seed in (0, 0, 1, 0, 0)]
    with pytest.raises(distributed.RankFailed, match=r"^the ranks were started with different settings: "
                                                     r"--seed 0 \(ranks 0-1, 3-4\) vs 1 \(rank 2\) \(every"):
        distributed.require_same(Gathering(given), given[0])
    distributed.require_same(Gathering([given[0]] * 5), given[0])  # all alike: nothing to say


def test_ranks_whose_weights_differ_are_told_and_resynchronised(tmp_path):
    from symgrad import models
    from symgrad.data import load_task
    from symgrad.runtime.trainer import Config, Trainer

    small = {"samples": 16, "test_samples": 8, "channels": 6, "steps": 8, "n_classes": 3}
    config = Config(hidden=8, epochs=1, batch=8, task_settings=small)
    trainer = Trainer(config, models.builtin("alif"), load_task("randman", **small), tmp_path, progress=False,
                      world=Disagreeing())
    before = {k: v.copy() for k, v in trainer.net.params.items()}
    with pytest.warns(UserWarning, match="weights differed after epoch 0.*rank 0's weights"):
        trainer._check_ranks_agree()
    for key, value in before.items():
        np.testing.assert_array_equal(trainer.net.params[key], value)


def test_a_nir_graph_trains_alike_on_any_process_count(tmp_path):
    """An imported network (two CubaLIF layers, recurrent, per-neuron values, Affine biases, a
    spiking output) trained with e-prop on its spikes: the same weights on 1 and 2 processes."""
    import nir

    from test_nir import paper_graph

    graph = paper_graph(n_in=8, hidden=6, n_out=3)
    nir.write(tmp_path / "paper.nir", graph)
    options = [option for option in SMALL if option not in ("--hidden", "8")]
    runs = {}
    for ranks in (0, 2):
        command = [sys.executable, "-m", "symgrad.cli", "train", str(tmp_path / "paper.nir"), *options,
                   "--loss", "ce", "--epochs", "2", "--backend", "numpy", "--out", str(tmp_path / f"p{ranks}")]
        if ranks:
            command = [str(MPIEXEC), "-n", str(ranks), *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        runs[ranks] = weights(tmp_path / f"p{ranks}")
    assert_close(runs[2], runs[0], 1e-10)
    assert {"param/b_in", "param/W_rec", "param/W_in_1"} <= set(runs[0])
    assert np.abs(runs[0]["param/W_rec"] - graph.nodes["rec1"].weight).max() > 1e-3, "training changed nothing"
