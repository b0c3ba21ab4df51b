"""Run folders nobody else can corrupt, and a trainer that says what is going on.

Each test reproduces a reported problem: two trainings mixing in one folder, a folder that is
not a run overwritten, files written through symlinks or losing their mode, temporaries of
killed runs piling up, a full disk naming no file, checkpoints and metrics that pass unchecked,
a silent network training at chance without a word, progress bars flooding log files.
"""
import errno
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from symgrad import models, store
from symgrad.cli import main
from symgrad.data import load_task
from symgrad.runtime.trainer import CHECKPOINT, Config, Trainer, load_checkpoint

SMALL = {"samples": 64, "test_samples": 32, "channels": 12, "steps": 20, "n_classes": 3}
# The numpy backend: no kernels to compile, and the fastest on networks this small.
SMALL_ARGS = ["--hidden", "16", "--quiet", "--backend", "numpy"] + [a for k, v in SMALL.items()
                                                                   for a in ("--set", f"{k}={v}")]


def cli(capsys, *args):
    """The command line in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def cli_processes(*commands):
    """Each command line in a process of its own, all at once, as other users of a run folder
    would run them: each one's CompletedProcess."""
    started = [(subprocess.Popen([sys.executable, "-m", "symgrad.cli", *map(str, args)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True), args) for args in commands]
    outputs = [process.communicate() for process, _ in started]
    return [subprocess.CompletedProcess(args, process.returncode, *output)
            for (process, args), output in zip(started, outputs)]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch alif run on a small randman task (copied by ``run``)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", "alif", "--epochs", "1", "--out", str(folder), *SMALL_ARGS]) == 0
    return folder


@pytest.fixture
def run(finished, tmp_path, capsys):
    capsys.readouterr()
    return shutil.copytree(finished, tmp_path / "run", symlinks=True)


def small_trainer(run_dir, model="alif", **changes):
    config = Config(**{**dict(model=model, hidden=16, epochs=1, batch=16, backend="numpy", task_settings=SMALL),
                       **changes})
    return Trainer(config, models.builtin(model), load_task("randman", **SMALL), run_dir, progress=False)


# ---------------------------------------------------------------------------- one process per folder

def test_a_second_training_into_a_live_run_folder_is_refused(tmp_path, capsys, monkeypatch):
    """The issue: ``train --out c2``, then during its first epoch another ``train --out c2``
    with other settings; both exited 0, leaving the second's config.json beside the first's
    checkpoint. Now the second, and a --resume, are refused in one line while the first runs;
    evaluate still reads the folder; the first's run is whole."""
    folder, seen = tmp_path / "c2", {}
    save = Trainer.save

    def save_with_others_around(trainer):
        if trainer.epoch == 1:  # the first epoch's end: config.json written, no checkpoint yet
            (seen["new"],) = cli_processes(["train", "alif", "--lr", 0.5, "--epochs", 1, "--out", folder, *SMALL_ARGS])
        if trainer.epoch == 2:  # the first epoch's checkpoint is there
            seen["resume"], seen["evaluate"] = cli_processes(
                ["train", "alif", "--out", folder, "--resume", "--epochs", "3", "--quiet"], ["evaluate", folder])
        save(trainer)

    monkeypatch.setattr(Trainer, "save", save_with_others_around)
    code, _, err = cli(capsys, "train", "alif", "--epochs", 2, "--out", folder, *SMALL_ARGS)
    assert code == 0, err
    for attempt in ("new", "resume"):
        refused = seen[attempt]
        assert refused.returncode == 1, (attempt, refused.stdout, refused.stderr)
        assert f"{folder} is in use by another symgrad process (pid {os.getpid()} on " in one_line(refused.stderr)
    assert seen["evaluate"].returncode == 0, seen["evaluate"].stderr
    assert "epoch 1," in seen["evaluate"].stdout
    assert json.loads((folder / "config.json").read_text())["lr"] == 0.01  # the first's, not 0.5
    assert int(load_checkpoint(folder / CHECKPOINT)["epoch"]) == 2
    assert len(json.loads((folder / "metrics.json").read_text())["test_acc"]) == 2
    assert not (folder / ".lock").exists()  # released, and removed, when the run ended


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from symgrad import store

    folder = Path(sys.argv[1])
    lock = store.FileLock(folder / ".lock")

    def slowly(handle):
        handle.write(b"half a checkpoint")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)

    store.write_atomic(folder / "checkpoint.npz", slowly, binary=True)
