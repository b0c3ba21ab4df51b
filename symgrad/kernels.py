"""Kernel descriptions: what each fused kernel reads, computes and writes, for every backend.

A kernel is described once, from the analysis, the statements and the trace plan: its index
space, its arguments (which the drivers bind by name), the Jacobian entries and traces it
loads, and its body lines as terms ``entry * operand``. A backend's printer turns a line into
code (how it spells an entry read, a product, a sum); its template lays out the loops. So a
new backend prints these and decides nothing.

    fixed_entries      one thread per neuron: the entries fixed for the run
    neuron_step        one per (sample, neuron): s_t, z_t and the dynamic entries
    synapse_step       one per synapse (post, pre), looping over the batch: per-synapse traces,
                       e = h . eps, ebar, and the gradient, sequence and regulariser sums
    presynaptic_step   one per (sample, pre): the presynaptic traces
    param_traces       one per (sample, neuron): the learnable parameters' traces and e^p
    input_gain         one per (sample, neuron): dz_t/dI_t, which passes a learning signal down
    active_rows        the (sample, post) rows not at rest, counted (models with rows at rest)
    backward_step      one per (sample, neuron): BPTT's adjoints g_t from g_t+1, and dL/dI_t
    param_gradients    one per (sample, neuron): BPTT's dL/dp at one step

The last four are the CPU's only (the Numba backend prints them; its whole-pass drivers call them).

A model with several synaptic inputs has one synapse, presynaptic and event kernel per input,
named with the input's suffix (``synapse_step_I_e``), each over its own plan and traces.
"""
from __future__ import annotations

from dataclasses import dataclass

from .analysis import CONSTANT, DYNAMIC, Analysis
from .plan import PER_SYNAPSE, PRESYNAPTIC, Term, TracePlan
from . import names as ids
from .layouts import DENSE, Layout
from .statements import Statement, fixed_entries, neuron_step


# What an argument holds, which the runtime binds it by (``KernelArg.role`` and ``of``):
COUNT = "count"  # of: "n", "size", "batch", "n_pre", "nnz" or "step"
INDEX = "index"  # of: the name of one of the layout's index arrays (``Layout.indices``)
SCALAR = "scalar"  # of: "kappa" or "seq_weight"
BUFFER = "buffer"  # of: "u", "L", "ebar", "seq_sum", "grad", "reg_sum", "last" or "pend" (SynapseBuffers); "grad_z"
STATE, NEW_STATE, OUTPUT = "state", "new state", "output"  # of: a state name; "z"
PARAM, CURRENT = "param", "current"  # of: a parameter name; an input name
FIXED, DYNAMIC_ENTRY = "fixed entry", "dynamic entry"  # of: an entry name (K, J)
TRACE, PARAM_TRACE = "trace", "param trace"  # of: a state; (parameter, state)
PARAM_ELIGIBILITY, DECAY = "param eligibility", "decay"  # of: a parameter; a state
NEXT_ENTRY = "next entry"  # of: an entry name: its values at step t+1 (BPTT's backward step)
ADJOINT, PARAM_GRADIENT = "adjoint", "param gradient"  # of: a state or an input (dL/ds, dL/dI); a parameter


@dataclass(frozen=True)
class KernelArg:
    """One argument of a kernel: its name in the kernel (the naming table's) and what it holds.

    ctype: "int", "real" (a scalar), "const real*" (an array read), "real*" (written) or
    "const int*" (a layout's index array).
    role, of: what the runtime binds to it (see the roles above), never read off the name.
    """

    name: str
    ctype: str
    note: str
    role: str
    of: object = ""

    @property
    def written(self) -> bool:
        return self.ctype == "real*"

    @property
    def array(self) -> bool:
        return self.ctype.endswith("*")


@dataclass(frozen=True)
class Line:
    """``target = sum of entry * operand`` and the equation it implements.

    terms: (Term, operand) pairs; operand is a local name, or None for the entry alone.
    """

    target: str
    terms: tuple
    equation: str


@dataclass(frozen=True)
class Step:
    """One line of e-prop's epilogue, which follows e_t at every synapse and sample:
    ``target op value``, where ``{name}`` stands for the element of argument ``name`` that this
    synapse and sample own (a learning signal's, a per-synapse array's, or, for a gradient
    summed over the batch, the synapse's own sum), and bare names are locals. ``given``: the
    nullable argument the line runs for (None: always); ``note``: its comment."""

    target: str
    op: str  # "=" or "+="
    value: str
    given: str | None = None
    note: str = ""


