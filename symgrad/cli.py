"""The ``symgrad`` command line.

Exit codes: 0 success, 1 a user error (bad model, input file, data; the message names it),
2 a malformed command line (argparse's convention). User errors never print a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__, render, store
from .errors import UserError
from .model import ModelError
from .render import GenerationError
from .runtime import backends
from .runtime.losses import LOSSES


def _model(spec: str):
    from . import models

    return models.load(spec)


# -- inspect ---------------------------------------------------------------------------------
def cmd_inspect(args) -> int:
    from . import report
    from .analysis import Analysis
    from .plan import TracePlan

    analysis = Analysis(_model(args.model))
    plan = TracePlan(analysis)
    if args.json:
        print(json.dumps(report.as_json(analysis, plan), indent=2))
    else:
        itemsize = np.dtype(args.dtype).itemsize
        n_pre = args.inputs + (args.hidden if args.recurrent else 0)
        print(report.as_text(analysis, plan, args.batch, args.hidden, n_pre, itemsize))
    return 0


# -- generate --------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    from . import models

    names = list(models.BUILTIN) if args.all else args.models
    if not names:
        raise UserError("name at least one model, or pass --all")
    chosen = [(spec, _model(spec)) for spec in names]  # all checked before anything is written
    into_repository = Path(args.out).resolve() == store.repository_generated().resolve()
    for spec, model in chosen:
        if into_repository and spec not in models.BUILTIN and model.name in models.BUILTIN:
            raise UserError(f"{spec} defines a model named {model.name!r}, like the built-in model; "
                            f"writing it to {args.out} would overwrite the built-in's generated code "
                            f"(rename the model or choose another --out)")
    for spec, model in chosen:
        for path in render.generate(model, args.out, backends=args.backend):
            print(path)
    return 0


# -- grads -----------------------------------------------------------------------------------
def cmd_grads(args) -> int:
    from . import arrays
    from .runtime import RULES, Network
    from .runtime.eprop import sweeps_synapses
    from .runtime.parallel import default_workers, gradient_pass

    model = _model(args.model)
    given = arrays.read_inputs(args.inputs, model)
    values = {k: v for k, v in given.weights.items()}
    net = Network(model, given.n_in, given.n, given.n_out, recurrent="W_rec" in values,
                  kappa=given.kappa, dtype=args.dtype, backend=args.backend,
                  neuron_params=given.neuron_params)
    net.set_params({k: v for k, v in values.items() if k in net.params})
    shard = args.rule == "eprop" and sweeps_synapses(net, "ce")
    run = gradient_pass(net, default_workers(net.backend), shard)
    result = run(RULES[args.rule], net, net.xp.asarray(given.x), net.xp.asarray(given.labels), loss="ce")
    out = {"loss": np.asarray(result.loss)}
    out.update({name: np.asarray(_host(result.grads[name])) for name in values})
    store.write_npz(args.out, out)
    print(f"loss {result.loss:.6g}; wrote {', '.join(out)} to {args.out}")
    return 0


# -- train / evaluate ------------------------------------------------------------------------
TRAIN_OPTIONS = ("hidden", "layers", "epochs", "batch", "rule", "backend", "workers", "seed", "lr", "kappa",
                 "loss", "recurrent", "update_every", "dtype", "feedback", "reg", "optimizer", "schedule")


def _load_task(config, data_dir, progress=True, everything=False):
    """The run's task with its settings; with ``everything``, every example in ``data_dir``
    where the task can load them all (for evaluation), else its usual split."""
    from .data import TASKS, DataError, load_task

    task = TASKS.get(config.task)  # None: load_task names the unknown task
    settings = dict(config.task_settings)
    if task and task.shows_progress:
        settings.setdefault("progress", progress)
    try:
        if everything and task and task.everything:
            return task.everything(data_dir, **settings)
        return load_task(config.task, data_dir, **settings)
    except DataError as err:
        raise UserError(str(err)) from None


def cmd_train(args) -> int:
    from dataclasses import asdict

    from .data import TASKS
    from .runtime.trainer import CHECKPOINT, CONFIG, Config, Diverged, Trainer

    run_dir = Path(args.out or f"runs/{args.model}-{args.task}-seed{args.seed if args.seed is not None else 0}")
    if args.resume:
        config = Config.load(run_dir / CONFIG)
        if args.epochs:
            config.epochs = args.epochs
    else:
        if (run_dir / CHECKPOINT).exists():
            raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, "
                            f"or choose another --out")
        values = dict(model=args.model, task=args.task, data=args.data)
        values.update(TASKS[args.task].defaults if args.task in TASKS else {})
        values.update({k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None})
        values["task_settings"] = {**values.get("task_settings", {}), **dict(args.set or [])}
        config = Config(**values)
    model = _model(config.model)
    split = _load_task(config, args.data or config.data, progress=not args.quiet)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, model, split, run_dir, progress=not args.quiet)
    if args.resume:
        trainer.restore()
        print(f"resuming {run_dir} at epoch {trainer.epoch}/{config.epochs}")
    else:
        store.write_json(run_dir / CONFIG, asdict(trainer.config))
    print(f"training {config.model} on {config.task}: {len(split.train)} train, {len(split.test)} test "
          f"samples, {split.train.steps} steps, {split.train.channels} channels; rule {config.rule}; "
          f"run folder {run_dir}")
    try:
        metrics = trainer.fit()
    except Diverged as err:
        print(f"symgrad: training stopped: {err}; the last good checkpoint "
              f"(epoch {trainer.epoch}) is kept in {run_dir / CHECKPOINT}", file=sys.stderr)
        return 3
    if metrics["test_acc"]:
        print(f"final test {'accuracy' if split.train.kind == 'classification' else 'score'}: "
              + _format_score(metrics["test_acc"][-1], split.train.kind))
    return 0


def _task_setting(text: str):
    """``KEY=VALUE`` with VALUE read as an int, a float, true/false/none, or else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    words = {"true": True, "false": False, "none": None}
    if raw.lower() in words:
        return key, words[raw.lower()]
    for kind in (int, float):
        try:
            return key, kind(raw)
        except ValueError:
            pass
    return key, raw


