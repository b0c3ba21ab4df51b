"""The NumPy backend's printer: the lines of the generated module, as whole-array operations.

Shapes: states and Jacobian entries are (batch, n), fixed entries (n) or scalars, presynaptic
traces (batch, pre) and per-synapse traces (batch, post, pre), or (batch, nnz) in sparse rows,
where a (batch, n) or (batch, pre) array meets a per-synapse one through the synapses' post and
presynaptic indices (``self.post``, ``self.pre``). Every line of a method comes
from a row of the trace plan; the template only places them. Every identifier comes from the
model's naming table (``symgrad.names``); an entry equal to 1 is never read.
"""
from __future__ import annotations

import json
from dataclasses import replace

from .. import printing
from ..analysis import DYNAMIC, PER_NEURON
from ..kernels import Blueprint
from ..layouts import Layout
from ..names import ADJOINT, NEW, OLD, PARAM_TRACE_ATTRIBUTE, TRACE, Names
from ..plan import PRESYNAPTIC, Term, TracePlan, TraceUpdate


def entry(term: Term, at: str = "J") -> str:
    """An entry as (batch, n) or fixed: J["D_a_v"] or K["D_v_v"] (``at`` names the J dict)."""
    if term.unit:
        return "1.0"
    return f'{at}["{term.entry}"]' if term.kind == DYNAMIC else f'K["{term.entry}"]'


# How a (batch, n) entry, an (n) one and a (batch, pre) array meet per-synapse arrays: by
# broadcasting over (batch, post, pre), or gathered at each stored synapse's post and pre.
_POST = {False: ("[:, :, None]", "[:, None]"), True: ("[:, self.post]", "[self.post]")}
_PRE = {False: "[:, None, :]", True: "[:, self.pre]"}


def entry3(term: Term, layout: Layout) -> str:
    """An entry broadcast against per-synapse arrays."""
    if term.unit:
        return "1.0"
    dynamic, per_neuron = _POST[layout.sparse]
    if term.kind == DYNAMIC:
        return f'J["{term.entry}"]{dynamic}'
    return f'K["{term.entry}"]{per_neuron}' if term.kind == PER_NEURON else f'K["{term.entry}"]'


def _trace(term: Term, broadcast: bool, names: Names, layout: Layout) -> str:
    """The trace a term reads (its saved copy when it was overwritten this step), or u."""
    if term.source is None:
        return "u" + (_PRE[layout.sparse] if broadcast else "")
    name = "self." + names.of(OLD if term.saved else TRACE, term.source)
    return name + (_PRE[layout.sparse] if broadcast and term.source_storage == PRESYNAPTIC else "")


def _product(term: Term, operand: str, at: str = "J") -> str:
    return operand if term.unit else f"{entry(term, at)} * {operand}"


def _attribute(names: Names, state: str) -> str:
    return "self." + names.of(TRACE, state)


def _sum(parts: list[str], empty: str) -> str:
    return " + ".join(parts) if parts else empty


def trace_update(update: TraceUpdate, names: Names, layout: Layout) -> list[str]:
    """In-place update of one trace; per-synapse ones through ``scratch``, never allocating."""
    target = _attribute(names, update.state)
    lines = [f"# {update.equation}"]
    if update.save_first:
        lines.append(f"np.copyto(self.{names.of(OLD, update.state)}, {target})")
    own, rest = update.own, update.others
    if update.storage == PRESYNAPTIC:
        if own is None:
            return lines + [f"{target}[...] = "
                            + _sum([_product(t, _trace(t, False, names, layout)) for t in rest], "0")]
        if not own.unit:
            lines.append(f"{target} *= {entry(own)}")
        return lines + [f"{target} += {_product(t, _trace(t, False, names, layout))}" for t in rest]
    if own is None:
        first, rest = rest[0], rest[1:]
        lines.append(f"np.copyto({target}, {_trace(first, True, names, layout)})" if first.unit
                     else f"np.multiply({entry3(first, layout)}, {_trace(first, True, names, layout)}, out={target})")
    elif not own.unit:
        lines.append(f"{target} *= {entry3(own, layout)}")
    for t in rest:
        if t.unit:
            lines.append(f"{target} += {_trace(t, True, names, layout)}")
        else:
            lines += [f"np.multiply({entry3(t, layout)}, {_trace(t, True, names, layout)}, out=scratch)",
                      f"{target} += scratch"]
    return lines


