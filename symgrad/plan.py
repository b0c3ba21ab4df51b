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

The plan also fixes the order in which components are updated in place, so that each
update reads the previous step's values; a component read by another one that is updated
after it is saved first.
"""
from __future__ import annotations

from dataclasses import dataclass

from .analysis import CONSTANT, ZERO, Analysis

UNREACHABLE, PRESYNAPTIC, PER_SYNAPSE = "unreachable", "presynaptic", "per-synapse"


@dataclass(frozen=True)
class Step:
    """Update of one trace component: ``index`` reads the old values of ``reads``."""

    index: int
    reads: tuple  # indices j (including possibly index itself) with a non-zero D[index][j]
    save_first: bool  # keep a copy of the old value: a later update still reads it


class TracePlan:
    """Storage and update order of the eligibility traces of ``analysis``'s model."""

    def __init__(self, analysis: Analysis, dense: bool = False):
        """dense: keep every reachable component per synapse, as if no entry were constant
        (the seed paper's formulation; for measuring what the plan saves)."""
        self.analysis = analysis
        self.dense = dense
        D, c = analysis.D, analysis.c
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
        self.relevant = sorted(reachable.union(*self.param_reach.values()))
        # Per-synapse components read presynaptic ones, never the reverse: update them first.
        self.steps = _order(D, self.per_synapse, reachable) + _order(D, self.presynaptic, reachable)

    # -- views ---------------------------------------------------------------------------
    def by_name(self) -> dict:
        return dict(zip(self.analysis.names, self.kinds))

    def filter_coefficients(self) -> dict:
        """For each presynaptic trace: its constant c entry and the D entries feeding it."""
        D, c, names = self.analysis.D, self.analysis.c, self.analysis.names
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

    def memory(self, batch: int, n: int, n_pre: int, itemsize: int = 4,
               filtered: bool = True, sequence: str | None = None) -> dict:
        """Bytes that e-prop keeps for one layer, as the runtime allocates them.

        filtered: the readout leaks (kappa > 0), so the eligibility is low-pass filtered
        per synapse; sequence: "mean" or "last" for a loss on the whole sequence. With an
        instantaneous readout, a per-step loss and no per-synapse component, the gradient is
        a matrix product and nothing per-synapse is stored.
        """
        synapse = batch * n * n_pre * itemsize
        stored = len(self.per_synapse) + len([k for k in self.saved if k in self.per_synapse])
        ebar = filtered or sequence == "last"
        figures = {
            "presynaptic traces": (len(self.presynaptic) + len([k for k in self.saved if k in self.presynaptic]))
            * batch * n_pre * itemsize,
            "per-synapse traces": stored * synapse,
            "filtered eligibility": synapse if ebar else 0,
            "sequence sum": synapse if sequence == "mean" else 0,
            "scratch": synapse if (self.per_synapse or ebar or sequence) else 0,
            "parameter traces": sum(len(r) for r in self.param_reach.values()) * batch * n * itemsize,
            "gradient": 2 * n * n_pre * itemsize,
        }
        figures["total"] = sum(figures.values())
        return figures


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