""")


def test_a_run_killed_while_writing_leaves_nothing_that_blocks_or_lingers(tmp_path, capsys):
    """kill -9 during a write left its temporary forever (18 after 40 kills) and, with a lock,
    could leave a lock file behind: the next run takes the lock over and removes the dead
    writer's temporary, never a live process's or another machine's."""
    folder = tmp_path / "run"
    folder.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    (dead,) = [p.name for p in folder.iterdir() if p.name.startswith(".checkpoint.npz.")]
    assert store.is_temporary(dead) and (folder / ".lock").exists()
    host = dead.split("@")[1].split(".")[0]
    alive = folder / f".metrics.json.{os.getpid()}@{host}.0123abcd.tmp"
    elsewhere = folder / f".checkpoint.npz.{writer.pid}@{host}x.0123abcd.tmp"  # a machine sharing the folder
    alive.write_text("being written")
    elsewhere.write_text("being written")

    code, _, err = cli(capsys, "train", "alif", "--epochs", 1, "--out", folder, *SMALL_ARGS)
    assert code == 0, err
    assert not (folder / dead).exists()
    assert alive.read_text() == elsewhere.read_text() == "being written"
    assert int(load_checkpoint(folder / CHECKPOINT)["epoch"]) == 1


# ---------------------------------------------------------------------------- what is written where

