"""The tables the runtime and the command line read: loss kinds, runtime backends, tasks."""
import dataclasses
import json

import numpy as np
import pytest

from symgrad import cli, data
from symgrad.data import TASKS, Task, randman
from symgrad.runtime import backends, bptt, eprop
from symgrad.runtime.losses import LOSSES, PER_STEP, SEQUENCE, loss_kind
from symgrad.runtime.trainer import Config
from helpers import batch, network


# ---------------------------------------------------------------------------- losses

def test_loss_registry_names_and_lookup():
    assert list(LOSSES) == ["ce", "ce_mean", "ce_last", "mse"]
    assert PER_STEP == ("ce", "mse") and SEQUENCE == ("ce_mean", "ce_last")
    assert all(loss_kind(name) is kind for name, kind in LOSSES.items())
    with pytest.raises(ValueError, match="unknown loss 'hinge'; choose ce, ce_mean, ce_last, mse"):
        loss_kind("hinge")


def test_what_e_prop_keeps_per_synapse():
    """(keeps_filtered at kappa 0, at kappa 0.9, keeps_sum) for each loss."""
    kept = {name: (kind.keeps_filtered(0.0), kind.keeps_filtered(0.9), kind.keeps_sum)
            for name, kind in LOSSES.items()}
    assert kept == {"ce": (False, True, False), "mse": (False, True, False),
                    "ce_mean": (False, False, True), "ce_last": (True, True, False)}


def test_sum_weights_fold_the_filter_into_the_sum():
    """sum_t ebar_t = sum_t w_t e_t, with ebar_t = kappa ebar_{t-1} + e_t."""
    kappa, steps = 0.7, 9
    e = np.random.default_rng(0).standard_normal(steps)
    ebar, filtered = 0.0, []
    for value in e:
        ebar = kappa * ebar + value
        filtered.append(ebar)
    weights = loss_kind("ce_mean").sum_weights(kappa, steps)
    assert float(weights @ e) == pytest.approx(sum(filtered), rel=1e-12)
    assert np.array_equal(loss_kind("ce_last").sum_weights(kappa, steps), np.ones(steps))


@pytest.mark.parametrize("name", SEQUENCE)
def test_sequence_readouts_and_their_gradients_agree(name):
    kind = loss_kind(name)
    ys = np.random.default_rng(1).standard_normal((6, 3, 4))
    assert np.allclose(kind.reduce_stack(ys), kind.reduce(ys.sum(axis=0), ys[-1], 6), rtol=1e-14)
    # spread is the adjoint of the reduction: <err, reduce(ys)> = sum_t <dy_t, ys_t>
    err, dy = np.random.default_rng(2).standard_normal((3, 4)), np.zeros_like(ys)
    kind.spread(err, dy)
    assert float((err * kind.reduce_stack(ys)).sum()) == pytest.approx(float((dy * ys).sum()), rel=1e-12)
    assert kind.scale(6) == (1 / 6 if name == "ce_mean" else 1.0)


@pytest.mark.parametrize("rule", [eprop, bptt])
def test_an_unknown_loss_is_refused_by_both_rules(rule):
    net = network("lif")
    x, labels = batch(steps=5)
    with pytest.raises(ValueError, match="unknown loss 'ce_max'"):
        rule(net, x, labels, loss="ce_max")


# ---------------------------------------------------------------------------- backends

def _choices(command, option):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return next(a for a in sub._actions if option in a.option_strings)


def test_backend_options_read_the_backend_table():
    for command in ("train", "grads"):
        assert _choices(command, "--backend").choices == list(backends.BACKENDS)
    assert _choices("grads", "--backend").default == backends.DEFAULT
    assert Config().backend == backends.DEFAULT
    assert _choices("train", "--loss").choices == list(LOSSES)


# ---------------------------------------------------------------------------- tasks

def test_task_records():
    fields = {f.name for f in dataclasses.fields(Config)}
    for name, task in TASKS.items():
        assert set(task.defaults) <= fields, name
    assert TASKS["shd"].settings == TASKS["ssc"].settings == ["steps", "max_time", "pool", "counts"]
    assert [name for name, task in TASKS.items() if task.shows_progress] == ["fsdd"]
    assert [name for name, task in TASKS.items() if task.everything] == ["fsdd"]
    assert TASKS["evidence"].defaults["loss"] == "ce_last"


SMALL = dict(samples=16, test_samples=8, channels=4, steps=6, n_classes=2)


@pytest.fixture
def tiny_task(monkeypatch):
    """A task registered for the test: it records how it was loaded."""
    calls = []

    def tiny(seed: int = 0, progress: bool = True):
        calls.append(("split", progress))
        return randman(seed=seed, **SMALL)

    def everything(data_dir, **settings):
        calls.append(("everything", settings))
        split = randman(**SMALL)
        return data.Split(split.test, split.test)

    task = Task(tiny, False, "a tiny task", defaults=dict(epochs=1, hidden=3, task_settings={"seed": 4}),
                everything=everything)
    monkeypatch.setitem(TASKS, "tiny", task)
    return calls


def test_train_and_evaluate_ask_the_task(tiny_task, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "lif", "--task", "tiny", "--out", str(run_dir), "--quiet"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["epochs"], config["hidden"], config["task_settings"]) == (1, 3, {"seed": 4})
    assert tiny_task == [("split", False)]  # the loader takes progress: --quiet reached it
    capsys.readouterr()
    assert cli.main(["evaluate", str(run_dir)]) == 0
    assert tiny_task[-1] == ("everything", {"seed": 4, "progress": True})
    printed = capsys.readouterr().out
    assert printed.startswith("tiny: ") and "on 8 examples" in printed