def accumulate(plan: TracePlan, names: Names, layout: Layout) -> list[str]:
    """grad += sum_b L_bi h_bi eps_bij, one matrix product (presynaptic) or einsum per term;
    in sparse rows, one einsum over (batch, synapse) per term."""
    lines = []
    for h in plan.eligibility:
        signal = "L" if h.unit else f"L * {entry(h)}"
        trace = _attribute(names, h.source)
        presynaptic = h.source in plan.summary().presynaptic
        if layout.sparse:
            signal = f"{signal if h.unit else f'({signal})'}[:, self.post]"
            trace += _PRE[True] if presynaptic else ""
            lines.append(f'np.einsum("bk,bk->k", {signal}, {trace}, out=product)')
        elif presynaptic:
            lines.append(f"np.matmul({signal if h.unit else f'({signal})'}.T, {trace}, out=product)")
        else:
            lines.append(f'np.einsum("bi,bij->ij", {signal}, {trace}, out=product)')
        lines.append("grad += product")
    return lines


def add_eligibility(plan: TracePlan, names: Names, layout: Layout) -> list[str]:
    lines = []
    for h in plan.eligibility:
        presynaptic = h.source in plan.summary().presynaptic
        factor = "weight" if h.unit else f"weight * {entry3(h, layout)}"
        lines += [f"np.multiply({factor}, {_attribute(names, h.source)}"
                  f"{_PRE[layout.sparse] if presynaptic else ''}, out=scratch)", "out += scratch"]
    return lines


def _param_attribute(names: Names, param: str, state: str, spare: bool = False) -> str:
    return f"self.{'spare' if spare else 'traces'}[\"{names.of(PARAM_TRACE_ATTRIBUTE, param, state)}\"]"


def param_update(blueprint: Blueprint) -> list[str]:
    """Each row's new values into its spare array, from the old ones (an entry times a trace
    through ``product``); then the spare and the current arrays trade places. Nothing is
    allocated."""
    names, lines = blueprint.analysis.naming, []
    for pt in blueprint.plan.param_traces:
        for row in pt.rows:
            target = _param_attribute(names, pt.param, row.state, spare=True)
            lines.append(f"# {pt.equation(row)}")
            first = True
            for t in row.terms:
                source = _param_attribute(names, pt.param, t.source)
                if first:
                    lines.append(f"np.copyto({target}, {source})" if t.unit
                                 else f"np.multiply({entry(t)}, {source}, out={target})")
                elif t.unit:
                    lines.append(f"{target} += {source}")
                else:
                    lines += [f"np.multiply({entry(t)}, {source}, out=self.product)", f"{target} += self.product"]
                first = False
            if row.q:
                lines.append(f"{target}[...] = {entry(row.q)}" if first else f"{target} += {entry(row.q)}")
            elif first:
                lines.append(f"{target}[...] = 0")
    return lines + ["self.traces, self.spare = self.spare, self.traces"]


def param_eligibility(blueprint: Blueprint) -> list[str]:
    names, lines = blueprint.analysis.naming, []
    for pt in blueprint.plan.param_traces:
        parts = [_product(t, _param_attribute(names, pt.param, t.source)) for t in pt.readout]
        parts += [entry(pt.dz)] if pt.dz else []
        lines.append(f'"{pt.param}": {_sum(parts, "0.0")},  # {pt.eligibility}')
    return lines


def input_gain(plan: TracePlan) -> str:
    return _sum([" * ".join([entry(t) for t in (h, c) if not t.unit] or ["1.0"]) for c, h in plan.input_terms if h],
                "0.0")


def backward_step(blueprint: Blueprint) -> list[str]:
    names, lines = blueprint.analysis.naming, []
    for row in blueprint.plan.adjoint:
        parts = [_product(row.h, "gz")] if row.h else []
        parts += [_product(t, f'g["{t.source}"]', "J_next") for t in row.terms]
        lines.append(f"{names.of(ADJOINT, row.state)} = {_sum(parts, 'np.zeros_like(gz)')}  # {row.equation}")
    inputs = []  # dL/dI_t of each input
    for plan in blueprint.plans:
        terms = [_product(c, names.of(ADJOINT, c.source)) for c, _ in plan.input_terms]
        inputs.append((plan.input.name, names.of(ADJOINT, plan.input.name)))
        lines.append(f"{inputs[-1][1]} = {_sum(terms, 'np.zeros_like(gz)')}  # dL/d{plan.input.name}_t")
    states = ", ".join(f'"{row.state}": {names.of(ADJOINT, row.state)}' for row in blueprint.plan.adjoint)
    return lines + [f"return {{{states}}}, {{{', '.join(f'{chr(34)}{x}{chr(34)}: {g}' for x, g in inputs)}}}"]


def param_gradients(blueprint: Blueprint) -> list[str]:
    lines = []
    for pt in blueprint.plan.param_traces:
        parts = [_product(row.q, f'g["{row.state}"]') for row in pt.rows if row.q]
        parts += [_product(pt.dz, "gz")] if pt.dz else []
        lines.append(f'"{pt.param}": {_sum(parts, "np.zeros_like(gz)")},')
    return lines