def epilogue(waking: bool = False) -> tuple:
    """Blocks of Steps, each run when its argument is given: the filtered eligibility, the
    gradient, the sequence and regulariser sums. ``waking``: for a row that skipped steps at
    rest, whose held ebar first pays what those steps owe the gradient and decays over them."""
    if waking:
        filtered = (Step("held", "=", "{ebar}", note="ebar at step last"),
                    Step("{grad}", "+=", "owed * held", "L"),
                    Step("elig", "=", "kappa * (kappa_skipped * held) + e"))
    else:
        filtered = (Step("elig", "=", "kappa * {ebar} + e"),)
    return (
        (None, (Step("elig", "=", "e", note="what the gradient uses: ebar_t when filtered, else e_t"),)),
        ("ebar", filtered + (Step("{ebar}", "=", "elig"),)),
        ("L", (Step("{grad}", "+=", "{L} * elig"),)),
        ("seq_sum", (Step("{seq_sum}", "+=", "seq_weight * elig"),)),
        ("reg_sum", (Step("{reg_sum}", "+=", "e"),)),
    )


@dataclass(frozen=True)
class Kernel:
    name: str  # as the generated code defines it (the naming table's)
    space: str  # what one thread is
    args: tuple
    fixed: tuple = ()  # fixed entries loaded once per thread: (name, class)
    loads: tuple = ()  # traces read: (local, array, per_synapse)
    input: bool = False  # reads u_j
    lines: tuple = ()
    stores: tuple = ()  # (array, local)
    results: tuple = ()  # lines whose value is written out (e, e^p)
    dynamic: tuple = ()  # dynamic entries read per sample (arguments J_<name>)
    cpu_only: bool = False  # printed by the Numba backend only
    rests: tuple = ()  # event kernels: (entry, its value at rest as a local) for each dynamic entry
    kind: str = ""  # fixed_entries, neuron_step, synapse_step, ...: what the runtime asks for
    port: str | None = None  # the synaptic input a per-input kernel is of

    @property
    def per_post(self) -> bool:
        """It reads a fixed entry per neuron, at its post neuron (and so takes ``n``)."""
        return any(kind != CONSTANT for _, kind in self.fixed)

    @property
    def nested(self) -> bool:
        """One thread loops over samples and inputs (the synapse space): where a backend writes
        that as a loop nest (Numba), it indexes the kernel's arrays by their axes, else flat."""
        return self.space == "synapse"


@dataclass(frozen=True)
class Param:
    name: str
    per_neuron: bool


@dataclass
class Blueprint:
    """Everything the backends print for one model, from one analysis and its plans."""

    analysis: Analysis
    plans: list  # TracePlan of each synaptic input, in declaration order
    step: list  # Statement: the neuron step
    fixed: list  # Statement: the fixed entries
    kernels: list  # Kernel, in the order the .cu defines them
    step_states: list  # states the step reads
    step_params: list  # Param: parameters the step reads
    fixed_params: list  # Param: parameters the fixed entries read
    step_inputs: list  # (input name, neuron_step argument) of each input the step reads
    layout: Layout = DENSE  # which synapses exist, and how the synapse kernels reach one

    @property
    def model(self):
        return self.analysis.model

    @property
    def plan(self) -> TracePlan:
        """The first input's plan: what is the model's own (the adjoint, the parameters'
        traces, the dynamic entries) is the same in every input's plan."""
        return self.plans[0]

    def kernel(self, kind: str, port: str | None = None) -> Kernel | None:
        """The kernel of this kind (of the input ``port``, for a per-input kernel), if any."""
        return next((k for k in self.kernels if k.kind == kind and k.port == port), None)


