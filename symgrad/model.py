"""Declaring a neuron model: states, parameters, a discrete-time update map and an output.

Inside ``update`` every state symbol, and every expression built from states, stands for
the previous step's value; ``output`` is evaluated on the new state. So in

    update = {v: alpha * v + I - v_th * stop_gradient(z)}

``z`` is z_{t-1} while ``output=z`` gives z_t.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy.core.function import Application

from . import surrogates
from .names import user_name_problem
from .printing import SUPPORTED
from .surrogates import Pseudo, Spike


class ModelError(ValueError):
    """A malformed model. The message names the offending symbol or expression."""


class stop_gradient(sp.Function):
    """Counts in the forward pass; contributes nothing to any derivative."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.S.Zero

    def _latex(self, printer):
        return rf"\operatorname{{sg}}\left({printer._print(self.args[0])}\right)"


def spike(x, surrogate: surrogates.Surrogate | None = None) -> sp.Expr:
    """Heaviside step of ``x`` whose derivative is ``surrogate`` (default: triangle(0.3, 1))."""
    if surrogate is None:
        return surrogates.triangle()(x)
    if not isinstance(surrogate, surrogates.Surrogate):
        raise ModelError(f"spike({x}): surrogate must come from symgrad.surrogates, got {surrogate!r}")
    return surrogate(x)


# Functions whose derivative is undefined or useless for learning. Inside stop_gradient()
# they are fine; anywhere else they are rejected, in a spike's argument too, since the
# surrogate derivative of spike(x) is chained with the derivative of x.
NON_DIFFERENTIABLE = (
    sp.Heaviside, sp.sign, sp.floor, sp.ceiling, sp.frac, sp.Mod, sp.DiracDelta,
    sp.Piecewise, sp.Max, sp.Min, sp.Abs,
)


@dataclass
class NeuronModel:
    """A neuron model in discrete time.

    name:       identifier, used for generated file names.
    states:     {state symbol: initial value}, in declaration order.
    params:     {parameter symbol: default value}.
    update:     {state symbol: new value as an expression of the previous state, the input
                and the parameters}.
    output:     expression of the new state, usually a ``spike``.
    input:      the synaptic input symbol; by default the free symbol named ``I``.
    learnable:  parameters trained per neuron (each gets a per-neuron eligibility trace).
    per_neuron: parameters that hold one value per neuron but are not trained.
    inputs:     several synaptic inputs, e.g. ``(I_e, I_i)``: each projection of a network
                drives one of them, and each has its own eligibility traces. Without it the
                model has the one input ``input``.
    projections: the default wiring, {input name: sources}, each source "input" (the layer
                below, or the data) or "recurrent"; by default every input hears both.
    signs:      {input name: +1 or -1}: the weights of every projection to that input keep this
                sign through training (Dale's law); by default none is constrained.
    source_file: the file the model was loaded from (its absolute path), set by what read it
                (symgrad.models.load, or symgrad generate for a NIR graph's layers); None for a
                built-in or a model built in Python.
    origin:     for a model derived from differential equations (``from_odes``), what it was
                derived from (a ``symgrad.odes.Origin``, shown by ``symgrad inspect``); else None.
    """

    name: str
    states: dict
    params: dict
    update: dict
    output: sp.Expr
    input: sp.Symbol | None = None
    learnable: tuple = ()
    per_neuron: tuple = ()
    doc: str = field(default="", repr=False)
    inputs: tuple = ()
    projections: dict | None = None
    signs: dict | None = None
    source_file: str | None = field(default=None, repr=False, compare=False)
    origin: object = field(default=None, repr=False, compare=False)

    @staticmethod
    def from_odes(**declaration) -> "NeuronModel":
        """The model whose update integrates differential equations: see symgrad.odes.from_odes."""
        from .odes import from_odes

        return from_odes(**declaration)

    def __post_init__(self):
        self.states = dict(self.states)
        self.params = dict(self.params)
        self.update = {k: sp.sympify(e) for k, e in dict(self.update).items()}
        self.output = sp.sympify(self.output)
        self.learnable = tuple(self.learnable)
        self.per_neuron = tuple(self.per_neuron)
        self.inputs = tuple(self.inputs)
        _validate(self)
        self.states = {s: float(v) for s, v in self.states.items()}
        self.params = {p: float(v) for p, v in self.params.items()}

    # -- convenient views ----------------------------------------------------------------
    @property
    def state_symbols(self) -> list[sp.Symbol]:
        return list(self.states)

    @property
    def param_symbols(self) -> list[sp.Symbol]:
        return list(self.params)

    @property
    def state_names(self) -> list[str]:
        return [s.name for s in self.states]

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def wiring(self) -> dict:
        """{input name: its sources}: the declared ``projections``, by default every input hearing
        the input and the recurrent spikes (an input left out of ``projections`` hears nothing)."""
        if self.projections is None:
            return dict.fromkeys(self.input_names, SOURCES)
        return {name: sources_of(self.projections.get(name, ())) for name in self.input_names}

    @property
    def neuron_params(self) -> tuple:
        """Parameters with one value per neuron: the learnable ones and ``per_neuron``."""
        return tuple(dict.fromkeys(self.learnable + self.per_neuron))

    # -- equations with their time indices, as the generated code's comments show them ---------
    def previous(self, expr: sp.Expr) -> str:
        """``expr`` of the update's arguments, written with time indices: v_{t-1}, I_t."""
        return _timed(expr, {s: f"{s.name}_{{t-1}}" for s in self.states} | {i: f"{i.name}_t" for i in self.inputs})

    def current(self, expr: sp.Expr) -> str:
        """``expr`` of the new state, written with time indices: v_t."""
        return _timed(expr, {s: f"{s.name}_t" for s in self.states})

    def equations(self) -> list[str]:
        """``v_t = alpha*v_{t-1} + I_t``, one per state, then ``z_t = ...``."""
        lines = [f"{s.name}_t = {self.previous(self.update[s])}" for s in self.states]
        return lines + [f"z_t = {self.current(self.output)}"]

    def with_params(self, **values) -> "NeuronModel":
        """A copy with some parameter defaults replaced, by name."""
        unknown = set(values) - set(self.param_names)
        if unknown:
            raise ModelError(f"model {self.name!r} has no parameter {sorted(unknown)[0]!r}")
        params = {p: values.get(p.name, v) for p, v in self.params.items()}
        return NeuronModel(self.name, self.states, params, self.update, self.output,
                           self.input, self.learnable, self.per_neuron, self.doc,
                           self.inputs, self.projections, self.signs, origin=self.origin)


