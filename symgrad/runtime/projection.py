"""A network's projections, and the keys of its parameters, derived in one place.

A projection carries one source into one synaptic input of one layer: the layer's input (the
data for layer 0, the spikes of the layer below for the others), the layer's own spikes of the
previous step (recurrent), or a constant 1 (the bias). Its weights, and every other trained
parameter of a network (each layer's learnable neuron parameters, the readout's ``W_out`` and
``b_out``), are keyed in ``Network.params`` by ``parameter_keys``, the only function that
spells a key:

- A parameter's readable spelling where no other parameter of the network has it: a weight's
  name within its layer (``weight_name``: ``W_in``, ``W_rec``, ``b_in`` of a model with one input,
  ``W_in_<input>``, ... of one with several), or a learnable parameter's own name, followed by
  ``_<l>`` in layer l > 0 (``W_in_1``, ``W_rec_I_e_2``, ``tau_1``), and ``W_out``, ``b_out``.
- Where readable spellings meet (inputs ``I`` and ``I_1``: layer 1's ``W_in_I`` + ``_1`` is layer
  0's ``W_in_I_1``; learnable ``tau`` and ``tau_1`` in two layers), or a learnable parameter is
  spelled like the readout's ``W_out`` or ``b_out``, each of them takes its qualified spelling:
  ``layer<l>.<stem>.<input>`` for a weight (``layer1.W_in.I``), ``layer<l>.<name>`` for a
  learnable parameter (``layer1.tau``). The readout keeps ``W_out`` and ``b_out``.

Model names are identifiers, so a readable spelling holds no dot and a qualified one is never
readable; a qualified spelling reads back into its layer, kind and names, so two cannot meet.
"""
from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

READOUT = ("W_out", "b_out")


class Source(enum.Enum):
    """What a projection carries; the values are the names a model's wiring gives them."""

    INPUT = "input"  # the layer's input: the data, or the spikes of the layer below
    RECURRENT = "recurrent"  # the layer's own spikes of the previous step
    BIAS = "bias"  # a constant 1


STEMS = {Source.INPUT: "W_in", Source.RECURRENT: "W_rec", Source.BIAS: "b_in"}


@dataclass(frozen=True)
class Projection:
    """One projection of a network: its weights (a bias: one per neuron) are
    ``Network.params[key]``, and multiply the columns ``columns`` of its port's u."""

    layer: int  # the index of the layer it drives
    input: str  # the name of the model input it drives
    source: Source
    columns: slice  # its columns in the port's presynaptic vector u
    name: str  # its name within the layer (``weight_name``)
    key: str  # its parameter's key in Network.params


def weight_name(model, source: Source, input_name: str) -> str:
    """The name of a weight within a layer: a layer-0 weight's readable key (``W_in``, ``W_rec_I_e``,
    ``b_in_I_e``), and what a network's ``signs`` and the files of ``symgrad grads`` call it."""
    return STEMS[source] + ("" if len(model.inputs) == 1 else f"_{input_name}")


def parameter_keys(layers, readout: bool) -> dict:
    """Every parameter's key in ``Network.params`` (see the module's rule), by what it is:
    ``(layer index, Source, input name)`` of each projection of each layer's ports (each port
    tells its ``sources()``), ``(layer index, name)`` of each learnable neuron parameter, and
    the readout's names themselves."""
    readable, qualified = {}, {}
    for layer in layers:
        after = "" if layer.index == 0 else f"_{layer.index}"
        for port in layer.ports:
            for source in port.sources():
                what = (layer.index, source, port.input)
                readable[what] = weight_name(layer.model, source, port.input) + after
                qualified[what] = f"layer{layer.index}.{STEMS[source]}.{port.input}"
        for p in layer.model.learnable:
            what = (layer.index, p.name)
            readable[what] = p.name + after
            qualified[what] = f"layer{layer.index}.{p.name}"
    spelled = Counter(readable.values())
    keys = {what: key if spelled[key] == 1 and key not in READOUT else qualified[what]
            for what, key in readable.items()}
    if readout:
        keys.update({name: name for name in READOUT})
    repeated = sorted(key for key, count in Counter(keys.values()).items() if count > 1)
    if repeated:
        models = ", ".join(dict.fromkeys(layer.model.name for layer in layers))
        raise AssertionError(f"a bug in symgrad: the network of model(s) {models} keys two parameters "
                             f"{repeated[0]!r}; please report it")
    return keys
