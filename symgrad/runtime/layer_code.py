"""The contract between the runtime and a layer's generated code, whatever the backend.

``ModuleLayer`` (runtime/module_layer.py) provides it over the generated NumPy module and
``KernelLayer`` (runtime/kernel_layer.py) over generated kernels. e-prop and BPTT use nothing
else: no attribute of the generated code is looked up by a composed name. Arrays are NumPy or
CuPy arrays; states and entries are (batch, n), keyed by state and entry name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..plan import PlanSummary


@runtime_checkable
class PortCode(Protocol):
    """The generated code of one synaptic input of a model (a one-input model has one)."""

    input: str  # the model's input symbol's name
    plan: PlanSummary  # its traces' storage
    fused: bool  # synapse_step is one kernel: no scratch arrays
    events: bool  # it can skip rows at rest (``active_fraction`` and ``settle`` then work)

    def traces(self, batch: int, n: int, n_pre: int, dtype, synapses=None) -> Any:
        """The planned traces, zero, with ``update(J, K, u[, scratch])``: eps_t = D_t eps_t-1 + c_t u_t;
        ``synapses``: the port's sparse rows (``connectivity.Synapses``) where its plan's layout is sparse."""

    def trace(self, traces: Any, state: str) -> Any:
        """The trace of ``state`` in ``traces``: (batch, pre) presynaptic, (batch, post, pre) per
        synapse, or (batch, nnz) in sparse rows."""

    def input_gain(self, J: dict, K: dict) -> Any:
        """dz_t / dI_t, (batch, n)."""

    def synapse_step(self, traces, J: dict, K: dict, buffers: SynapseBuffers, L, kappa,
                     weight: float = 1.0, skip_rest: bool = False) -> None:
        """e-prop's per-synapse work for one step (see eprop.synapse_step); ``skip_rest``: leave
        the rows at rest for later (``settle``), where the port has ``events``."""

    def active_fraction(self, J: dict, K: dict) -> float:
        """The fraction of (sample, post) rows not at rest this step."""

    def settle(self, traces, K: dict, buffers: SynapseBuffers, kappa) -> None:
        """Bring every row left at rest up to date."""


@runtime_checkable
class LayerCode(Protocol):
    name: str  # the model's
    STATES: list  # state names, in declaration order
    PARAMS: list
    LEARNABLE: list
    INITIAL: dict  # state name -> initial value
    DYNAMIC: list  # the entries neuron_step returns (J)
    ports: dict  # input name -> PortCode, every input of the model in declaration order

    def fixed_entries(self, p: dict, dtype=None) -> dict:
        """Jacobian entries fixed for the run (K), from the parameter values p, in ``dtype``."""

    def neuron_step(self, s: dict, *currents_and_p) -> tuple:
        """(new states, z_t, dynamic entries J) from neuron_step(s, I_1, ..., I_k, p)."""

    def param_traces(self, batch: int, n: int, dtype) -> Any:
        """The learnable parameters' traces, with update(J, K) and eligibility(J, K) -> {param: e^p}."""

    def backward_step(self, g: dict, gz: Any, J: dict, J_next: dict, K: dict) -> tuple:
        """({state: dL/ds_t}, {input: dL/dI_t}) from dL/ds_t+1 and dL/dz_t."""

    def param_gradients(self, g: dict, gz: Any, J: dict, K: dict) -> dict:
        """{learnable parameter: dL/dp at this step, per sample and neuron}."""


@dataclass
class SynapseBuffers:
    """What one layer's per-synapse step reads and adds to, owned by e-prop and passed to the
    step explicitly. Shapes come from ``PlanSummary.buffers``; absent sums are None. Shown for
    dense synapses; in sparse rows (post, pre) is (nnz,) and (batch, post, pre) (batch, nnz)."""

    u: Any  # u_t (batch, pre): the presynaptic input of this step
    grad: Any  # (post, pre): += sum_b L e (or L ebar)
    product: Any  # (post, pre): scratch for matrix products
    synapses: Any = None  # the port's DenseSynapses or Synapses (connectivity.py), on the arrays' device
    scratch: Any = None  # (batch, post, pre): scratch for products (unfused backends)
    ebar: Any = None  # (batch, post, pre): the filtered eligibility
    seq_sum: Any = None  # (batch, post, pre): += w_t e_t over the sequence
    reg_sum: Any = None  # (post, pre): += sum_b e for the firing-rate regulariser
    ones: Any = None  # (batch, post): the regulariser's learning signal
    last: Any = None  # (batch, post): rows at rest: the step each row is up to date at
    pend: Any = None  # (batch, post): what a row's skipped steps owe the gradient
    step: int = 0  # this step's index
    behind: bool = False  # some row was left at rest since the last settle