def blueprint(analysis: Analysis, plans: list[TracePlan], layout: Layout = DENSE) -> Blueprint:
    """The kernels of a model whose layers lay their synapses out as ``layout`` says."""
    model, names = analysis.model, analysis.naming
    step, fixed = neuron_step(analysis), fixed_entries(analysis)
    read = _free(step)
    per_neuron = set(model.neuron_params)
    step_params = [Param(p.name, p in per_neuron) for p in model.param_symbols if p.name in read]
    fixed_params = [Param(p.name, p in per_neuron) for p in model.param_symbols if p.name in _free(fixed)]
    step_inputs = [(i.name, names.current(i.name)) for i in model.inputs if i.name in read]
    step_states = [s for s in analysis.names if s in read]
    synapses = [_synapse_kernel(plan, layout) for plan in plans]
    kernels = [_fixed_kernel(analysis, fixed, fixed_params),
               _neuron_kernel(analysis, step_states, step_params, step_inputs)]
    for plan, synapse in zip(plans, synapses):
        kernels += [synapse, _presynaptic_kernel(plan)]
    kernels.append(_param_kernel(plans[0]))
    for plan, synapse in zip(plans, synapses):
        kernels += _event_kernels(plan, synapse)
    kernels += [_gain_kernel(plan) for plan in plans]
    kernels += [_backward_kernel(plans), _param_gradient_kernel(plans[0])]
    return Blueprint(analysis, list(plans), step, fixed, [k for k in kernels if k], step_states,
                     step_params, fixed_params, step_inputs, layout)


def _free(statements: list[Statement]) -> set[str]:
    return {s.name for st in statements for s in st.expr.free_symbols}


def _param_note(p: Param) -> str:
    return f"{p.name}: per neuron (n)" if p.per_neuron else f"{p.name}: one value (1)"


def _param_args(names, params: list) -> list[KernelArg]:
    return [KernelArg(names.of(ids.PARAM_ARG, p.name), "const real*", _param_note(p), PARAM, p.name) for p in params]


def _fixed_kernel(analysis: Analysis, fixed: list, params: list) -> Kernel | None:
    if not fixed:
        return None
    names, kinds = analysis.naming, analysis.entries()
    args = [KernelArg(names.word("n"), "int", "neurons: one thread each", COUNT, "n")]
    args += _param_args(names, params)
    args += [KernelArg(names.of(ids.FIXED_ARG, f.name), "real*", f"{f.name} (n), {kinds[f.name].kind}: written",
                       FIXED, f.name) for f in fixed]
    return Kernel("fixed_entries", "neuron", tuple(args), kind="fixed_entries")


def _neuron_kernel(analysis: Analysis, states: list, params: list, inputs: list) -> Kernel:
    names = analysis.naming
    args = [KernelArg(names.word("size"), "int", "batch * n: one thread per sample and neuron", COUNT, "size")]
    if any(p.per_neuron for p in params):
        args.append(KernelArg(names.word("n"), "int", "neurons", COUNT, "n"))
    args += [KernelArg(arg, "const real*", f"{name}_t (batch, n): synaptic input", CURRENT, name)
             for name, arg in inputs]
    args += [KernelArg(names.of(ids.STATE_ARG, s), "const real*", f"{s}_t-1 (batch, n)", STATE, s) for s in states]
    args += _param_args(names, params)
    args += [KernelArg(names.of(ids.NEW_STATE_ARG, s), "real*", f"{s}_t (batch, n): written", NEW_STATE, s)
             for s in analysis.names]
    args.append(KernelArg(names.word("out_z"), "real*", "z_t (batch, n): written", OUTPUT, "z"))
    args += [KernelArg(names.of(ids.DYNAMIC_ARG, n), "real*", f"{n} (batch, n): written", DYNAMIC_ENTRY, n)
             for n, e in analysis.entries().items() if not e.is_fixed]
    return Kernel("neuron_step", "sample, neuron", tuple(args), kind="neuron_step")


class _Reads:
    """The entries a kernel's lines read, in first-use order: dynamic ones are arrays read per
    sample (J_<name>), fixed ones (n) arrays loaded once per thread (K_<name>). An entry equal
    to 1 is never read: the lines print the number, or leave the product out."""

    def __init__(self, plan: TracePlan):
        self.names = plan.analysis.naming
        self.order = list(plan.analysis.entries())
        self.used: dict[str, Term] = {}

    def __call__(self, term: Term, operand: str | None) -> tuple:
        if not term.unit:
            self.used.setdefault(term.entry, term)
        return term, operand

    @property
    def terms(self) -> dict[str, Term]:
        return {n: self.used[n] for n in self.order if n in self.used}

    def fixed(self) -> tuple:
        return tuple((n, t.kind) for n, t in self.terms.items() if t.kind != DYNAMIC)

    def dynamic(self) -> tuple:
        return tuple(n for n, t in self.terms.items() if t.kind == DYNAMIC)

    def args(self, role: str = DYNAMIC_ENTRY, step: str = "t") -> list[KernelArg]:
        """The arrays of the entries read: the dynamic ones at ``step`` (role DYNAMIC_ENTRY, or
        NEXT_ENTRY for their values at t+1), and the fixed ones."""
        dynamic = [KernelArg(self.names.of(ids.DYNAMIC_ARG, n), "const real*", f"{n}_{step} (batch, n)", role, n)
                   for n, t in self.terms.items() if t.kind == DYNAMIC]
        return dynamic + [_fixed_arg(self.names, n, kind) for n, kind in self.fixed()]


