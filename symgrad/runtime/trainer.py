"""Training a network on a task: epochs, batches, checkpoints, metrics and curves.

A run lives in one folder: ``config.json`` (everything needed to rebuild it),
``metrics.json`` (per epoch: train_loss, train_acc, test_acc), ``checkpoint.npz`` (weights,
optimiser state and the epoch reached, written atomically after every epoch) and
``curves.png``. The batch order of epoch e, and which augmented copy of each sample it
uses, depend only on (seed, e), so a run killed and resumed from its checkpoint ends with
exactly the weights of an uninterrupted one.
"""
from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import store
from ..errors import UserError
from .bptt import bptt
from .config import Config
from .eprop import eprop, sweeps_synapses, unsupported
from .losses import PER_STEP
from .network import Network
from .optim import OPTIMIZERS
from .parallel import default_workers, gradient_pass

CHECKPOINT, CONFIG, METRICS, CURVES = "checkpoint.npz", "config.json", "metrics.json", "curves.png"


class Diverged(Exception):
    """Training diverged (see ``Trainer._check``); the last good checkpoint is kept."""


# Diverged: the mean loss of the last DIVERGENCE_WINDOW batches (at most one epoch's) above
# DIVERGENCE_FACTOR times the untrained network's loss. A learning run stays below its
# starting loss on average; one whose steps are far too large (Adam's step is about lr,
# whatever the gradient) sits well above it, near a saturated readout's loss, without ever
# producing a NaN.
DIVERGENCE_FACTOR, DIVERGENCE_WINDOW = 10.0, 20


def learning_rate(config: Config, epoch: int) -> float:
    """The learning rate of an epoch: constant, or cosine-annealed from lr down to lr/20."""
    if config.schedule == "constant" or config.epochs <= 1:
        return config.lr
    floor = config.lr / 20
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * epoch / (config.epochs - 1)))


def build_network(config: Config, model, n_in: int, n_out: int) -> Network:
    return Network(model, n_in, [config.hidden] * config.layers, n_out, recurrent=config.recurrent,
                   kappa=config.kappa, feedback=config.feedback, seed=config.seed,
                   dtype=config.dtype, backend=config.backend)


def time_major(x):
    """(samples, T, channels) -> (T, samples, channels), the layout the runtime steps through."""
    return np.ascontiguousarray(np.swapaxes(x, 0, 1))


def predict(net: Network, dataset, batch: int = 256):
    """Class predictions (argmax of the mean readout) or readouts (T, samples, K) for regression."""
    outputs = []
    forward = gradient_pass(net, 1, shard=False)  # a forward pass is BLAS's work: leave it the cores
    for start in range(0, len(dataset), batch):
        ys, _ = forward(lambda net, x, _: net.forward(x), net, time_major(dataset.x[start:start + batch]), None)
        ys = ys.get() if hasattr(ys, "get") else ys
        outputs.append(ys.mean(axis=0).argmax(axis=1) if dataset.kind == "classification" else ys)
    return np.concatenate(outputs, axis=0 if dataset.kind == "classification" else 1)


def score(net: Network, dataset) -> float:
    """Accuracy for classification; negative mean squared error for regression."""
    predictions = predict(net, dataset)
    if dataset.kind == "classification":
        return float((predictions == dataset.y).mean())
    target = time_major(dataset.y)
    return -float(((predictions - target) ** 2).mean())


