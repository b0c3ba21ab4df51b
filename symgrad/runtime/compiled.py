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
from ..plan import unheard_input
from ..model import NeuronModel
from . import backends

_LOADED: dict = {}
_GENERATED: dict[tuple, render.Generated] = {}


def _spec(model: NeuronModel) -> tuple:
    """What determines a model's generated code (its equations, names and parameter roles)."""
    return (model.name, tuple(model.states.items()), tuple(model.params.items()),
            tuple((s, model.update[s]) for s in model.states), model.output, model.inputs,
            model.learnable, model.per_neuron)


def generated(model: NeuronModel, dense: bool = False) -> render.Generated:
    """The model's generated code, from one analysis per model and process."""
    key = (_spec(model), dense)
    if key not in _GENERATED:
        _GENERATED[key] = render.generate_code(model, dense)
        for plan in _GENERATED[key].plans:
            unheard = unheard_input(plan.input, plan.eligible)
            if unheard:
                warnings.warn(f"model {model.name!r}: {unheard}", stacklevel=3)
    return _GENERATED[key]


def load(model: NeuronModel, backend: str = "numpy", dense: bool = False):
    """The generated code of ``model`` for ``backend`` (see ``layer_code.LayerCode``).

    dense: every trace per synapse, ignoring the plan (to measure what the plan saves).
    """
    kind = backends.get(backend)
    code = generated(model, dense)
    module = _module(code, "numpy")
    if kind.source == "numpy":
        return module
    if kind.source == "numba":
        return _numba_layer(code, module)
    from . import cuda

    return cuda.load(code, backend, module)


def _module(code: render.Generated, backend: str):
    """The generated Python module of ``backend`` ("numpy" or "numba"), imported once per text."""
    text = code.texts[backend]
    key = f"{code.model.name}-{backend}-{store.digest(text)}"
    if key not in _LOADED:
        module = _execute(store.committed_or_cached(code.model.name, code.filename(backend), text), text, key)
        if backend == "numba":
            from .numba_layer import cache_kernels

            cache_kernels(module, store.code_name(code.model.name, text))
        _LOADED[key] = module
    return _LOADED[key]


def _numba_layer(code: render.Generated, numpy_module):
    from .kernel_layer import KernelLayer
    from .numba_layer import NumbaKernels

    # As for the CUDA layers: the NumPy module's text holds the initial states the layer takes.
    key = ("numba-layer", code.texts["numba"], code.texts["numpy"],
           tuple(p.name for p in code.model.neuron_params))
    if key not in _LOADED:
        module = _module(code, "numba")
        kernels = NumbaKernels(Path(module.__file__), {k.name: k for k in code.kernels}, module, code.model.name)
        _LOADED[key] = KernelLayer(code, numpy_module, kernels)
    return _LOADED[key]


def _execute(path: Path, text: str, key: str):
    """The module of the generated ``text``, run from that text, never from a .pyc beside
    ``path`` that anyone could have written: the file, which holds the same text, only gives
    tracebacks their lines and Numba its source stamp."""
    name = f"symgrad_generated_{key.replace('-', '_')}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    exec(compile(text, str(path), "exec"), vars(module))
    return module
