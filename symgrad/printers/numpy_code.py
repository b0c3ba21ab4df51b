"""The NumPy backend's printer: the lines of the generated module, as whole-array operations.

Shapes: states and Jacobian entries are (batch, n), fixed entries (n) or scalars, presynaptic
traces (batch, pre) and per-synapse traces (batch, post, pre). Every line of a method comes
from a row of the trace plan; the template only places them.
"""
from __future__ import annotations

import json

from .. import printing
from ..analysis import DYNAMIC, PER_NEURON
from ..kernels import Blueprint
from ..plan import PRESYNAPTIC, Term, TracePlan, TraceUpdate
from ..statements import check_clashes


def entry(term: Term, at: str = "J") -> str:
    """An entry as (batch, n) or fixed: J["D_a_v"] or K["D_v_v"] (``at`` names the J dict)."""
    return f'{at}["{term.entry}"]' if term.kind == DYNAMIC else f'K["{term.entry}"]'


def entry3(term: Term) -> str:
    """An entry broadcast against (batch, post, pre) arrays."""
    if term.kind == DYNAMIC:
        return f'J["{term.entry}"][:, :, None]'
    return f'K["{term.entry}"][:, None]' if term.kind == PER_NEURON else f'K["{term.entry}"]'


def _trace(term: Term, broadcast: bool) -> str:
    """The trace a term reads (its saved copy when it was overwritten this step), or u."""
    if term.source is None:
        return "u[:, None, :]" if broadcast else "u"
    name = f"self.{'old' if term.saved else 'eps'}_{term.source}"
    return name + ("[:, None, :]" if broadcast and term.source_storage == PRESYNAPTIC else "")


def _product(term: Term, operand: str, at: str = "J") -> str:
    return operand if term.unit else f"{entry(term, at)} * {operand}"


def _sum(parts: list[str], empty: str) -> str:
    return " + ".join(parts) if parts else empty


def trace_update(update: TraceUpdate) -> list[str]:
    """In-place update of one trace; per-synapse ones through ``scratch``, never allocating."""
    target = f"self.eps_{update.state}"
    lines = [f"# {update.equation}"]
    if update.save_first:
        lines.append(f"np.copyto(self.old_{update.state}, {target})")
    own, rest = update.own, update.others
    if update.storage == PRESYNAPTIC:
        if own is None:
            return lines + [f"{target}[...] = " + _sum([_product(t, _trace(t, False)) for t in rest], "0")]
        if not own.unit:
            lines.append(f"{target} *= {entry(own)}")
        return lines + [f"{target} += {_product(t, _trace(t, False))}" for t in rest]
    if own is None:
        first, rest = rest[0], rest[1:]
        lines.append(f"np.copyto({target}, {_trace(first, True)})" if first.unit
                     else f"np.multiply({entry3(first)}, {_trace(first, True)}, out={target})")
    elif not own.unit:
        lines.append(f"{target} *= {entry3(own)}")
    for t in rest:
        if t.unit:
            lines.append(f"{target} += {_trace(t, True)}")
        else:
            lines += [f"np.multiply({entry3(t)}, {_trace(t, True)}, out=scratch)", f"{target} += scratch"]
    return lines


def accumulate(plan: TracePlan) -> list[str]:
    """grad += sum_b L_bi h_bi eps_bij, one matrix product (presynaptic) or einsum per term."""
    lines = []
    for h in plan.eligibility:
        if h.source in plan.summary().presynaptic:
            lines.append(f"np.matmul((L * {entry(h)}).T, self.eps_{h.source}, out=product)")
        else:
            lines.append(f'np.einsum("bi,bij->ij", L * {entry(h)}, self.eps_{h.source}, out=product)')
        lines.append("grad += product")
    return lines


def add_eligibility(plan: TracePlan) -> list[str]:
    lines = []
    for h in plan.eligibility:
        presynaptic = h.source in plan.summary().presynaptic
        lines += [f"np.multiply(weight * {entry3(h)}, self.eps_{h.source}"
                  f"{'[:, None, :]' if presynaptic else ''}, out=scratch)", "out += scratch"]
    return lines


def param_update(blueprint: Blueprint) -> list[str]:
    """New values first, from the old ones; then stored."""
    lines, stores = [], []
    for pt in blueprint.plan.param_traces:
        for row in pt.rows:
            parts = [_product(t, f"self.{pt.param}_{t.source}") for t in row.terms]
            parts += [entry(row.q)] if row.q else []
            lines.append(f"{pt.param}_{row.state} = {_sum(parts, '0.0')}  # {pt.equation(row)}")
            stores.append(f"self.{pt.param}_{row.state} = {pt.param}_{row.state}")
    return lines + stores