def _timed(expr: sp.Expr, names: dict) -> str:
    return sp.sstr(expr.xreplace({s: sp.Symbol(n) for s, n in names.items()}))


def _validate(model: NeuronModel) -> None:
    if not isinstance(model.name, str) or not model.name.isidentifier():
        raise ModelError(f"model name {model.name!r} must be a Python identifier")
    for kind, table in (("state", model.states), ("parameter", model.params)):
        for sym, value in table.items():
            if not isinstance(sym, sp.Symbol):
                raise ModelError(f"{kind} {sym!r} of model {model.name!r} is not a SymPy symbol")
            if isinstance(value, bool) or not _is_number(value):
                raise ModelError(f"{kind} {sym.name} has non-numeric value {value!r}")
    if not model.states:
        raise ModelError(f"model {model.name!r} declares no states")

    declared = list(model.states) + list(model.params)
    names = [s.name for s in declared]
    for name in names:
        if names.count(name) > 1:
            raise ModelError(f"duplicate name {name!r}: used by more than one state or parameter")

    for target in model.update:
        if target not in model.states:
            raise ModelError(f"update for {target}, which is not a declared state")
    for state in model.states:
        if state not in model.update:
            raise ModelError(f"state {state.name} has no update")

    model.inputs = _input_symbols(model, set(declared))
    model.input = model.inputs[0] if len(model.inputs) == 1 else None
    for symbol in model.inputs:
        if symbol.name in names:
            raise ModelError(f"duplicate name {symbol.name!r}: the input symbol is also a state or parameter")
    for name in names + model.input_names:
        _check_identifier(name)

    known = set(declared) | set(model.inputs)
    known_names = {s.name: s for s in known}
    where = [(f"update of {s.name}", e) for s, e in model.update.items()] + [("output", model.output)]
    for place, expr in where:
        for sym in sorted(expr.free_symbols, key=str):
            if sym not in known:
                if sym.name in known_names:
                    raise ModelError(f"duplicate name {sym.name!r} in {place}: a different symbol "
                                     f"with the same name as a declared one (check its assumptions)")
                raise ModelError(f"undeclared symbol {sym.name!r} in {place}: {expr}")
        _reject_unsupported(expr, place)
        _reject_non_differentiable(expr, place)
    for symbol in model.inputs:
        if symbol in model.output.free_symbols:
            raise ModelError(f"output depends on the input {symbol}: it must be a function of the state")
    _check_wiring(model)
    if not model.output.free_symbols & set(model.states):
        raise ModelError(f"output {model.output} depends on no state: it must be a function of the state")

    for group, syms in (("learnable", model.learnable), ("per_neuron", model.per_neuron)):
        for p in syms:
            if p not in model.params:
                raise ModelError(f"{group} entry {p} is not a declared parameter")


def _check_identifier(name: str) -> None:
    """Every backend declares a variable of this name (symgrad.names says which names may be)."""
    problem = user_name_problem(name)
    if problem:
        raise ModelError(problem)


