"""The trace plan: how each component of the eligibility vector eps is stored.

    eps_{t,ij} = D_{t,i} eps_{t-1,ij} + c_{t,i} u_{t,j}

Component k of eps is

    unreachable   no path from the input to k through c and the non-zero pattern of D:
                  eps_k stays zero and is dropped;
    presynaptic   c_k and every D entry feeding k from a reachable component are constant,
                  and those components are presynaptic too: eps_k is a fixed linear filter
                  of u_j alone, shared by all post neurons, stored as (batch, pre);
    per-synapse   anything else (downstream of a dynamic or per-neuron entry), stored as
                  (batch, post, pre).

A model with several synaptic inputs has one plan per input: each input I_p has its own c^p
and its own traces eps^p (D is shared), so the storage is decided per (input, state).

The plan also fixes the order in which components are updated in place, so that each
update reads the previous step's values; a component read by another one that is updated
after it is saved first.

Every backend prints the plan's rows (``updates``, ``adjoint``, ``param_traces``) and
nothing else decides them; ``summary()`` is the SymPy-free record the runtime builds its
layers and buffers from, and ``memory`` predicts those buffers from the same description.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from .analysis import CONSTANT, ZERO, Analysis
from .layouts import DENSE, Layout
from .surrogates import Pseudo

UNREACHABLE, PRESYNAPTIC, PER_SYNAPSE = "unreachable", "presynaptic", "per-synapse"


@dataclass(frozen=True)
class Step:
    """Update of one trace component: ``index`` reads the old values of ``reads``."""

    index: int
    reads: tuple  # indices j (including possibly index itself) with a non-zero D[index][j]
    save_first: bool  # keep a copy of the old value: a later update still reads it


@dataclass(frozen=True)
class Term:
    """``entry * source`` in a linear update.

    source: a state name (whose trace, adjoint or parameter trace is meant depends on the
    row), or None for the presynaptic input u, or for an entry standing alone (q, h, dz).
    """

    entry: str
    kind: str  # the entry's class
    unit: bool  # the entry is the number 1
    source: str | None = None
    source_storage: str | None = None  # the source trace's plan (trace updates only)
    saved: bool = False  # read the copy saved before the source was updated this step


@dataclass(frozen=True)
class TraceUpdate:
    """eps_k,t = sum_j D_kj eps_j,t-1 + c_k u_t for one planned component k."""

    state: str
    storage: str  # PRESYNAPTIC or PER_SYNAPSE
    save_first: bool
    terms: tuple

    @property
    def own(self) -> Term | None:
        """The term that reads this component's own previous value, if any."""
        return next((t for t in self.terms if t.source == self.state), None)

    @property
    def others(self) -> list[Term]:
        return [t for t in self.terms if t.source != self.state]

    @property
    def equation(self) -> str:
        return f"eps_{self.state}_t = " + " + ".join(
            f"{t.entry} * " + (f"eps_{t.source}_{{t-1}}" if t.source else "u_t") for t in self.terms)


@dataclass(frozen=True)
class AdjointRow:
    """BPTT: g_j,t = h_j,t gz_t + sum_k D_kj,t+1 g_k,t+1 (terms: D_kj with source k)."""

    state: str
    h: Term | None
    terms: tuple

    @property
    def equation(self) -> str:
        parts = ([f"{self.h.entry} * gz_t"] if self.h else []) + [
            f"{t.entry}_{{t+1}} * g_{t.source}_{{t+1}}" for t in self.terms]
        return f"g_{self.state}_t = " + (" + ".join(parts) or "0")


@dataclass(frozen=True)
class ParamRow:
    """eps^p_k,t = sum_j D_kj eps^p_j,t-1 + q_pk (terms: D_kj with source j)."""

    state: str
    terms: tuple
    q: Term | None


@dataclass(frozen=True)
class ParamTrace:
    """The per-neuron trace of a learnable parameter p and its eligibility
    e^p_t = sum_k h_k eps^p_k,t + dz_p (readout: h_k with source k)."""

    param: str
    rows: tuple
    readout: tuple
    dz: Term | None

    def equation(self, row: ParamRow) -> str:
        p = self.param
        parts = [f"{t.entry} * eps^{p}_{t.source}_{{t-1}}" for t in row.terms]
        return f"eps^{p}_{row.state}_t = " + " + ".join(parts + ([row.q.entry] if row.q else []) or ["0"])

    @functools.cached_property
    def eligibility(self) -> str:
        parts = [f"{t.entry} * eps^{self.param}_{t.source}_t" for t in self.readout]
        return f"e^{self.param}_t = " + " + ".join(parts + ([self.dz.entry] if self.dz else []) or ["0"])


