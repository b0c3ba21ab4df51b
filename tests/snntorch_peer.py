"""snnTorch (1.0.0, with nir 1.0.8 / nirtorch 2.6) as a reference peer for symgrad, through NIR.

Network: x -> Linear(n_in, H) -> hidden -> Linear(H, n_out) -> output neurons; every
Linear with bias, every neuron threshold 1, reset_mechanism="zero", reset_delay=False,
init_hidden=True. float32, state zero before t = 0. Per step, I the Linear's output,
s', v', i' the previous spikes / mem (after reset) / current, beta and alpha clamped
to [0, 1] (snnTorch source, snntorch/_neurons/*.py; every op rounds to float32):

  Leaky      v = beta*v' + I
  RLeaky     v = (beta*v' + I) + (W_rec @ s' + b_rec)            b_rec enters at t = 0 too
  Synaptic   i = alpha*i' + I;                     v = beta*v' + i  (the new i)
  RSynaptic  i = (alpha*i' + I) + (W_rec @ s' + b_rec);  v = beta*v' + i
  then       s = ((v - thr) > 0), i.e. v > thr strictly;  v = v - s*v  (0 where s = 1)

i is never reset. snnTorch's reset term from the previous mem, (1 - H(v' - thr)), is
always 1 here, since v' is already reset. `mem` below is v after the reset.

NIR: snnTorch fixes dt = 1e-4. Export: tau = dt/(1-beta), r = tau/dt, tau_syn =
dt/(1-alpha), w_in = tau_syn/dt, v_leak = v_reset = 0, v_threshold = thr, float32
arrays for Leaky/Synaptic, float64 for the recurrent layers. Import: beta = 1 - dt/tau,
alpha = 1 - dt/tau_syn in the arrays' dtype, then cast to float32; float64 tau gives
back every float32 beta in [0.5, 1) exactly; float32 tau misses 6.7% of those in
[0.5, 0.68) (none above 0.67989) and most below 0.5, by an ulp (alpha is drawn in
[0.7, 0.9] here for that reason). The import ("hack_w_scale") requires
v_leak = 0 and, for CubaLIF, r = tau_mem/dt (asserted), and one threshold for the layer.
If w_scale = r*dt/tau (LIF) or w_in*dt/tau_syn (CubaLIF) is not allclose to 1, it
prints a warning and divides the threshold by w_scale, not the weights: LIF uses the
smallest w_scale of the layer for all neurons (silently wrong when it varies), CubaLIF
asserts that thr/w_scale is uniform. So write r = tau/dt and w_in = tau_syn/dt.
"""
import contextlib
import copy
import io
import warnings

import nir
import numpy as np
import snntorch as snn
import torch
from nirtorch.nir_interpreter import _sanitize_name
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import _nir_to_snntorch_module, import_from_nir

_STATE = ("spk", "syn", "mem")
# (mean, spread) of fc1 and fc2, spread of W_rec (see _init). On random_input(100, 4, n_in)
# each layer spikes in 2-30% of its (t, b, neuron) entries (checked: (n_in, hidden, n_out)
# = (3, 8, 2), (6, 16, 1), (10, 32, 5), (20, 64, 4), seeds 0-9, both per_neuron, recurrent)
_GAINS = {"lif": ((0.3, 0.2), (2.2, 0.3), 0.25),
          "cuba_lif": ((0.06, 0.05), (0.4, 0.05), 0.05)}


def _rsynaptic_forward(self, input_):
    """RSynaptic.forward with the reset_delay=False that snnTorch 1.0.0 intends.

    Its own branch divides the `spk` argument, None with init_hidden=True (TypeError),
    and with init_hidden=False never writes the reset back to self.mem (the reset then
    comes one step late and zeroes that step's whole v). So: run it as reset_delay=True,
    then apply Synaptic's and RLeaky's immediate reset line to self.mem.
    """
    self.reset_delay = True
    try:
        spk = snn.RSynaptic.forward(self, input_)
    finally:
        self.reset_delay = False
    self.mem = self.mem - (spk / self.graded_spikes_factor - self.reset) * self.mem
    return spk


