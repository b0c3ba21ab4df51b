"""The ``symgrad`` command line.

Exit codes: 0 success, 1 a user error (bad model, input file, data; the message names it),
2 a malformed command line (argparse's convention). User errors never print a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__, render, store
from .errors import UserError
from .model import ModelError
from .render import GenerationError
from .runtime import backends
from .runtime.config import SETTINGS, count
from .runtime.losses import LOSSES


def _model(spec: str):
    from . import models

    if _is_graph(spec):
        raise UserError(f"{spec} is a NIR graph: a whole network, not one neuron model "
                        "(train, evaluate and inspect take it)")
    return models.load(spec)


def _is_graph(spec: str) -> bool:
    return spec.lower().endswith(".nir")


def _source(spec: str):
    """What a network is built from: a neuron model (NeuronModel), or a NIR graph (nir.NIRGraph)."""
    if _is_graph(spec):
        from . import nir

        return nir.read(spec)
    return _model(spec)


# -- inspect ---------------------------------------------------------------------------------
def cmd_inspect(args) -> int:
    from . import report
    from .analysis import Analysis
    from .plan import plans_of

    if _is_graph(args.model):
        return _inspect_graph(args)
    model = _model(args.model)
    analysis = Analysis(model)
    plans = plans_of(analysis)
    if args.json:
        print(json.dumps(report.as_json(analysis, plans), indent=2))
    else:
        itemsize = np.dtype(args.dtype).itemsize
        n_pre = [(args.inputs if "input" in sources else 0)
                 + (args.hidden if args.recurrent and "recurrent" in sources else 0)
                 for sources in model.wiring.values()]
        print(report.as_text(analysis, plans, args.batch, args.hidden, n_pre, itemsize))
    return 0


def _inspect_graph(args) -> int:
    """A NIR graph's layers, each with its model's report (or all as JSON)."""
    from . import nir, report
    from .analysis import Analysis
    from .plan import plans_of

    net = nir.load(args.model, dt=args.dt)
    dt, output = net.layer_values[0]["dt"], _describe_output(net)
    summaries = []
    if not args.json:
        print(f"{args.model}: {net.n_in} inputs, {len(net.layers)} layers, dt = {dt:g}; output: {output}")
    for layer in net.layers:
        analysis = Analysis(layer.model)
        plan = plans_of(analysis)
        per_neuron = [f"{name} in [{np.min(value):.4g}, {np.max(value):.4g}]"
                      for name, value in sorted(net.layer_values[layer.index].items()) if np.ndim(value)]
        if args.json:
            summaries.append(dict(index=layer.index, model=layer.model.name, neurons=layer.n, inputs=layer.n_in,
                                  recurrent=layer.recurrent, bias=layer.bias, per_neuron=per_neuron,
                                  report=report.as_json(analysis, plan)))
            continue
        traits = [trait for trait, on in (("recurrent", layer.recurrent), ("bias", layer.bias)) if on]
        print(f"\n== layer {layer.index}: {layer.model.name}, {layer.n} neurons"
              + "".join(f", {trait}" for trait in traits)
              + (f"; per neuron: {', '.join(per_neuron)}" if per_neuron else "") + " ==")
        print("(parameters: the graph's values, the mean of a per-neuron one)")
        print(report.as_text(analysis, plan, args.batch, layer.n, layer.n_pre, np.dtype(args.dtype).itemsize))
    if args.json:
        print(json.dumps({"dt": float(dt), "inputs": net.n_in, "output": output, "layers": summaries}, indent=2))
    return 0


def _describe_output(net) -> str:
    if net.readout:
        shaped = [what for what, value in (("a gain", net.gain), ("an offset", net.offset)) if value is not None]
        return (f"leaky readout of {net.n_out} (kappa = {net.kappa:.6g}"
                + (f", with {' and '.join(shaped)} per output" if shaped else "") + ")")
    from .surrogates import Spike

    if net.layers[-1].model.output.atoms(Spike):
        return f"the last layer's spikes ({net.n_out}; a class is the neuron that spikes most)"
    return f"the last layer's output ({net.n_out}; a class is the largest on average)"


# -- generate --------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    from . import models

    names = list(models.BUILTIN) if args.all else args.models
    if not names:
        raise UserError("name at least one model, or pass --all")
    chosen = []  # all checked before anything is written
    for spec in names:
        if _is_graph(spec):  # each distinct model of the graph's layers
            from . import nir

            graph_models = {layer.model.name: layer.model for layer in nir.load(spec).layers}
            chosen += [(spec, model) for model in graph_models.values()]
        else:
            chosen.append((spec, _model(spec)))
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
    if Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a directory; name the file to write, such as "
                        f"{Path(args.out) / 'grads.npz'}")
    given = arrays.read_inputs(args.inputs, model)
    values = {k: v for k, v in given.weights.items()}
    net = Network(model, given.n_in, given.n, given.n_out, recurrent="W_rec" in values,
                  kappa=given.kappa, dtype=args.dtype, backend=args.backend,
                  neuron_params=given.neuron_params, projections=given.projections)
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
                 "loss", "recurrent", "update_every", "dtype", "feedback", "reg", "optimizer", "schedule", "dt",
                 "add_readout", "learn", "detach_reset")
# What a NIR graph fixes, and so may not be given with one (--kappa only with --add-readout).
GRAPH_FIXES = ("hidden", "layers", "kappa", "recurrent")


def _load_task(config, data_dir, progress=True, everything=False, world=None):
    """The run's task with its settings; with ``everything``, every example in ``data_dir``
    where the task can load them all (for evaluation), else its usual split. The ranks of an
    MPI ``world`` share the work where the loader can (fsdd's conversion)."""
    from .data import TASKS, DataError, load_task

    task = TASKS.get(config.task)  # None: load_task names the unknown task
    settings = dict(config.task_settings)
    if task and task.shows_progress:
        settings.setdefault("progress", progress)
    try:
        if everything and task and task.everything:
            return task.everything(data_dir, **settings)
        return load_task(config.task, data_dir, comm=world, **settings)
    except DataError as err:
        raise UserError(str(err)) from None


# Settings a resumed run may change: how long it trains and where its data now lives.
RESUMABLE = ("epochs", "data")


def cmd_train(args) -> int:
    from .runtime import distributed
    from .runtime.trainer import CHECKPOINT, CONFIG, Diverged

    world = distributed.world()
    say = print if world.rank == 0 else _silent
    error = None
    try:
        trainer = _prepare_run(args, world)
    except Exception as err:  # noqa: BLE001 - every rank hears of it in agree()
        if world.size == 1:
            raise
        error = err
    world.agree(error)  # every rank stops here if any failed, so no rank waits for another
    config, split, run_dir = trainer.config, trainer.split, trainer.run_dir
    if args.resume:
        say(f"resuming {run_dir} at epoch {trainer.epoch}/{config.epochs}")
    devices = world.gather(trainer.device)
    if devices and devices[0] is not None:
        say(f"ranks 0-{world.size - 1} on GPUs {', '.join(map(str, devices))}")
    say(f"training {config.model} on {config.task}: {len(split.train)} train, {len(split.test)} test "
        f"samples, {split.train.steps} steps, {split.train.channels} channels; rule {config.rule}; "
        f"run folder {run_dir}" + (f"; {world.size} MPI ranks" if world.size > 1 else ""))
    try:
        metrics = trainer.fit(log=say)
    except Diverged as err:  # every rank sees the same summed loss, so all stop here together
        kept = (f"the last good checkpoint (epoch {trainer.epoch}) is kept in {run_dir / CHECKPOINT}"
                if (run_dir / CHECKPOINT).exists() else
                f"no epoch finished, so {run_dir} holds no checkpoint (only {CONFIG}); "
                f"start again with other settings")
        say(f"symgrad: training stopped: {err}; {kept}", file=sys.stderr)
        return 3
    timing = trainer.timing
    if timing["batches"]:
        per_batch = 1e3 / timing["batches"]
        say(f"per batch: compute {per_batch * timing['compute']:.1f} ms" if world.size == 1 else
            f"per batch and rank: compute {per_batch * timing['compute']:.1f} ms, all-reduce (with "
            f"waiting for the slowest rank) {per_batch * timing['communicate']:.2f} ms")
    if metrics["test_acc"]:
        say(f"final test {'accuracy' if split.train.kind == 'classification' else 'score'}: "
            + _format_score(metrics["test_acc"][-1], split.train.kind))
    return 0


def _prepare_run(args, world):
    """The Trainer of a new or resumed run, its run folder written (by rank 0)."""
    from dataclasses import asdict

    from .data import TASKS
    from .runtime.trainer import CHECKPOINT, CONFIG, Config, Trainer

    spec = _model_spec(args.model)
    source = _source(spec)
    if _is_graph(spec):
        fixed = [k for k in GRAPH_FIXES if getattr(args, k) is not None and not (k == "kappa" and args.add_readout)]
        if fixed:
            raise UserError(f"the NIR graph {args.model} fixes the network's shape; drop "
                            + ", ".join("--no-recurrent" if k == "recurrent" else f"--{k}" for k in fixed))
        name = Path(spec).stem
    else:
        for option, given in (("--dt", args.dt), ("--add-readout", args.add_readout), ("--learn", args.learn),
                              ("--detach-reset", args.detach_reset)):
            if given is not None:
                raise UserError(f"{option} is for NIR graphs; a model's own declaration fixes its step, "
                                "readout and learnable parameters")
        name = source.name
    task = args.task or "randman"
    run_dir = Path(args.out or f"runs/{name}-{task}-seed{args.seed if args.seed is not None else 0}")
    if args.resume:
        config = Config.load(run_dir / CONFIG)
        _refuse_changes(config, args, spec, run_dir / CONFIG)
        config.epochs, config.data = args.epochs or config.epochs, args.data or config.data
        if not (run_dir / CHECKPOINT).exists():
            raise UserError(f"{run_dir} holds no checkpoint: no epoch of it finished, so there is "
                            f"nothing to resume; start it again without --resume")
    else:
        if (run_dir / CHECKPOINT).exists():
            raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, "
                            f"or choose another --out")
        values = dict(model=spec, task=task, data=args.data)
        values.update(TASKS[task].defaults if task in TASKS else {})
        values.update({k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None})
        values["task_settings"] = {**values.get("task_settings", {}), **dict(args.set or [])}
        config = Config(**values)
    split = _load_task(config, config.data, progress=not args.quiet and world.rank == 0, world=world)
    trainer = Trainer(config, source, split, run_dir, progress=not args.quiet, world=world)
    if args.resume:
        trainer.restore()
    elif world.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        store.write_json(run_dir / CONFIG, asdict(trainer.config))
    return trainer


