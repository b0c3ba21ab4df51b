"""A training run's settings (``config.json``), and what each setting may be.

``SETTINGS`` is the one place that says which values a setting accepts: a Config checks
itself against it when made or loaded, and the command line parses its options with it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from . import backends
from .losses import LOSSES
from .optim import OPTIMIZERS


@dataclass(frozen=True)
class Rule:
    """The values a setting accepts: of type ``kind`` and ``accept``-ed (``requirement`` says
    which in words), or None where ``optional``."""

    kind: type
    accept: Callable[[Any], bool]
    requirement: str
    optional: bool = False

    def problem(self, value) -> str | None:
        """Why ``value`` is not accepted, or None."""
        if value is None and self.optional:
            return None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not self.kind or not self.accept(value):
            shown = repr(value)
            return f"must be {self.requirement}, got {shown if len(shown) < 80 else shown[:70] + '...'}"
        return None

    def parse(self, text: str):
        """A command-line value: ``text`` as ``kind``, accepted; else ValueError saying why."""
        try:
            value = self.kind(text)
        except ValueError:
            raise ValueError(f"expected {self.requirement}, got {text!r}") from None
        if self.problem(value):
            raise ValueError(f"must be {self.requirement}, got {text}")
        return value


def count(least: int, most: int | None = None, optional: bool = False) -> Rule:
    if most is None:
        return Rule(int, lambda v: v >= least, f"a whole number of at least {least}", optional)
    return Rule(int, lambda v: least <= v <= most, f"a whole number from {least} to {most}", optional)


def _scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value))


def _model_record(record: dict) -> bool:
    """What config.json keeps of a run's model (see cli._model_record): its equations, or a
    graph file's hash, the source text of a model file, and the symgrad that wrote them."""
    equations = record.get("equations", {})
    return (set(record) <= {"symgrad", "source", "sha256", "equations"}
            and all(isinstance(value, str) for key, value in record.items() if key != "equations")
            and isinstance(equations, dict)
            and all(isinstance(key, str) and isinstance(value, str) for key, value in equations.items()))


def _number(accept, requirement: str, optional: bool = False) -> Rule:
    return Rule(float, lambda v: math.isfinite(v) and accept(v), requirement, optional)


def _one_of(names) -> Rule:
    names = tuple(names)
    return Rule(str, lambda v: v in names, f"one of {', '.join(names)}")


SETTINGS = {
    "model": Rule(str, bool, "a model name or file"),
    "task": Rule(str, bool, "a task name"),
    "data": Rule(str, bool, "a folder", optional=True),
    # The bounds are far above any run that fits in memory; beyond them a value is a mistake.
    "hidden": count(1, 100_000),
    "layers": count(1, 1000),
    "recurrent": Rule(bool, lambda v: True, "true or false"),
    "epochs": count(1, 1_000_000),
    "batch": count(1, 1_000_000),
    "rule": _one_of(("eprop", "bptt")),
    "backend": _one_of(backends.BACKENDS),
    "workers": count(1, 1024, optional=True),
    "seed": count(0, 2**63 - 1),
    "lr": _number(lambda v: v > 0, "a positive number"),
    "schedule": _one_of(("cosine", "constant")),
    "optimizer": _one_of(OPTIMIZERS),
    "weight_decay": _number(lambda v: v >= 0, "zero or a positive number"),
    "clip": _number(lambda v: v > 0, "a positive number or null", optional=True),
    "kappa": _number(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "loss": _one_of(LOSSES),
    "reg": _number(lambda v: v >= 0, "zero or a positive number"),
    "rate_target": _number(lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "update_every": count(1, 10**9, optional=True),
    "feedback": _one_of(("symmetric", "random")),
    "connectivity": _number(lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "rewire": Rule(bool, lambda v: True, "true or false"),
    "dtype": _one_of(("float32", "float64")),
    "dt": _number(lambda v: v > 0, "a positive number or null", optional=True),
    "add_readout": Rule(bool, lambda v: True, "true or false"),
    "learn": Rule(list, lambda v: all(isinstance(x, str) for x in v), "a list of field names"),
    "detach_reset": Rule(bool, lambda v: True, "true or false"),
    "sparse_from_zeros": Rule(bool, lambda v: True, "true or false"),
    "task_settings": Rule(dict, lambda v: all(isinstance(k, str) and _scalar(x) for k, x in v.items()),
                          "an object of settings, each a number, text, true, false or null"),
    "model_record": Rule(dict, _model_record, "an object recording the model's equations", optional=True),
}


@dataclass
class Config:
    model: str = "alif"
    task: str = "randman"
    data: str | None = None
    hidden: int = 128
    layers: int = 1
    recurrent: bool = True
    epochs: int = 20
    batch: int = 32
    rule: str = "eprop"
    backend: str = backends.DEFAULT
    workers: int | None = None  # threads for e-prop's gradient pass; None: the CPU count (<= 8)
    seed: int = 0
    lr: float = 0.01
    schedule: str = "cosine"  # learning rate over epochs: "cosine" (to lr/20) or "constant"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    clip: float | None = 10.0
    kappa: float = 0.9
    loss: str = "ce_mean"
    reg: float = 0.0
    rate_target: float = 0.01
    update_every: int | None = None
    feedback: str = "symmetric"
    connectivity: float = 1.0  # each neuron's share of each projection's inputs it has a synapse from
    rewire: bool = False  # DEEP R: a synapse whose weight crosses zero moves (runtime/rewiring.py)
    dtype: str = "float32"
    dt: float | None = None  # a NIR graph's time step (None: the graph's own, else 1e-4)
    add_readout: bool = False  # a NIR graph with a spiking output: add a leaky readout (leak kappa)
    learn: list = field(default_factory=list)  # a NIR graph's neuron fields trained per neuron
    detach_reset: bool = False  # a NIR graph: no gradient through the reset (cheaper traces)
    sparse_from_zeros: bool = False  # a NIR graph: its weights' zeros are absent synapses
    task_settings: dict = field(default_factory=dict)
    model_record: dict | None = None  # what the model is, to know it again (see cli._model_record)

    def __post_init__(self):
        for setting in fields(self):
            problem = SETTINGS[setting.name].problem(getattr(self, setting.name))
            if problem:
                raise UserError(f"setting {setting.name!r} {problem}")

    @classmethod
    def load(cls, path: Path) -> "Config":
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: no such file (is this a run folder?)") from None
        except RecursionError:
            raise UserError(f"{path}: nested too deeply to be a run's settings") from None
        except (ValueError, UnicodeDecodeError) as err:  # ValueError: bad JSON, or an integer too long to read
            raise UserError(f"{path}: not valid JSON ({getattr(err, 'msg', err)})") from None
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected an object of settings")
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"{path}: unknown setting {sorted(unknown)[0]!r}")
        try:
            return cls(**values)
        except UserError as err:
            raise UserError(f"{path}: {err}") from None