@dataclass(frozen=True)
class PlanSummary:
    """What the runtime needs of a model's analysis and plan: names and storage, no SymPy."""

    states: tuple
    presynaptic: tuple
    per_synapse: tuple
    saved: tuple  # components whose old value is copied before the update (NumPy backend)
    eligible: tuple  # components with e_t = sum_k h_k eps_k: reachable, non-zero h
    readout: tuple  # (component, name of its h entry) for each eligible component
    param_traces: tuple  # (param, (states of its trace rows))
    entry_kinds: dict  # every non-zero entry's class, by name
    units: frozenset  # the entries equal to 1: printed as the number, never computed or read
    input: str  # the synaptic input these traces are of
    layout: Layout = DENSE  # which synapses exist: the shape of every per-synapse array

    @property
    def dynamic(self) -> list[str]:
        """Entries that change every step (returned by neuron_step)."""
        return [n for n, kind in self.entry_kinds.items() if kind == "dynamic"]

    def trace_shapes(self, batch: int, n: int, n_pre: int, nnz=None) -> dict:
        """The shape of each planned trace, by state: (batch, pre), or per synapse (batch, n, pre)
        or, in a sparse layout of ``nnz`` synapses, (batch, nnz)."""
        shape = {PRESYNAPTIC: (batch, n_pre), PER_SYNAPSE: self.layout.synapses(batch, n, n_pre, nnz)}
        storage = {s: PRESYNAPTIC for s in self.presynaptic} | {s: PER_SYNAPSE for s in self.per_synapse}
        return {s: shape[storage[s]] for s in self.presynaptic + self.per_synapse}

    def buffers(self, batch: int, n: int, n_pre: int, *, filtered: bool = False,
                sequence_sum: bool = False, regulariser: bool = False, fused: bool = False,
                events: bool = False, nnz=None) -> dict:
        """The arrays e-prop allocates for one layer besides the traces, by name.

        filtered: a filtered eligibility ebar per synapse; sequence_sum: a weighted sum of the
        eligibility over the sequence; regulariser: the firing-rate regulariser's sums; fused:
        the backend's kernel needs no scratch array for products; events: the kernels skip rows
        at rest and keep, per row, the step it is up to date at and what it owes the gradient;
        nnz: the synapses of a sparse layout.
        """
        synapses, weights = self.layout.synapses(batch, n, n_pre, nnz), self.layout.weights(n, n_pre, nnz)
        shapes = {"grad": weights, "product": weights}
        if not fused and (self.per_synapse or filtered or sequence_sum):
            shapes["scratch"] = synapses
        if filtered:
            shapes["ebar"] = synapses
        if sequence_sum:
            shapes["seq_sum"] = synapses
        if regulariser:
            shapes["reg_sum"] = weights
            shapes["ones"] = (batch, n)
        if events:
            shapes["last"] = shapes["pend"] = (batch, n)
        return shapes

    def memory(self, batch: int, n: int, n_pre: int, itemsize: int = 4, filtered: bool = True,
               sequence_sum: bool = False, regulariser: bool = False, fused: bool = False,
               events: bool = False, nnz=None) -> dict:
        """Bytes e-prop keeps for one layer, from ``trace_shapes`` and ``buffers``: what the
        runtime allocates. With an instantaneous readout, a per-step loss and no per-synapse
        component, the gradient is a matrix product and nothing per-synapse is stored."""
        def size(shape):
            count = itemsize
            for extent in shape:
                count *= extent
            return count

        shapes = self.trace_shapes(batch, n, n_pre, nnz)
        # the copies an in-place update saves first (fused kernels keep them in registers)
        traces = list(shapes.items()) + ([] if fused else [(s, shapes[s]) for s in self.saved])
        buffers = self.buffers(batch, n, n_pre, filtered=filtered, sequence_sum=sequence_sum,
                               regulariser=regulariser, fused=fused, events=events, nnz=nnz)
        labels = {"ebar": "filtered eligibility", "seq_sum": "sequence sum", "scratch": "scratch",
                  "grad": "gradient", "product": "gradient", "reg_sum": "regulariser",
                  "ones": "regulariser", "last": "rows at rest", "pend": "rows at rest"}
        figures = dict.fromkeys(["presynaptic traces", "per-synapse traces", "filtered eligibility",
                                 "sequence sum", "scratch", "parameter traces", "gradient"], 0)
        for state, shape in traces:
            figures["per-synapse traces" if state in self.per_synapse else "presynaptic traces"] += size(shape)
        for name, shape in buffers.items():
            figures[labels[name]] = figures.get(labels[name], 0) + size(shape)
        # a fused kernel keeps each row and writes each parameter's eligibility; the NumPy module
        # keeps each row twice (this step's values are written beside the last ones) and a product
        rows = sum(len(states) for _, states in self.param_traces)
        arrays = (rows + len(self.param_traces) if fused else 2 * rows + 1) if rows else 0
        figures["parameter traces"] = arrays * size((batch, n))
        figures["total"] = sum(figures.values())
        return figures