def _silent(*args, **kwargs):
    """print's stand-in on the MPI ranks that do not speak for the job."""


def _model_spec(spec: str) -> str:
    """A model as the run's config keeps it: a built-in name, or a file as an absolute path,
    so the run resumes from any working directory."""
    path, colon, name = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    return str(Path(path).resolve()) + colon + name if path.endswith(".py") or _is_graph(path) else spec


def _refuse_changes(config, args, spec: str, where: Path):
    """One line listing each setting given on the command line that differs from the run's
    (only RESUMABLE settings may change when resuming)."""
    kept = {**vars(config), "model": _model_spec(config.model)}
    given = {"model": spec, "task": args.task}
    given.update({k: getattr(args, k) for k in TRAIN_OPTIONS if k not in RESUMABLE + ("recurrent",)})
    differ = [f"{'model' if k == 'model' else '--' + k.replace('_', '-')} {value} (the run has {kept[k]})"
              for k, value in given.items() if value is not None and value != kept[k]]
    if args.recurrent is False and config.recurrent:
        differ.append("--no-recurrent (the run has a recurrent projection)")
    differ += [f"--set {k}={v} (the run has {config.task_settings.get(k, 'no ' + k)})"
               for k, v in args.set or [] if k not in config.task_settings or config.task_settings[k] != v]
    if differ:
        raise UserError(f"--resume continues the run in {where.parent} with its own settings; these "
                        f"differ from {where}: {'; '.join(differ)} (only --epochs and --data may "
                        f"change on resume)")


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
    from .data import TASKS
    from .runtime.checkpoint import CheckpointMismatch
    from .runtime.trainer import CHECKPOINT, CONFIG, Config, Trainer, score

    if _is_graph(args.run):
        return _evaluate_graph(args)
    run_dir = Path(args.run)
    config = Config.load(run_dir / CONFIG)
    trained_on = config.task
    if args.task and args.task != trained_on:
        accepted = TASKS[args.task].settings if args.task in TASKS else []
        config.task = args.task
        config.task_settings = {k: v for k, v in config.task_settings.items() if k in accepted}
    split = _load_task(config, args.data or config.data, everything=True)
    trainer = Trainer(config, _source(config.model), split, run_dir, progress=False)
    try:
        trainer.restore()
    except CheckpointMismatch as err:
        if config.task == trained_on:
            raise
        raise UserError(f"{run_dir} was trained on task {trained_on!r}, and its network does not fit "
                        f"task {config.task!r} ({split.test.channels} input channels, "
                        f"{split.test.outputs} outputs): {err}") from None
    value = score(trainer.net, split.test)
    print(f"{config.task}: {_format_score(value, split.test.kind)} on {len(split.test)} examples "
          f"(run {run_dir}, epoch {trainer.epoch}, checkpoint {run_dir / CHECKPOINT})")
    return 0