def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys, monkeypatch):
    """``train --out .`` in a folder holding someone's config.json and metrics.json overwrote
    both. A non-empty folder whose config.json symgrad cannot read as a run's is refused."""
    mine = tmp_path / "mine"
    mine.mkdir()
    files = {"config.json": '{"name": "my experiment", "lr": "slow"}', "metrics.json": "[1, 2, 3]"}
    for name, text in files.items():
        (mine / name).write_text(text)
    monkeypatch.chdir(mine)
    code, _, err = cli(capsys, "train", "alif", "--out", ".", *SMALL_ARGS)
    assert code == 1
    assert ". is not empty (2 entries, such as 'config.json') and is not a symgrad run folder" in one_line(err)
    assert sorted(p.name for p in mine.iterdir()) == sorted(files)
    assert all((mine / name).read_text() == text for name, text in files.items())
    other = tmp_path / "papers"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "train", "alif", "--out", other, *SMALL_ARGS)
    assert code == 1 and "is not a symgrad run folder" in one_line(err)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_run_files_are_replaced_never_written_through_and_keep_their_mode(run, tmp_path, capsys):
    """A curves.png that was a symlink had its target overwritten (savefig follows links); a
    metrics.json made 0600 became 0644 on the next epoch."""
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"not symgrad's")
    (run / "curves.png").unlink()
    (run / "curves.png").symlink_to(precious)
    (run / "metrics.json").chmod(0o600)
    (run / CHECKPOINT).chmod(0o640)
    code, _, err = cli(capsys, "train", "alif", "--out", run, "--resume", "--epochs", 2, "--quiet")
    assert code == 0, err
    assert precious.read_bytes() == b"not symgrad's"
    assert not (run / "curves.png").is_symlink()
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert stat.S_IMODE((run / "metrics.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((run / CHECKPOINT).stat().st_mode) == 0o640


def test_write_atomic_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "private.json"
    store.write_json(path, {"a": 1})
    for mode in (0o600, 0o640, 0o755):
        path.chmod(mode)
        store.write_json(path, {"mode": mode})
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert json.loads(path.read_text()) == {"mode": mode}


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "state.npz"
    store.write_npz(path, {"x": np.arange(3)})
    monkeypatch.setattr(np, "savez", _full_disk)
    with pytest.raises(OSError) as raised:
        store.write_npz(path, {"x": np.arange(5)})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    assert "symgrad's cache" not in str(raised.value)
    np.testing.assert_array_equal(store.read_npz(path)["x"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]
    cached = store.cache_dir("test-full-disk") / "arrays.npz"
    with pytest.raises(OSError) as raised:
        store.write_npz(cached, {"x": np.arange(5)})
    assert raised.value.filename == str(cached) and "writing symgrad's cache" in raised.value.strerror
    assert raised.value.strerror.startswith(os.strerror(errno.ENOSPC))


def test_a_full_disk_during_training_names_the_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(np, "savez", _full_disk)
    code, _, err = cli(capsys, "train", "alif", "--epochs", 1, "--out", tmp_path / "run", *SMALL_ARGS)
    assert code == 1
    assert one_line(err) == f"symgrad: error: {os.strerror(errno.ENOSPC)}: {tmp_path / 'run' / CHECKPOINT}"


# ---------------------------------------------------------------------------- checked when read back

def _set(name, value):
    return lambda state: state.update({name: value})


BAD_CHECKPOINTS = {
    "negative epoch": (_set("epoch", np.array(-3)), "'epoch' must be a whole number of at least 0, got -3"),
    "NaN weights": (lambda s: s["param/W_rec"].__setitem__((0, 0), np.nan),
                    "array 'param/W_rec' holds values that are not finite"),
    "wrong dtype": (lambda s: s.update({"param/W_in": s["param/W_in"].astype(np.float64)}),
                    "array 'param/W_in' is float64, but the network built from config.json needs float32"),
    "unknown array": (_set("param/W_mystery", np.zeros(3, np.float32)), "unexpected array 'param/W_mystery'"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_evaluate_resume_and_export_check_a_checkpoint_alike(run, tmp_path, capsys, case):
    """export wrote NaN weights, wrong dtypes, unknown arrays and ``epoch = -7`` with exit 0,
    and evaluate took ``epoch = -3``. Each command now refuses each, naming the checkpoint."""
    change, message = BAD_CHECKPOINTS[case]
    state = load_checkpoint(run / CHECKPOINT)
    change(state)
    np.savez(run / CHECKPOINT, **state)
    before = (run / CHECKPOINT).read_bytes()
    commands = {"evaluate": ["evaluate", run], "resume": ["train", "alif", "--out", run, "--resume", "--epochs", 2],
                "export": ["export", run, "--nir", tmp_path / "out.nir"]}
    for command, args in commands.items():
        code, _, err = cli(capsys, *args)
        line = one_line(err)
        assert code == 1 and f"{run / CHECKPOINT}: " in line and message in line, (command, line)
    assert (run / CHECKPOINT).read_bytes() == before and not (tmp_path / "out.nir").exists()


def test_a_sound_checkpoint_passes_every_command_s_checks(run, tmp_path, capsys):
    """The other side of the test above: the checks refuse only what is wrong."""
    code, out, err = cli(capsys, "evaluate", run)
    assert code == 0 and "epoch 1," in out, err
    code, _, err = cli(capsys, "export", run, "--nir", tmp_path / "out.nir")
    assert code == 1 and "none of NIR's neuron primitives" in one_line(err)  # got past the checkpoint


def test_evaluate_needs_no_metrics(run, capsys):
    """evaluate refused a run without metrics.json, saying to restore it "to resume"."""
    (run / "metrics.json").unlink()
    code, out, err = cli(capsys, "evaluate", run)
    assert code == 0, err
    assert "randman: " in out and "epoch 1," in out


def test_metrics_that_are_not_numbers_are_refused_on_resume(run, capsys):
    """Non-numbers in metrics.json passed the check and crashed matplotlib at the epoch's end."""
    path = run / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["train_acc"][0] = "high"
    path.write_text(json.dumps(metrics))
    before = (run / CHECKPOINT).read_bytes()
    code, _, err = cli(capsys, "train", "alif", "--out", run, "--resume", "--epochs", 2, "--quiet")
    assert code == 1 and f"{path}: train_acc of epoch 1 is 'high', not a number" in one_line(err)
    assert (run / CHECKPOINT).read_bytes() == before


# ---------------------------------------------------------------------------- saying what is going on

def _drive(trainer, scale):
    """Input weights all excitatory and ``scale`` times as strong (0: no input at all)."""
    trainer.net.params["W_in"][:] = np.abs(trainer.net.params["W_in"]) * scale


@pytest.mark.parametrize("scale, message", [
    (0.0, r"layer 0 \(alif, 16 neurons\) did not spike once in the first batch \(16 samples of 20 steps\): "
          r"a silent network does not learn; scale its input up or lower its threshold"),
    (1e4, r"layer 0 \(alif, 16 neurons\) spiked in 9\d% of its neuron-steps in the first batch: a saturated "
          r"network does not learn; scale its input down or raise its threshold"),
])
def test_a_silent_or_saturated_network_is_reported_once(tmp_path, scale, message):
    """A network that never spiked trained at chance, every epoch, without a word."""
    trainer = small_trainer(tmp_path / "run", epochs=2)
    _drive(trainer, scale)
    with pytest.warns(UserWarning, match=message) as caught:
        trainer.fit(log=lambda line: None)
    assert len(caught) == 1


@pytest.mark.parametrize("model, scale", [("alif", 1.0), ("leaky_tanh", 0.0)])
def test_an_active_network_or_one_that_does_not_spike_by_design_is_not_warned_about(tmp_path, recwarn, model,
                                                                                       scale):
    trainer = small_trainer(tmp_path / "run", model)
    _drive(trainer, scale)
    trainer.fit(log=lambda line: None)
    assert not [w for w in recwarn if "first batch" in str(w.message)]


def test_curves_have_a_title_a_chance_line_and_axes_that_do_not_flatter(tmp_path):
    """curves.png autoscaled the flat lines of a run at chance until they looked like learning."""
    trainer = small_trainer(tmp_path / "run", epochs=2)
    trainer.fit(log=lambda line: None)
    figure = trainer.curves()
    assert figure.get_suptitle() == "alif on randman, rule eprop"
    loss, accuracy = figure.axes
    assert loss.get_ylim()[0] == 0 and accuracy.get_ylim() == (0, 1)
    chance = [line for line in accuracy.get_lines() if line.get_label().startswith("chance")]
    assert len(chance) == 1 and set(chance[0].get_ydata()) == {1 / 3}


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, bars", [(io.StringIO, False), (Terminal, True)])
def test_progress_bars_only_on_a_terminal(tmp_path, monkeypatch, stream, bars):
    """Without a terminal (Slurm logs, pipes) tqdm wrote ~90 kB of carriage returns a run:
    now one line per epoch, and bars only where someone watches."""
    monkeypatch.setattr(sys, "stderr", stream())
    trainer = small_trainer(tmp_path / "run", epochs=2)
    trainer.progress = True
    lines = []
    trainer.fit(log=lines.append)
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert ("\r" in sys.stderr.getvalue()) == bars
