"""Training a network on a task: epochs, batches, checkpoints, metrics and curves.

A run lives in one folder: ``config.json`` (everything needed to rebuild it),
``metrics.json`` (per epoch: train_loss, train_acc, test_acc), ``checkpoint.npz`` (weights, a
sparse network's synapses, optimiser state and the epoch reached) and ``curves.png``, each
written atomically after every epoch, and, while a process trains into it, ``.lock`` (see
``Trainer.claim_folder``). The batch order of epoch e, and which augmented copy of each sample
it uses, depend only on (seed, e), and rewiring's draws only on (seed, e, update), so a run
killed and resumed from its checkpoint ends with exactly the weights and synapses of an
uninterrupted one.
"""
from __future__ import annotations

import errno
import math
import time
import warnings
from collections import deque
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import store
from ..model import NeuronModel
from ..errors import UserError
from ..surrogates import Spike
from . import backends, fused, fused_bptt
from .bptt import bptt
from .checkpoint import check_checkpoint, load_checkpoint, load_network, network_arrays, read_metrics
from .checkpoint import to_host as _host
from .config import Config
from .distributed import SINGLE, BatchSum, PeerFailed, digest, select_gpu, share, threads_per_rank
from .eprop import eprop, sweeps_synapses, unsupported
from .losses import PER_STEP
from .network import Network
from .optim import OPTIMIZERS
from .parallel import default_workers, gradient_pass
from .rewiring import Rewiring

CHECKPOINT, CONFIG, METRICS, CURVES = "checkpoint.npz", "config.json", "metrics.json", "curves.png"
# Seconds of training before curves.png is first drawn, and between two drawings; it is also drawn
# after the last epoch. Drawing it takes about 0.3 s, which every epoch of a short run would pay
# (4 s of the 10 of `symgrad train alif`): a run shorter than this draws it once, at its end.
CURVES_EVERY = 10.0
LOCK = ".lock"  # held by the process training into the folder


class Diverged(Exception):
    """Training diverged (see ``Trainer._check``); the last good checkpoint is kept."""


# Diverged: the mean loss of the last DIVERGENCE_WINDOW batches (at most one epoch's) above
# DIVERGENCE_FACTOR times the untrained network's loss. A learning run stays below its
# starting loss on average; one whose steps are far too large (Adam's step is about lr,
# whatever the gradient) sits well above it, near a saturated readout's loss, without ever
# producing a NaN.
DIVERGENCE_FACTOR, DIVERGENCE_WINDOW = 10.0, 20

# A spiking layer that fires in more than this fraction of its neuron-steps is saturated.
SATURATED = 0.9


def learning_rate(config: Config, epoch: int) -> float:
    """The learning rate of an epoch: constant, or cosine-annealed from lr down to lr/20."""
    if config.schedule == "constant" or config.epochs <= 1:
        return config.lr
    floor = config.lr / 20
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * epoch / (config.epochs - 1)))


def build_network(config: Config, model, n_in: int, n_out: int) -> Network:
    """The run's network: ``model`` (a NeuronModel) in the config's layers, or the network of a
    NIR graph (``model`` a nir.NIRGraph), which must fit the task."""
    options = dict(feedback=config.feedback, seed=config.seed, dtype=config.dtype, backend=config.backend,
                   connectivity=config.connectivity if config.connectivity < 1 else None)
    if isinstance(model, NeuronModel):
        return Network(model, n_in, [config.hidden] * config.layers, n_out, recurrent=config.recurrent,
                       kappa=config.kappa, **options)
    from .. import nir

    net = nir.load(model, dt=config.dt, add_readout=config.kappa if config.add_readout else None,
                   learn=tuple(config.learn), detach_reset=config.detach_reset,
                   sparse_from_zeros=config.sparse_from_zeros, **options)
    if (net.n_in, net.n_out) != (n_in, n_out):
        raise UserError(f"the NIR graph {config.model} takes {net.n_in} inputs and gives {net.n_out} outputs; "
                        f"task {config.task!r} has {n_in} input channels and {n_out} outputs")
    return net


def build_optimizer(config: Config):
    return OPTIMIZERS[config.optimizer](lr=config.lr, weight_decay=config.weight_decay, clip=config.clip)


