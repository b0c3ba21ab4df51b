"""Training runs: metrics, checkpoints, resume equivalence, the NaN stop, evaluate, errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symgrad import models
from symgrad.data import load_task
from symgrad.runtime.trainer import CHECKPOINT, Config, Diverged, Trainer, load_checkpoint
from helpers import tone, write_wav

SMALL = {"samples": 64, "test_samples": 32, "channels": 12, "steps": 20, "n_classes": 3}


def small_run(tmp_path, name="run", **changes):
    settings = dict(model="alif", task="randman", hidden=16, epochs=2, batch=16, lr=0.01,
                    task_settings=SMALL)
    config = Config(**{**settings, **changes})
    split = load_task("randman", **SMALL)
    return Trainer(config, models.builtin("alif"), split, tmp_path / name, progress=False)


def mkdir(trainer):
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    return trainer


def test_training_writes_metrics_checkpoint_and_curves(tmp_path):
    trainer = mkdir(small_run(tmp_path))
    metrics = trainer.fit(log=lambda line: None)
    assert set(metrics) == {"train_loss", "train_acc", "test_acc"}
    assert all(len(v) == 2 for v in metrics.values())
    assert json.loads((trainer.run_dir / "metrics.json").read_text()) == metrics
    assert (trainer.run_dir / "curves.png").stat().st_size > 1000
    state = load_checkpoint(trainer.run_dir / CHECKPOINT)
    assert int(state["epoch"]) == 2
    assert not list(trainer.run_dir.glob("*.tmp"))  # atomic writes leave nothing behind


def test_curves_are_drawn_at_the_end_and_every_so_many_seconds_of_training(tmp_path, monkeypatch):
    """Drawing curves.png took 0.3 s each epoch, 4 s of a 10-second run: a run shorter than
    CURVES_EVERY draws it once, after its last epoch; a longer one also while it trains."""
    from symgrad.runtime import trainer as training

    for every, drawings in ((1e9, 1), (0.0, 3)):
        monkeypatch.setattr(training, "CURVES_EVERY", every)
        trainer = mkdir(small_run(tmp_path, name=f"every{every:g}", epochs=3))
        drawn = []
        curves = trainer.curves
        monkeypatch.setattr(trainer, "curves", lambda: drawn.append(trainer.epoch) or curves())
        trainer.fit(log=lambda line: None)
        assert len(drawn) == drawings and drawn[-1] == 3
        assert (trainer.run_dir / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("rule, workers", [("eprop", 1), ("eprop", 3), ("bptt", None)])
def test_resume_ends_with_exactly_the_uninterrupted_weights(tmp_path, rule, workers):
    whole = mkdir(small_run(tmp_path, "whole", rule=rule, epochs=3, workers=workers))
    whole.fit(log=lambda line: None)
    first = mkdir(small_run(tmp_path, "split", rule=rule, epochs=3, workers=workers))

    def killed(line):  # the process dies right after the first epoch's checkpoint
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.fit(log=killed)
    resumed = small_run(tmp_path, "split", rule=rule, epochs=3, workers=workers)
    resumed.restore()
    assert resumed.epoch == 1
    resumed.fit(log=lambda line: None)
    for key, value in whole.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[key], value, err_msg=key)
    assert resumed.metrics == whole.metrics


def test_augmented_copies_are_used_and_resume_exactly(tmp_path):
    def augmented(name, epochs):
        trainer = mkdir(small_run(tmp_path, name, epochs=epochs))
        x = trainer.split.train.x
        copies = np.stack([np.roll(x, k + 1, axis=1) for k in range(2)], axis=1).astype(np.uint8)
        trainer.split.train.variants = copies
        return trainer

    plain = mkdir(small_run(tmp_path, "plain", epochs=2))
    plain.fit(log=lambda line: None)
    whole = augmented("whole", 2)
    whole.fit(log=lambda line: None)
    assert not np.array_equal(whole.net.params["W_in"], plain.net.params["W_in"])  # copies were used
    first = augmented("split", 2)

    def killed(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.fit(log=killed)
    resumed = augmented("split", 2)
    resumed.restore()
    resumed.fit(log=lambda line: None)
    for key, value in whole.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[key], value, err_msg=key)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = mkdir(small_run(tmp_path, epochs=1))
    trainer.fit(log=lambda line: None)
    good = load_checkpoint(trainer.run_dir / CHECKPOINT)
    trainer.config.epochs = 3
    trainer.net.params["W_out"][0, 0] = np.nan  # as if an update had blown up
    with pytest.raises(Diverged, match="loss nan at epoch 2, batch 1"):
        trainer.fit(log=lambda line: None)
    kept = load_checkpoint(trainer.run_dir / CHECKPOINT)
    assert int(kept["epoch"]) == 1
    for key in good:
        np.testing.assert_array_equal(kept[key], good[key])


def test_online_updates_train(tmp_path):
    trainer = mkdir(small_run(tmp_path, loss="ce", update_every=5, epochs=1))
    metrics = trainer.fit(log=lambda line: None)
    assert np.isfinite(metrics["train_loss"][0])


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "symgrad.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_train_and_evaluate_commands(tmp_path):
    out = cli("train", "lif", "--epochs", "1", "--hidden", "16", "--out", "run", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "epoch 1/1" in out.stdout and "final test accuracy" in out.stdout
    for name in ("config.json", "metrics.json", "checkpoint.npz", "curves.png"):
        assert (tmp_path / "run" / name).is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["workers"] >= 1  # fixed once
    again = cli("train", "lif", "--epochs", "1", "--out", "run", cwd=tmp_path)
    assert again.returncode == 1 and "already holds a run" in again.stderr
    evaluated = cli("evaluate", "run", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "%" in evaluated.stdout
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"garbage")
    broken = cli("evaluate", "run", cwd=tmp_path)
    assert broken.returncode == 1 and "corrupt checkpoint" in broken.stderr
    assert "Traceback" not in broken.stderr
    missing = cli("evaluate", "nowhere", cwd=tmp_path)
    assert missing.returncode == 1 and "config.json: no such file" in missing.stderr


def test_fsdd_held_out_speaker_then_evaluate_on_a_new_voice(tmp_path):
    """The speaker-independence workflow: train without one voice, then evaluate a folder of a
    voice never heard. Tones stand in for digits; the loudness differs per speaker."""
    heard, new = tmp_path / "fsdd", tmp_path / "new_voice"
    heard.mkdir(), new.mkdir()
    for digit, freq in enumerate((300.0, 900.0, 2500.0)):
        for speaker, gain in (("alice", 1.0), ("bob", 0.5), ("carol", 0.2)):
            for index in range(4):
                folder = new if speaker == "carol" else heard
                write_wav(folder / f"{digit}_{speaker}_{index}.wav", gain * tone(freq, 0.2 + 0.02 * index))
    out = cli("train", "alif", "--task", "fsdd", "--data", str(heard), "--epochs", "1", "--hidden", "8",
              "--set", "test_speaker=bob", "--set", "augment=2", "--out", "run", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "12 train, 12 test samples" in out.stdout
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task_settings"] == {"test_speaker": "bob", "augment": 2}
    evaluated = cli("evaluate", "run", "--data", str(new), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "on 12 examples" in evaluated.stdout


def test_speaker_study_script(tmp_path):
    folder = tmp_path / "fsdd"
    folder.mkdir()
    for digit, freq in enumerate((300.0, 2500.0)):
        for speaker in ("alice", "bob"):
            for index in range(3):
                write_wav(folder / f"{digit}_{speaker}_{index}.wav", tone(freq, 0.2 + 0.02 * index))
    script = Path(__file__).resolve().parent.parent / "scripts" / "fsdd_speakers.py"
    command = [sys.executable, str(script), str(folder), "--out", str(tmp_path / "runs"), "--",
               "--epochs", "1", "--hidden", "8", "--quiet", "--set", "augment=0"]
    out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| held-out speaker | alice | bob | mean |" in out.stdout
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0 and "symgrad.cli train" not in again.stdout  # finished runs reused
    assert again.stdout.splitlines()[-1] == out.stdout.splitlines()[-1]


def test_train_data_errors_name_the_problem(tmp_path):
    out = cli("train", "alif", "--task", "fsdd", "--data", str(tmp_path / "nothing"), cwd=tmp_path)
    assert out.returncode == 1 and "nothing" in out.stderr and "Traceback" not in out.stderr
    out = cli("train", "alif", "--task", "fsdd", cwd=tmp_path)
    assert out.returncode == 1 and "fsdd" in out.stderr
    out = cli("train", "alif", "--task", "mnist", cwd=tmp_path)
    assert out.returncode == 1 and "unknown task 'mnist'" in out.stderr
    out = cli("train", "alif", "--set", "colour", cwd=tmp_path)
    assert out.returncode == 2 and "expected KEY=VALUE" in out.stderr
    out = cli("train", "alif", "--set", "colour=red", cwd=tmp_path)
    assert out.returncode == 2 and "unknown setting(s) colour" in out.stderr  # a command-line error
    out = cli("train", "alif", "--task", "fsdd", "--data", str(tmp_path), "--set", "augment=-2", cwd=tmp_path)
    assert out.returncode == 1 and "augment must be" in out.stderr and "Traceback" not in out.stderr


def test_peer_study_script(tmp_path):
    """The non-spiking peer learns tones that identify the digit for a speaker it never heard."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "fsdd_peers.py"
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "nothing")],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "nothing" in missing.stderr and "Traceback" not in missing.stderr
    pytest.importorskip("torch")
    folder = tmp_path / "fsdd"
    folder.mkdir()
    for digit, freq in enumerate((300.0, 2500.0)):
        for speaker, gain in (("alice", 1.0), ("bob", 0.3)):
            for index in range(6):
                write_wav(folder / f"{digit}_{speaker}_{index}.wav", gain * tone(freq, 0.2 + 0.02 * index))
    out = subprocess.run([sys.executable, str(script), str(folder), "--epochs", "40", "--readout", "max"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "| held-out speaker | alice | bob | mean |" in out.stdout
    assert out.stdout.splitlines()[-1] == "| gru, max readout, levels | 100.0% | 100.0% | 100.0% |"
