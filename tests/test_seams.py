"""Reliability at the seams between parts: run folders, command-line values, input files.

Each test reproduces one rough edge a new user met (issue 16) and checks what happens now:
one line naming the problem, the right exit code, and nothing lost.
"""
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from symgrad import models, store
from symgrad.cli import build_parser, main
from symgrad.data import DataError, fsdd, load_task
from symgrad.runtime.trainer import CHECKPOINT, Config, Diverged, Trainer, load_checkpoint
from helpers import tone, write_wav

SMALL = {"samples": 64, "test_samples": 32, "channels": 12, "steps": 20, "n_classes": 3}
SMALL_ARGS = ["--hidden", "16", "--quiet"] + [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]


def cli(capsys, *args):
    """Run the command line in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def run_dir(tmp_path, capsys):
    """A finished one-epoch alif run on a small randman task."""
    code, _, err = cli(capsys, "train", "alif", "--epochs", 1, "--out", tmp_path / "run", *SMALL_ARGS)
    assert code == 0, err
    return tmp_path / "run"


def small_trainer(run_dir, **changes):
    config = Config(**{**dict(model="alif", hidden=16, epochs=2, batch=16, task_settings=SMALL), **changes})
    return Trainer(config, models.builtin("alif"), load_task("randman", **SMALL), run_dir, progress=False)


# ---------------------------------------------------------------------------- run folders

def _drop(name):
    return lambda state: state.pop(name)


def _reshape(name):
    return lambda state: state.update({name: state[name][:-1]})


def _retype(name):
    return lambda state: state.update({name: state[name].astype(np.float64)})


@pytest.mark.parametrize("change, message", [
    (_drop("param/W_rec"), "'param/W_rec' is missing"),
    (_drop("optim/m/W_in"), "'optim/m/W_in' is missing"),
    (_drop("optim/t"), "'optim/t' is missing"),
    (_reshape("param/W_out"), "'param/W_out' has shape (2, 16), but the network built from config.json has (3, 16)"),
    (_retype("param/W_in"), "'param/W_in' is float64, but the network built from config.json needs float32"),
    (lambda state: state.update({"param/W_in": np.full_like(state["param/W_in"], np.nan)}),
     "'param/W_in' holds values that are not finite"),
    (lambda state: state.update({"param/extra": np.zeros(3)}), "unexpected array 'param/extra'"),
    (lambda state: state.update({"epoch": np.array(1.5)}), "'epoch' is float64"),
])
def test_resume_validates_the_checkpoint_against_config(run_dir, capsys, change, message):
    state = load_checkpoint(run_dir / CHECKPOINT)
    change(state)
    store.write_npz(run_dir / CHECKPOINT, state)
    before = (run_dir / CHECKPOINT).read_bytes()
    code, _, err = cli(capsys, "train", "alif", "--out", run_dir, "--resume", "--epochs", 2, "--quiet")
    assert code == 1 and message in one_line(err), err
    assert (run_dir / CHECKPOINT).read_bytes() == before


def test_resume_with_a_corrupt_metrics_file_says_so_and_keeps_the_checkpoint(run_dir, capsys):
    before = (run_dir / CHECKPOINT).read_bytes()
    metrics = run_dir / "metrics.json"
    metrics.write_text(metrics.read_text()[:50])
    code, _, err = cli(capsys, "train", "alif", "--out", run_dir, "--resume", "--epochs", 2, "--quiet")
    assert code == 1 and "metrics.json: not valid JSON" in one_line(err)
    metrics.unlink()
    code, _, err = cli(capsys, "train", "alif", "--out", run_dir, "--resume", "--epochs", 2, "--quiet")
    assert code == 1 and "metrics.json: missing, but the checkpoint has reached epoch 1" in one_line(err)
    assert (run_dir / CHECKPOINT).read_bytes() == before


def test_resume_refuses_settings_that_differ_from_the_run(run_dir, capsys):
    code, _, err = cli(capsys, "train", "lif", "--lr", 0.1, "--no-recurrent", "--set", "channels=7",
                       "--out", run_dir, "--resume")
    line = one_line(err)
    assert code == 1
    for each in ("model lif (the run has alif)", "--lr 0.1 (the run has 0.01)",
                 "--no-recurrent (the run has a recurrent projection)", "--set channels=7 (the run has 12)"):
        assert each in line, line
    # What may change on resume, and settings repeated unchanged, are accepted.
    code, out, err = cli(capsys, "train", "alif", "--lr", 0.01, "--epochs", 2, "--out", run_dir, "--resume",
                         "--quiet")
    assert code == 0, err
    assert "resuming" in out and "epoch 2/2" in out


def test_divergence_in_the_first_epoch_does_not_claim_a_checkpoint(tmp_path, capsys):
    code, _, err = cli(capsys, "train", "alif", "--lr", 1e38, "--epochs", 4, "--out", tmp_path / "d", *SMALL_ARGS)
    assert code == 3
    line = one_line(err)  # numpy's overflow warnings are not shown: the one line says it
    assert "no epoch finished" in line and "holds no checkpoint" in line and "kept" not in line
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["config.json"]
    code, _, err = cli(capsys, "train", "alif", "--out", tmp_path / "d", "--resume", "--quiet")
    assert code == 1 and "nothing to resume" in one_line(err)


def test_default_run_folder_is_named_after_the_model_inside_runs(tmp_path, capsys, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my_alif.py").write_text(
        "from symgrad.models import builtin\nmodel = builtin('alif')\nmodel.name = 'mine'\n")
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    code, out, err = cli(capsys, "train", "../models/my_alif.py", "--epochs", 1, *SMALL_ARGS)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "project"]
    assert (project / "runs" / "mine-randman-seed0" / CHECKPOINT).is_file()
    config = json.loads((project / "runs" / "mine-randman-seed0" / "config.json").read_text())
    assert config["model"] == str(tmp_path / "models" / "my_alif.py")  # resumable from anywhere


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_files_respect_the_umask(tmp_path, capsys, umask):
    old = os.umask(umask)
    try:
        code, _, err = cli(capsys, "train", "lif", "--epochs", 1, "--out", tmp_path / "r", *SMALL_ARGS)
    finally:
        os.umask(old)
    assert code == 0, err
    for name in ("checkpoint.npz", "config.json", "metrics.json", "curves.png"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == 0o666 & ~umask, name


# ---------------------------------------------------------------------------- command-line values

@pytest.mark.parametrize("command, flag, value", [
    ("train", "--lr", "-1"), ("train", "--lr", "0"), ("train", "--lr", "nan"), ("train", "--lr", "inf"),
    ("train", "--lr", "fast"), ("train", "--kappa", "5"), ("train", "--kappa", "1"),
    ("train", "--kappa", "-0.1"), ("train", "--reg", "-1"), ("train", "--reg", "nan"),
    ("train", "--seed", "-1"), ("train", "--hidden", "0"), ("train", "--layers", "0"),
    ("train", "--update-every", "0"), ("train", "--workers", "0"), ("train", "--batch", "1.5"),
    ("inspect", "--batch", "0"), ("inspect", "--hidden", "-3"), ("inspect", "--inputs", "0"),
])
def test_bad_numeric_options_exit_2_with_argparse_message(capsys, command, flag, value):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "alif", f"{flag}={value}"])
    assert exit_.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


def test_every_numeric_option_is_checked():
    """Each option taking a number parses it with a checking type, not bare int or float."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.type not in (int, float), f"symgrad {name} {action.option_strings}"


