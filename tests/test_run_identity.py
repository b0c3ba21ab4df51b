"""A run knows its model: config.json records what the model is (its equations, and a model
file's source), evaluate, export and --resume refuse another, a moved file is named with
--model, a model file named only by a run folder never runs, and --resume takes the folder."""
import json
import shutil

import numpy as np

from symgrad import models
from symgrad.data import load_task
from symgrad.runtime.checkpoint import load_checkpoint
from symgrad.runtime.trainer import Config, Trainer

MODEL = """
import sympy as sp
from symgrad import NeuronModel, spike, stop_gradient, surrogates

v, I, R = sp.symbols("v I R")
z = spike(v - 0.5, surrogate=surrogates.fast_sigmoid())
leaky = NeuronModel(name="leaky", states={v: 0.0}, params={R: 8.0},
                    update={v: 0.8 * v + R * I / 4 - 0.5 * stop_gradient(z)}, output=z)
"""
DATA = {"samples": 32, "test_samples": 16, "steps": 20}
SMALL = ["--hidden", "8", "--batch", "16", "--backend", "numpy", "--quiet",
         *[f"--set={key}={value}" for key, value in DATA.items()]]


def one_line(result, code=1):
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1, result.err
    return result.err


def trained(symgrad, tmp_path, model="leaky.py", epochs=1):
    """A run of ``epochs`` in tmp_path/run; a model file is written from MODEL first."""
    if model.endswith(".py"):
        (tmp_path / model).write_text(MODEL)
    result = symgrad("train", model, "--epochs", epochs, "--out", "run", *SMALL)
    assert result.code == 0, result.err
    return tmp_path / "run"


def config_of(run):
    return json.loads((run / "config.json").read_text())


def test_a_changed_model_file_is_refused_with_what_changed(symgrad, tmp_path):
    run = trained(symgrad, tmp_path)
    record = config_of(run)["model_record"]
    assert record["source"] == MODEL and record["equations"]["param R"] == "8.0"
    before = symgrad("evaluate", run, "--model", "leaky.py")
    assert before.code == 0, before.err
    (tmp_path / "leaky.py").write_text(MODEL.replace("R: 8.0", "R: 2.0"))  # the edit
    for command in (("evaluate", run, "--model", "leaky.py"),
                    ("export", run, "--nir", tmp_path / "out.nir", "--model", "leaky.py"),
                    ("train", "leaky.py", "--resume", "--out", run, "--epochs", "2", *SMALL),
                    ("train", run, "--resume", "--model", "leaky.py", "--epochs", "2", *SMALL)):
        err = one_line(symgrad(*command))
        assert f"changed since run {run} trained: param R: 8.0 -> 2.0" in err, (command, err)
        assert "model_record.source: restore it and pass --model FILE" in err, err
    assert int(load_checkpoint(run / "checkpoint.npz")["epoch"]) == 1  # nothing trained on
    assert not (tmp_path / "out.nir").exists()
    # What the refusal prevents: the trained weights in the edited model fire otherwise.
    config, split = Config(**config_of(run)), load_task("randman", **DATA)
    rates = {}
    for name, source in (("trained", MODEL), ("edited", MODEL.replace("R: 8.0", "R: 2.0"))):
        (tmp_path / f"{name}.py").write_text(source)
        trainer = Trainer(config, models.load(str(tmp_path / f"{name}.py")), split, run, progress=False)
        trainer.restore()
        rates[name] = float(np.mean(trainer.net.forward(np.swapaxes(split.test.x, 0, 1))[1][0]))
    assert 0 < rates["trained"] < 0.5, "a silent or saturated network proves nothing"
    assert rates["edited"] < rates["trained"] / 2


def test_a_moved_model_file_is_named_with_model(symgrad, tmp_path):
    run = trained(symgrad, tmp_path)
    score = symgrad("evaluate", run, "--model", "leaky.py").out
    (tmp_path / "elsewhere").mkdir()
    shutil.move(tmp_path / "leaky.py", tmp_path / "elsewhere" / "leaky.py")
    err = one_line(symgrad("evaluate", run))
    assert "which is not there now: pass --model FILE" in err
    moved = symgrad("evaluate", run, "--model", "elsewhere/leaky.py")
    assert moved.code == 0, moved.err
    assert moved.out == score
    resumed = symgrad("train", run, "--resume", "--model", "elsewhere/leaky.py", "--epochs", "2", *SMALL)
    assert resumed.code == 0, resumed.err
    assert config_of(run)["model"] == str(tmp_path / "elsewhere" / "leaky.py")  # the run follows its file


