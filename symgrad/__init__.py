"""symgrad: online gradient-based synaptic plasticity generated from SymPy neuron models."""
from . import surrogates
from .model import ModelError, NeuronModel, spike, stop_gradient

__all__ = ["NeuronModel", "ModelError", "spike", "stop_gradient", "surrogates"]
__version__ = "0.1.0"
