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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import store
from ..errors import UserError
from . import backends
from .bptt import bptt
from .eprop import eprop, sweeps_synapses
from .network import Network
from .optim import OPTIMIZERS
from .parallel import default_workers, gradient_pass

CHECKPOINT, CONFIG, METRICS, CURVES = "checkpoint.npz", "config.json", "metrics.json", "curves.png"


class Diverged(Exception):
    """Training produced a non-finite or exploding loss; the last good checkpoint is kept."""


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
    dtype: str = "float32"
    task_settings: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Config":
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: no such file (is this a run folder?)") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"{path}: unknown setting {sorted(unknown)[0]!r}")
        return cls(**values)


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
        self.loss = loss
        self.net = build_network(config, model, train.channels, train.outputs)
        # Threads pay off for e-prop's per-synapse sweeps; BPTT's step is a few small products.
        shard = config.rule == "eprop" and sweeps_synapses(self.net, loss)
        self.gradient_pass = gradient_pass(self.net, config.workers, shard)
        options = dict(lr=config.lr, weight_decay=config.weight_decay, clip=config.clip)
        self.optimizer = OPTIMIZERS[config.optimizer](**options)
        self.metrics = {"train_loss": [], "train_acc": [], "test_acc": []}
        self.epoch = 0

    # -- checkpoints ---------------------------------------------------------------------
    def save(self):
        state = {f"param/{k}": _host(v) for k, v in self.net.params.items()}
        state.update({f"optim/{k}": _host(v) for k, v in self.optimizer.state().items()})
        state["epoch"] = np.array(self.epoch)
        store.write_npz(self.run_dir / CHECKPOINT, state)
        store.write_json(self.run_dir / METRICS, self.metrics)

    def restore(self):
        path = self.run_dir / CHECKPOINT
        state = load_checkpoint(path)
        self.net.set_params({k[6:]: v for k, v in state.items() if k.startswith("param/")})
        self.optimizer.load_state({k[6:]: self.net.xp.asarray(v) for k, v in state.items()
                                   if k.startswith("optim/")})
        self.epoch = int(state["epoch"])
        metrics_path = self.run_dir / METRICS
        if metrics_path.is_file():
            self.metrics = {k: v[:self.epoch] for k, v in json.loads(metrics_path.read_text()).items()}

    # -- training ------------------------------------------------------------------------
    def fit(self, log=print):
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
        if not all(bool(np.isfinite(_host(g)).all()) for g in grads.values()):
            raise Diverged("a gradient is not finite")
        self.optimizer.step(self.net.params, grads)

    def _check(self, loss: float, batch_index: int):
        if not math.isfinite(loss) or loss > 1e6:
            raise Diverged(f"loss {loss:.4g} at epoch {self.epoch + 1}, batch {batch_index + 1}")

    def summary(self) -> str:
        m, kind = self.metrics, self.split.train.kind
        name = "acc" if kind == "classification" else "neg. MSE"
        fmt = (lambda v: f"{100 * v:.1f}%") if kind == "classification" else (lambda v: f"{v:.4f}")
        return (f"epoch {self.epoch}/{self.config.epochs}: train loss {m['train_loss'][-1]:.4f}, "
                f"train {name} {fmt(m['train_acc'][-1])}, test {name} {fmt(m['test_acc'][-1])}")


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint here")
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
    except Exception as err:  # zip, header or array errors all mean the same to the user
        raise UserError(f"{path}: corrupt checkpoint ({type(err).__name__}: {err})") from None
    if "epoch" not in state or not any(k.startswith("param/") for k in state):
        raise UserError(f"{path}: not a symgrad checkpoint (no epoch or parameters)")
    return state


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
