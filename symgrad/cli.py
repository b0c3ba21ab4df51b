"""The ``symgrad`` command line.

Exit codes: 0 success, 1 a user error (bad model, input file, data; the message names it),
2 a malformed command line (argparse's convention). User errors never print a traceback.
"""
from __future__ import annotations

import argparse
import gc
import inspect
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__, render, run_model, store
from .errors import UserError
from .layouts import LAYOUTS
from .model import ModelError
from .render import GenerationError
from .runtime import backends
from .runtime.config import SETTINGS, Config, Rule, count
from .runtime.losses import LOSSES


# -- inspect ---------------------------------------------------------------------------------
def cmd_inspect(args) -> int:
    from . import report
    from .analysis import Analysis
    from .plan import plans_of

    if run_model.is_graph(args.model):
        return _inspect_graph(args)
    model = run_model.neuron_model(args.model)
    analysis = Analysis(model)
    plans = plans_of(analysis)
    if args.json:
        print(json.dumps(report.as_json(analysis, plans), indent=2))
    else:
        itemsize = np.dtype(args.dtype).itemsize
        heard = [("input" in sources, args.recurrent and "recurrent" in sources) for sources in model.wiring.values()]
        n_pre = [args.inputs * hears_input + args.hidden * hears_recurrent for hears_input, hears_recurrent in heard]
        nnz = None
        if args.connectivity < 1:  # each neuron's partners, as train's draw gives them
            from .runtime.connectivity import Connectivity

            def partners(hears: bool, n: int, name: str, no_self: bool) -> int:
                return Connectivity.partners(args.connectivity, n, name, no_self) if hears else 0

            nnz = [args.hidden * (partners(hears_input, args.inputs, "W_in", False)
                                  + partners(hears_recurrent, args.hidden, "W_rec", True))
                   for hears_input, hears_recurrent in heard]
        print(report.as_text(analysis, plans, args.batch, args.hidden, n_pre, itemsize, nnz))
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
        if run_model.is_graph(spec):  # the model of each of the graph's layers
            from . import nir

            for layer in nir.load(spec).layers:
                layer.model.source_file = str(Path(spec).resolve())  # the header says to regenerate from it
                chosen.append((spec, layer.model))
        else:
            chosen.append((spec, run_model.neuron_model(spec)))
    into_repository = Path(args.out).resolve() == store.repository_generated().resolve()
    for spec, model in chosen:
        folder = Path(args.out) / model.name
        if (spec not in models.BUILTIN and model.name in models.BUILTIN
                and (into_repository or _holds_builtin_code(folder, model.name))):
            raise UserError(f"{spec} defines a model named {model.name!r}, like the built-in model; "
                            f"writing it to {folder} would overwrite the built-in's generated code there "
                            f"(rename the model or choose another --out)")
    kept = {}  # model name: (spec, model); layers and specs that share a model write its files once
    for spec, model in chosen:
        first, other = kept.setdefault(model.name, (spec, model))
        if other is not model and not render.same_code(other, model):
            where = f"the layers of {spec} hold" if first == spec else f"{first} and {spec} hold"
            raise UserError(f"{where} different models named {model.name!r}: their files would overwrite "
                            f"each other in {Path(args.out) / model.name}"
                            + ("; generate them into different --out folders" if first != spec else ""))
    layouts = args.layout or (list(LAYOUTS) if args.all else ["dense"])  # --all: the committed set
    for spec, model in kept.values():
        for path in render.generate(model, args.out, backends=args.backend, layouts=layouts):
            print(path)
    return 0