def _fixed_arg(names, entry: str, kind: str) -> KernelArg:
    """The (n) array of a fixed entry (a constant one's element 0 is read)."""
    return KernelArg(names.of(ids.FIXED_ARG, entry), "const real*", f"{entry} (n), "
                     + ("constant: element 0 is read" if kind == CONSTANT else kind), FIXED, entry)


def _trace_line(update, reads: _Reads, names) -> Line:
    """eps_k,t from the previous values, which the kernels keep in registers."""
    terms = tuple(reads(t, names.of(ids.TRACE, t.source) if t.source else "u_j") for t in update.terms)
    return Line(names.of(ids.TRACE_NEW, update.state), terms, update.equation)


def _trace_arg(names, s: str, ctype: str, note: str) -> KernelArg:
    return KernelArg(names.of(ids.TRACE_ARG, s), ctype, note, TRACE, s)


def _synapse_kernel(plan: TracePlan, layout: Layout) -> Kernel:
    names, summary = plan.analysis.naming, plan.summary()
    eligible, per_synapse = summary.eligible, summary.per_synapse
    reads = _Reads(plan)
    updates = [u for u in plan.updates if u.storage == PER_SYNAPSE or u.state in eligible]
    lines = tuple(_trace_line(u, reads, names) for u in updates)
    e = Line("e", tuple(reads(h, names.of(ids.TRACE_NEW, h.source)) for h in plan.eligibility), "e_t = h_t . eps_t")
    read = {t.source for u in updates for t in u.terms if t.source}
    loads = tuple((names.of(ids.TRACE, s), names.of(ids.TRACE_ARG, s), s in per_synapse) for s in summary.states if s in read)
    uses_input = any(t.source is None for u in updates for t in u.terms)
    synapses, weights = layout.synapse_shape, layout.weight_shape
    args = [KernelArg("batch", "int", "samples: each thread loops over them", COUNT, "batch"),
            KernelArg("n", "int", "post neurons", COUNT, "n")]
    args += [KernelArg(name, "int", note, COUNT, name) for name, note in layout.counts]
    args += [KernelArg(name, "const int*", note, INDEX, name) for name, note in layout.indices]
    if uses_input:
        args.append(KernelArg("u", "const real*", "u_t (batch, pre): presynaptic input", BUFFER, "u"))
    for s in summary.states:
        if s in per_synapse:
            args.append(_trace_arg(names, s, "real*", f"eps_{s} {synapses}, per-synapse: updated"))
        elif s in read:
            args.append(_trace_arg(names, s, "const real*", f"eps_{s}_t-1 (batch, pre), presynaptic: read only"))
    args += reads.args()
    args += [
        KernelArg("L", "const real*", "learning signal L_t (batch, n), or null", BUFFER, "L"),
        KernelArg("kappa", "real", "the readout's leak: ebar_t = kappa ebar_t-1 + e_t", SCALAR, "kappa"),
        KernelArg("ebar", "real*", f"filtered eligibility {synapses}: updated, or null", BUFFER, "ebar"),
        KernelArg("seq_sum", "real*", f"{synapses}: += w ebar_t (w e_t without ebar), or null", BUFFER, "seq_sum"),
        KernelArg("seq_weight", "real", "w, this step's weight in seq_sum", SCALAR, "seq_weight"),
        KernelArg("grad", "real*", f"{weights}: += sum_b L_t ebar_t (e_t without ebar) when L is given", BUFFER,
                  "grad"),
        KernelArg("reg_sum", "real*", f"{weights}: += sum_b e_t for the rate regulariser, or null", BUFFER,
                  "reg_sum"),
    ]
    stores = tuple((names.of(ids.TRACE_ARG, u.state), names.of(ids.TRACE_NEW, u.state)) for u in updates
                   if u.state in per_synapse)
    return Kernel(names.per_input("synapse_step", plan.input.name), "synapse", tuple(args), reads.fixed(), loads,
                  uses_input, lines, stores, (e,), reads.dynamic(), kind="synapse_step", port=plan.input.name)