@dataclass(frozen=True)
class Quiescence:
    """What a (sample, post) row's per-synapse work reduces to while every surrogate derivative
    it reads is zero (a spiking neuron far from threshold, with a compact surrogate).

    decays: for each per-synapse trace component, the fixed factor it is multiplied by on such a
    step (eps_k,t = decay_k eps_k,t-1); the eligibility e_t is zero then, so the filtered
    eligibility only decays by kappa and the sums gain nothing. None with ``reason`` when the
    model's rows never reduce to that.
    """

    decays: dict | None
    reason: str = ""
    at_rest: tuple = ()  # the surrogate derivatives that are zero at rest, with time indices

    @property
    def event_driven(self) -> bool:
        return self.decays is not None


class TracePlan:
    """Storage and update order of the eligibility traces of one synaptic input of
    ``analysis``'s model (its only one unless it declares several)."""

    def __init__(self, analysis: Analysis, dense: bool = False, input_symbol=None):
        """dense: keep every reachable component per synapse, as if no entry were constant
        (the seed paper's formulation; for measuring what the plan saves)."""
        if input_symbol is None:
            if len(analysis.inputs) > 1:
                raise ValueError(f"model {analysis.model.name!r} has several inputs: plan one of "
                                 f"{', '.join(analysis.model.input_names)}")
            input_symbol = analysis.inputs[0]
        self.analysis = analysis
        self.dense = dense
        self.input = input_symbol
        D = analysis.D
        self.c = c = analysis.c_of[input_symbol]
        size = len(c)
        reachable = _reachable(D, c)
        presynaptic = set() if dense else set(reachable)
        changed = True
        while changed:  # demote until every presynaptic component only hears constant ones
            changed = False
            for k in sorted(presynaptic):
                feeders_ok = all(D[k][j].kind == CONSTANT and j in presynaptic
                                 for j in reachable if not D[k][j].is_zero)
                if c[k].kind not in (ZERO, CONSTANT) or not feeders_ok:
                    presynaptic.discard(k)
                    changed = True
        self.kinds = [
            UNREACHABLE if k not in reachable else PRESYNAPTIC if k in presynaptic else PER_SYNAPSE
            for k in range(size)
        ]
        self.reachable = sorted(reachable)
        self.presynaptic = [k for k in range(size) if self.kinds[k] == PRESYNAPTIC]
        self.per_synapse = [k for k in range(size) if self.kinds[k] == PER_SYNAPSE]
        # Components a learnable parameter reaches through q and D: its per-neuron trace.
        self.param_reach = {p: _reachable(D, q) for p, q in analysis.q.items()}
        # BPTT's adjoint is the model's, whichever input: every state an input or parameter reaches.
        heard = [_reachable(D, other) for other in analysis.c_of.values()]
        self.relevant = sorted(reachable.union(*heard, *self.param_reach.values()))
        # Per-synapse components read presynaptic ones, never the reverse: update them first.
        self.steps = _order(D, self.per_synapse, reachable) + _order(D, self.presynaptic, reachable)
        self.eligible = [k for k in self.reachable if not analysis.h[k].is_zero]

    # -- views ---------------------------------------------------------------------------
    def by_name(self) -> dict:
        return dict(zip(self.analysis.names, self.kinds))

    def filter_coefficients(self) -> dict:
        """For each presynaptic trace: its constant c entry and the D entries feeding it."""
        D, c, names = self.analysis.D, self.c, self.analysis.names
        return {
            names[k]: {
                "c": c[k].expr,
                "D": {names[j]: D[k][j].expr for j in self.presynaptic if not D[k][j].is_zero},
            }
            for k in self.presynaptic
        }

    @property
    def saved(self) -> list[int]:
        return [s.index for s in self.steps if s.save_first]

    def _term(self, kind: str, k, j=None, source: int | None = None, **extra) -> Term | None:
        """The entry (kind, k, j) as a term on ``source``'s value; None when it is zero."""
        a = self.analysis
        entry = a.entry(kind, k, j)
        if entry.is_zero:
            return None
        return Term(a.entry_name(kind, k, j), entry.kind, entry.expr == 1,
                    None if source is None else a.names[source], **extra)

    # -- the rows every backend prints -------------------------------------------------------
    @functools.cached_property
    def updates(self) -> list[TraceUpdate]:
        """Each planned component's update, in the planned order."""
        saved, done, updates = set(self.saved), set(), []
        for step in self.steps:
            k = step.index
            terms = [self._term("D", k, j, j, source_storage=self.kinds[j], saved=j in saved and j in done)
                     for j in step.reads]
            terms.append(self._term("c", k, self.input))
            updates.append(TraceUpdate(self.analysis.names[k], self.kinds[k], step.save_first,
                                       tuple(t for t in terms if t)))
            done.add(k)
        return updates

    @functools.cached_property
    def adjoint(self) -> list[AdjointRow]:
        """BPTT's rows for the components that matter to a gradient (``relevant``)."""
        return [AdjointRow(self.analysis.names[j], self._term("h", j),
                           tuple(t for t in (self._term("D", k, j, k) for k in self.relevant) if t))
                for j in self.relevant]

    @functools.cached_property
    def eligibility(self) -> list[Term]:
        """e_t = sum_k h_k eps_k,t: h_k on source k, for each eligible component."""
        return [self._term("h", k, source=k) for k in self.eligible]

    @functools.cached_property
    def input_terms(self) -> list[tuple[Term, Term | None]]:
        """(c_k, h_k) of each component the input feeds: dL/dI = sum_k c_k g_k and
        dz/dI = sum_k h_k c_k."""
        return [(self._term("c", k, self.input, source=k), self._term("h", k)) for k in range(len(self.c))
                if not self.c[k].is_zero]

    @functools.cached_property
    def param_traces(self) -> list[ParamTrace]:
        traces = []
        for p in self.analysis.q:
            comps = [k for k in self.relevant if k in self.param_reach[p]]
            rows = tuple(ParamRow(self.analysis.names[k],
                                  tuple(t for t in (self._term("D", k, j, j) for j in comps) if t),
                                  self._term("q", p, k))
                         for k in comps)
            readout = tuple(t for t in (self._term("h", k, source=k) for k in comps) if t)
            traces.append(ParamTrace(p.name, rows, readout, self._term("dz", p)))
        return traces

    @functools.cached_property
    def _summary(self) -> PlanSummary:
        names = self.analysis.names
        return PlanSummary(
            states=tuple(names),
            presynaptic=tuple(names[k] for k in self.presynaptic),
            per_synapse=tuple(names[k] for k in self.per_synapse),
            saved=tuple(names[k] for k in self.saved),
            eligible=tuple(names[k] for k in self.eligible),
            readout=tuple((h.source, h.entry) for h in self.eligibility),
            param_traces=tuple((pt.param, tuple(r.state for r in pt.rows)) for pt in self.param_traces),
            entry_kinds={n: e.kind for n, e in self.analysis.entries().items()},
            units=frozenset(n for n, e in self.analysis.entries().items() if e.expr == 1),
            input=self.input.name,
        )

    def summary(self) -> PlanSummary:
        return self._summary

    @staticmethod
    def resting(entry) -> sp.Expr:
        """An entry's value at rest: every surrogate derivative in it set to zero."""
        expr = entry.expr.replace(lambda e: isinstance(e, Pseudo), lambda e: sp.S.Zero)
        # cancel, not simplify: enough to see a zero or a ratio of parameters, and it stays fast on
        # the long polynomials of a Runge-Kutta step, where simplify's trigonometric passes take minutes
        return sp.cancel(sp.expand(expr)) if expr.free_symbols else expr

    @functools.cached_property
    def quiescence(self) -> Quiescence:
        """Whether rows whose surrogate derivatives are all zero can be skipped exactly, their
        traces decayed lazily by a fixed factor (derived by setting every surrogate to zero in
        D, c and h)."""
        a, names = self.analysis, self.analysis.names
        resting = self.resting
        if not self.eligible:
            return Quiescence(None, "the input reaches no state the output depends on: e is always zero")
        surrogates = {type(p) for e in a.entries().values() for p in e.expr.atoms(Pseudo)}
        if not surrogates:
            return Quiescence(None, "no surrogate derivative in its Jacobians: every row is always active")
        if not all(cls.compact for cls in surrogates):
            names_ = ", ".join(sorted(cls.__name__ for cls in surrogates if not cls.compact))
            return Quiescence(None, f"{names_} is never zero: no row is ever at rest")
        for k in self.eligible:
            if resting(a.h[k]) != 0:
                return Quiescence(None, f"h_{names[k]} does not vanish with the surrogate: "
                                        f"{resting(a.h[k])}")
        decays = {}
        for k in self.per_synapse:
            if resting(self.c[k]) != 0:
                return Quiescence(None, f"eps_{names[k]} keeps hearing its input at rest "
                                        f"({a.entry_name('c', k, self.input)} = {resting(self.c[k])})")
            for j in self.reachable:
                if j != k and resting(a.D[k][j]) != 0:
                    return Quiescence(None, f"eps_{names[k]} keeps hearing eps_{names[j]} at rest")
            decay = resting(a.D[k][k])
            if decay.free_symbols - set(a.model.params) or decay.free_symbols & set(a.model.neuron_params):
                return Quiescence(None, f"eps_{names[k]}'s decay at rest is not one number for the "
                                        f"layer: {decay}")
            decays[names[k]] = decay
        model = a.model
        previous = {model.previous(p) for e in a.D_c_entries() for p in e.expr.atoms(Pseudo)}
        current = {model.current(p) for e in a.h for p in e.expr.atoms(Pseudo)}
        return Quiescence(decays, at_rest=tuple(sorted(previous)) + tuple(sorted(current - previous)))

    def memory(self, batch: int, n: int, n_pre: int, itemsize: int = 4, **flags) -> dict:
        """Bytes e-prop keeps for one layer (see ``PlanSummary.memory`` for the flags)."""
        return self.summary().memory(batch, n, n_pre, itemsize, **flags)