class Trainer:
    def __init__(self, config: Config, model, split, run_dir: Path, progress: bool = True):
        # The worker count is fixed once and saved: it sets how each batch is summed, so a
        # resumed run repeats an uninterrupted one exactly on any machine.
        config = replace(config, workers=config.workers or default_workers(config.backend))
        self.config, self.split, self.run_dir, self.progress = config, split, Path(run_dir), progress
        train = split.train
        loss = config.loss if train.kind == "classification" else "mse"
        if config.update_every and config.rule != "eprop":
            raise UserError("online updates (--update-every) need --rule eprop: BPTT has a gradient "
                            "only at the end of each sequence")
        refused = unsupported(loss, config.layers, config.update_every) if config.rule == "eprop" else None
        if refused:
            raise UserError(f"{refused}: choose --loss {' or --loss '.join(PER_STEP)}"
                            + ("" if config.update_every else ", or --rule bptt"))
        self.loss = loss
        self.net = build_network(config, model, train.channels, train.outputs)
        # Threads pay off for e-prop's per-synapse sweeps; BPTT's step is a few small products.
        shard = config.rule == "eprop" and sweeps_synapses(self.net, loss)
        self.gradient_pass = gradient_pass(self.net, config.workers, shard)
        options = dict(lr=config.lr, weight_decay=config.weight_decay, clip=config.clip)
        self.optimizer = OPTIMIZERS[config.optimizer](**options)
        self.metrics = {"train_loss": [], "train_acc": [], "test_acc": []}
        self.epoch = 0
        self.baseline = None  # the loss of the run's first batch, before any update
        self.recent_losses = deque(maxlen=min(DIVERGENCE_WINDOW, math.ceil(len(train) / config.batch)))

    # -- checkpoints ---------------------------------------------------------------------
    def save(self):
        state = {f"param/{k}": _host(v) for k, v in self.net.params.items()}
        state.update({f"optim/{k}": _host(v) for k, v in self.optimizer.state().items()})
        state["epoch"] = np.array(self.epoch)
        if self.baseline is not None:
            state["baseline_loss"] = np.array(self.baseline)
        # Metrics first: a run killed between the two writes resumes from the older
        # checkpoint, and restore() drops the metrics of epochs after it.
        store.write_json(self.run_dir / METRICS, self.metrics)
        store.write_npz(self.run_dir / CHECKPOINT, state)

    def restore(self):
        """Weights, optimiser state, epoch and metrics of the run folder's checkpoint, each
        checked against what this run's config builds, before anything is changed."""
        path = self.run_dir / CHECKPOINT
        state = load_checkpoint(path)
        check_arrays(state, self._checkpoint_layout(state), path)
        epoch = int(state["epoch"])
        metrics = read_metrics(self.run_dir / METRICS, epoch)
        self.net.set_params({k[6:]: v for k, v in state.items() if k.startswith("param/")})
        self.optimizer.load_state({k[6:]: self.net.xp.asarray(v) for k, v in state.items()
                                   if k.startswith("optim/")})
        self.epoch, self.metrics = epoch, metrics
        self.baseline = float(state["baseline_loss"]) if "baseline_loss" in state else None

    def _checkpoint_layout(self, state: dict) -> dict:
        """``{array: (shape, dtype)}`` a checkpoint of this run holds; dtype None: any integer."""
        layout = {f"param/{k}": (v.shape, np.dtype(v.dtype)) for k, v in self.net.params.items()}
        layout["epoch"] = ((), None)
        if "epoch" in state and np.ndim(state["epoch"]) == 0 and int(state["epoch"]) > 0:
            layout.update({f"optim/{k}": (shape, np.dtype(dtype)) for k, (shape, dtype)
                           in self.optimizer.state_layout(self.net.params).items()})
        if "baseline_loss" in state:  # absent in checkpoints written before it was kept
            layout["baseline_loss"] = ((), np.dtype(np.float64))
        return layout

    # -- training ------------------------------------------------------------------------
    def fit(self, log=print):
        # Overflows and NaNs are _check's and _apply's to report, as one Diverged.
        with np.errstate(all="ignore"):
            return self._fit(log)

    def _fit(self, log):
        config, train = self.config, self.split.train
        rule = eprop if config.rule == "eprop" else bptt
        online = {"update_every": config.update_every, "apply": self._apply} if config.update_every else {}
        while self.epoch < config.epochs:
            self.optimizer.lr = learning_rate(config, self.epoch)
            rng = np.random.default_rng([config.seed, self.epoch])
            order = rng.permutation(len(train))
            # Each sample is seen as itself or one of its augmented copies, equally likely.
            choice = rng.integers(train.copies + 1, size=len(train)) if train.copies else None
            batches = [order[i:i + config.batch] for i in range(0, len(order), config.batch)]
            losses, correct = [], 0
            bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{config.epochs}", leave=False,
                       disable=not self.progress, unit="batch")
            for index in bar:
                x = time_major(train.inputs(index, choice))
                target = train.y[index] if train.kind == "classification" else time_major(train.y[index])
                result = self.gradient_pass(rule, self.net, x, self.net.xp.asarray(target), loss=self.loss,
                                            reg=config.reg, rate_target=config.rate_target, **online)
                if self.baseline is None:
                    self.baseline = result.loss
                self._check(result.loss, len(losses))
                self._apply(result.grads)
                losses.append(result.loss)
                if train.kind == "classification":
                    correct += int((_host(result.readout).argmax(axis=1) == train.y[index]).sum())
                bar.set_postfix(loss=f"{result.loss:.3f}")
            self.epoch += 1
            train_acc = correct / len(train) if train.kind == "classification" else -float(np.mean(losses))
            test_acc = score(self.net, self.split.test)
            self.metrics["train_loss"].append(float(np.mean(losses)))
            self.metrics["train_acc"].append(train_acc)
            self.metrics["test_acc"].append(test_acc)
            self.save()
            plot_curves(self.metrics, self.run_dir / CURVES)
            log(self.summary())
        return self.metrics

    def _apply(self, grads):
        xp = self.net.xp
        if not all(bool(xp.isfinite(g).all()) for g in grads.values()):
            raise Diverged("a gradient is not finite")
        self.optimizer.step(self.net.params, grads)
        for name, value in self.net.params.items():
            if not bool(xp.isfinite(value).all()):
                raise Diverged(f"{name} overflowed {self.config.dtype} after an update")

    def _check(self, loss: float, batch_index: int):
        where = f"at epoch {self.epoch + 1}, batch {batch_index + 1}"
        if not math.isfinite(loss) or loss > 1e6:
            raise Diverged(f"loss {loss:.4g} {where}")
        self.recent_losses.append(loss)
        window = self.recent_losses
        if len(window) == window.maxlen and self.baseline > 0:
            mean = sum(window) / len(window)
            if mean > DIVERGENCE_FACTOR * self.baseline:
                raise Diverged(f"the mean loss of the last {len(window)} batches, {mean:.4g}, is more than "
                               f"{DIVERGENCE_FACTOR:g} times the untrained network's {self.baseline:.4g} "
                               f"{where} (is the learning rate too large?)")

    def summary(self) -> str:
        m, kind = self.metrics, self.split.train.kind
        name = "acc" if kind == "classification" else "neg. MSE"
        fmt = (lambda v: f"{100 * v:.1f}%") if kind == "classification" else (lambda v: f"{v:.4f}")
        return (f"epoch {self.epoch}/{self.config.epochs}: train loss {m['train_loss'][-1]:.4f}, "
                f"train {name} {fmt(m['train_acc'][-1])}, test {name} {fmt(m['test_acc'][-1])}")


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    try:
        state = store.read_npz(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no checkpoint here") from None
    except store.NotNpz as err:
        raise UserError(f"{path}: corrupt checkpoint ({err})") from None
    if "epoch" not in state or not any(k.startswith("param/") for k in state):
        raise UserError(f"{path}: not a symgrad checkpoint (no epoch or parameters)")
    return state


class CheckpointMismatch(UserError):
    """A checkpoint whose arrays are not those the run's config builds."""


def check_arrays(state: dict, layout: dict, path: Path):
    """Every array of ``layout`` present in ``state`` with its shape and dtype (None: any
    integer), finite, and nothing else; else CheckpointMismatch naming the first array."""
    for name, (shape, dtype) in layout.items():
        if name not in state:
            raise CheckpointMismatch(f"{path}: array {name!r} is missing")
        value = state[name]
        if value.shape != tuple(shape):
            raise CheckpointMismatch(f"{path}: array {name!r} has shape {value.shape}, but the network "
                                     f"built from config.json has {tuple(shape)}")
        kind_ok = np.issubdtype(value.dtype, np.integer) if dtype is None else value.dtype == dtype
        if not kind_ok:
            raise CheckpointMismatch(f"{path}: array {name!r} is {value.dtype}, but the network built "
                                     f"from config.json needs {dtype or 'an integer'}")
        if not np.isfinite(value).all():
            raise CheckpointMismatch(f"{path}: array {name!r} holds values that are not finite")
    unexpected = sorted(set(state) - set(layout))
    if unexpected:
        raise CheckpointMismatch(f"{path}: unexpected array {unexpected[0]!r} (not part of this run)")


def read_metrics(path: Path, epochs: int) -> dict:
    """The per-epoch metrics of a run's first ``epochs`` epochs."""
    empty = {"train_loss": [], "train_acc": [], "test_acc": []}
    if epochs == 0 and not path.exists():
        return empty
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing, but the checkpoint has reached epoch {epochs}; the "
                        f"checkpoint is untouched; restore metrics.json to resume") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({getattr(err, 'msg', err)}); the checkpoint is "
                        f"untouched; restore metrics.json to resume") from None
    if not isinstance(metrics, dict) or set(metrics) != set(empty) or not all(
            isinstance(v, list) and len(v) >= epochs for v in metrics.values()):
        raise UserError(f"{path}: expected lists {', '.join(empty)} of at least {epochs} epochs each")
    return {k: metrics[k][:epochs] for k in empty}


def plot_curves(metrics: dict, path: Path):
    """Loss and accuracy per epoch, drawn without pyplot so a notebook's backend is untouched."""
    from matplotlib.figure import Figure

    epochs = np.arange(1, len(metrics["train_loss"]) + 1)
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, metrics["train_loss"], marker="o")
    left.set(xlabel="epoch", ylabel="train loss", title="loss")
    right.plot(epochs, metrics["train_acc"], marker="o", label="train")
    right.plot(epochs, metrics["test_acc"], marker="s", label="test")
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


__all__ = ["Config", "Trainer", "Diverged", "score", "predict", "load_checkpoint", "asdict"]
