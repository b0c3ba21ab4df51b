"""NIR's neuron nodes as symgrad models: each node's ODE in SymPy, discretised by forward Euler.

NIR defines its neurons in continuous time (Pedersen et al. 2024). symgrad follows the
convention of the NIR reference frameworks (snnTorch's import and export): forward Euler with
step dt, the synaptic current updated before the membrane reads it, and the membrane set to
v_reset after a spike. The state symgrad stores is the membrane before the reset; the reset is
applied at the start of the next step, from the spike that state produced:

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
from ..model import NeuronModel, spike, stop_gradient

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


def neuron(kind: str, per_neuron=(), learnable=(), detach_reset: bool = False) -> NeuronModel:
    """The forward-Euler model of NIR node type ``kind`` ("LIF", "CubaLIF", ...); the fields
    named in ``per_neuron`` hold one value per neuron, those in ``learnable`` are trained per
    neuron too.

    detach_reset: the whole reset inside stop_gradient, as in e-prop's LIF (Bellec et al. 2020),
    instead of only the spike that triggers it. The forward map is the same; the gradient no
    longer sees a spike erase the membrane's past, so D[v,v] is constant and, with one time
    constant per layer, every trace is a presynaptic filter (named ``nir_<kind>_detached``)."""
    node = KINDS[kind]
    sym = {name: sp.Symbol(name) for name in ("dt",) + node.fields}
    v, I = sp.symbols("v I")
    states = {v: 0.0}
    drive = I
    update = {}
    if node.current:
        i_syn = sp.Symbol("i_syn")
        states[i_syn] = 0.0
        tau_syn = sym["tau_syn"]
        update[i_syn] = drive = i_syn + sym["dt"] / tau_syn * (sym["w_in"] * I - i_syn)
    z = None
    v_r = v
    if node.spiking:
        surrogate = surrogates.triangle(gamma=0.3, width=sym["v_threshold"] - sym["v_reset"])
        z = spike(v - sym["v_threshold"], surrogate=surrogate)
        reset = z * (sym["v_reset"] - v)
        v_r = v + (stop_gradient(reset) if detach_reset else stop_gradient(z) * (sym["v_reset"] - v))
    if node.leaky:
        tau = sym["tau_mem"] if node.current else sym["tau"]
        update[v] = v_r + sym["dt"] / tau * (sym["v_leak"] - v_r + sym["r"] * drive)
    else:
        update[v] = v_r + sym["dt"] * sym["r"] * drive
    unknown = (set(per_neuron) | set(learnable)) - set(node.fields)
    if unknown:
        raise ValueError(f"NIR {kind} has no field {sorted(unknown)[0]!r}")
    return NeuronModel(
        name=node.model_name + ("_detached" if detach_reset and node.spiking else ""),
        states=states,
        params={sym[name]: DEFAULTS[name] for name in ("dt",) + node.fields},
        update={s: update[s] for s in states},
        output=z if node.spiking else v,
        input=I,
        learnable=tuple(sym[name] for name in node.fields if name in learnable),
        per_neuron=tuple(sym[name] for name in node.fields if name in per_neuron and name not in learnable),
        doc=f"NIR {kind}, forward Euler with step dt and the reset to v_reset"
            + (", not differentiated" if detach_reset and node.spiking else "") + " (symgrad.nir.models).",
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
