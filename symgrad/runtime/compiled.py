"""Finding, writing and importing the generated code of a model.

The generated file is a real module on disk, so tracebacks point into it. Built-in models
use the committed copy under ``generated/`` when it matches what the templates render now;
anything else (a user's model, or an installed package without the checkout) is rendered
into the cache folder, keyed by the model's name and the rendered text. The module runs from
the text rendered in memory, and Numba's compiled kernels are cached through a manifest of
what symgrad wrote (``numba_layer.cache_kernels``): nothing found in the cache runs unverified.
"""
from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path

from .. import render, store
from ..layouts import DENSE, Layout
from ..plan import unheard_input
from ..model import NeuronModel
from ..printers import DEFAULT
from . import backends

_LOADED: dict = {}
_GENERATED: dict[tuple, render.Generated] = {}


def _spec(model: NeuronModel) -> tuple:
    """What determines a model's generated code (its equations, names and parameter roles)."""
    return (model.name, tuple(model.states.items()), tuple(model.params.items()),
            tuple((s, model.update[s]) for s in model.states), model.output, model.inputs,
            model.learnable, model.per_neuron)


def generated(model: NeuronModel, dense: bool = False, layout: Layout = DENSE) -> render.Generated:
    """The model's generated code, from one analysis per model, layout and process."""
    key = (_spec(model), dense, layout.name)
    if key not in _GENERATED:
        _GENERATED[key] = render.generate_code(model, dense, layout=layout)
        for plan in _GENERATED[key].plans:
            unheard = unheard_input(plan.input, plan.eligible)
            if unheard:
                warnings.warn(f"model {model.name!r}: {unheard}", stacklevel=3)
    return _GENERATED[key]


def load(model: NeuronModel, backend: str = "numpy", dense: bool = False, layout: Layout = DENSE):
    """The generated code of ``model`` for ``backend`` (see ``layer_code.LayerCode``), from the
    backend's loader; ``backends.get(backend)`` says what it can do (``fused``, ``events``, ...).

    dense: every trace per synapse, ignoring the plan (to measure what the plan saves);
    layout: how the layer's synapses are laid out (every pair, or sparse rows).
    """
    code = generated(model, dense, layout)
    # Every layer takes the initial states and the element-wise functions from the reference module.
    return backends.get(backend).layer(code, module(code, DEFAULT))


def module(code: render.Generated, target: str, prepare=None):
    """The generated Python module of ``target``, imported once per text; ``prepare`` is called
    with it before its first use (Numba's loader points its kernels' cache at symgrad's)."""
    text = code.texts[target]
    key = f"{code.model.name}-{target}-{store.digest(text)}"
    if key not in _LOADED:
        loaded = execute(store.committed_or_cached(code.model.name, code.filename(target), text), text, key)
        if prepare:
            prepare(loaded)
        _LOADED[key] = loaded
    return _LOADED[key]


def execute(path: Path, text: str, key: str):
    """The module of the generated ``text``, run from that text, never from a .pyc beside
    ``path`` that anyone could have written: the file, which holds the same text, only gives
    tracebacks their lines and Numba its source stamp."""
    name = f"symgrad_generated_{key.replace('-', '_')}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    exec(compile(text, str(path), "exec"), vars(module))
    return module
