"""The trained FSDD network: a batch's gradient by e-prop and BPTT against JAX and PyTorch BPTT;
and how long ``symgrad train`` takes with its defaults.

The comparison: ``symgrad train alif --task fsdd --data FSDD`` with its defaults but for
EPOCHS epochs, run into a temporary run folder. Then, on its trained weights and one batch of
real FSDD training inputs (the run's batch size), in this process, each warmed up and timed as
the best of several passes:

- symgrad e-prop and symgrad BPTT, each through a Trainer of the run with that rule
  (``Trainer.gradient_pass`` with the run's loss and settings): what ``symgrad train`` times
  as "compute per batch" (which also counts gathering the batch's inputs, a copy);
- JAX BPTT (jitted ``lax.scan``) and PyTorch BPTT (eager), the hand-written peers of
  ``peers_jax`` and ``peers_torch``, given the trained weights, after their gradients are
  checked against symgrad's BPTT (common.verify_peer). Their one loss is the per-step
  cross-entropy; the run's is ``ce_mean``, the cross-entropy of the mean readout: the same
  forward and backward sweeps, but for one log-softmax per step instead of one per sequence.

One library at a time, JAX last (see speed.run). The trained network's activity is reported
beside the times: the share of neuron-steps that spike and of (sample, neuron) rows not at
rest, the rows whose per-synapse work an event-driven step cannot skip.

The wall time: ``symgrad train alif`` with the defaults of FSDD and of random manifolds, each
run as a subprocess (Python's start, loading, every epoch, scoring and writing the run folder),
after the comparison's training (without FSDD, an untimed small run), so that the kernels are
compiled and FSDD is converted: the figures are those of a warm cache. The compute per batch
and the accuracy are what the run reports.

Quick: one epoch on a few recordings of each digit and speaker (FSDD's official split, cut
down), fewer timed passes, and that run's wall time alone; no wall-time targets then.
FSDD is read from $SYMGRAD_FSDD, else ../shared/data/fsdd beside the repository; without it
only a random-manifolds run is measured (at quick sizes, cut down to one epoch of small sizes),
and the section says why.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from symgrad import run_model
from symgrad.data import load_task
from symgrad.data.fsdd import TEST_INDICES, list_recordings
from symgrad.runtime import bptt, eprop
from symgrad.runtime.trainer import CONFIG, Config, Trainer, time_major

from . import peers_jax, peers_torch
from .common import Section, Target, best_seconds, pyplot, table
from .mpi import train_cli as train_alif  # the CLI in a subprocess: wall time, compute per batch, accuracy
from .overhead import QUICK_REPEATS, active_rows, verified

NAME = "trained"
TITLE = "The trained FSDD network: a batch's gradient against JAX BPTT, and symgrad train's wall time"
FSDD = Path(os.environ.get("SYMGRAD_FSDD") or Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd")
EPOCHS = 3  # of the trained comparison's run (the setting)
PEERS = (peers_torch, peers_jax)  # in the order they are timed: JAX last
EPROP, BPTT, JAX_BPTT = "symgrad e-prop", "symgrad BPTT", "JAX BPTT"
# The targets: ratios to JAX BPTT's batch, and wall seconds with the defaults on 2 cores.
EPROP_LIMIT, EPROP_AIM, BPTT_LIMIT = 1.0, 0.5, 1.0
WALL_LIMITS = {"fsdd": 10.0, "randman": 5.0}
# Quick: random manifolds small enough that Python's start dominates.
SMALL_RANDMAN = ["--set", "samples=64", "--set", "test_samples=16", "--set", "channels=12", "--set", "steps=20",
                 "--hidden", "16", "--epochs", "1"]


def small_fsdd(folder: Path) -> Path:
    """A folder of links to recording 0 (test) and three training recordings of each digit and
    speaker: FSDD's official split, cut down for quick runs."""
    training = sorted({index for _, _, _, index in list_recordings(FSDD)} - set(TEST_INDICES))[:3]
    keep = {TEST_INDICES[0], *training}
    recordings = folder / "recordings"
    recordings.mkdir(parents=True)
    for path, _, _, index in list_recordings(FSDD):
        if index in keep:
            (recordings / path.name).symlink_to(path.resolve())
    return folder


def run_trainer(run_dir: Path, rule: str, split) -> Trainer:
    """A Trainer of the run in ``run_dir`` with ``rule``, holding its trained weights (loaded as
    ``symgrad evaluate`` loads a run)."""
    config = replace(Config.load(run_dir / CONFIG), rule=rule)
    _, source = run_model.of_run(config, run_dir, None)
    trainer = Trainer(config, source, split, run_dir, progress=False)
    trainer.restore(metrics=False)
    return trainer