def _presynaptic_kernel(plan: TracePlan) -> Kernel | None:
    updates = [u for u in plan.updates if u.storage == PRESYNAPTIC]
    if not updates:
        return None
    names, reads = plan.analysis.naming, _Reads(plan)
    lines = tuple(_trace_line(u, reads, names) for u in updates)
    read = {t.source for u in updates for t in u.terms if t.source}
    uses_input = any(t.source is None for u in updates for t in u.terms)
    args = [KernelArg("size", "int", "batch * n_pre: one thread per sample and input", COUNT, "size")]
    if uses_input:
        args.append(KernelArg("u", "const real*", "u_t (batch, pre): presynaptic input", BUFFER, "u"))
    args += [_trace_arg(names, u.state, "real*", f"eps_{u.state} (batch, pre): updated") for u in updates]
    args += reads.args()
    loads = tuple((names.of(ids.TRACE, s), names.of(ids.TRACE_ARG, s), False) for s in plan.summary().states if s in read)
    stores = tuple((names.of(ids.TRACE_ARG, u.state), names.of(ids.TRACE_NEW, u.state)) for u in updates)
    return Kernel(names.per_input("presynaptic_step", plan.input.name), "sample, pre", tuple(args), reads.fixed(),
                  loads, uses_input, lines, stores, (), reads.dynamic(), kind="presynaptic_step",
                  port=plan.input.name)


def _param_kernel(plan: TracePlan) -> Kernel | None:
    traces = plan.param_traces
    if not traces:
        return None
    names, reads = plan.analysis.naming, _Reads(plan)
    loads, lines, stores, results, arrays = [], [], [], [], []
    for pt in traces:
        p = pt.param
        read = {t.source for row in pt.rows for t in row.terms}
        loads += [(names.of(ids.PARAM_TRACE, p, r.state), names.of(ids.PARAM_TRACE_ARG, p, r.state), False)
                  for r in pt.rows if r.state in read]
        for row in pt.rows:
            terms = tuple(reads(t, names.of(ids.PARAM_TRACE, p, t.source)) for t in row.terms)
            terms += (reads(row.q, None),) if row.q else ()
            lines.append(Line(names.of(ids.PARAM_TRACE_NEW, p, row.state), terms, pt.equation(row)))
            stores.append((names.of(ids.PARAM_TRACE_ARG, p, row.state), names.of(ids.PARAM_TRACE_NEW, p, row.state)))
        terms = tuple(reads(t, names.of(ids.PARAM_TRACE_NEW, p, t.source)) for t in pt.readout)
        terms += (reads(pt.dz, None),) if pt.dz else ()
        results.append(Line(names.of(ids.PARAM_ELIGIBILITY, p), terms, pt.eligibility))
        arrays += [KernelArg(names.of(ids.PARAM_TRACE_ARG, p, r.state), "real*", f"eps^{p}_{r.state} (batch, n): updated",
                             PARAM_TRACE, (p, r.state)) for r in pt.rows]
        arrays.append(KernelArg(names.of(ids.PARAM_ELIGIBILITY, p), "real*",
                                f"e^{p}_t = h_t . eps^{p}_t + dz_{p} (batch, n): written", PARAM_ELIGIBILITY, p))
    args = _sample_neuron_args(kind for _, kind in reads.fixed()) + reads.args() + arrays
    return Kernel("param_traces", "sample, neuron", tuple(args), reads.fixed(), tuple(loads), False,
                  tuple(lines), tuple(stores), tuple(results), reads.dynamic(), kind="param_traces")