def test_a_run_folder_never_runs_a_model_file_by_itself(symgrad, tmp_path):
    run = trained(symgrad, tmp_path)
    planted = run / "model.py"  # shipped inside the folder, and run when imported
    planted.write_text(MODEL + f"\nopen({str(tmp_path / 'ran')!r}, 'w').close()\n")
    for named in ("run/model.py", str(planted)):
        config = config_of(run)
        config["model"] = named
        (run / "config.json").write_text(json.dumps(config))
        for command in (("evaluate", "run"), ("export", "run", "--nir", "out.nir"),
                        ("train", "run", "--resume", "--epochs", "2", *SMALL)):
            err = one_line(symgrad(*command))
            assert f"symgrad runs a model file only when you name it: pass --model {planted}" in err, err
            assert not (tmp_path / "ran").exists(), command
    assert symgrad("evaluate", "run", "--model", planted).code == 0  # named: the user's choice
    assert (tmp_path / "ran").exists()


def test_a_built_in_model_is_recorded_and_checked(symgrad, tmp_path):
    run = trained(symgrad, tmp_path, model="lif")
    config = config_of(run)
    assert config["model_record"]["equations"] == models.identity(models.builtin("lif"))
    assert "source" not in config["model_record"]
    # A later symgrad whose lif differs: as if lif's alpha had been 0.9 when the run trained.
    config["model_record"]["equations"]["param alpha"] = "0.9"
    (run / "config.json").write_text(json.dumps(config))
    evaluated = symgrad("evaluate", run)  # the user cannot restore a built-in: a loud warning
    assert evaluated.code == 0, evaluated.err
    assert evaluated.err.startswith(f"symgrad: warning: model lif, changed since run {run} trained: "
                                    f"param alpha: 0.9 -> 0.95")
    assert evaluated.out.startswith("randman: ")
    err = one_line(symgrad("train", run, "--resume", "--epochs", "2", *SMALL))
    assert "param alpha: 0.9 -> 0.95" in err and "or pass --model FILE naming the run's model" in err
    assert int(load_checkpoint(run / "checkpoint.npz")["epoch"]) == 1


def test_resume_from_the_run_folder_alone(symgrad, tmp_path):
    run = trained(symgrad, tmp_path, model="lif")
    resumed = symgrad("train", "--resume", run, "--epochs", "2", *SMALL)
    assert resumed.code == 0, resumed.err
    assert "epoch 2/2" in resumed.out
    assert config_of(run)["epochs"] == 2  # --epochs is the run's now: evaluate and scripts read it
    assert len(json.loads((run / "metrics.json").read_text())["test_acc"]) == 2
    again = symgrad("train", "lif", "--resume", "--out", run, "--epochs", "3", *SMALL)  # the old form
    assert again.code == 0, again.err
    assert int(load_checkpoint(run / "checkpoint.npz")["epoch"]) == 3


def test_resume_refuses_when_nothing_is_left_to_do(symgrad, tmp_path):
    run = trained(symgrad, tmp_path, model="lif", epochs=2)
    saved = (run / "config.json").read_text()
    err = one_line(symgrad("train", "lif", "--resume", "--out", run, "--epochs", "1", *SMALL))
    assert "--epochs 1" in err and "has already trained 2 epochs" in err and "N above 2" in err
    err = one_line(symgrad("train", "--resume", run, *SMALL))
    assert "has finished its 2 epochs" in err
    assert (run / "config.json").read_text() == saved
    err = one_line(symgrad("train", run, *SMALL))  # a folder without --resume
    assert "pass --resume" in err


def test_the_data_folder_is_stored_absolute(symgrad, tmp_path):
    (tmp_path / "data").mkdir()
    result = symgrad("train", "lif", "--data", "data", "--epochs", "1", "--out", "run", *SMALL)
    assert result.code == 0, result.err
    assert config_of(tmp_path / "run")["data"] == str(tmp_path / "data")
