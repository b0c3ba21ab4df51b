"""The contract between the runtime and a layer's generated code, whatever the backend.

The generated NumPy module provides it as module attributes; the CUDA layer
(``symgrad.runtime.kernel_layer.KernelLayer``) as an object over the generated kernels. e-prop and
BPTT use nothing else. Arrays are NumPy or CuPy arrays; states and entries are (batch, n).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class LayerCode(Protocol):
    STATES: list  # state names, in declaration order
    PARAMS: list
    LEARNABLE: list
    INITIAL: dict  # state name -> initial value
    PRESYNAPTIC: list  # traces stored (batch, pre)
    PER_SYNAPSE: list  # traces stored (batch, post, pre)

    def fixed_entries(self, p: dict) -> dict:
        """Jacobian entries fixed for the run (K), from the parameter values p."""

    def neuron_step(self, s: dict, I: Any, p: dict) -> tuple:
        """(new states, z_t, dynamic entries J) from the previous states and the input."""

    def Traces(self, batch: int, n: int, n_pre: int, dtype) -> Any:
        """The planned traces, with ``update(J, K, u[, scratch])``."""

    def input_gain(self, J: dict, K: dict) -> Any:
        """dz_t / dI_t, (batch, n)."""

    def backward_step(self, g: dict, gz: Any, J: dict, J_next: dict, K: dict) -> tuple:
        """(dL/ds_t by state, dL/dI_t) from dL/ds_t+1 and dL/dz_t."""

    # With learnable parameters, also ParamTraces(batch, n, dtype) (update, eligibility) and
    # param_gradients(g, gz, J, K).


@dataclass
class SynapseBuffers:
    """What one layer's per-synapse step reads and adds to, owned by e-prop and passed to the
    step explicitly. Shapes come from ``PlanSummary.buffers``; absent sums are None."""

    u: Any  # u_t (batch, pre): the presynaptic input of this step
    grad: Any  # (post, pre): += sum_b L e (or L ebar)
    product: Any  # (post, pre): scratch for matrix products
    scratch: Any = None  # (batch, post, pre): scratch for products (unfused backends)
    ebar: Any = None  # (batch, post, pre): the filtered eligibility
    seq_sum: Any = None  # (batch, post, pre): += w_t e_t over the sequence
    reg_sum: Any = None  # (post, pre): += sum_b e for the firing-rate regulariser
    ones: Any = None  # (batch, post): the regulariser's learning signal
    last: Any = None  # (batch, post): event-driven kernels: the step each row is up to date at
    pend: Any = None  # (batch, post): what a row's skipped steps owe the gradient
    step: int = 0  # this step's index