def _event_kernels(plan: TracePlan, synapse: Kernel) -> list[Kernel]:
    """The synapse step that skips rows at rest (``plan.quiescence``), and ``settle``, which
    brings every skipped row up to date; [] when the model has no rows at rest.

    A row (sample, post) is at rest at a step when every dynamic entry the synapse step reads
    holds its resting value (its surrogate derivatives are zero): its per-synapse traces then
    only decay by a fixed factor and its eligibility is zero. ``last`` holds the step a row was
    last brought up to date at, ``pend`` the learning signal its skipped steps owe the gradient:
    sum_s L_s kappa^(s - last), to be multiplied by its filtered eligibility when it wakes.
    """
    rest = plan.quiescence
    if not rest.event_driven:
        return []
    a, names = plan.analysis, plan.analysis.naming
    diagonal = {a.entry_name("D", a.names.index(k), a.names.index(k)): names.of(ids.DECAY, k) for k in rest.decays}
    rests = tuple((name, diagonal.get(name, "0")) for name in synapse.dynamic)
    decays = [KernelArg(names.of(ids.DECAY, s), "real", f"eps_{s} decays by this factor at rest", DECAY, s)
              for s in rest.decays]
    bookkeeping = [
        KernelArg("step", "int", "this step's index t", COUNT, "step"),
        KernelArg("last", "real*", "(batch, n): the step each row was last brought up to date at", BUFFER, "last"),
        KernelArg("pend", "real*", "(batch, n): sum_s L_s kappa^(s - last) over the row's skipped steps",
                  BUFFER, "pend"),
    ]
    per_synapse = [a for a in synapse.args if a.role == TRACE and a.of in rest.decays]
    args = synapse.args + tuple(bookkeeping + decays)
    port = plan.input.name
    skipping = Kernel(names.per_input("synapse_events", port), "synapse", args, synapse.fixed, synapse.loads,
                      synapse.input, synapse.lines, synapse.stores, synapse.results, synapse.dynamic, True, rests,
                      kind="synapse_events", port=port)
    counts = tuple(a for a in synapse.args if a.role in (COUNT, INDEX))
    settle_args = (counts + tuple(per_synapse)
                   + tuple(a for a in synapse.args if a.of in ("ebar", "grad", "kappa"))
                   + tuple(bookkeeping + decays))
    settle = Kernel(names.per_input("settle", port), "synapse", settle_args, cpu_only=True, kind="settle", port=port)
    active = Kernel(names.per_input("active_rows", port), "sample, neuron",
                    (KernelArg("size", "int", "batch * n: the rows", COUNT, "size"),)
                    + tuple(a for a in synapse.args if a.role == DYNAMIC_ENTRY) + tuple(decays),
                    dynamic=synapse.dynamic, cpu_only=True, rests=rests, kind="active_rows", port=port)
    return [skipping, settle, active]


def _gain_kernel(plan: TracePlan) -> Kernel:
    """dz_t/dI_t = sum_k h_k,t c_k,t of one input, per (sample, neuron)."""
    names, reads = plan.analysis.naming, _Reads(plan)
    terms = []
    for c, h in plan.input_terms:
        if h is not None:
            reads(h, None)
            terms.append(reads(c, None if h.unit else h.entry))
    gain = Line("gain", tuple(terms), f"dz_t/d{plan.input.name}_t = sum_k h_k,t c_k,t")
    args = _sample_neuron_args(kind for _, kind in reads.fixed()) + reads.args()
    args.append(KernelArg("gain", "real*", "dz_t/dI_t (batch, n): written", BUFFER, "gain"))
    return Kernel(names.per_input("input_gain", plan.input.name), "sample, neuron", tuple(args), reads.fixed(),
                  results=(gain,), dynamic=reads.dynamic(), cpu_only=True, kind="input_gain",
                  port=plan.input.name)


def _sample_neuron_args(fixed_kinds) -> list[KernelArg]:
    """A (sample, neuron) kernel's size, and n where it reads a fixed entry at its neuron."""
    args = [KernelArg("size", "int", "batch * n: one thread per sample and neuron", COUNT, "size")]
    if any(kind != CONSTANT for kind in fixed_kinds):  # read at its neuron: Kernel.per_post
        args.append(KernelArg("n", "int", "neurons", COUNT, "n"))
    return args