def batch_pass(trainer: Trainer, x, labels):
    """The gradient pass of one batch as the trainer computes it (Trainer._batch)."""
    config = trainer.config
    rule = eprop if config.rule == "eprop" else bptt
    return lambda: trainer.gradient_pass(rule, trainer.net, x, labels, loss=trainer.loss, reg=config.reg,
                                         rate_target=config.rate_target)


def compare(run_dir: Path, quick: bool, skipped: dict) -> dict:
    """Seconds per batch of each implementation on the trained network, and its activity."""
    repeats, budget = (QUICK_REPEATS, 0.0) if quick else (5, 3.0)
    config = Config.load(run_dir / CONFIG)
    split = load_task(config.task, config.data, progress=False, **config.task_settings)
    index = np.random.default_rng(config.seed).choice(len(split.train), config.batch, replace=False)
    x, labels = time_major(split.train.inputs(index)), split.train.y[index]
    trainers = {EPROP: run_trainer(run_dir, "eprop", split), BPTT: run_trainer(run_dir, "bptt", split)}
    times, checks, results = {}, {}, {}
    for label, trainer in trainers.items():
        gradient = batch_pass(trainer, x, labels)
        results[label] = gradient()  # the warm-up
        times[label] = best_seconds(gradient, repeats, warmup=0, budget=budget)
        print(f"  {label:15s} {1e3 * times[label]:8.2f} ms per batch")
    net = trainers[EPROP].net
    steps, batch = x.shape[:2]
    for module in PEERS:
        if module.MISSING:
            skipped[module.NAME] = module.MISSING
            print(f"  skipping {module.NAME}: {module.MISSING}")
            continue
        checks[module.NAME] = verified(module)
        peer = module.Peer(net)
        times[f"{module.NAME} BPTT"] = best_seconds(lambda: peer.bptt(x, labels), repeats, budget=budget)
        print(f"  {module.NAME + ' BPTT':15s} {1e3 * times[module.NAME + ' BPTT']:8.2f} ms per batch")
    return {"seconds_per_batch": times, "peer_checks": checks, "batch": batch, "steps": steps,
            "hidden": net.layers[0].n, "channels": net.n_in, "loss": trainers[EPROP].loss,
            "spike_rate": float(results[EPROP].spikes[0]) / (steps * batch * net.layers[0].n),
            "active_rows": active_rows(net, x)}


def train(label: str, task: str, options: list, folder: Path, data: Path | None = None) -> dict:
    """One ``symgrad train alif`` in a subprocess: its wall time, and the compute per batch and
    accuracy it reports. ``data`` is given as --data, and shown as DIR."""
    given = options + (["--data", str(data)] if data else [])
    shown = " ".join(["symgrad train alif", *options, *(["--data", "DIR"] if data else [])])
    print(f"  {shown}")
    return dict(train_alif(1, given, folder), label=label, task=task, command=shown)


def run(quick: bool, out: Path) -> Section:
    skipped, runs, figures, targets = {}, [], {}, []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if FSDD.is_dir():
            data = small_fsdd(scratch / "fsdd") if quick else FSDD
            recordings, epochs = len(list_recordings(data)), 1 if quick else EPOCHS
            trained = train(f"FSDD, {recordings} recordings, {epochs} epoch(s)", "fsdd",
                            ["--task", "fsdd", "--epochs", str(epochs)], scratch / "run", data)
            figures.update(trained=dict(trained, epochs=epochs, recordings=recordings),
                           comparison=compare(scratch / "run", quick, skipped))
            # Quick: the comparison's run stands in for the defaults' (compiled and converted by then).
            runs.append(trained if quick else
                        train("FSDD, defaults", "fsdd", ["--task", "fsdd"], scratch / "fsdd-defaults", data))
        else:
            skipped["FSDD"] = f"no FSDD folder at {FSDD} (set SYMGRAD_FSDD to the dataset's folder)"
            print(f"  skipping the trained network: {skipped['FSDD']}")
        if not quick:
            if not runs:  # nothing has compiled the kernels yet: a small run does, untimed
                train("warm-up", "randman", SMALL_RANDMAN, scratch / "warm-up")
            runs.append(train("random manifolds, defaults", "randman", [], scratch / "randman"))
        elif not runs:  # quick without FSDD: the wall-time table's machinery on a small run
            runs.append(train("random manifolds, small, 1 epoch", "randman", SMALL_RANDMAN, scratch / "randman"))
    for row in runs:
        print(f"  {row['label']}: {row['wall_s']:.1f} s, {row['compute_ms']:.1f} ms per batch, {row['accuracy']:.1f}%")
    figures["wall"] = runs
    times = figures.get("comparison", {}).get("seconds_per_batch", {})
    if JAX_BPTT in times:
        ratio = times[EPROP] / times[JAX_BPTT]
        targets += [Target(f"trained FSDD: {EPROP} per batch / {JAX_BPTT}", ratio, EPROP_LIMIT, "x"),
                    Target(f"trained FSDD: {EPROP} per batch / {JAX_BPTT} (the aim)", ratio, EPROP_AIM, "x"),
                    Target(f"trained FSDD: {BPTT} per batch / {JAX_BPTT}", times[BPTT] / times[JAX_BPTT],
                           BPTT_LIMIT, "x")]
    if not quick:  # the wall-time targets are on the defaults
        targets += [Target(f"`{row['command']}` wall time", row["wall_s"], WALL_LIMITS[row["task"]], " s")
                    for row in runs]
    plot = f"{NAME}.png"
    _plot(figures, out / plot)
    return Section(NAME, TITLE, figures, _markdown(figures, quick), [plot], targets, skipped)