def param_eligibility(blueprint: Blueprint) -> list[str]:
    lines = []
    for pt in blueprint.plan.param_traces:
        parts = [f"{entry(t)} * self.{pt.param}_{t.source}" for t in pt.readout]
        parts += [entry(pt.dz)] if pt.dz else []
        lines.append(f'"{pt.param}": {_sum(parts, "0.0")},  # {pt.eligibility}')
    return lines


def input_gain(plan: TracePlan) -> str:
    return _sum([f"{entry(h)} * {entry(c)}" for c, h in plan.input_terms if h], "0.0")


def backward_step(blueprint: Blueprint) -> list[str]:
    lines = []
    for row in blueprint.plan.adjoint:
        parts = [f"{entry(row.h)} * gz"] if row.h else []
        parts += [f'{entry(t, "J_next")} * g["{t.source}"]' for t in row.terms]
        lines.append(f"g_{row.state} = {_sum(parts, 'np.zeros_like(gz)')}  # {row.equation}")
    names = []  # dL/dI_t of each input: g_I for a one-input model, else g_<input>
    for plan in blueprint.plans:
        inputs = [_product(c, f"g_{c.source}") for c, _ in plan.input_terms]
        names.append(f"g_{plan.input.name}" if plan.suffix else "g_I")
        lines.append(f"{names[-1]} = {_sum(inputs, 'np.zeros_like(gz)')}")
    states = ", ".join(f'"{row.state}": g_{row.state}' for row in blueprint.plan.adjoint)
    return lines + [f"return {{{states}}}, " + (names[0] if len(names) == 1 else f"({', '.join(names)})")]


def param_gradients(blueprint: Blueprint) -> list[str]:
    lines = []
    for pt in blueprint.plan.param_traces:
        parts = [f'{entry(row.q)} * g["{row.state}"]' for row in pt.rows if row.q]
        parts += [f"{entry(pt.dz)} * gz"] if pt.dz else []
        lines.append(f'"{pt.param}": {_sum(parts, "np.zeros_like(gz)")},')
    return lines


def port(plan: TracePlan) -> dict:
    """What the template places for one synaptic input: its traces and its input gain."""
    summary = plan.summary()
    several = bool(plan.suffix)
    c = f"c_t^{{{plan.input.name}}}" if several else "c_t"
    return {
        "suffix": plan.suffix,
        "input": plan.input.name,
        "title": (f"e-prop eligibility traces of the input {plan.input.name}: " if several
                  else "e-prop eligibility traces ") + f"eps_t = D_t eps_{{t-1}} + {c} u_t, stored as planned.",
        "trace_storage": [(f"eps_{s}", "(batch, pre), presynaptic: a fixed filter of u, shared by all post neurons")
                          for s in summary.presynaptic]
                         + [(f"eps_{s}", "(batch, post, pre), per-synapse") for s in summary.per_synapse],
        "scratch": bool(summary.per_synapse),
        "trace_arrays": [f"self.{name} = np.zeros(({', '.join(shape)}), dtype)"
                         for name, shape in summary.trace_shapes("batch", "n", "n_pre", copies=False).items()]
                        + [f"self.old_{s} = np.empty_like(self.eps_{s})  # read after eps_{s} is updated"
                           for s in summary.saved],
        "trace_update": [line for u in plan.updates for line in trace_update(u)],
        "accumulate": accumulate(plan),
        "add_eligibility": add_eligibility(plan),
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
    # neuron_step(s, I, p) and fixed_entries(p) declare the model's names beside these
    check_clashes(blueprint.analysis, {"np", "s", "p"} | {name for name, _, _ in helpers}, "NumPy")
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
        "new_states": ", ".join(f'"{s}": {s}_new' for s in summary.states),
        "dynamic": ", ".join(f'"{n}": {n}' for n in summary.dynamic),
        "ports": [port(p) for p in blueprint.plans],
        "learnable": bool(model.learnable),
        "param_arrays": [f"self.{p}_{s} = np.zeros((batch, n), dtype)" for p, states in summary.param_traces
                         for s in states],
        "param_update": param_update(blueprint),
        "param_eligibility": param_eligibility(blueprint),
        "backward_step": backward_step(blueprint),
        "param_gradients": param_gradients(blueprint),
    }