def build(kind, n_in, hidden, n_out, *, recurrent=True, seed=0, per_neuron=True):
    """nn.Sequential: Linear, {RLeaky, Leaky} ("lif") or {RSynaptic, Synaptic}
    ("cuba_lif"), Linear, Leaky / Synaptic. Indices 0-3, as named in the NIR export.

    beta ~ U[0.85, 0.97], alpha ~ U[0.7, 0.9] per neuron; per_neuron=False: 0.91 and
    0.8 for all (still (N,) tensors, as the export of a scalar beta fails type
    inference). threshold = ones(N). The recurrent layer is all-to-all (W_rec with
    bias); an RSynaptic gets the forward of _rsynaptic_forward.
    """
    assert kind in ("lif", "cuba_lif"), kind
    torch.manual_seed(seed)
    cuba = kind == "cuba_lif"

    def neuron(n, rec):
        def draw(lo, hi):
            return lo + (hi - lo) * torch.rand(n) if per_neuron else torch.full((n,), (lo + hi) / 2)

        kw = dict(beta=draw(0.85, 0.97), threshold=torch.ones(n),
                  reset_mechanism="zero", reset_delay=False, init_hidden=True)
        if cuba:
            kw["alpha"] = draw(0.7, 0.9)
        if not rec:
            return (snn.Synaptic if cuba else snn.Leaky)(**kw)
        m = (snn.RSynaptic if cuba else snn.RLeaky)(linear_features=n, **kw)
        if cuba:
            m.forward = _rsynaptic_forward.__get__(m)
        return m

    fc1, fc2 = torch.nn.Linear(n_in, hidden), torch.nn.Linear(hidden, n_out)
    net = torch.nn.Sequential(fc1, neuron(hidden, recurrent), fc2, neuron(n_out, False))
    (m1, s1), (m2, s2), s_rec = _GAINS[kind]
    _init(fc1, m1, s1)
    _init(fc2, m2, s2)
    if recurrent:
        _init(net[1].recurrent, 0.0, s_rec)
    return net


def _init(lin, mean, spread):
    """W = mean/n + spread*U(-1, 1)/sqrt(n) with n the fan-in, b = 0.1*spread*U(-1, 1)."""
    n = lin.in_features
    with torch.no_grad():
        lin.weight.copy_(mean / n + spread * (2 * torch.rand(lin.weight.shape) - 1) / n ** 0.5)
        lin.bias.copy_(0.1 * spread * (2 * torch.rand(lin.bias.shape) - 1))


def random_input(T, B, n_in, seed=0):
    """The test input: U[0, 1) float32 of shape (T, B, n_in)."""
    return np.random.default_rng(seed).random((T, B, n_in), dtype=np.float32)


def reset(module):
    """Zero the state of every snnTorch neuron in module (empty tensors, which the
    neuron replaces by zeros of the input's shape on its next call)."""
    for m in module.modules():
        if isinstance(m, snn.SpikingNeuron):
            for name in _STATE:
                if name in m._buffers:
                    setattr(m, name, torch.zeros(0))


def _record(module, x, step):
    """reset(module), step(x[t]) for each t; the spikes and mem of each neuron layer, in call order."""
    rec = {}

    def hook(m, _inp, spk):
        rec.setdefault(m, []).append((spk.clone(), m.mem.clone()))

    reset(module)
    hooks = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, snn.SpikingNeuron)]
    try:
        with torch.no_grad():
            for xt in torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)):
                step(xt)
    finally:
        for h in hooks:
            h.remove()
    return [{"spikes": torch.stack([s for s, _ in r]).numpy(), "mem": torch.stack([v for _, v in r]).numpy()}
            for r in rec.values()]


def run(module, x):
    """Run a `build` network on x, a (T, B, n_in) array, from zero state.

    Returns a list with one dict per spiking layer (hidden, output): "spikes" (0/1) and
    "mem" (v after the reset), both (T, B, N) float32 numpy arrays.
    """
    return _record(module, x, module)