def _backward_kernel(plans: list[TracePlan]) -> Kernel:
    """BPTT through one step: each state's adjoint g_j,t = h_j,t gz_t + sum_k D_kj,t+1 g_k,t+1
    (``TracePlan.adjoint``, the model's whichever input), in place over g_t+1, and each input's
    dL/dI_t = sum_k c_k,t g_k,t."""
    plan = plans[0]
    names, now, later = plan.analysis.naming, _Reads(plan), _Reads(plan)  # entries at t, and at t+1
    lines, read = [], set()
    for row in plan.adjoint:
        terms = ((now(row.h, "gz"),) if row.h else ()) + tuple(
            later(t, names.of(ids.ADJOINT, t.source)) for t in row.terms)
        read |= {t.source for t in row.terms}
        lines.append(Line(names.of(ids.ADJOINT_NEW, row.state), terms, row.equation))
    results = [Line(names.of(ids.ADJOINT_ARG, p.input.name),
                    tuple(now(c, names.of(ids.ADJOINT_NEW, c.source)) for c, _ in p.input_terms),
                    f"dL/d{p.input.name}_t = sum_k c_k,t g_k,t") for p in plans]
    states = [row.state for row in plan.adjoint]
    fixed = dict(now.fixed()) | dict(later.fixed())
    args = _sample_neuron_args(fixed.values())
    args.append(KernelArg("grad_z", "const real*", "gz_t = dL/dz_t (batch, n): from above and from t+1", BUFFER,
                          "grad_z"))
    args += [a for a in now.args() if a.role == DYNAMIC_ENTRY]
    args += [a for a in later.args(NEXT_ENTRY, "t+1") if a.role == NEXT_ENTRY]
    args += [_fixed_arg(names, n, kind) for n, kind in fixed.items()]
    args += [KernelArg(names.of(ids.ADJOINT_ARG, s), "real*", f"dL/d{s} (batch, n): at t+1, updated to t",
                       ADJOINT, s) for s in states]
    args += [KernelArg(names.of(ids.ADJOINT_ARG, p.input.name), "real*", f"dL/d{p.input.name}_t (batch, n): written",
                       ADJOINT, p.input.name) for p in plans]
    loads = (("gz", "grad_z", False),) + tuple(
        (names.of(ids.ADJOINT, s), names.of(ids.ADJOINT_ARG, s), False) for s in states if s in read)
    stores = tuple((names.of(ids.ADJOINT_ARG, s), names.of(ids.ADJOINT_NEW, s)) for s in states)
    return Kernel("backward_step", "sample, neuron", tuple(args), tuple(fixed.items()), loads, False, tuple(lines),
                  stores, tuple(results), now.dynamic() + later.dynamic(), cpu_only=True, kind="backward_step")


def _param_gradient_kernel(plan: TracePlan) -> Kernel | None:
    """BPTT's dL/dp_t = sum_k q_pk,t g_k,t + dz_p,t gz_t of each learnable parameter, per
    (sample, neuron), from the adjoints of step t (after ``backward_step``)."""
    if not plan.param_traces:
        return None
    names, reads = plan.analysis.naming, _Reads(plan)
    results, read = [], set()
    for pt in plan.param_traces:
        terms = tuple(reads(row.q, names.of(ids.ADJOINT, row.state)) for row in pt.rows if row.q)
        read |= {row.state for row in pt.rows if row.q}
        terms += (reads(pt.dz, "gz"),) if pt.dz else ()
        dz = f" + dz_{pt.param},t gz_t" if pt.dz else ""
        results.append(Line(names.of(ids.PARAM_GRADIENT, pt.param), terms,
                            f"dL/d{pt.param}_t = sum_k q_{pt.param}k,t g_k,t" + dz))
    states = [row.state for row in plan.adjoint if row.state in read]
    reads_gz = any(pt.dz for pt in plan.param_traces)
    args = _sample_neuron_args(kind for _, kind in reads.fixed())
    args += [KernelArg("grad_z", "const real*", "gz_t = dL/dz_t (batch, n)", BUFFER, "grad_z")] * reads_gz
    args += reads.args()
    args += [KernelArg(names.of(ids.ADJOINT_ARG, s), "const real*", f"dL/d{s}_t (batch, n)", ADJOINT, s)
             for s in states]
    args += [KernelArg(names.of(ids.PARAM_GRADIENT, pt.param), "real*", f"dL/d{pt.param}_t (batch, n): written",
                       PARAM_GRADIENT, pt.param) for pt in plan.param_traces]
    loads = (("gz", "grad_z", False),) * reads_gz + tuple(
        (names.of(ids.ADJOINT, s), names.of(ids.ADJOINT_ARG, s), False) for s in states)
    return Kernel("param_gradients", "sample, neuron", tuple(args), reads.fixed(), loads, results=tuple(results),
                  dynamic=reads.dynamic(), cpu_only=True, kind="param_gradients")
