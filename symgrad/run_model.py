"""Which model a run is of: a model named on the command line or by a run folder, and the
record a run keeps of it to know it again.

A spec is a built-in name, ``FILE.py``, ``FILE.py:NAME`` or ``GRAPH.nir``; a run's config.json
keeps it with an absolute path. A model file is Python that runs when it is loaded, so a file
named only by a run folder (which anyone may have sent) is never loaded: the user names it.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from . import __version__
from .errors import UserError


def neuron_model(spec: str):
    """The neuron model ``spec`` names (a NIR graph is a whole network, refused here)."""
    from . import models

    if is_graph(spec):
        raise UserError(f"{spec} is a NIR graph: a whole network, not one neuron model "
                        "(train, evaluate and inspect take it)")
    return models.load(spec)


def is_graph(spec: str) -> bool:
    return spec.lower().endswith(".nir")


def load(spec: str):
    """What a network is built from: a neuron model (NeuronModel), or a NIR graph (nir.NIRGraph)."""
    if is_graph(spec):
        from . import nir

        return nir.read(spec)
    return neuron_model(spec)


def spec_of(spec: str) -> str:
    """A model as the run's config keeps it: a built-in name, or a file as an absolute path,
    so the run resumes from any working directory."""
    path, colon, name = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    return str(Path(path).resolve()) + colon + name if path.endswith(".py") or is_graph(path) else spec


def of_run(config, run_dir: Path, given: str | None):
    """(spec, model or graph) of the run in ``run_dir``: ``given`` by the user (--model, or
    train's MODEL), else the one its config.json names. A model file is Python that runs when
    loaded, so symgrad loads one only where the user named it: never because a run folder
    (which anyone may have sent) says so."""
    from .runtime.trainer import CONFIG

    spec = spec_of(given or config.model)
    path = spec.rpartition(":")[0] if ".py:" in spec else spec
    if not given and (path.endswith(".py") or is_graph(path)):
        kind = "NIR graph" if is_graph(path) else "model file"
        if not Path(path).is_file():
            raise UserError(f"{run_dir / CONFIG} names the {kind} {path}, which is not there now: "
                            f"pass --model FILE, naming where it is")
        if kind == "model file":
            raise UserError(f"{run_dir / CONFIG} names the model file {path}; symgrad runs a model file "
                            f"only when you name it: pass --model {spec}")
    return spec, load(spec)


def record(spec: str, source) -> dict:
    """What config.json keeps of a run's model, to know it again: a neuron model's equations
    (models.identity) and, from a file, the source text that ran; a NIR graph's file hash.
    The source is kept for the user to read or restore, never to be run from the folder."""
    from . import models

    record = {"symgrad": __version__}
    if is_graph(spec):
        record["sha256"] = hashlib.sha256(Path(spec).read_bytes()).hexdigest()
    else:
        record["equations"] = models.identity(source)
        if getattr(source, "source", None) is not None:
            record["source"] = source.source
    return record


def changes(config, spec: str, source, run_dir: Path, strict: bool) -> str | None:
    """How ``spec`` (loaded as ``source``) differs from the model the run in ``run_dir``
    recorded, in words; None if it is that model. A run written before runs recorded their
    model has only its place: ``strict`` compares that."""
    from . import models
    from .runtime.trainer import CONFIG
    recorded, now = config.model_record, record(spec, source)
    elsewhere = f" (the run has {config.model})" if spec != spec_of(config.model) else ""
    if recorded is None:
        warnings.warn(f"{run_dir / CONFIG} records where its model was, not what it was (an older symgrad "
                      f"wrote it): nothing can check that {spec} is the model it trained")
        return f"model {spec}{elsewhere}" if strict and elsewhere else None
    if "equations" in recorded and "equations" in now:
        changed = models.differences(recorded["equations"], now["equations"])
    elif "sha256" in recorded and "sha256" in now:
        changed = [] if recorded["sha256"] == now["sha256"] else ["the graph file's contents"]
    else:
        kinds = ("a NIR graph", "a neuron model")
        changed = [f"{kinds['sha256' not in recorded]} -> {kinds['sha256' not in now]}"]
    if not changed:
        return None
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    if elsewhere:  # another model than the run's: naming the run's is the remedy
        return f"model {spec}{elsewhere}, not the one run {run_dir} trained: {shown}"
    if "source" in recorded:
        remedy = f"its source then is kept in {run_dir / CONFIG}, model_record.source: restore it and pass --model FILE"
    else:
        remedy = (f"symgrad {recorded.get('symgrad', '?')} wrote the run: use that version, or pass --model FILE "
                  f"naming the run's model")
    return f"model {spec}, changed since run {run_dir} trained: {shown} ({remedy})"


def check(config, spec: str, source, run_dir: Path, strict: bool):
    """Refuse a model that is not the one the run in ``run_dir`` was trained with. Only where
    a run is just evaluated (not ``strict``) and its model is a built-in, which the user
    cannot restore, does a warning say so instead."""
    from . import models

    said = changes(config, spec, source, run_dir, strict)
    if said and not strict and spec in models.BUILTIN and spec == config.model:
        warnings.warn(f"{said}; these results are today's {spec} with the run's weights")
    elif said:
        raise UserError(said)
