"""NIR's neuron nodes as symgrad models: each node's ODE in SymPy, discretised by forward Euler.

NIR defines its neurons in continuous time (Pedersen et al. 2024). Each node's ODE goes to
symgrad.odes.from_odes, which derives the map. symgrad follows the convention of the NIR
reference frameworks (snnTorch's import and export): forward Euler with step dt, the synaptic
current updated before the membrane reads it (from_odes's "sequential_euler"), and the membrane
set to v_reset after a spike (Brian2's order, as from_odes has it). The state symgrad stores is
the membrane before the reset; the reset is applied at the start of the next step, from the
spike that state produced:

    v_r = v_{t-1} + sg(z_{t-1}) (v_reset - v_{t-1})                      (the reset)
    LIF:      v_t = v_r + dt/tau (v_leak - v_r + r I_t)
    CubaLIF:  i_t = i_{t-1} + dt/tau_syn (w_in I_t - i_{t-1});  v_t = v_r + dt/tau_mem (v_leak - v_r + r i_t)
    IF:       v_t = v_r + dt r I_t
    z_t = H(v_t - v_threshold)

LI, CubaLI and I are the same without a threshold; their output is the membrane v_t. The
spikes and the voltages after reset (where z_t: v_reset, else v_t) are those of the frameworks.
The surrogate is the e-prop triangle over the distance from reset to threshold.

A parameter whose values differ across a node's neurons is per-neuron in the model; a uniform
one is a number. dt is a parameter, so one model serves every time step.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .. import surrogates
from ..model import NeuronModel, stop_gradient
from ..odes import from_odes

DT = 1e-4  # snnTorch's step, with which its NIR graphs are written (tau = dt / (1 - beta))

# The defaults give the discrete LIF v_t = 0.9 v + I_t (tau = 10 dt, r = tau / dt).
DEFAULTS = {"dt": DT, "tau": 1e-3, "tau_mem": 1e-3, "tau_syn": 5e-4, "r": 10.0, "v_leak": 0.0,
            "v_threshold": 1.0, "v_reset": 0.0, "w_in": 5.0}


@dataclass(frozen=True)
class Kind:
    """One NIR neuron node type: its fields, and whether it has a synaptic current and spikes."""

    name: str  # the NIR class name
    fields: tuple
    leaky: bool
    current: bool  # a synaptic-current state (Cuba*)
    spiking: bool

    @property
    def model_name(self) -> str:
        return "nir_" + self.name.lower()


KINDS = {kind.name: kind for kind in (
    Kind("LIF", ("tau", "r", "v_leak", "v_threshold", "v_reset"), True, False, True),
    Kind("CubaLIF", ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"), True, True, True),
    Kind("IF", ("r", "v_threshold", "v_reset"), False, False, True),
    Kind("LI", ("tau", "r", "v_leak"), True, False, False),
    Kind("CubaLI", ("tau_syn", "tau_mem", "r", "v_leak", "w_in"), True, True, False),
    Kind("I", ("r",), False, False, False),
)}


def neuron(kind: str, per_neuron=(), learnable=(), detach_reset: bool = False,
           method: str = "sequential_euler") -> NeuronModel:
    """The model of NIR node type ``kind`` ("LIF", "CubaLIF", ...), its ODE integrated by
    symgrad.odes.from_odes; the fields named in ``per_neuron`` hold one value per neuron, those
    in ``learnable`` are trained per neuron too.

    method: "sequential_euler" (the default) is forward Euler in the frameworks' order, the
    synaptic current advanced before the membrane reads it; for the one-state kinds it is
    plain forward Euler. Any other of symgrad.odes.METHODS, such as "exact", names the model
    ``nir_<kind>_<method>``; only the default is exported back to NIR.

    detach_reset: the whole reset inside stop_gradient, as in e-prop's LIF (Bellec et al. 2020),
    instead of only the spike that triggers it. The forward map is the same; the gradient no
    longer sees a spike erase the membrane's past, so D[v,v] is constant and, with one time
    constant per layer, every trace is a presynaptic filter (named ``nir_<kind>_detached``)."""
    node = KINDS[kind]
    unknown = (set(per_neuron) | set(learnable)) - set(node.fields)
    if unknown:
        raise ValueError(f"NIR {kind} has no field {sorted(unknown)[0]!r}")
    sym = {name: sp.Symbol(name) for name in ("dt",) + node.fields}
    v, I = sp.symbols("v I")
    states, odes, drive = {v: 0.0}, {}, I
    if node.current:
        drive = i_syn = sp.Symbol("i_syn")
        states[i_syn] = 0.0
        odes[i_syn] = (sym["w_in"] * I - i_syn) / sym["tau_syn"]  # first: the membrane reads it advanced
    if node.leaky:
        odes[v] = (sym["v_leak"] - v + sym["r"] * drive) / (sym["tau_mem"] if node.current else sym["tau"])
    else:
        odes[v] = sym["r"] * drive
    spiking = {}
    if node.spiking:
        v_reset = sym["v_reset"]
        spiking = dict(
            threshold=v > sym["v_threshold"],
            # detached: the reset's change to v is a constant to the gradient
            reset={v: v + stop_gradient(v_reset - v) if detach_reset else v_reset},
            surrogate=surrogates.triangle(gamma=0.3, width=sym["v_threshold"] - v_reset))
    suffix = ("_detached" if detach_reset and node.spiking else "") + (
        "" if method == "sequential_euler" else f"_{method}")
    return from_odes(
        name=node.model_name + suffix,
        states=states,
        params={sym[name]: DEFAULTS[name] for name in ("dt",) + node.fields},
        odes=odes,
        dt=sym["dt"],
        method=method,
        inputs=(I,),
        output=None if node.spiking else v,
        learnable=tuple(sym[name] for name in node.fields if name in learnable),
        per_neuron=tuple(sym[name] for name in node.fields if name in per_neuron and name not in learnable),
        doc=f"NIR {kind}, {'forward Euler' if method == 'sequential_euler' else method} with step dt and the "
            "reset to v_reset"
            + (", not differentiated" if detach_reset and node.spiking else "") + " (symgrad.nir.models).",
        **spiking,
    )


def kind_of(model: NeuronModel) -> str | None:
    """The NIR node type whose discretisation ``model`` is, or None. The forward maps are
    compared symbolically (the surrogate and stop_gradient shape only the backward pass)."""
    names = set(model.param_names)
    for kind, node in KINDS.items():
        if names != {"dt", *node.fields}:
            continue
        reference = neuron(kind)
        if _same_map(model, reference):
            return kind
    return None


def _same_map(model: NeuronModel, reference: NeuronModel) -> bool:
    if [s.name for s in model.states] != [s.name for s in reference.states]:
        return False
    by_name = {s.name: s for s in list(reference.states) + list(reference.params) + [reference.input]}
    rename = {s: by_name[s.name] for s in list(model.states) + list(model.params) + [model.input]
              if s.name in by_name}
    if model.input.name != reference.input.name:
        rename[model.input] = reference.input
    pairs = [(model.update[s], reference.update[by_name[s.name]]) for s in model.states]
    pairs.append((model.output, reference.output))
    return all(sp.simplify(_forward(a.xreplace(rename)) - _forward(b)) == 0 for a, b in pairs)


def _forward(expr: sp.Expr) -> sp.Expr:
    """The forward map alone: a spike as a plain step of its argument, stop_gradient dropped."""
    step = sp.Function("step")
    return expr.replace(lambda e: isinstance(e, surrogates.Spike), lambda e: step(e.args[0])).replace(
        lambda e: isinstance(e, stop_gradient), lambda e: e.args[0])