def _evaluate_graph(args) -> int:
    """A NIR network, as it is, on a task's examples."""
    from .runtime.trainer import Config, build_network, score

    if not args.task:
        raise UserError(f"evaluating the NIR graph {args.run} needs --task (a graph names no task)")
    graph = _source(args.run)
    config = Config(model=_model_spec(args.run), task=args.task, data=args.data, dt=args.dt,
                    dtype=args.dtype, task_settings=dict(args.set or []))
    split = _load_task(config, args.data, everything=True)
    net = build_network(config, graph, split.test.channels, split.test.outputs)
    value = score(net, split.test)
    print(f"{config.task}: {_format_score(value, split.test.kind)} on {len(split.test)} examples "
          f"(NIR graph {args.run})")
    return 0


def cmd_export(args) -> int:
    """A run's network, with the weights of its checkpoint, as a NIR graph."""
    from . import nir
    from .runtime.checkpoint import load_checkpoint
    from .runtime.trainer import CHECKPOINT, CONFIG, Config, build_network

    run_dir = Path(args.run)
    config = Config.load(run_dir / CONFIG)
    state = load_checkpoint(run_dir / CHECKPOINT)
    params = {k[len("param/"):]: v for k, v in state.items() if k.startswith("param/")}
    last = "W_in" if config.layers == 1 else f"W_in_{config.layers - 1}"
    if "W_in" not in params or last not in params:
        raise UserError(f"{run_dir / CHECKPOINT} holds no {last!r}: it does not fit {run_dir / CONFIG}")
    n_out = params["W_out"].shape[0] if "W_out" in params else params[last].shape[0]
    net = build_network(config, _source(config.model), params["W_in"].shape[1], n_out)
    try:
        net.set_params(params)
    except (KeyError, ValueError) as err:
        raise UserError(f"{run_dir / CHECKPOINT} does not fit {run_dir / CONFIG}: {err}") from None
    path = nir.save(net, args.nir)
    print(f"wrote {path}: {len(net.layers)} layers ({', '.join(layer.model.name for layer in net.layers)}), "
          f"epoch {int(state['epoch'])} of {run_dir}")
    return 0


