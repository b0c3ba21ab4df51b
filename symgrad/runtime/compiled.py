"""Finding, writing and importing the generated code of a model.

The generated file is a real module on disk, so tracebacks point into it. Built-in models
use the committed copy under ``generated/`` when it matches what the templates render now;
anything else (a user's model, or an installed package without the checkout) is rendered
into a cache folder, keyed by the model's name and the rendered text.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from .. import render
from ..model import NeuronModel

_LOADED: dict[str, object] = {}


def repository_generated() -> Path:
    return Path(__file__).resolve().parents[2] / "generated"


def cache_dir() -> Path:
    root = os.environ.get("SYMGRAD_CACHE") or Path.home() / ".cache" / "symgrad"
    return Path(root) / "generated"


def array_module(backend: str):
    if backend in ("numpy", "cuda-host"):
        import numpy

        return numpy
    if backend == "cupy":
        import cupy

        return cupy
    raise ValueError(f"unknown backend {backend!r}; choose numpy, cuda-host or cupy")


def load(model: NeuronModel, backend: str = "numpy", dense: bool = False):
    """The generated module of ``model`` for ``backend``, imported (once per text).

    dense: every trace per synapse, ignoring the plan (to measure what the plan saves).
    """
    text = _rendered(_spec(model), model, dense)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    key = f"{model.name}-{digest}"
    if key not in _LOADED:
        _LOADED[key] = _import(_file_for(model, text, digest), key)
    module = _LOADED[key]
    if backend == "numpy":
        return module
    from . import cuda

    return cuda.load(model, backend, module, dense=dense)


_RENDERED: dict[tuple, str] = {}


def _spec(model: NeuronModel) -> tuple:
    """What determines a model's generated code (its equations, names and parameter roles)."""
    return (model.name, tuple(model.states.items()), tuple(model.params.items()),
            tuple((s, model.update[s]) for s in model.states), model.output, model.input,
            model.learnable, model.per_neuron)


def _rendered(spec: tuple, model: NeuronModel, dense: bool) -> str:
    """Rendering runs the symbolic analysis: do it once per model and process."""
    key = (spec, dense)
    if key not in _RENDERED:
        _RENDERED[key] = render.render(model, "numpy", dense=dense)
    return _RENDERED[key]


def _file_for(model: NeuronModel, text: str, digest: str) -> Path:
    _, filename = render.BACKENDS["numpy"]
    committed = repository_generated() / model.name / filename
    if committed.is_file() and committed.read_text() == text:
        return committed
    path = cache_dir() / f"{model.name}-{digest}" / filename
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def _import(path: Path, key: str):
    name = f"symgrad_generated_{key.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