def check_new_run_folder(run_dir: Path):
    """Refuse a folder a new run may not write into: one holding a run (its checkpoint), or
    a non-empty one that is not a symgrad run folder, whose config.json symgrad reads as a
    run's settings (a run whose first epoch never finished may be started again)."""
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT).exists():
        raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, "
                        f"or choose another --out")
    if not run_dir.is_dir():
        return
    others = sorted(entry.name for entry in run_dir.iterdir()
                    if entry.name != LOCK and not store.is_temporary(entry.name))
    if not others:
        return
    try:
        Config.load(run_dir / CONFIG)
    except UserError:
        raise UserError(f"{run_dir} is not empty ({len(others)} entries, such as {others[0]!r}) and is not "
                        f"a symgrad run folder (no {CONFIG} that symgrad reads as a run's settings); "
                        f"choose a new or empty --out, so that nothing in it is overwritten") from None


def time_major(x):
    """(samples, T, channels) -> (T, samples, channels), the layout the runtime steps through."""
    return np.ascontiguousarray(np.swapaxes(x, 0, 1))


def predict(net: Network, dataset, batch: int = 256):
    """Class predictions (argmax of the mean readout, or of the spike counts without one) or readouts (T, samples, K) for regression."""
    outputs = []
    # One thread: the Python loop's forward pass is BLAS's work, which takes the cores, and the
    # compiled one gains nothing from two (FSDD's test set: 25.6 ms against 26.4 on one).
    forward = gradient_pass(net, 1, shard=False)
    for start in range(0, len(dataset), batch):
        ys = forward(_outputs, net, time_major(dataset.x[start:start + batch]), None)
        ys = ys.get() if hasattr(ys, "get") else ys
        outputs.append(ys.mean(axis=0).argmax(axis=1) if dataset.kind == "classification" else ys)
    return np.concatenate(outputs, axis=0 if dataset.kind == "classification" else 1)


def _outputs(net: Network, x, _):
    """The readout of every step, or without one, the last layer's spikes (classes by spike
    count): in one compiled call where the network's whole pass runs so."""
    if fused.available(net) and fused.chosen(None):
        ys, top = fused_bptt.forward(net, x)
    else:
        ys, spikes = net.forward(x)
        top = spikes[-1]
    return top if ys is None else ys


def score(net: Network, dataset, world=SINGLE) -> float:
    """Accuracy for classification; negative mean squared error for regression. Each rank of
    ``world`` scores its slice of the samples."""
    mine = dataset
    if world.size > 1:
        mine = dataset.subset(share(np.arange(len(dataset)), world.rank, world.size), variants=False)
    total = np.zeros(1)
    if len(mine):
        predictions = predict(net, mine)
        if dataset.kind == "classification":
            total[0] = float((predictions == mine.y).sum())
        else:
            total[0] = float(((predictions - time_major(mine.y)) ** 2).sum())
    total = world.sum(total)[0]
    if dataset.kind == "classification":
        return total / len(dataset)
    return -total / dataset.y.size


