"""Tasks for training: real speech (FSDD, SHD, SSC) and generated benchmarks.

``load_task(name, data_dir, **settings)`` is the single entry point; every task returns a
:class:`Split` of :class:`Dataset` objects with inputs shaped ``(samples, T, channels)``.
Problems with the user's data raise :class:`DataError`, whose message names the file or
folder at fault.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from .base import DataError, Dataset, Split
from .fsdd import load_fsdd, load_fsdd_all
from .plots import audio_to_spikes, raster
from .shd import load_shd
from .synthetic import evidence_accumulation, pattern_generation, randman


@dataclass(frozen=True)
class Task:
    """A task name's loader; ``needs_data`` says whether it reads files from ``data_dir``."""

    loader: Callable[..., Split]
    needs_data: bool
    summary: str


def _shd(data_dir, **settings):
    return load_shd(data_dir, name="shd", **settings)


def _ssc(data_dir, **settings):
    return load_shd(data_dir, name="ssc", **settings)


TASKS = {
    "fsdd": Task(load_fsdd, True, "Free Spoken Digit Dataset, WAVs converted to spikes (10 classes)"),
    "shd": Task(_shd, True, "Spiking Heidelberg Digits, HDF5 files (20 classes)"),
    "ssc": Task(_ssc, True, "Spiking Speech Commands, HDF5 files (35 classes)"),
    "pattern": Task(pattern_generation, False, "e-prop pattern generation (regression)"),
    "evidence": Task(evidence_accumulation, False, "e-prop evidence accumulation (2 classes)"),
    "randman": Task(randman, False, "random manifolds of Zenke & Vogels (10 classes)"),
}


def _settings_of(task: Task, name: str) -> list[str]:
    """The keyword settings a task accepts (for shd/ssc, those of load_shd but ``name``)."""
    loader = load_shd if name in ("shd", "ssc") else task.loader
    skip = {"data_dir", "name"} if loader is load_shd else {"data_dir"}
    return [p for p in inspect.signature(loader).parameters if p not in skip]


def load_task(name: str, data_dir=None, **settings) -> Split:
    """Load task ``name`` (a key of :data:`TASKS`).

    ``data_dir`` is required by the tasks that read files and ignored by generated ones.
    ``settings`` go to the task's loader; unknown ones raise DataError listing the valid.
    """
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    task = TASKS[name]
    known = _settings_of(task, name)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise DataError(f"task {name!r}: unknown setting(s) {', '.join(unknown)}; "
                        f"known: {', '.join(known)}")
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