def _holds_builtin_code(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds a file generated from the built-in model ``name`` (a checkout's
    committed code, or a copy of it): the regenerate line of the file's header, as
    symgrad.render writes it, names the built-in. No git call: any checkout, or none."""
    from .models import builtin

    model = builtin(name)
    for backend, (_, filename) in render.BACKENDS.items():
        try:
            with open(folder / filename, encoding="utf-8", errors="replace") as file:
                head = file.read(2048)  # the header; the regenerate line is within its first lines
        except OSError:  # no such file (or folder): nothing of the built-in's to lose there
            continue
        if render.regenerate(model, backend) in head:
            return True
    return False


# -- grads -----------------------------------------------------------------------------------
def cmd_grads(args) -> int:
    from . import arrays
    from .runtime import RULES, Network
    from .runtime.eprop import sweeps_synapses
    from .runtime.parallel import default_workers, gradient_pass

    model = run_model.neuron_model(args.model)
    if Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a directory; name the file to write, such as "
                        f"{Path(args.out) / 'grads.npz'}")
    given = arrays.read_inputs(args.inputs, model)
    # a one-layer network keys its weights by their names within the layer, as the file does
    net = Network(model, given.n_in, given.n, given.n_out, recurrent=given.recurrent,
                  kappa=given.kappa, dtype=args.dtype, backend=args.backend,
                  neuron_params=given.neuron_params, projections=given.projections,
                  connectivity=given.masks or None)
    keys = given.keys(net)  # the file names weights as within one layer; the network keys them
    net.set_params({keys[name]: value for name, value in given.weights.items()})
    shard = args.rule == "eprop" and sweeps_synapses(net, "ce")
    run = gradient_pass(net, default_workers(net.backend), shard)
    try:
        with np.errstate(all="ignore"):  # an overflow is reported below, once, as on every backend
            result = run(RULES[args.rule], net, net.xp.asarray(given.x), net.xp.asarray(given.labels), loss="ce")
    except FloatingPointError as err:  # a kernel's division by zero
        return _failed_numerically(str(err), args.out)
    out = {"loss": np.asarray(result.loss)}
    out.update({name: np.asarray(_host(net.dense(keys[name], result.grads[keys[name]])))
                for name in given.weights})
    problem = result.overflowed or next((f"the {name if name == 'loss' else 'gradient of ' + name} is not finite"
                                         for name, value in out.items() if not np.all(np.isfinite(value))), None)
    if problem:
        return _failed_numerically(problem, args.out)
    store.write_npz(args.out, out)
    print(f"loss {result.loss:.6g}; wrote {', '.join(out)} to {args.out}")
    return 0


def _failed_numerically(problem: str, out) -> int:
    """grads' verdict on a pass whose numbers overflowed: one line, exit 3, nothing written."""
    print(f"symgrad: the gradient pass failed numerically: {problem}; nothing was written to {out}", file=sys.stderr)
    return 3


# -- train / evaluate ------------------------------------------------------------------------
TRAIN_OPTIONS = ("hidden", "layers", "epochs", "batch", "rule", "backend", "workers", "seed", "lr", "kappa",
                 "loss", "recurrent", "update_every", "dtype", "feedback", "reg", "optimizer", "schedule", "dt",
                 "add_readout", "learn", "detach_reset", "sparse_from_zeros", "connectivity", "rewire")
# What a NIR graph fixes, and so may not be given with one (--kappa only with --add-readout).
GRAPH_FIXES = ("hidden", "layers", "kappa", "recurrent", "connectivity")


def _load_task(config, data_dir, progress=True, everything=False, world=None):
    """The run's task with its settings; with ``everything``, every example in ``data_dir``
    where the task can load them all (for evaluation), else its usual split. The ranks of an
    MPI ``world`` share the work where the loader can (fsdd's conversion)."""
    from .data import TASKS, DataError, load_task

    task = TASKS.get(config.task)  # None: load_task names the unknown task
    if task and task.needs_data and data_dir is None:
        raise UserError(f"task {config.task!r} reads files: give the folder holding its data with --data DIR")
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
    # Ranks given other options would hang or train apart: all stop first, in one line. (The
    # options are the plain values; args also holds the parser and the command's function.)
    distributed.require_same(world, {name if name == "model" else "--" + name.replace("_", "-"): value
                                     for name, value in vars(args).items()
                                     if isinstance(value, (str, int, float, list, type(None)))})
    say = print if world.rank == 0 else _silent
    error = None
    try:
        trainer = _prepare_run(args, world)
    except distributed.RankFailed:  # heard in a collective of the loader: every rank knows already
        raise
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
        f"{_synapses_text(trainer)}run folder {run_dir}" + (f"; {world.size} MPI ranks" if world.size > 1 else ""))
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