def _input_symbols(model: NeuronModel, declared: set) -> tuple:
    if model.inputs:
        if model.input is not None and model.inputs != (model.input,):
            raise ModelError(f"model {model.name!r} gives both input={model.input} and inputs="
                             f"{model.inputs}: declare the inputs once")
        for symbol in model.inputs:
            if not isinstance(symbol, sp.Symbol):
                raise ModelError(f"input {symbol!r} of model {model.name!r} is not a SymPy symbol")
        names = [s.name for s in model.inputs]
        for name in names:
            if names.count(name) > 1:
                raise ModelError(f"input {name!r} of model {model.name!r} is declared twice")
        used = set().union(*(e.free_symbols for e in model.update.values()))
        for symbol in model.inputs:
            if symbol not in used and symbol.name not in {s.name for s in declared}:
                raise ModelError(f"declared input {symbol.name!r} of model {model.name!r} is used by no update")
        return model.inputs
    if model.input is not None:
        if not isinstance(model.input, sp.Symbol):
            raise ModelError(f"input {model.input!r} is not a SymPy symbol")
        return (model.input,)
    free = set().union(*(e.free_symbols for e in model.update.values()))
    named = [s for s in free - declared if s.name == "I"]
    if named:
        return (named[0],)
    return (sp.Symbol("I"),)


SOURCES = ("input", "recurrent")  # what a projection to a synaptic input carries


def sources_of(given) -> tuple:
    """A projection's sources as a tuple (one may be given as a plain string)."""
    return (given,) if isinstance(given, str) else tuple(given)


def wiring_problem(model: NeuronModel, projections, what: str = "projection") -> str | None:
    """What is wrong with ``projections`` ({input name: sources}) for ``model``, in one line; None
    when nothing is. The model's own defaults and a network's wiring are checked alike."""
    inputs = model.input_names
    if not isinstance(projections, dict):
        return f"{what}s of model {model.name!r} must map input names to sources, not {projections!r}"
    for name, sources in projections.items():
        if name not in inputs:
            return f"{what} to undeclared input {name!r} of model {model.name!r} (its inputs: {', '.join(inputs)})"
        for source in sources_of(sources) if what == "projection" else ():
            if source not in SOURCES:
                return (f"projection to {name!r} of model {model.name!r} from {source!r}: "
                        f"a source is {' or '.join(map(repr, SOURCES))}")
    return None


def _check_wiring(model: NeuronModel) -> None:
    """The default projections and signs name declared inputs and known sources."""
    for what, table in (("projection", model.projections), ("sign", model.signs)):
        problem = wiring_problem(model, table, what) if table is not None else None
        if problem:
            raise ModelError(problem)
    for name, sign in (model.signs or {}).items():
        if sign not in (1, -1):
            raise ModelError(f"sign of input {name!r} of model {model.name!r} is {sign!r}: +1 or -1")


_LOGICAL = (sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction,
            sp.logic.boolalg.BooleanAtom)


def _reject_unsupported(expr: sp.Expr, place: str) -> None:
    """Every function called is one the printers write for every backend (printing.SUPPORTED)."""
    for node in sp.preorder_traversal(expr):
        if isinstance(node, Application) and not isinstance(node, (*SUPPORTED, Spike, Pseudo, stop_gradient)):
            raise ModelError(f"unsupported function {node.func} in {place}: {node}; a model may call "
                             f"{_supported()}")


def _supported() -> str:
    steps = [f.__name__ for f in SUPPORTED if issubclass(f, NON_DIFFERENTIABLE + _LOGICAL)]
    smooth = [f.__name__ for f in SUPPORTED if f.__name__ not in steps]
    codegen = [f.__name__ for f in SUPPORTED if f.__module__.startswith("sympy.codegen")]
    return (f"{', '.join(smooth)} ({', '.join(codegen)} from sympy.codegen.cfunctions) and, "
            f"inside stop_gradient(), {', '.join(steps)}")


def _reject_non_differentiable(expr: sp.Expr, place: str, in_spike: bool = False) -> None:
    if isinstance(expr, stop_gradient):
        return
    if isinstance(expr, NON_DIFFERENTIABLE) or isinstance(expr, _LOGICAL):
        if in_spike:
            raise ModelError(f"non-differentiable {expr} inside a spike in {place}: the spike's surrogate "
                             "derivative passes through its argument; wrap it in stop_gradient()")
        raise ModelError(f"non-differentiable {expr} in {place}: wrap it in spike() or stop_gradient()")
    if isinstance(expr, Spike):  # its surrogate's own parameters get no derivative
        return _reject_non_differentiable(expr.args[0], place, in_spike=True)
    if isinstance(expr, Pseudo):
        raise ModelError(f"surrogate derivative {expr} in {place}: use spike() instead")
    for arg in expr.args:
        _reject_non_differentiable(arg, place, in_spike)


def _is_number(value) -> bool:
    try:
        number = sp.sympify(value)
    except (sp.SympifyError, TypeError):
        return False
    return bool(number.is_number and number.is_real)
