"""A command line that follows conventions: help with every default, bad values as
command-line errors (exit 2), config.json checked value by value, FILE.py:NAME by variable
or by name=."""
import argparse
import json

import pytest

from symgrad import models
from symgrad.cli import build_parser
from symgrad.data import TASKS
from symgrad.errors import UserError
from symgrad.model import ModelError
from symgrad.runtime.config import Config


def subcommands():
    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return choices.items()


def test_every_option_has_help_and_shows_its_real_default(symgrad):
    for name, sub in subcommands():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        text = symgrad(name, "--help").out
        assert "default: None" not in text, name
    train = " ".join(symgrad("train", "--help").out.split())  # argparse wraps lines

    def shown(option):  # the default of the default task, then each task's own
        values = {task: spec.defaults.get(option, getattr(Config(), option)) for task, spec in TASKS.items()}
        return f"default: {values['randman']}" + "".join(
            f"; {task} {value}" for task, value in values.items() if value != values["randman"])

    for option in ("epochs", "hidden", "lr", "kappa", "loss", "rule", "batch"):
        assert shown(option) in train, option
    grads = " ".join(symgrad("grads", "--help").out.split())
    assert "--inputs IN.npz the batch and the weights" in grads and "(default: eprop)" in grads


def test_bad_set_values_are_command_line_errors(symgrad):
    for setting, message in (("channels=abc", "channels must be a whole number, got 'abc' (a setting of "
                                              "task 'randman')"),
                             ("alpha=true", "alpha must be a number"),
                             ("colour=red", "task 'randman': unknown setting(s) colour")):
        bad = symgrad("train", "lif", "--set", setting, "--epochs", "1", "--out", "never")
        assert bad.code == 2, (setting, bad.err)
        assert "symgrad train: error: argument --set: " + message in bad.err, bad.err
    bad = symgrad("evaluate", "graph.nir", "--task", "fsdd", "--set", "speaker_norm=3")
    assert bad.code == 2 and "speaker_norm must be true or false" in bad.err
    needs = symgrad("train", "lif", "--task", "fsdd", "--epochs", "1", "--out", "never")
    assert needs.code == 1 and "task 'fsdd' reads files" in needs.err and "--data DIR" in needs.err


def test_an_empty_path_is_refused_not_the_default(symgrad, tmp_path):
    for option in ("--out", "--data"):
        bad = symgrad("train", "lif", option, "", "--epochs", "1", "--hidden", "4", "--set", "samples=8",
                      "--set", "test_samples=4", "--set", "steps=5", "--backend", "numpy", "--quiet")
        assert bad.code == 2 and f"argument {option}: expected a path, got an empty one" in bad.err
    assert not (tmp_path / "runs").exists()


def write_config(path, **changes):
    path.write_text(json.dumps({"model": "lif", "task": "randman", **changes}))


def test_config_load_checks_every_value(tmp_path, symgrad):
    path = tmp_path / "config.json"
    cases = {
        "hidden": (dict(hidden=10 ** 30), "setting 'hidden' must be a whole number from 1 to 100000"),
        "float hidden": (dict(hidden=1e30), "setting 'hidden' must be a whole number"),
        "epochs": (dict(epochs=10 ** 12), "setting 'epochs' must be a whole number from 1 to 1000000"),
        "nested setting": (dict(task_settings={"steps": {"a": 1}}), "setting 'task_settings' must be an "
                                                                    "object of settings, each a number"),
        "record": (dict(model_record={"equations": {"state v": 1}}), "setting 'model_record' must be"),
    }
    for case, (changes, message) in cases.items():
        write_config(path, **changes)
        with pytest.raises(UserError, match="^" + str(path) + ": " + message):
            Config.load(path)
    path.write_text('{"task_settings": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001)
    with pytest.raises(UserError, match="nested too deeply"):
        Config.load(path)
    path.write_text('{"hidden": ' + "9" * 5000 + "}")
    with pytest.raises(UserError, match="not valid JSON"):
        Config.load(path)
    run = tmp_path / "run"
    run.mkdir()
    write_config(run / "config.json", hidden=10 ** 30)
    out = symgrad("evaluate", "run")
    assert out.code == 1 and "Traceback" not in out.err and "setting 'hidden'" in out.err


TWO_MODELS = """
import sympy as sp
from symgrad import NeuronModel, spike, stop_gradient, surrogates

v, I = sp.symbols("v I")
z = spike(v - 1, surrogate=surrogates.fast_sigmoid())
m1 = NeuronModel(name="m8", states={v: 0.0}, params={}, update={v: 0.9 * v + I - stop_gradient(z)}, output=z)
m2 = NeuronModel(name="mine", states={v: 0.0}, params={}, update={v: 0.8 * v + I - stop_gradient(z)}, output=z)
alias = m2
"""


def test_a_model_file_names_a_model_by_variable_or_by_name(tmp_path, symgrad):
    path = tmp_path / "two.py"
    path.write_text(TWO_MODELS)
    assert models.load(f"{path}:m1").name == "m8"  # by variable
    assert models.load(f"{path}:m8").name == "m8"  # by name=
    assert models.load(f"{path}:alias").name == "mine"
    loaded = models.load(f"{path}:mine")
    assert loaded.source_file == str(path) and loaded.source == TWO_MODELS
    with pytest.raises(ModelError, match=r"no NeuronModel named 'm9', as a variable or by name=; its models, "
                                         r"as variable \(name=\): m1 \(name='m8'\), m2 \(name='mine'\)"):
        models.load(f"{path}:m9")
    path.write_text(TWO_MODELS.replace('name="mine"', 'name="m1"'))  # m1: one model's variable, another's name
    with pytest.raises(ModelError, match="ambiguous"):
        models.load(f"{path}:m1")
    out = symgrad("inspect", f"{path}:m8", "--json")
    assert out.code == 0 and json.loads(out.out)["model"] == "m8"