def _synapses_text(trainer) -> str:
    """How sparse the run's network is, for the line that describes the run ("" where dense)."""
    held = trainer.net.connectivity.values()
    if not held:
        return ""
    nnz, pairs = sum(c.nnz for c in held), sum(c.n_post * c.n_pre for c in held)
    return (f"connectivity {trainer.config.connectivity:g}: {nnz:,} of {pairs:,} synapses ({nnz / pairs:.1%})"
            + (", rewired (DEEP R)" if trainer.rewiring else "") + "; ")


def _prepare_run(args, world):
    """The Trainer of a new or resumed run, its run folder written (by rank 0)."""
    from dataclasses import asdict

    from .data import TASKS
    from .runtime import memory
    from .runtime.trainer import CONFIG, Config, Trainer, check_new_run_folder

    if args.resume:
        run_dir, config, source = _resumed(args)
    else:
        if Path(args.model).is_dir():
            raise UserError(f"{args.model} is a folder, not a model: pass --resume to continue the run in it")
        if args.model_file:
            raise UserError("--model names the model of a run to resume; a new run takes it as its first argument")
        spec = run_model.spec_of(args.model)
        source = run_model.load(spec)
        _refuse_shape_options(args, spec)
        task = args.task or DEFAULT_TASK
        run_dir = Path(args.out) if args.out else _default_run_dir(spec, source, task, args.seed)
        check_new_run_folder(run_dir)
        values = dict(model=spec, task=task, data=_absolute(args.data), model_record=run_model.record(spec, source))
        values.update(TASKS[task].defaults if task in TASKS else {})
        values.update({k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None})
        values["task_settings"] = {**values.get("task_settings", {}), **dict(args.set or [])}
        config = Config(**values)
    split = _load_task(config, config.data, progress=not args.quiet and world.rank == 0, world=world)
    trainer = Trainer(config, source, split, run_dir, progress=not args.quiet, world=world)
    memory.check_training(trainer)  # before anything is written: a run that cannot fit is refused
    trainer.claim_folder(new=not args.resume)  # held until the process ends; before any write
    if args.resume:
        trainer.restore()
        if trainer.epoch >= trainer.config.epochs:
            trainer.release_folder()
            raise UserError(_nothing_to_do(trainer, args.epochs))
    if world.rank == 0:  # a resumed run's too: --epochs, --data and the model's place may have changed
        run_dir.mkdir(parents=True, exist_ok=True)
        store.write_json(run_dir / CONFIG, asdict(trainer.config))
    return trainer


def _resumed(args):
    """(run folder, config, model) of the run ``train --resume`` continues: the
    folder given as the first argument (its model the one it names, or --model), or --out
    (or the default folder) with the model given as the first argument."""
    from .runtime.trainer import CHECKPOINT, CONFIG, Config

    if Path(args.model).is_dir():
        run_dir = Path(args.model)
        if args.out and Path(args.out).resolve() != run_dir.resolve():
            raise UserError(f"resuming the run in {run_dir}: drop --out {args.out} (a run stays in its folder)")
        config = Config.load(run_dir / CONFIG)
        spec, source = run_model.of_run(config, run_dir, args.model_file)
    elif args.model_file:
        raise UserError(f"give the model once: as the first argument ({args.model}) or as --model")
    else:
        spec = run_model.spec_of(args.model)
        source = run_model.load(spec)
        run_dir = Path(args.out) if args.out else _default_run_dir(spec, source, args.task or DEFAULT_TASK, args.seed)
        config = Config.load(run_dir / CONFIG)
    _refuse_changes(config, args, run_dir / CONFIG, run_model.changes(config, spec, source, run_dir, strict=True))
    if not (run_dir / CHECKPOINT).exists():
        raise UserError(f"{run_dir} holds no checkpoint: no epoch of it finished, so there is "
                        f"nothing to resume; start it again without --resume")
    _refuse_shape_options(args, spec)
    config.model, config.model_record = spec, run_model.record(spec, source)  # the file may have moved
    config.epochs, config.data = args.epochs or config.epochs, _absolute(args.data) or config.data
    return run_dir, config, source


def _nothing_to_do(trainer, epochs: int | None) -> str:
    """Why a resumed run that has trained the epochs asked for is refused: it would do nothing."""
    done = trainer.epoch
    if epochs is not None:
        return (f"--epochs {epochs}: {trainer.run_dir} has already trained {done} epoch{'s' * (done != 1)}; "
                f"to train it longer, pass --epochs N with N above {done}")
    return f"{trainer.run_dir} has finished its {done} epochs: to train it longer, pass --epochs N with N above {done}"