def test_adam_with_a_huge_learning_rate_is_stopped(tmp_path):
    trainer = small_trainer(tmp_path, lr=1e6, epochs=4)
    with pytest.raises(Diverged, match="more than 10 times the untrained network's"):
        trainer.fit(log=lambda line: None)
    assert trainer.epoch < 4


def test_weights_that_overflow_stop_training(tmp_path):
    trainer = small_trainer(tmp_path, lr=10.0, optimizer="sgd", clip=None)
    huge = {k: np.full_like(v, 1e38) for k, v in trainer.net.params.items()}
    with pytest.raises(Diverged, match="W_in overflowed float32 after an update"), np.errstate(over="ignore"):
        trainer._apply(huge)


def test_evaluate_with_another_task_names_both(run_dir, capsys):
    code, _, err = cli(capsys, "evaluate", run_dir, "--task", "evidence")
    line = one_line(err)
    assert code == 1 and "trained on task 'randman'" in line and "does not fit task 'evidence'" in line
    code, out, err = cli(capsys, "evaluate", run_dir)  # the run's own task by default
    assert code == 0 and out.startswith("randman:"), err


# ---------------------------------------------------------------------------- grads and data files

def test_grads_input_that_is_not_an_npz_archive(tmp_path, capsys):
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "text.npz").write_text("x = 1\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    for name, message in (("plain.npy", "a single .npy array, not an .npz archive"),
                          ("text.npz", "not an .npz archive"), ("empty.npz", "empty, not an .npz archive")):
        code, _, err = cli(capsys, "grads", "alif", "--inputs", tmp_path / name, "--out", tmp_path / "o.npz")
        line = one_line(err)
        assert code == 1 and name in line and message in line and "pickle" not in line, line


