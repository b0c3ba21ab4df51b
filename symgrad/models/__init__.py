"""Built-in neuron models, each declared with the public API, and a loader for user files."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..model import ModelError, NeuronModel
from .bellec import alif, lif
from .compartments import coba_lif, two_compartment
from .extended import brf, cuba_lif, izhikevich, leaky_tanh, se_adlif, sigma_delta, snn_lif

BUILTIN = {
    factory.__name__: factory
    for factory in (lif, alif, cuba_lif, sigma_delta, izhikevich, se_adlif, brf, leaky_tanh, snn_lif,
                    coba_lif, two_compartment)
}


def builtin(name: str) -> NeuronModel:
    """A fresh instance of the built-in model ``name``."""
    if name not in BUILTIN:
        raise ModelError(f"unknown model {name!r}; built-in models: {', '.join(BUILTIN)}")
    return BUILTIN[name]()


def load(spec: str) -> NeuronModel:
    """A built-in name, ``path.py`` or ``path.py:name``: the model it names."""
    path, _, attr = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    if not path.endswith(".py"):
        return builtin(spec)
    file = Path(path)
    if not file.is_file():
        raise ModelError(f"model file {file} does not exist")
    module = _import_file(file)
    found = {k: v for k, v in vars(module).items() if isinstance(v, NeuronModel)}
    if attr:
        if attr not in found:
            raise ModelError(f"{file} defines no NeuronModel named {attr!r}"
                             + (f" (it has: {', '.join(found)})" if found else ""))
        return found[attr]
    if not found:
        raise ModelError(f"{file} defines no NeuronModel")
    if len(found) > 1:
        raise ModelError(f"{file} defines several models ({', '.join(found)}); "
                         f"choose one with {file}:NAME")
    return next(iter(found.values()))


def _import_file(file: Path):
    name = f"symgrad_user_model_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ModelError as err:
        raise ModelError(f"{file}{_user_line(err, file)}: {err}") from None
    except SyntaxError as err:
        raise ModelError(f"{file}:{err.lineno}: syntax error: {err.msg}") from None
    except Exception as err:  # a user's file: report where, not a traceback
        line = _user_line(err, file)
        raise ModelError(f"{file}{line}: {type(err).__name__}: {err}") from None
    return module


def _user_line(err: BaseException, file: Path) -> str:
    tb, line = err.__traceback__, ""
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == file.resolve():
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line