def _refuse_shape_options(args, spec: str):
    """The options that only a NIR graph takes, or that a graph fixes, given with the wrong one."""
    if run_model.is_graph(spec):
        fixed = [k for k in GRAPH_FIXES if getattr(args, k) is not None and not (k == "kappa" and args.add_readout)]
        if fixed:
            raise UserError(f"the NIR graph {spec} fixes the network's shape; drop "
                            + ", ".join("--no-recurrent" if k == "recurrent" else f"--{k}" for k in fixed))
        return
    for option, given in (("--dt", args.dt), ("--add-readout", args.add_readout), ("--learn", args.learn),
                          ("--detach-reset", args.detach_reset), ("--sparse-from-zeros", args.sparse_from_zeros)):
        if given is not None:
            raise UserError(f"{option} is for NIR graphs; a model's own declaration fixes its step, "
                            "readout and learnable parameters")


def _default_run_dir(spec: str, source, task: str, seed: int | None) -> Path:
    name = Path(spec).stem if run_model.is_graph(spec) else source.name
    return Path(f"runs/{name}-{task}-seed{seed if seed is not None else 0}")


def _absolute(path: str | None) -> str | None:
    """A folder as config.json keeps it: absolute, so the run is evaluated from anywhere."""
    return str(Path(path).absolute()) if path else path


def _silent(*args, **kwargs):
    """print's stand-in on the MPI ranks that do not speak for the job."""


def _refuse_changes(config, args, where: Path, model: str | None):
    """One line listing each setting given on the command line that differs from the run's
    (only RESUMABLE settings may change when resuming), the ``model``'s changes first."""
    given = {"task": args.task}
    given.update({k: getattr(args, k) for k in TRAIN_OPTIONS if k not in RESUMABLE + ("recurrent",)})
    differ = [model] if model else []
    differ += [f"--{k.replace('_', '-')} {value} (the run has {getattr(config, k)})"
               for k, value in given.items() if value is not None and value != getattr(config, k)]
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

    if run_model.is_graph(args.run):
        return _evaluate_graph(args)
    run_dir = Path(args.run)
    config = Config.load(run_dir / CONFIG)
    spec, source = run_model.of_run(config, run_dir, args.model_file)
    run_model.check(config, spec, source, run_dir, strict=False)
    config.model = spec
    trained_on = config.task
    if args.task and args.task != trained_on:
        accepted = TASKS[args.task].settings if args.task in TASKS else []
        config.task = args.task
        config.task_settings = {k: v for k, v in config.task_settings.items() if k in accepted}
    split = _load_task(config, args.data or config.data, everything=True)
    trainer = Trainer(config, source, split, run_dir, progress=False)
    try:
        trainer.restore(metrics=False)  # it only reads, beside a live training too
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
    graph = run_model.load(args.run)
    config = Config(model=run_model.spec_of(args.run), task=args.task, data=args.data, dt=args.dt,
                    dtype=args.dtype, task_settings=dict(args.set or []))
    split = _load_task(config, args.data, everything=True)
    net = build_network(config, graph, split.test.channels, split.test.outputs)
    value = score(net, split.test)
    print(f"{config.task}: {_format_score(value, split.test.kind)} on {len(split.test)} examples "
          f"(NIR graph {args.run})")
    return 0


def cmd_export(args) -> int:
    """A run's network, with the weights of its checkpoint, as a NIR graph."""
    from dataclasses import replace

    from . import nir
    from .runtime.checkpoint import check_checkpoint, checkpoint_sizes, load_checkpoint, load_network
    from .runtime.rewiring import Rewiring
    from .runtime.trainer import CHECKPOINT, CONFIG, Config, build_network, build_optimizer

    run_dir = Path(args.run)
    config = Config.load(run_dir / CONFIG)
    spec, source = run_model.of_run(config, run_dir, args.model_file)
    run_model.check(config, spec, source, run_dir, strict=True)
    config.model = spec
    state = load_checkpoint(run_dir / CHECKPOINT)
    # The task's sizes are in the checkpoint's arrays; a network of any sizes says which (a graph has its
    # own). Dense: a draw from 1 input would leave a sparse weight's neurons no synapse.
    probe = nir.load(source) if run_model.is_graph(spec) else build_network(replace(config, connectivity=1.0),
                                                                             source, 1, 1)
    net = build_network(config, source, *checkpoint_sizes(state, probe, run_dir / CHECKPOINT))
    rewiring = Rewiring(net, config.seed) if config.rewire else None  # its signs are checked too
    # as evaluate and --resume do
    check_checkpoint(state, net, build_optimizer(config), run_dir / CHECKPOINT, rewiring)
    load_network(state, net, run_dir / CHECKPOINT)
    path = nir.save(net, args.nir)
    print(f"wrote {path}: {len(net.layers)} layers ({', '.join(layer.model.name for layer in net.layers)}), "
          f"epoch {int(state['epoch'])} of {run_dir}")
    return 0