def _format_score(value, kind):
    return f"{100 * value:.2f}%" if kind == "classification" else f"MSE {-value:.5f}"


def cmd_evaluate(args) -> int:
    from .runtime.trainer import CHECKPOINT, CONFIG, Config, Trainer, score

    run_dir = Path(args.run)
    config = Config.load(run_dir / CONFIG)
    if args.task:
        config.task = args.task
    split = _load_task(config, args.data or config.data, everything=True)
    trainer = Trainer(config, _model(config.model), split, run_dir, progress=False)
    trainer.restore()
    value = score(trainer.net, split.test)
    print(f"{config.task}: {_format_score(value, split.test.kind)} on {len(split.test)} examples "
          f"(run {run_dir}, epoch {trainer.epoch}, checkpoint {run_dir / CHECKPOINT})")
    return 0


def _host(array):
    return array.get() if hasattr(array, "get") else array


# -- parser ----------------------------------------------------------------------------------
def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symgrad",
        description="Online gradient-based synaptic plasticity generated from SymPy neuron models.")
    parser.add_argument("--version", action="version", version=f"symgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("inspect", help="show a model's Jacobians, their classes and the trace plan")
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.add_argument("--batch", type=int, default=32, help="batch size for the memory figures")
    p.add_argument("--hidden", type=int, default=256, help="neurons per layer for the memory figures")
    p.add_argument("--inputs", type=int, default=140, help="input channels for the memory figures")
    p.add_argument("--no-recurrent", dest="recurrent", action="store_false",
                   help="size the memory figures without a recurrent projection")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("generate", help="write the generated code of models")
    p.add_argument("models", nargs="*", help="built-in names, FILE.py or FILE.py:NAME")
    p.add_argument("--all", action="store_true", help="every built-in model")
    p.add_argument("--out", default="generated", help="output folder (default: generated)")
    p.add_argument("--backend", nargs="+", default=list(render.BACKENDS), choices=list(render.BACKENDS),
                   help="backends to generate for (default: all)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train", help="train a network on a task, writing a run folder")
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME")
    p.add_argument("--task", default="randman", help="fsdd, shd, ssc, randman, evidence or pattern "
                   "(default: randman, generated, needs no download)")
    p.add_argument("--data", metavar="DIR", help="data folder for fsdd, shd and ssc")
    p.add_argument("--hidden", type=_positive, help="neurons per layer")
    p.add_argument("--layers", type=_positive, help="number of hidden layers")
    p.add_argument("--epochs", type=_positive)
    p.add_argument("--batch", type=_positive)
    p.add_argument("--rule", choices=["eprop", "bptt"])
    p.add_argument("--backend", choices=list(backends.BACKENDS))
    p.add_argument("--workers", type=_positive, metavar="N",
                   help="threads for e-prop's gradient pass (default: the CPU count, at most 8)")
    p.add_argument("--seed", type=int)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--optimizer", choices=["adam", "sgd"])
    p.add_argument("--schedule", choices=["cosine", "constant"], help="learning rate over epochs")
    p.add_argument("--kappa", type=float, help="readout leak (0: instantaneous readout)")
    p.add_argument("--loss", choices=list(LOSSES))
    p.add_argument("--no-recurrent", dest="recurrent", action="store_false", default=None)
    p.add_argument("--update-every", type=_positive, metavar="K", help="update the weights every K steps")
    p.add_argument("--feedback", choices=["symmetric", "random"])
    p.add_argument("--reg", type=float, help="firing-rate regularisation strength")
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--set", metavar="KEY=VALUE", action="append", type=_task_setting,
                   help="a setting of the task's loader, e.g. test_speaker=jackson or augment=0 for "
                        "fsdd, pool=5 for shd (repeatable)")
    p.add_argument("--out", metavar="RUNDIR", help="run folder (default: runs/MODEL-TASK-seedS)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUNDIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy of a trained run on a data set")
    p.add_argument("run", metavar="RUNDIR")
    p.add_argument("--task", help="task to evaluate on (default: the run's)")
    p.add_argument("--data", metavar="DIR", help="data folder (default: the run's)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("grads", help="loss and gradients of one batch, from and to .npz files")
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME")
    p.add_argument("--inputs", required=True, metavar="IN.npz")
    p.add_argument("--out", required=True, metavar="OUT.npz")
    p.add_argument("--rule", choices=["eprop", "bptt"], default="eprop")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--backend", choices=list(backends.BACKENDS), default=backends.DEFAULT)
    p.set_defaults(func=cmd_grads)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ModelError, UserError) as err:
        print(f"symgrad: error: {err}", file=sys.stderr)
        return 1
    except GenerationError as err:  # symgrad's own fault: one line to report, not a traceback
        print(f"symgrad: internal error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into a reader that stopped early, like head
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("symgrad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