def plans_of(analysis: Analysis, dense: bool = False) -> list[TracePlan]:
    """One plan per synaptic input of ``analysis``'s model, in declaration order."""
    return [TracePlan(analysis, dense, input_symbol) for input_symbol in analysis.inputs]


def unheard_input(input_symbol, eligible) -> str | None:
    """Why every weight's gradient is zero, where the input reaches no state the output
    depends on (no ``eligible`` component); None where the input is heard."""
    if eligible:
        return None
    return f"the input {input_symbol} reaches no state the output depends on, so the weights get zero gradients"


def _reachable(D, sources) -> set:
    """Components reached from the non-zero ``sources`` entries through non-zero D entries."""
    c = sources
    frontier = [k for k, entry in enumerate(c) if not entry.is_zero]
    seen = set(frontier)
    while frontier:
        j = frontier.pop()
        for k in range(len(c)):
            if k not in seen and not D[k][j].is_zero:
                seen.add(k)
                frontier.append(k)
    return seen


def _order(D, group: list[int], reachable: set) -> list[Step]:
    """An in-place update order for ``group``; components read after being overwritten are saved."""
    reads = {k: tuple(j for j in sorted(reachable) if not D[k][j].is_zero) for k in group}
    remaining, steps = list(group), []
    while remaining:
        def pending_readers(k):
            return [r for r in remaining if r != k and k in reads[r]]
        free = [k for k in remaining if not pending_readers(k)]
        k = free[0] if free else remaining[0]
        steps.append(Step(k, reads[k], save_first=not free))
        remaining.remove(k)
    return steps
