"""The runtime the generated code runs in: networks, gradient passes, losses, optimisers."""
from .bptt import bptt
from .eprop import Result, eprop
from .network import Layer, Network

RULES = {"eprop": eprop, "bptt": bptt}

__all__ = ["Network", "Layer", "Result", "eprop", "bptt", "RULES"]