def _host(array):
    return array.get() if hasattr(array, "get") else array


# -- parser ----------------------------------------------------------------------------------
DT_HELP = "time step of a NIR graph's forward Euler (default: the graph's own, else 1e-4, snnTorch's)"
DEFAULT_TASK = "randman"  # generated, so it needs no download
FLOAT_TYPES = ["float32", "float64"]


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with each option's default. A train option that the task fills (its
    parser default None) shows the default task's value and every other task's own."""

    def _get_help_string(self, action):
        if getattr(action, "task_fills", False):
            return f"{action.help} ({_train_default(action.dest)})"
        default = action.default
        if default is None or default is argparse.SUPPRESS or action.nargs == 0 or "default:" in (action.help or ""):
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        return f"{action.help} (default: {shown})".replace("%", "%%")


def _train_default(name: str) -> str:
    """What train's option ``name`` is without it: Config's value, or the task's where the task
    has its own (data.TASKS owns those)."""
    from .data import TASKS

    def value(task: str):
        return TASKS[task].defaults.get(name, getattr(Config(), name))

    others = [f"{task} {value(task)}" for task in TASKS if value(task) != value(DEFAULT_TASK)]
    return f"default: {value(DEFAULT_TASK)}" + "".join(f"; {other}" for other in others)


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


def _path(text: str) -> str:
    """A file or folder named on the command line: never empty (an empty --out is not "the default")."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symgrad",
        description="Online gradient-based synaptic plasticity generated from SymPy neuron models.")
    parser.add_argument("--version", action="version", version=f"symgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, func):
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Help)
        p.set_defaults(func=func, command_parser=p)
        return p

    p = command("inspect", "show a model's Jacobians, their classes and the trace plan", cmd_inspect)
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME, or GRAPH.nir (each layer's model)")
    p.add_argument("--dt", type=_setting("dt"), help=DT_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.add_argument("--batch", type=_setting("batch"), default=32, help="batch size for the memory figures")
    p.add_argument("--hidden", type=_setting("hidden"), default=256, help="neurons per layer for the memory figures")
    p.add_argument("--inputs", type=_typed(count(1)), default=140, help="input channels for the memory figures")
    p.add_argument("--no-recurrent", dest="recurrent", action="store_false",
                   help="size the memory figures without a recurrent projection")
    p.add_argument("--dtype", choices=FLOAT_TYPES, default="float32", help="number type for the memory figures")
    p.add_argument("--connectivity", type=_setting("connectivity"), metavar="P", default=1.0,
                   help="size the memory figures for train's --connectivity P (sparse weights)")

    p = command("generate", "write the generated code of models", cmd_generate)
    p.add_argument("models", nargs="*", help="built-in names, FILE.py or FILE.py:NAME, or GRAPH.nir (the "
                   "model of each of its layers)")
    p.add_argument("--all", action="store_true", help="every built-in model")
    p.add_argument("--out", type=_path, default="generated", help="output folder")
    p.add_argument("--backend", nargs="+", default=list(render.BACKENDS), choices=list(render.BACKENDS),
                   help="backends to generate for")
    p.add_argument("--layout", nargs="+", choices=list(LAYOUTS),
                   help="which synapses the kernels walk: dense (every pair) and/or csr (sparse rows, files "
                        "ending in _csr); default dense, and both with --all")

    p = command("train", "train a network on a task, writing a run folder", cmd_train)
    p.add_argument("model", metavar="MODEL|RUNDIR",
                   help="built-in name, FILE.py or FILE.py:NAME, or GRAPH.nir: a NIR network to train "
                        "further (its graph fixes --hidden, --layers, --kappa and recurrence); with "
                        "--resume, the run folder to continue")
    p.add_argument("--dt", type=_setting("dt"), help=DT_HELP)
    p.add_argument("--add-readout", action="store_true", default=None,
                   help="a NIR graph whose output is a spiking layer: train it through an added leaky "
                        "readout (leak --kappa), which export writes as an Affine and an LI node")
    p.add_argument("--learn", metavar="FIELD", action="append",
                   help="a NIR graph: train this neuron field per neuron too, e.g. tau_mem (repeatable)")
    p.add_argument("--detach-reset", action="store_true", default=None,
                   help="a NIR graph: no gradient through the reset to v_reset (the same network; with one "
                        "time constant per layer, every trace becomes a cheap presynaptic filter)")
    p.add_argument("--sparse-from-zeros", action="store_true", default=None,
                   help="a NIR graph: its weights' zeros are absent synapses (sparse weights; NIR has no sparse "
                        "node, so symgrad exports a sparse network with zeros where it has no synapse)")
    p.add_argument("--task", help=f"fsdd, shd, ssc, randman, evidence or pattern (default: {DEFAULT_TASK}, "
                                  f"generated, needs no download)")
    p.add_argument("--data", metavar="DIR", type=_path, help="data folder for fsdd, shd and ssc")
    task_fills = [
        p.add_argument("--hidden", type=_setting("hidden"), help="neurons per layer"),
        p.add_argument("--layers", type=_setting("layers"), help="number of hidden layers"),
        p.add_argument("--epochs", type=_setting("epochs"), help="epochs in all (resuming: those done included)"),
        p.add_argument("--batch", type=_setting("batch"), help="samples per batch"),
        p.add_argument("--rule", choices=["eprop", "bptt"], help="learning rule: e-prop, online, or BPTT"),
        p.add_argument("--backend", choices=list(backends.BACKENDS), help="where the network runs"),
        p.add_argument("--seed", type=_setting("seed"), help="seed of the weights and the batch order"),
        p.add_argument("--lr", type=_setting("lr"), help="learning rate"),
        p.add_argument("--optimizer", choices=["adam", "sgd"], help="optimiser"),
        p.add_argument("--schedule", choices=["cosine", "constant"], help="learning rate over epochs"),
        p.add_argument("--kappa", type=_setting("kappa"), help="readout leak, in [0, 1) (0: instantaneous readout)"),
        p.add_argument("--loss", choices=list(LOSSES), help="loss of the readout"),
        p.add_argument("--feedback", choices=["symmetric", "random"],
                       help="e-prop's learning signal through the readout weights, or fixed random ones"),
        p.add_argument("--reg", type=_setting("reg"), help="firing-rate regularisation strength"),
        p.add_argument("--dtype", choices=FLOAT_TYPES, help="number type of the network"),
    ]
    for action in task_fills:
        action.task_fills = True
    p.add_argument("--workers", type=_setting("workers"), metavar="N",
                   help="threads for e-prop's gradient pass (default: the CPU count, at most 8)")
    p.add_argument("--no-recurrent", dest="recurrent", action="store_false", default=None,
                   help="no recurrent projection (default: one in every hidden layer)")
    p.add_argument("--update-every", type=_setting("update_every"), metavar="K",
                   help="update the weights every K steps (default: once, at the end of each batch)")
    p.add_argument("--connectivity", type=_setting("connectivity"), metavar="P",
                   help="sparse weights: each neuron has synapses from round(P x its inputs) of each "
                        "projection's inputs, drawn with --seed (default: 1, dense)")
    p.add_argument("--rewire", action="store_true", default=None,
                   help="with --connectivity: a synapse whose weight crosses zero moves to another input "
                        "of its neuron after each update (DEEP R)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", type=_task_setting,
                   help="a setting of the task's loader, e.g. test_speaker=jackson, augment=0 or "
                        "skip_unreadable=true for fsdd, pool=5 for shd (repeatable)")
    p.add_argument("--out", metavar="RUNDIR", type=_path,
                   help="run folder (default: runs/NAME-TASK-seedS, NAME the model's name)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run (RUNDIR, or --out) with the settings in its config.json; only "
                        "--epochs and --data may differ from them")
    p.add_argument("--model", dest="model_file", metavar="MODEL", type=_path,
                   help="with --resume RUNDIR: the run's model (default: the one its config.json names, "
                        "unless that is a model file: one runs only when named here; or where it moved)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = command("evaluate", "accuracy of a trained run, or of a NIR network, on a data set", cmd_evaluate)
    p.add_argument("run", metavar="RUNDIR|GRAPH.nir", help="a run folder, or a NIR network as it is")
    p.add_argument("--task", help="task to evaluate on (default: the run's; needed for a NIR graph)")
    p.add_argument("--data", metavar="DIR", type=_path, help="data folder (default: the run's)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", type=_task_setting,
                   help="a setting of the task's loader, for a NIR graph (a run uses its own)")
    p.add_argument("--dt", type=_setting("dt"), help=DT_HELP)
    p.add_argument("--dtype", choices=FLOAT_TYPES, default="float32", help="number type, for a NIR graph")
    p.add_argument("--model", dest="model_file", metavar="MODEL", type=_path,
                   help="the run's model (default: the one its config.json names, unless that is a "
                        "model file: one runs only when named here)")

    p = command("export", "write a trained run's network in another format", cmd_export)
    p.add_argument("run", metavar="RUNDIR", help="the run folder")
    p.add_argument("--nir", required=True, metavar="OUT.nir", type=_path,
                   help="write a NIR graph (its neuron models must be NIR primitives: LIF, CubaLIF, IF, "
                        "LI, CubaLI, I)")
    p.add_argument("--model", dest="model_file", metavar="MODEL", type=_path,
                   help="the run's model (default: the one its config.json names, unless that is a "
                        "model file: one runs only when named here)")

    p = command("grads", "loss and gradients of one batch, from and to .npz files", cmd_grads)
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME")
    p.add_argument("--inputs", required=True, metavar="IN.npz", type=_path,
                   help="the batch and the weights (see the README's grads contract)")
    p.add_argument("--out", required=True, metavar="OUT.npz", type=_path, help="file to write the loss and gradients to")
    p.add_argument("--rule", choices=["eprop", "bptt"], default="eprop", help="learning rule")
    p.add_argument("--dtype", choices=FLOAT_TYPES, default="float64", help="number type")
    p.add_argument("--backend", choices=list(backends.BACKENDS), default=backends.DEFAULT, help="where the layer runs")
    return parser


# A loader setting's type, as its default's: a value of another type is a mistake.
LOADER_KINDS = {int: Rule(int, lambda v: True, "a whole number"), float: Rule(float, math.isfinite, "a number"),
                bool: Rule(bool, lambda v: True, "true or false")}


def _check_task_settings(args):
    """Each --set against its task's loader (exit 2, as any bad option): a setting the loader
    takes, of the type of its default. A resumed run's task is its own, and any --set that
    differs from its settings is refused anyway."""
    from .data import TASKS

    if not getattr(args, "set", None) or getattr(args, "resume", False):
        return
    name = args.task or (DEFAULT_TASK if args.command == "train" else None)
    if name not in TASKS:
        return  # an unknown task is load_task's to name
    task = TASKS[name]
    unknown = sorted({key for key, _ in args.set} - set(task.settings))
    if unknown:
        args.command_parser.error(f"argument --set: task {name!r}: unknown setting(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(task.settings)}")
    defaults = {p.name: p.default for p in inspect.signature(task.loader).parameters.values()}
    for key, value in args.set:
        rule = LOADER_KINDS.get(type(defaults[key]))
        problem = rule and rule.problem(value)
        if problem:
            args.command_parser.error(f"argument --set: {key} {problem} (a setting of task {name!r})")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line each, like the errors: they are meant for the user, not a developer."""
    print(f"symgrad: warning: {message}", file=file or sys.stderr)


def main(argv=None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_task_settings(args)
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


def run() -> int:
    """The ``symgrad`` command: ``main`` on the command line's arguments."""
    code = main()
    # The interpreter's last garbage collections walk every object SymPy, Numba and matplotlib
    # made, half a second of a short training run; frozen, they are freed without the walk.
    # Nothing left needs a collection to finish: every file symgrad writes is closed by now.
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(run())
