"""Tasks for training: real speech (FSDD, SHD, SSC) and generated benchmarks.

``load_task(name, data_dir, **settings)`` is the single entry point; every task returns a
:class:`Split` of :class:`Dataset` objects with inputs shaped ``(samples, T, channels)``.
Problems with the user's data raise :class:`DataError`, whose message names the file or
folder at fault.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from .. import store
from .base import DataError, Dataset, Split
from .fsdd import load_fsdd, load_fsdd_all
from .plots import audio_to_spikes, raster
from .shd import load_shd
from .synthetic import evidence_accumulation, pattern_generation, randman


@dataclass(frozen=True)
class Task:
    """A task name's loader and what training and evaluation need to know about it.

    needs_data: whether it reads files from ``data_dir``.
    defaults: the training settings (fields of the trainer's Config) in which this task
    differs from Config's defaults; the command line overrides them.
    everything: for evaluation, a loader of every example in ``data_dir`` as both halves of
    a Split, given the run's task settings; None: a run is evaluated on the task's test set.
    """

    loader: Callable[..., Split]
    needs_data: bool
    summary: str
    defaults: dict = field(default_factory=dict)
    everything: Callable[..., Split] | None = None

    @property
    def settings(self) -> list[str]:
        """The keyword settings the loader accepts: its parameters but ``data_dir``, ``comm``,
        ``cache_dir`` (see :func:`refuse_folders`) and those a ``functools.partial`` fixes
        (shd's and ssc's ``name``)."""
        fixed = set(self.loader.keywords) if isinstance(self.loader, partial) else set()
        return [p for p in self._parameters if p not in {"data_dir", "comm", "cache_dir", *fixed}]

    @property
    def shares_work(self) -> bool:
        """Whether the ranks of an MPI job share the loading (the loader takes ``comm``)."""
        return "comm" in self._parameters

    @property
    def _parameters(self) -> list[str]:
        return list(inspect.signature(self.loader).parameters)

    @property
    def shows_progress(self) -> bool:
        """Whether the loader can draw a progress bar (it takes ``progress``)."""
        return "progress" in self.settings


def refuse_folders(name: str, settings: dict):
    """A task's settings come from the command line or a run folder's config.json: data, never
    a folder to write to. A crafted config.json naming a ``cache_dir`` made evaluate create
    folders and write anywhere (and an empty one wrote into the current folder), so one is
    refused; the cache folder is symgrad's own."""
    if "cache_dir" in settings:
        raise DataError(f"{name}: cache_dir is not a task setting (got {settings['cache_dir']!r}): symgrad "
                        f"keeps its caches in {store.cache_root()}; set SYMGRAD_CACHE to move them")


def _every_recording(data_dir, **settings) -> Split:
    """Every FSDD recording in ``data_dir``, whatever its index or speaker, converted with the
    run's settings of the front end (those load_fsdd_all takes). Scoring never reads
    augmented copies, so none are made."""
    refuse_folders("fsdd", settings)
    accepted = set(inspect.signature(load_fsdd_all).parameters) - {"data_dir", "augment", "cache_dir"}
    everything = load_fsdd_all(data_dir, **{k: v for k, v in settings.items() if k in accepted})
    return Split(everything, everything)


TASKS = {
    "fsdd": Task(load_fsdd, True, "Free Spoken Digit Dataset, WAVs converted to spikes (10 classes)",
                 defaults=dict(epochs=12, hidden=128), everything=_every_recording),
    "shd": Task(partial(load_shd, name="shd"), True, "Spiking Heidelberg Digits, HDF5 files (20 classes)",
                defaults=dict(epochs=30, hidden=256, task_settings={"pool": 5})),
    "ssc": Task(partial(load_shd, name="ssc"), True, "Spiking Speech Commands, HDF5 files (35 classes)",
                defaults=dict(epochs=20, hidden=256, task_settings={"pool": 5})),
    "pattern": Task(pattern_generation, False, "e-prop pattern generation (regression)",
                    defaults=dict(epochs=40, hidden=64, kappa=0.0, recurrent=True, lr=0.003)),
    "evidence": Task(evidence_accumulation, False, "e-prop evidence accumulation (2 classes)",
                     defaults=dict(epochs=20, hidden=64, loss="ce_last")),
    "randman": Task(randman, False, "random manifolds of Zenke & Vogels (10 classes)",
                    defaults=dict(epochs=20, hidden=128)),
}


def load_task(name: str, data_dir=None, comm=None, **settings) -> Split:
    """Load task ``name`` (a key of :data:`TASKS`).

    ``data_dir`` is required by the tasks that read files and ignored by generated ones.
    ``settings`` go to the task's loader; unknown ones raise DataError listing the valid.
    ``comm``: the MPI job whose ranks share the loading, where the task can share it.
    """
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    task = TASKS[name]
    refuse_folders(name, settings)
    known = task.settings
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise DataError(f"task {name!r}: unknown setting(s) {', '.join(unknown)}; "
                        f"known: {', '.join(known)}")
    if comm is not None and task.shares_work:
        settings["comm"] = comm
    if task.needs_data:
        if data_dir is None:
            raise DataError(f"task {name!r} reads files: give the folder holding its data")
        return task.loader(data_dir, **settings)
    return task.loader(**settings)


__all__ = [
    "DataError", "Dataset", "Split", "Task", "TASKS", "load_task",
    "load_fsdd", "load_fsdd_all", "load_shd",
    "pattern_generation", "evidence_accumulation", "randman",
    "raster", "audio_to_spikes",
]