def test_grads_out_naming_a_directory(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code, _, err = cli(capsys, "grads", "alif", "--inputs", tmp_path / "in.npz", "--out", tmp_path / "out")
    assert code == 1 and "is a directory" in one_line(err)


@pytest.fixture
def recordings(tmp_path):
    folder = tmp_path / "fsdd"
    folder.mkdir()
    for digit, freq in enumerate((300.0, 900.0)):
        for index in range(7):
            write_wav(folder / f"{digit}_alice_{index}.wav", tone(freq))
    return folder


@pytest.mark.parametrize("keep, reason", [(0, "the file is empty"), (20, "the file ends inside its header")])
def test_wav_cut_inside_its_header_says_why(recordings, keep, reason):
    path = recordings / "0_alice_3.wav"
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(DataError, match=reason):
        fsdd.read_wav(path)


def test_unreadable_recordings_are_counted_and_can_be_skipped(recordings, tmp_path):
    for name in ("0_alice_3.wav", "1_alice_6.wav"):
        (recordings / name).write_bytes(b"RIFF")
    with pytest.raises(DataError, match="2 of 14 recordings are unreadable.*skip_unreadable=true"):
        fsdd.load_fsdd(recordings, cache_dir=tmp_path / "cache", progress=False)
    for attempt in ("converted", "cached"):
        with pytest.warns(UserWarning, match="skipped 2 of 14 recordings"):
            split = fsdd.load_fsdd(recordings, cache_dir=tmp_path / "cache", progress=False,
                                   skip_unreadable=True)
        assert len(split.train) + len(split.test) == 12, attempt
        assert "0_alice_3.wav" not in set(split.test.meta["file"])
    # The cache written while skipping is never read without skipping.
    with pytest.raises(DataError, match="2 of 14"):
        fsdd.load_fsdd(recordings, cache_dir=tmp_path / "cache", progress=False)


def test_skip_unreadable_through_the_command_line(recordings, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    (recordings / "1_alice_2.wav").write_bytes(b"")
    args = ["train", "lif", "--task", "fsdd", "--data", recordings, "--epochs", 1, "--hidden", 8, "--quiet",
            "--out", tmp_path / "r"]
    code, _, err = cli(capsys, *args)
    assert code == 1 and "1 of 14 recordings are unreadable" in one_line(err)
    assert not (tmp_path / "r").exists()
    code, _, err = cli(capsys, *args, "--set", "skip_unreadable=true")
    assert code == 0 and "symgrad: warning: fsdd: skipped 1 of 14 recordings" in one_line(err)


# ---------------------------------------------------------------------------- the README

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_synopsis_lists_every_option():
    synopsis = README.split("## Command line", 1)[1].split("```")[1]
    blocks = {}
    for line in synopsis.strip().splitlines():
        if line.startswith("symgrad "):
            command = line.split()[1]
        blocks[command] = blocks.get(command, "") + line
    parser = build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            flag = max(action.option_strings, key=len, default=None)
            if flag and flag != "--help":
                assert flag in blocks[name], f"symgrad {name} {flag} is missing from the README's synopsis"


def test_readme_gives_each_surrogate_with_its_parameters():
    import inspect as introspect

    from symgrad import surrogates

    for name in ("triangle", "fast_sigmoid", "sigmoid", "arctan"):
        signature = introspect.signature(getattr(surrogates, name)).replace(return_annotation=introspect.Signature.empty)
        assert f"`{name}{signature}`" in README, name


def test_readme_explains_every_row_of_inspect(capsys):
    code, out, _ = cli(capsys, "inspect", "se_adlif")
    assert code == 0
    rows = {line.split()[0].split("[")[0] for line in out.split("Jacobians")[1].split("trace plan")[0].splitlines()[1:]
            if line.strip()}
    assert rows == {"D", "c", "h", "q", "dz/dalpha", "dz/dbeta"}
    for row in ("`D[i,j]`", "`c[i]`", "`h[i]`", "`q[p,i]`", "`dz/dp`"):
        assert row in README, row


@pytest.mark.parametrize("options, message", [
    (["--layers", 2], "e-prop with several layers needs a per-step loss (ce or mse), not ce_mean"),
    (["--update-every", 5], "online updates (update_every) need a per-step loss"),
    (["--update-every", 5, "--rule", "bptt", "--loss", "ce"], "online updates (--update-every) need --rule eprop"),
])
def test_settings_a_rule_cannot_train_are_refused_before_anything_is_written(tmp_path, capsys, options, message):
    code, _, err = cli(capsys, "train", "alif", *options, "--out", tmp_path / "r", *SMALL_ARGS)
    assert code == 1 and message in one_line(err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("setting, value, message", [
    ("hidden", -3, "setting 'hidden' must be a whole number from 1 to 100000, got -3"),
    ("lr", "fast", "setting 'lr' must be a positive number, got 'fast'"),
    ("kappa", 1.5, "setting 'kappa' must be a number in [0, 1), got 1.5"),
    ("loss", "hinge", "setting 'loss' must be one of"),
    ("recurrent", "yes", "setting 'recurrent' must be true or false"),
    ("workers", 0, "setting 'workers' must be a whole number from 1 to 1024, got 0"),
])
def test_a_hand_edited_config_is_checked(run_dir, capsys, setting, value, message):
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    config[setting] = value
    path.write_text(json.dumps(config))
    for command in (["evaluate", run_dir], ["train", "alif", "--out", run_dir, "--resume"]):
        code, _, err = cli(capsys, *command)
        line = one_line(err)
        assert code == 1 and str(path) in line and message in line, line


@pytest.mark.parametrize("task, setting, message", [
    ("randman", "samples=-5", "randman: samples must be a whole number of at least 1, got -5"),
    ("randman", "steps=0", "randman: steps must be a whole number of at least 1, got 0"),
    ("randman", "n_classes=1", "randman: n_classes must be a whole number of at least 2"),
    ("randman", "seed=-1", "randman: seed must be a whole number of at least 0"),
    ("evidence", "cues=4", "evidence: cues must be odd"),
    ("evidence", "noise_rate=2", "evidence: noise_rate must be a number at least 0 and at most 1"),
    ("pattern", "rate=2000", "pattern: rate must be a number at least 0 and at most 1000"),
])
def test_task_settings_are_checked(tmp_path, capsys, task, setting, message):
    code, _, err = cli(capsys, "train", "lif", "--task", task, "--set", setting, "--out", tmp_path / "r")
    assert code == 1 and message in one_line(err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("setting, message", [
    ("samples=abc", "samples must be a whole number, got 'abc'"),
    ("alpha=nan", "alpha must be a number, got nan"),
])
def test_task_settings_of_the_wrong_type_are_command_line_errors(tmp_path, capsys, setting, message):
    with pytest.raises(SystemExit) as exit:
        main(["train", "lif", "--set", setting, "--out", str(tmp_path / "r")])
    assert exit.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_train_help_names_every_task():
    from symgrad.data import TASKS

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    task = next(action for action in train._actions if "--task" in action.option_strings)
    assert all(name in task.help for name in TASKS), task.help