def _host(array):
    return array.get() if hasattr(array, "get") else array


# -- parser ----------------------------------------------------------------------------------
DT_HELP = "time step of a NIR graph's forward Euler (default: the graph's own, else 1e-4, snnTorch's)"


def _typed(rule):
    """An argparse type that parses and checks a value by ``rule`` (a config.Rule)."""
    def parse(text: str):
        try:
            return rule.parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def _setting(name: str):
    """The argparse type of a training setting: its rule in SETTINGS, the one owner of it."""
    return _typed(SETTINGS[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symgrad",
        description="Online gradient-based synaptic plasticity generated from SymPy neuron models.")
    parser.add_argument("--version", action="version", version=f"symgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("inspect", help="show a model's Jacobians, their classes and the trace plan")
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME, or GRAPH.nir (each layer's model)")
    p.add_argument("--dt", type=_setting("dt"), help=DT_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.add_argument("--batch", type=_setting("batch"), default=32, help="batch size for the memory figures")
    p.add_argument("--hidden", type=_setting("hidden"), default=256, help="neurons per layer for the memory figures")
    p.add_argument("--inputs", type=_typed(count(1)), default=140, help="input channels for the memory figures")
    p.add_argument("--no-recurrent", dest="recurrent", action="store_false",
                   help="size the memory figures without a recurrent projection")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("generate", help="write the generated code of models")
    p.add_argument("models", nargs="*", help="built-in names, FILE.py or FILE.py:NAME, or GRAPH.nir (the "
                   "model of each of its layers)")
    p.add_argument("--all", action="store_true", help="every built-in model")
    p.add_argument("--out", default="generated", help="output folder (default: generated)")
    p.add_argument("--backend", nargs="+", default=list(render.BACKENDS), choices=list(render.BACKENDS),
                   help="backends to generate for (default: all)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train", help="train a network on a task, writing a run folder")
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME, or GRAPH.nir: a NIR network "
                   "to train further (its graph fixes --hidden, --layers, --kappa and recurrence)")
    p.add_argument("--dt", type=_setting("dt"), help=DT_HELP)
    p.add_argument("--add-readout", action="store_true", default=None,
                   help="a NIR graph whose output is a spiking layer: train it through an added leaky "
                        "readout (leak --kappa), which export writes as an Affine and an LI node")
    p.add_argument("--learn", metavar="FIELD", action="append",
                   help="a NIR graph: train this neuron field per neuron too, e.g. tau_mem (repeatable)")
    p.add_argument("--detach-reset", action="store_true", default=None,
                   help="a NIR graph: no gradient through the reset to v_reset (the same network; with one "
                        "time constant per layer, every trace becomes a cheap presynaptic filter)")
    p.add_argument("--task", help="fsdd, shd, ssc, randman, evidence or pattern "
                   "(default: randman, generated, needs no download)")
    p.add_argument("--data", metavar="DIR", help="data folder for fsdd, shd and ssc")
    p.add_argument("--hidden", type=_setting("hidden"), help="neurons per layer")
    p.add_argument("--layers", type=_setting("layers"), help="number of hidden layers")
    p.add_argument("--epochs", type=_setting("epochs"))
    p.add_argument("--batch", type=_setting("batch"))
    p.add_argument("--rule", choices=["eprop", "bptt"])
    p.add_argument("--backend", choices=list(backends.BACKENDS))
    p.add_argument("--workers", type=_setting("workers"), metavar="N",
                   help="threads for e-prop's gradient pass (default: the CPU count, at most 8)")
    p.add_argument("--seed", type=_setting("seed"))
    p.add_argument("--lr", type=_setting("lr"), help="learning rate")
    p.add_argument("--optimizer", choices=["adam", "sgd"])
    p.add_argument("--schedule", choices=["cosine", "constant"], help="learning rate over epochs")
    p.add_argument("--kappa", type=_setting("kappa"),
                   help="readout leak, in [0, 1) (0: instantaneous readout)")
    p.add_argument("--loss", choices=list(LOSSES))
    p.add_argument("--no-recurrent", dest="recurrent", action="store_false", default=None)
    p.add_argument("--update-every", type=_setting("update_every"), metavar="K", help="update the weights every K steps")
    p.add_argument("--feedback", choices=["symmetric", "random"])
    p.add_argument("--reg", type=_setting("reg"),
                   help="firing-rate regularisation strength")
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--set", metavar="KEY=VALUE", action="append", type=_task_setting,
                   help="a setting of the task's loader, e.g. test_speaker=jackson, augment=0 or "
                        "skip_unreadable=true for fsdd, pool=5 for shd (repeatable)")
    p.add_argument("--out", metavar="RUNDIR", help="run folder (default: runs/NAME-TASK-seedS, NAME the model's name)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUNDIR with the settings in its config.json; only "
                        "--epochs and --data may differ from them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy of a trained run, or of a NIR network, on a data set")
    p.add_argument("run", metavar="RUNDIR|GRAPH.nir")
    p.add_argument("--task", help="task to evaluate on (default: the run's; needed for a NIR graph)")
    p.add_argument("--data", metavar="DIR", help="data folder (default: the run's)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", type=_task_setting,
                   help="a setting of the task's loader, for a NIR graph (a run uses its own)")
    p.add_argument("--dt", type=_setting("dt"), help=DT_HELP)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="for a NIR graph")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write a trained run's network in another format")
    p.add_argument("run", metavar="RUNDIR")
    p.add_argument("--nir", required=True, metavar="OUT.nir",
                   help="write a NIR graph (its neuron models must be NIR primitives: LIF, CubaLIF, IF, "
                        "LI, CubaLI, I)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("grads", help="loss and gradients of one batch, from and to .npz files")
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME")
    p.add_argument("--inputs", required=True, metavar="IN.npz")
    p.add_argument("--out", required=True, metavar="OUT.npz")
    p.add_argument("--rule", choices=["eprop", "bptt"], default="eprop")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--backend", choices=list(backends.BACKENDS), default=backends.DEFAULT)
    p.set_defaults(func=cmd_grads)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line each, like the errors: they are meant for the user, not a developer."""
    print(f"symgrad: warning: {message}", file=file or sys.stderr)


def main(argv=None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ModelError, UserError) as err:
        return _fail(f"error: {err}", err)
    except GenerationError as err:  # symgrad's own fault: one line to report, not a traceback
        return _fail(f"internal error: {err}", err)
    except BrokenPipeError:  # output piped into a reader that stopped early, like head
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as err:  # the system refused a read or write: its message names the file
        return _fail(f"error: {err.strerror or err}"
                     + (f": {err.filename}" if getattr(err, "filename", None) else ""), err)
    except KeyboardInterrupt:
        print("symgrad: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a fault in an MPI job: stop every rank rather than leave them waiting
        if _job() is None:
            raise
        return _fail(f"internal error: {type(err).__name__}: {err}", err)


def _job():
    """The MPI job of this process if it is one of several ranks, else None."""
    if "mpi4py" not in sys.modules:  # no rank has spoken MPI, so none can be waiting
        return None
    from .runtime.distributed import world

    job = world()
    return job if job.size > 1 else None


def _fail(message: str, err: BaseException) -> int:
    """Report a failure in one line and return exit code 1. In an MPI job, a failure every
    rank shares (RankFailed) is told once, by rank 0; one rank's own failure is told by that
    rank, which then stops the whole job, since the others cannot hear of it."""
    from .runtime.distributed import RankFailed

    job = _job()
    if job is None:
        print(f"symgrad: {message}", file=sys.stderr)
        return 1
    if isinstance(err, RankFailed):
        if job.rank == 0:
            print(f"symgrad: {message}", file=sys.stderr)
        return 1
    print(f"symgrad: rank {job.rank} of {job.size}: {message}", file=sys.stderr, flush=True)
    job.abort(1)
    return 1


if __name__ == "__main__":
    sys.exit(main())