class Trainer:
    """Trains a network on a split, writing the run folder; with a ``world`` of several MPI
    ranks, each rank takes its slice of every batch (see ``distributed``) and rank 0 writes."""

    def __init__(self, config: Config, model, split, run_dir: Path, progress: bool = True, world=SINGLE):
        # The worker count is fixed once and saved: it sets how each batch is summed, so a
        # resumed run repeats an uninterrupted one exactly on any machine.
        config = replace(config, workers=config.workers or default_workers(config.backend))
        self.config, self.split, self.run_dir = config, split, Path(run_dir)
        self.world, self.writer = world, world.rank == 0
        self.progress = progress and self.writer
        train = split.train
        loss = config.loss if train.kind == "classification" else "mse"
        if config.update_every and config.rule != "eprop":
            raise UserError("online updates (--update-every) need --rule eprop: BPTT has a gradient "
                            "only at the end of each sequence")
        if config.rewire and config.update_every:
            raise UserError("--rewire moves synapses between gradient passes, and --update-every updates the "
                            "weights within a pass: drop one of them")
        self.loss = loss
        self.device = None  # the GPU of this rank, in an MPI job on GPUs
        if world.size > 1 and backends.get(config.backend).device:
            self.device = select_gpu(world)
        self.net = build_network(config, model, train.channels, train.outputs)
        if not isinstance(model, NeuronModel):  # the graph fixes the shape: config.json records it
            first = self.net.layers[0]
            config = self.config = replace(config, layers=len(self.net.layers), hidden=first.n,
                                           recurrent=first.recurrent, kappa=self.net.kappa)
        self.rewiring = None  # DEEP R, after each update (runtime/rewiring.py)
        if config.rewire:
            if not self.net.connectivity:
                raise UserError("--rewire moves the synapses of sparse weights, and this network has none: "
                                "give --connectivity P below 1")
            self.rewiring = Rewiring(self.net, config.seed)
        self.updates = 0  # optimiser steps taken in this epoch: rewiring's draws are those of (epoch, update)
        self.rewired = 0  # synapses rewiring moved in this epoch
        layers = len(self.net.layers)
        refused = unsupported(loss, layers, config.update_every) if config.rule == "eprop" else None
        if refused:
            raise UserError(f"{refused}: choose --loss {' or --loss '.join(PER_STEP)}"
                            + ("" if config.update_every else ", or --rule bptt"))
        # Threads pay off for e-prop's per-synapse sweeps; BPTT's step is a few small products.
        shard = config.rule == "eprop" and sweeps_synapses(self.net, loss)
        threads = threads_per_rank(config.workers, world.local_size)
        if world.size > 1:
            # BLAS's own pool would start a thread per core in every rank (scoring is all
            # matrix products): held for this process's lifetime to the rank's share.
            from threadpoolctl import threadpool_limits

            self._blas_limit = threadpool_limits(limits=threads, user_api="blas")
        self.gradient_pass = gradient_pass(self.net, threads, shard)
        self.batch_sum = None
        if world.size > 1:
            self.batch_sum = BatchSum(world, self.net.params, self.net.xp, sum(layer.n for layer in self.net.layers))
        self.timing = {"compute": 0.0, "communicate": 0.0, "batches": 0}
        self.weight = 1.0  # this rank's share of the batch in progress (its slice's size / the batch's)
        self.optimizer = build_optimizer(config)
        self.metrics = {"train_loss": [], "train_acc": [], "test_acc": []}
        self.epoch = 0
        self.baseline = None  # the loss of the run's first batch, before any update
        self.recent_losses = deque(maxlen=min(DIVERGENCE_WINDOW, math.ceil(len(train) / config.batch)))
        self.activity_checked = False  # whether the spiking layers' activity has been looked at
        self.curves_drawn = None  # when curves.png was last drawn, or training began (time.perf_counter)
        self._lock = None

    # -- the run folder ------------------------------------------------------------------
    def claim_folder(self, new: bool):
        """Lock the run folder for this process, before anything in it is written, until fit
        has finished (or this Trainer is gone); refuse it, in one line, while another live
        process holds it; remove the temporaries of writers killed in it. A ``new`` run checks
        the folder (``check_new_run_folder``) again under the lock: another run may have
        filled it since the first check."""
        if not self.writer:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = store.FileLock(self.run_dir / LOCK)
        except store.LockHeld as err:
            holder = f" (pid {err.holder.replace('@', ' on ')})" if err.holder else ""
            raise UserError(f"{self.run_dir} is in use by another symgrad process{holder}; wait until it "
                            f"has finished, or choose another --out") from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            warnings.warn(f"cannot lock {self.run_dir / LOCK} ({err.strerror}); make sure no other "
                          f"process trains into {self.run_dir}")
        store.remove_stale_temporaries(self.run_dir)
        if new:
            try:
                check_new_run_folder(self.run_dir)
            except UserError:
                self.release_folder()
                raise

    def release_folder(self):
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- checkpoints ---------------------------------------------------------------------
    def save(self):
        if not self.writer:
            return
        state = self._network_state()
        state.update({f"optim/{k}": _host(v) for k, v in self.optimizer.state().items()})
        state["epoch"] = np.array(self.epoch)
        if self.baseline is not None:
            state["baseline_loss"] = np.array(self.baseline)
        # Metrics first: a run killed between the two writes resumes from the older
        # checkpoint, and restore() drops the metrics of epochs after it.
        store.write_json(self.run_dir / METRICS, self.metrics)
        store.write_npz(self.run_dir / CHECKPOINT, state)

    def restore(self, metrics: bool = True):
        """Weights, optimiser state, epoch and (with ``metrics``; evaluating needs none) the
        metrics of the run folder's checkpoint, each checked against what this run's config
        builds, before anything is changed."""
        path = self.run_dir / CHECKPOINT
        state = load_checkpoint(path)
        check_checkpoint(state, self.net, self.optimizer, path, self.rewiring)
        epoch = int(state["epoch"])
        if metrics:
            self.metrics = read_metrics(self.run_dir / METRICS, epoch)
        self._load_network_state(state, path)
        self.optimizer.load_state({k[6:]: self.net.xp.asarray(v) for k, v in state.items()
                                   if k.startswith("optim/")})
        self.epoch = epoch
        self.baseline = float(state["baseline_loss"]) if "baseline_loss" in state else None

    def _network_state(self) -> dict:
        """What a checkpoint holds of the network: its arrays (checkpoint.network_arrays) and
        the rewired synapses' signs."""
        state = network_arrays(self.net)
        if self.rewiring:
            state.update(self.rewiring.state())
        return state

    def _load_network_state(self, state: dict, where):
        load_network(state, self.net, where)
        if self.rewiring:
            self.rewiring.load_state(state)

    # -- training ------------------------------------------------------------------------
    def fit(self, log=print):
        """Train the remaining epochs; the run folder's lock (claim_folder) is released at the end."""
        try:
            # Overflows and NaNs are _check's and _apply's to report, as one Diverged.
            with np.errstate(all="ignore"):
                return self._fit(log)
        finally:
            self.release_folder()

    def _fit(self, log):
        config, train = self.config, self.split.train
        rule = eprop if config.rule == "eprop" else bptt
        options = {"update_every": config.update_every, "apply": self._apply_summed} if config.update_every else {}
        if config.reg and self.world.size > 1:
            options["rate_scope"] = self._rates_of_whole_batch
        self.curves_drawn = time.perf_counter()
        while self.epoch < config.epochs:
            self.optimizer.lr = learning_rate(config, self.epoch)
            rng = np.random.default_rng([config.seed, self.epoch])
            order = rng.permutation(len(train))
            # Each sample is seen as itself or one of its augmented copies, equally likely.
            choice = rng.integers(train.copies + 1, size=len(train)) if train.copies else None
            batches = [order[i:i + config.batch] for i in range(0, len(order), config.batch)]
            losses, correct = [], 0
            self.updates = self.rewired = 0
            # disable=None: no bars where stderr is no terminal (a log file, a pipe), whose
            # reader wants the one line per epoch, not thousands of carriage returns.
            bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{config.epochs}", leave=False,
                       disable=None if self.progress else True, unit="batch")
            for index in bar:
                loss, grads, right = self._batch(rule, index, choice, options)
                if self.baseline is None:
                    self.baseline = loss
                self._check(loss, len(losses))
                self._apply(grads)
                losses.append(loss)
                correct += right
                bar.set_postfix(loss=f"{loss:.3f}")
            self.epoch += 1
            self._check_ranks_agree()
            train_acc = correct / len(train) if train.kind == "classification" else -float(np.mean(losses))
            test_acc = score(self.net, self.split.test, self.world)
            self.metrics["train_loss"].append(float(np.mean(losses)))
            self.metrics["train_acc"].append(train_acc)
            self.metrics["test_acc"].append(test_acc)
            self.save()
            if self.writer:
                if self.epoch == config.epochs or time.perf_counter() - self.curves_drawn >= CURVES_EVERY:
                    figure = self.curves()
                    store.write_atomic(self.run_dir / CURVES, lambda png: figure.savefig(png, format="png", dpi=100),
                                       binary=True)
                    self.curves_drawn = time.perf_counter()
                log(self.summary())
        return self.metrics

    def _batch(self, rule, index, choice, options: dict):
        """(loss, gradients, correct count) of the global batch ``index``: this rank's slice
        of it, summed over the ranks."""
        config, train, world = self.config, self.split.train, self.world
        mine = share(index, world.rank, world.size)
        # A rank whose slice is empty (a last batch smaller than the job) runs one sample with
        # no weight, so that it joins every collective of the batch like the others.
        self.weight = len(mine) / len(index)
        chosen = mine if len(mine) else index[:1]
        started = time.perf_counter()
        try:
            x = time_major(train.inputs(chosen, choice))
            target = train.y[chosen] if train.kind == "classification" else time_major(train.y[chosen])
            result = self.gradient_pass(rule, self.net, x, self.net.xp.asarray(target), loss=self.loss,
                                        reg=config.reg, rate_target=config.rate_target, **options)
            if not self.activity_checked and self.writer:
                self._warn_if_inactive(result.spikes, x.shape[0], x.shape[1])
            right = 0
            if train.kind == "classification" and len(mine):
                right = int((_host(result.readout).argmax(axis=1) == train.y[mine]).sum())
        except Diverged:  # from an online update: the summed gradients, so every rank raises it
            raise
        except PeerFailed:  # another rank failed, and said so in a collective of this pass
            world.agree(None)
        except Exception as err:  # noqa: BLE001 - told to every rank, then raised on all
            if world.size == 1 and isinstance(err, FloatingPointError):  # a kernel's division by zero
                raise Diverged(f"{err} at epoch {self.epoch + 1}") from None
            if world.size == 1:
                raise
            try:  # join whichever collective the others are in, flag raised
                self.batch_sum(failed=True)
            except PeerFailed:
                pass
            world.agree(err)
        computed = time.perf_counter()
        self.timing["compute"] += computed - started
        self.timing["batches"] += 1
        if world.size == 1:
            if result.overflowed:  # the same verdict on every backend, however sound the loss looks
                raise Diverged(f"{result.overflowed} at epoch {self.epoch + 1}")
            return result.loss, result.grads, right
        # A state that overflowed on one rank makes the summed loss inf: every rank stops at _check.
        loss = math.inf if result.overflowed else result.loss
        try:
            grads, loss, right, _, _ = self.batch_sum(result.grads, self.weight, loss, right)
        except PeerFailed:
            world.agree(None)
        self.timing["communicate"] += time.perf_counter() - computed
        return loss, grads, right

    def _warn_if_inactive(self, spikes: list, steps: int, samples: int):
        """Warn, after the first batch, of each spiking layer that is silent or saturated:
        such a network learns nothing and would train at chance without a word."""
        self.activity_checked = True
        for count, layer in zip(spikes, self.net.layers):
            if not layer.model.output.atoms(Spike):  # a rate or tanh layer is never silent
                continue
            rate = count / (steps * samples * layer.n)
            where = f"layer {layer.index} ({layer.model.name}, {layer.n} neurons)"
            if count == 0:
                warnings.warn(f"{where} did not spike once in the first batch ({samples} samples of {steps} "
                              f"steps): a silent network does not learn; scale its input up or lower its "
                              f"threshold")
            elif rate > SATURATED:
                warnings.warn(f"{where} spiked in {100 * rate:.0f}% of its neuron-steps in the first batch: "
                              f"a saturated network does not learn; scale its input down or raise its threshold")

    def _apply_summed(self, grads):
        """An online update: this rank's gradients so far, summed over the ranks, applied."""
        if self.world.size > 1:
            grads = self.batch_sum(grads, self.weight)[0]
        self._apply(grads)

    def _rates_of_whole_batch(self, sums: list, batch: int):
        """The rate regulariser's spike counts and batch size, summed over the ranks (a rank
        whose slice is empty adds nothing)."""
        counted = self.weight > 0
        _, _, _, total, whole = self.batch_sum(rates=sums if counted else None, batch=batch if counted else 0)
        edges = np.cumsum([0] + [len(s) for s in sums])
        return [total[a:b].copy() for a, b in zip(edges[:-1], edges[1:])], whole

    def _check_ranks_agree(self):
        """Every rank must hold the same weights; one checksum per epoch says whether they do.
        Where the MPI library's sums differ in the last bit between ranks, rank 0's weights
        are given to all, and a warning says so."""
        if self.world.size == 1:
            return
        weights = self._network_state()  # the synapses too: a rank that rewired otherwise differs
        if self.world.same_everywhere(digest(weights)):
            return
        warnings.warn(f"the ranks' weights differed after epoch {self.epoch} (the MPI library's sums "
                      f"are not the same on every rank); rank 0's weights and optimiser state were "
                      f"given to all")
        xp = self.net.xp
        network, state = self.world.broadcast((weights, {k: _host(v) for k, v in self.optimizer.state().items()}))
        self._load_network_state(network, "rank 0's network")
        self.optimizer.load_state({k: xp.asarray(v) for k, v in state.items()})

    def _apply(self, grads):
        xp = self.net.xp
        if not all(bool(xp.isfinite(g).all()) for g in grads.values()):
            raise Diverged("a gradient is not finite")
        self.optimizer.step(self.net.params, grads)
        if self.rewiring:  # before constrain, which would clip a signed weight's crossing to 0
            self.rewired += self.rewiring(self.optimizer, (self.epoch, self.updates))
        self.updates += 1
        self.net.constrain()
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

    def curves(self):
        """The run's loss and accuracy per epoch (a Figure), titled with its model, task and rule;
        for classification, with the chance level."""
        from ..data import plots

        config, train = self.config, self.split.train
        chance = 1 / train.outputs if train.kind == "classification" else None
        title = f"{Path(config.model).name} on {config.task}, rule {config.rule}"
        return plots.training_curves(self.metrics, title, chance)

    def summary(self) -> str:
        m, kind = self.metrics, self.split.train.kind
        name = "acc" if kind == "classification" else "neg. MSE"
        fmt = (lambda v: f"{100 * v:.1f}%") if kind == "classification" else (lambda v: f"{v:.4f}")
        return (f"epoch {self.epoch}/{self.config.epochs}: train loss {m['train_loss'][-1]:.4f}, "
                f"train {name} {fmt(m['train_acc'][-1])}, test {name} {fmt(m['test_acc'][-1])}"
                + (f"; rewired {self.rewired} synapses" if self.rewiring else ""))


__all__ = ["Config", "Trainer", "Diverged", "score", "predict", "load_checkpoint", "asdict"]