def _markdown(figures: dict, quick: bool) -> str:
    parts = []
    if "comparison" in figures:
        c, trained = figures["comparison"], figures["trained"]
        times = c["seconds_per_batch"]
        reference = times.get(JAX_BPTT)
        rows = [[name, f"{1e3 * t:.2f}", f"{t / reference:.2f}" if reference else "n/a"] for name, t in times.items()]
        checks = ", ".join(f"{peer} {rule} {err:.1e}" for peer, errs in c["peer_checks"].items()
                           for rule, err in errs.items())
        active = "n/a (no kernel skips rows at rest)" if c["active_rows"] is None else f"{100 * c['active_rows']:.1f}%"
        data = f"{trained['recordings']} recordings (a cut-down split: quick)" if quick else "the official split"
        parts.append(f"""`symgrad train alif --task fsdd` with its defaults but {trained['epochs']} epoch(s), on
{data}: test accuracy {trained['accuracy']:.1f}%, compute per batch {trained['compute_ms']:.1f} ms as the run
reported it (its mean over training). On its trained weights and one batch of real inputs (B={c['batch']},
T={c['steps']}, M={c['channels']}, N={c['hidden']} recurrent ALIF, loss {c['loss']} for symgrad, the per-step
cross-entropy for the peers), best of several passes after a warm-up, one library at a time:

{table(["implementation", "ms per batch", f"/ {JAX_BPTT}"], rows)}

Activity in that batch: {100 * c['spike_rate']:.1f}% of neuron-steps spike; {active} of (sample, neuron) rows
are not at rest per step (the rest need no per-synapse work). Peer gradients checked against symgrad's BPTT in
float64 first (largest rel. error: {checks or 'no peers'}). The issue's targets: e-prop no more than JAX BPTT
({EPROP_LIMIT:g}x; the aim {EPROP_AIM:g}x), symgrad BPTT no more than JAX BPTT.""")
    rows = [[r["label"], f"`{r['command']}`", f"{r['wall_s']:.1f}", f"{r['compute_ms']:.1f}",
             f"{r['accuracy']:.1f}%"] for r in figures["wall"]]
    when = ("at quick sizes, no targets; it may include compiling the kernels" if quick else
            "kernels compiled and FSDD converted beforehand")
    parts.append(f"Wall time of `symgrad train` (a subprocess: start, load, train, score, write; {when}):\n\n"
                 + table(["run", "command", "wall s", "compute ms/batch (reported)", "test accuracy"], rows))
    return "\n\n".join(parts) + "\n"


def _plot(figures: dict, path: Path):
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if "comparison" in figures:
        times = figures["comparison"]["seconds_per_batch"]
        left.barh(list(times), [1e3 * t for t in times.values()])
        left.invert_yaxis()
        left.set(xlabel="ms per batch", title="trained FSDD network, one batch's gradient")
    else:
        left.text(0.5, 0.5, "FSDD not found", ha="center", va="center")
        left.set_axis_off()
    runs = figures["wall"]
    right.barh([r["label"] for r in runs], [r["wall_s"] for r in runs])
    right.invert_yaxis()
    right.set(xlabel="wall seconds", title="symgrad train alif")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
