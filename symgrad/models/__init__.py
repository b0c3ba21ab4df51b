"""Built-in neuron models, each declared with the public API, and a loader for user files."""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import sympy as sp

from ..brian2 import EXTRA as BRIAN2_EXTRA
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
    """A built-in name, ``path.py`` or ``path.py:NAME``: the model it names. NAME is the
    variable holding the model or the model's own ``name=``. A model from a file knows it:
    ``source_file`` (its absolute path) and ``source`` (the text that was run)."""
    path, _, wanted = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    if not path.endswith(".py"):
        return builtin(spec)
    file = Path(path)
    if not file.is_file():
        raise ModelError(f"model file {file} does not exist")
    text = file.read_bytes()  # read once: what runs is what the model records
    module = _import_file(file, text)
    model = _choose({k: v for k, v in vars(module).items() if isinstance(v, NeuronModel)}, wanted, file)
    model.source_file, model.source = str(file.resolve()), importlib.util.decode_source(text)
    return model


def _choose(found: dict, wanted: str, file: Path) -> NeuronModel:
    """The model of ``found`` ({variable: model}) that ``wanted`` names by its variable or its
    name=, or the only one where nothing is wanted."""
    listing = ", ".join(f"{variable} (name={model.name!r})" for variable, model in found.items())
    distinct = list({id(model): model for model in found.values()}.values())
    if not wanted:
        if not distinct:
            raise ModelError(f"{file} defines no NeuronModel")
        if len(distinct) > 1:
            raise ModelError(f"{file} defines several models, as variable (name=): {listing}; "
                             f"choose one with {file}:NAME, NAME either of them")
        return distinct[0]
    named = [model for model in distinct if model.name == wanted]
    chosen = {id(model): model for model in named + ([found[wanted]] if wanted in found else [])}
    if len(chosen) == 1:
        return next(iter(chosen.values()))
    if chosen:
        raise ModelError(f"{file}:{wanted} is ambiguous: it names several models, as variable (name=): "
                         f"{listing}; choose by a name only one of them has")
    raise ModelError(f"{file} defines no NeuronModel named {wanted!r}, as a variable or by name="
                     + (f"; its models, as variable (name=): {listing}" if found else ""))


def identity(model: NeuronModel) -> dict:
    """The model as text, one entry per part: two models with the same identity compute the
    same network. The name and doc are left out: they change no number."""
    parts = {f"state {state.name}": repr(value) for state, value in model.states.items()}
    parts.update({f"param {param.name}": repr(value) for param, value in model.params.items()})
    parts.update({f"update {state.name}": sp.srepr(value) for state, value in model.update.items()})
    parts["output"] = sp.srepr(model.output)
    parts["inputs"] = "; ".join(f"{name} from {', '.join(sources) or 'nothing'}"
                                for name, sources in model.wiring.items())
    parts["signs"] = repr(model.signs)
    parts["learnable"] = ", ".join(map(str, model.learnable))
    parts["per_neuron"] = ", ".join(map(str, model.per_neuron))
    return parts


def differences(before: dict, now: dict) -> list[str]:
    """Each part in which identity ``now`` differs from ``before``, in words."""
    said = []
    for part in dict.fromkeys([*before, *now]):
        old, new = before.get(part), now.get(part)
        if old == new:
            continue
        if old is None or new is None:
            said.append(f"{part} {'added' if old is None else 'removed'}")
        elif len(old) + len(new) < 60:
            said.append(f"{part}: {old} -> {new}")
        else:
            said.append(f"{part} changed")
    return said


def _import_file(file: Path, text: bytes):
    name = f"symgrad_user_model_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    hooks = sys.excepthook, warnings.showwarning  # a library the file imports may take them over (Brian2 does)
    try:
        exec(compile(text, str(file), "exec"), vars(module))
    except ModelError as err:
        raise ModelError(f"{file}{_user_line(err, file)}: {err}") from None
    except SyntaxError as err:
        raise ModelError(f"{file}:{err.lineno}: syntax error: {err.msg}") from None
    except Exception as err:  # a user's file: report where, not a traceback
        line = _user_line(err, file)
        extra = f" ({BRIAN2_EXTRA})" if isinstance(err, ImportError) and err.name == "brian2" else ""
        raise ModelError(f"{file}{line}: {type(err).__name__}: {err}{extra}") from None
    finally:
        sys.excepthook, warnings.showwarning = hooks
    return module


def _user_line(err: BaseException, file: Path) -> str:
    tb, line = err.__traceback__, ""
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == file.resolve():
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line