def export(module, n_in):
    """snnTorch's NIR export of a `build` network (sample (1, n_in), batch dim ignored).

    A flat graph. Nodes: "input" Input, "0" Affine, "1" LIF / CubaLIF, "2" Affine,
    "3" LIF / CubaLIF, "output" Output; edges input->0->1->2->3->output. Recurrent:
    "1" becomes "1.lif" (LIF / CubaLIF) and "1.w_rec" (Affine), with edges 0->1.lif,
    1.lif->1.w_rec, 1.w_rec->1.lif, 1.lif->2; no nested NIRGraph.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nirtorch: extract_nir_graph is deprecated
        graph = export_to_nir(module, torch.zeros(1, n_in), ignore_dims=[0])
    reset(module)  # the export ran one step
    return graph


class _Stateful(torch.nn.Module):
    """A neuron in nirtorch's calling convention, (out, state) = f(input, state)."""

    def __init__(self, neuron):
        super().__init__()
        self.neuron = neuron

    def forward(self, input, state=None):
        return self.neuron(input), state


def load(graph):
    """snnTorch's import_from_nir(graph) (a torch.fx.GraphModule), repaired where needed.

    The import edits its argument (it gets a copy) and prints (silenced). It nests each
    LIF <-> Affine cycle into a subgraph node named before the first "." ("1") but wires
    that subgraph input -> w_rec, and nirtorch runs it as v_in = W_rec @ (I + s') + b_rec,
    with s' = 0 at t = 0: wrong. Each top-level NIRGraph node (those, or nested ones of
    the same 4-node form) is replaced here by the RLeaky / RSynaptic that snnTorch's own
    _nir_to_snntorch_module makes of it (cast to float32; RSynaptic as in `build`).
    Nodes are first put in breadth-first order from the input: nirtorch crashes
    ("'GraphModule' object has no attribute 'items'") on a subgraph listed before its
    source, as nir.read (name order) gives.
    """
    graph = copy.deepcopy(graph)
    order = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    for k in order:  # the list grows as we go
        order += [b for a, b in graph.edges if a == k and b not in order]
    graph.nodes = {k: graph.nodes[k] for k in order + [k for k in graph.nodes if k not in order]}
    with contextlib.redirect_stdout(io.StringIO()):
        module = import_from_nir(graph)
        for name, node in graph.nodes.items():
            if isinstance(node, nir.NIRGraph):
                neuron = _nir_to_snntorch_module(node, init_hidden=True).float()
                if isinstance(neuron, snn.RSynaptic):
                    neuron.forward = _rsynaptic_forward.__get__(neuron)
                setattr(module, _sanitize_name(name), _Stateful(neuron))
    return module


def run_imported(module, x):
    """`run` for a `load`ed module: (out, state) = module(x[t], state), state None at t = 0
    (it holds only nirtorch's bookkeeping; the neurons keep their own state)."""
    state = None

    def step(xt):
        nonlocal state
        _, state = module(xt, state)

    return _record(module, x, step)


if __name__ == "__main__":  # build -> run  ==  export -> nir.write/read -> load -> run_imported
    import itertools
    import tempfile

    x = random_input(100, 4, 6)
    for kind, rec, per_neuron, seed in itertools.product(("lif", "cuba_lif"), (0, 1), (1, 0), range(4)):
        net = build(kind, 6, 16, 3, recurrent=rec, seed=seed, per_neuron=per_neuron)
        ref = run(net, x)
        with tempfile.TemporaryDirectory() as d:
            nir.write(f"{d}/g.nir", export(net, 6))
            got = run_imported(load(nir.read(f"{d}/g.nir")), x)
        spk = sum(int((a["spikes"] != b["spikes"]).sum()) for a, b in zip(ref, got))
        dmem = max(float(np.abs(a["mem"] - b["mem"]).max()) for a, b in zip(ref, got))
        print(f"{kind:8} recurrent={rec} per_neuron={per_neuron} seed={seed} spike rates "
              + " ".join(f"{a['spikes'].mean():.3f}" for a in ref) + f"  spike mismatches {spk}  max|dmem| {dmem:g}")