def port(plan: TracePlan, several: bool, layout: Layout) -> dict:
    """What the template places for one synaptic input: its traces and its input gain."""
    summary, names = plan.summary(), plan.analysis.naming
    extents = dict(batch="batch", n="n", n_pre="synapses.n_pre" if layout.sparse else "n_pre", nnz="synapses.count")
    c = f"c_t^{{{plan.input.name}}}" if several else "c_t"
    return {
        "traces": names.per_input("Traces", plan.input.name),
        "input_gain_name": names.per_input("input_gain", plan.input.name),
        "input": plan.input.name,
        "title": (f"e-prop eligibility traces of the input {plan.input.name}: " if several
                  else "e-prop eligibility traces ") + f"eps_t = D_t eps_{{t-1}} + {c} u_t, stored as planned.",
        "trace_storage": [(f"eps_{s}", "(batch, pre), presynaptic: a fixed filter of u, shared by all post neurons")
                          for s in summary.presynaptic]
                         + [(f"eps_{s}", f"{layout.synapse_shape}, per-synapse") for s in summary.per_synapse],
        "scratch": bool(summary.per_synapse),
        "trace_arrays": [f"{_attribute(names, s)} = np.zeros(({', '.join(shape)}), dtype)"
                         for s, shape in replace(summary, layout=layout).trace_shapes(**extents).items()]
                        + [f"self.{names.of(OLD, s)} = np.empty_like({_attribute(names, s)})  # read after eps_{s} "
                           "is updated" for s in summary.saved],
        "trace_update": [line for u in plan.updates for line in trace_update(u, names, layout)],
        "accumulate": accumulate(plan, names, layout),
        "add_eligibility": add_eligibility(plan, names, layout),
        "input_gain": input_gain(plan),
        "gain": f"dz_t/d{plan.input.name}_t" if several else "dz_t/dI_t",
    }


def context(blueprint: Blueprint) -> dict:
    """What templates/numpy/layer.py.j2 places."""
    model, plan = blueprint.model, blueprint.plan
    summary = plan.summary()
    exprs = [s.expr for s in blueprint.step + blueprint.fixed]
    helpers = [printing.numpy_helper(cls) for cls in printing.used_functions(exprs)]
    helpers += [printing.array_helper(name) for name in printing.math_calls(exprs)]
    names = blueprint.analysis.naming
    several = len(blueprint.plans) > 1

    def storage(names):  # PRESYNAPTIC / PER_SYNAPSE: a list, or one list per input
        lists = {p.input.name: list(names(p.summary())) for p in blueprint.plans}
        return json.dumps(lists if several else lists[plan.input.name])

    constants = {
        "STATES": json.dumps(list(summary.states)),
        "PARAMS": json.dumps(model.param_names),
        "LEARNABLE": json.dumps([p.name for p in model.learnable]),
        "INITIAL": json.dumps({s.name: v for s, v in model.states.items()}),
    }
    if several:
        constants["INPUTS"] = json.dumps(model.input_names)
    constants["PRESYNAPTIC"] = storage(lambda s: s.presynaptic)
    constants["PER_SYNAPSE"] = storage(lambda s: s.per_synapse)
    return {
        "constants": constants,
        "math": bool(printing.math_calls(exprs)),
        "helpers": helpers,
        "fixed_params": [p.name for p in blueprint.fixed_params],
        "fixed": [dict(name=s.name, code=printing.numpy_code(s.expr), source=s.source) for s in blueprint.fixed],
        "step_states": blueprint.step_states,
        "step_params": [p.name for p in blueprint.step_params],
        "inputs": ", ".join(model.input_names),
        "inputs_t": ", ".join(f"{name}_t" for name in model.input_names),
        "step": [dict(name=s.name, code=printing.numpy_code(s.expr), source=s.source) for s in blueprint.step],
        "w": names.words,
        "new_states": ", ".join(f'"{s}": {names.of(NEW, s)}' for s in summary.states),
        "dynamic": ", ".join(f'"{n}": {n}' for n in summary.dynamic),
        "ports": [port(p, several, blueprint.layout) for p in blueprint.plans],
        "sparse": blueprint.layout.sparse,
        "synapse_shape": blueprint.layout.synapse_shape,
        "weight_shape": blueprint.layout.weight_shape,
        "learnable": bool(model.learnable),
        "param_arrays": [f'"{names.of(PARAM_TRACE_ATTRIBUTE, p, s)}": np.zeros((batch, n), dtype),'
                         for p, states in summary.param_traces for s in states],
        "param_update": param_update(blueprint),
        "param_eligibility": param_eligibility(blueprint),
        "backward_step": backward_step(blueprint),
        "param_gradients": param_gradients(blueprint),
    }
