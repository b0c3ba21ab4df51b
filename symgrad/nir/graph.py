"""Reading a NIR graph as a chain of symgrad layers.

symgrad's networks are chains: input -> weights -> neurons (with an optional recurrent
weight node feeding the neurons back into themselves) -> weights -> neurons ... -> output,
where the last neurons may be a leaky integrator read out through the weights before it.
``chain`` walks a graph along that shape and names the first node that leaves it. Subgraphs
(snnTorch writes each recurrent layer as one) are flattened first.
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from ..errors import UserError
from .models import KINDS

WEIGHTS = (nir.Affine, nir.Linear)


class NirError(UserError, ValueError):
    """A graph symgrad cannot represent, or a network NIR cannot: one line naming the node."""


@dataclass
class Stage:
    """One neuron node with the weights into it (and around it, if recurrent)."""

    name: str
    node: object  # the NIR neuron node
    weights: str  # the name of the weight node that feeds it from the stage before
    forward: object  # that Affine or Linear node
    recurrent: object | None = None  # the Affine or Linear node of its cycle
    recurrent_name: str | None = None

    @property
    def kind(self) -> str:
        return type(self.node).__name__

    @property
    def size(self) -> int:
        return self.forward.weight.shape[0]


def flatten(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict, list]:
    """Nodes and edges with every subgraph's nodes inlined as "outer.inner", its Input and
    Output nodes bypassed."""
    nodes, edges = {}, []
    entry, exit_ = {}, {}  # subgraph name -> the inner names its input feeds / its output hears
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = flatten(node, f"{prefix}{name}.")
            ins = {f"{prefix}{name}.{k}" for k, n in node.nodes.items() if isinstance(n, nir.Input)}
            outs = {f"{prefix}{name}.{k}" for k, n in node.nodes.items() if isinstance(n, nir.Output)}
            # an outer edge may name the subgraph or its Input/Output node itself
            for key in [f"{prefix}{name}", *ins]:
                entry[key] = [b for a, b in inner_edges if a in ins]
            for key in [f"{prefix}{name}", *outs]:
                exit_[key] = [a for a, b in inner_edges if b in outs]
            nodes.update({k: v for k, v in inner_nodes.items() if k not in ins | outs})
            edges += [(a, b) for a, b in inner_edges if a not in ins and b not in outs]
        else:
            nodes[f"{prefix}{name}"] = node
    for a, b in graph.edges:
        a, b = f"{prefix}{a}", f"{prefix}{b}"
        edges += [(s, t) for s in exit_.get(a, [a]) for t in entry.get(b, [b])]
    return nodes, list(dict.fromkeys(edges))


def chain(graph: nir.NIRGraph) -> tuple[int, list[Stage]]:
    """The input size and the stages of a graph, or a NirError naming where it is no chain."""
    nodes, edges = flatten(graph)
    for name, node in nodes.items():
        if not isinstance(node, (nir.Input, nir.Output, *WEIGHTS)) and type(node).__name__ not in KINDS:
            raise NirError(f"node {name!r} ({type(node).__name__}): symgrad supports Affine, Linear and "
                           f"the neurons {', '.join(KINDS)}; {_why_not(node)}")
    after = {name: [b for a, b in edges if a == name] for name in nodes}
    before = {name: [a for a, b in edges if b == name] for name in nodes}
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NirError(f"the graph has {len(inputs)} Input and {len(outputs)} Output nodes; "
                       "symgrad reads graphs with one of each")
    name, stages = inputs[0], []
    n_in = int(np.prod(nodes[name].output_type["output"]))
    while True:
        nxt = _only_successor(name, after, nodes, "the input" if not stages else None)
        if isinstance(nodes[nxt], nir.Output):
            break
        if not isinstance(nodes[nxt], WEIGHTS):
            raise NirError(f"node {nxt!r} ({type(nodes[nxt]).__name__}) follows {name!r} directly; "
                           "symgrad needs an Affine or Linear node between neuron layers")
        weights = nxt
        neuron_name = _only_successor(weights, after, nodes)
        node = nodes[neuron_name]
        if type(node).__name__ not in KINDS:
            raise NirError(f"node {neuron_name!r} ({type(node).__name__}) follows the weights {weights!r}; "
                           "symgrad needs a neuron node there")
        if any(stage.name == neuron_name for stage in stages):
            raise NirError(f"the weights {weights!r} feed node {neuron_name!r} ({type(node).__name__}) back from a "
                           "later layer; symgrad reads recurrence only as a layer's own weight node")
        stage = Stage(neuron_name, node, weights, nodes[weights])
        _recurrence(stage, nodes, after, before)
        stages.append(stage)
        name = neuron_name
    if not stages:
        raise NirError("the graph has no neuron node between its Input and Output")
    on_chain = {inputs[0], nxt} | {n for s in stages for n in (s.name, s.weights, s.recurrent_name) if n}
    for name, node in nodes.items():
        if name not in on_chain:
            raise NirError(f"node {name!r} ({type(node).__name__}) is off the chain from the input to the "
                           "output; symgrad reads graphs that neither branch nor merge")
    return n_in, stages


def _only_successor(name, after, nodes, label=None) -> str:
    """The one node after ``name`` outside its recurrent cycle."""
    onward = [b for b in after[name] if not _is_cycle_weight(name, b, after, nodes)]
    if len(onward) != 1:
        where = label or f"node {name!r} ({type(nodes[name]).__name__})"
        targets = ", ".join(repr(b) for b in onward) or "nothing"
        raise NirError(f"{where} feeds {targets}; symgrad reads chains, where each node feeds exactly one "
                       "other (besides a recurrent weight node)")
    return onward[0]


def _is_cycle_weight(name, candidate, after, nodes) -> bool:
    return (type(nodes[name]).__name__ in KINDS and isinstance(nodes[candidate], WEIGHTS)
            and after[candidate] == [name])


def _recurrence(stage: Stage, nodes, after, before) -> None:
    cycle = [b for b in after[stage.name] if _is_cycle_weight(stage.name, b, after, nodes)]
    if len(cycle) > 1:
        raise NirError(f"node {stage.name!r} ({stage.kind}) has {len(cycle)} recurrent weight nodes; "
                       "symgrad reads one")
    fed_by = [a for a in before[stage.name] if a not in cycle]
    if fed_by != [stage.weights]:
        raise NirError(f"node {stage.name!r} ({stage.kind}) hears {', '.join(map(repr, fed_by))}; "
                       "symgrad reads neurons fed by one weight node (and their own recurrent one)")
    if cycle:
        rec = nodes[cycle[0]]
        if before[cycle[0]] != [stage.name]:
            raise NirError(f"recurrent weight node {cycle[0]!r} hears more than {stage.name!r}")
        stage.recurrent, stage.recurrent_name = rec, cycle[0]


def _why_not(node) -> str:
    if isinstance(node, nir.Delay):
        return "delays would need a history of each input, which e-prop's traces do not keep"
    if type(node).__name__.startswith(("Conv", "SumPool", "AvgPool", "Flatten")):
        return "convolutions, pooling and reshaping are not among its layers (dense weights only)"
    return "this node type has no counterpart in symgrad's networks"
