"""BPTT's whole pass as two compiled calls: the driver, printed for a network's shape.

runtime/bptt.py's loop runs the layers' kernels step by step from Python, forward and then
backward. The driver printed here runs each sweep in one Numba function: ``bptt_forward``
computes every step's synaptic input and neuron step, keeping what the backward sweep reads (u_t
of each input, the dynamic Jacobian entries, the last layer's output and the readout), and a
per-step loss's error; ``bptt_backward`` walks the steps back through the readout and each
layer's generated ``backward_step``, adding u_t^T dL/dI_t to each weight's gradient step by step
(over the nonzero inputs), so that no dL/dI of every step is kept. Between the two, the runtime
computes what needs the whole sequence or the other ranks: a sequence loss, the regulariser
(runtime/fused_bptt.py).

The names and argument keys are ``symgrad.passes``' (the e-prop driver's), so that a layer's
arrays are bound alike: an array that holds every step is indexed by the step where a kernel
takes it.
"""
from __future__ import annotations

from dataclasses import replace

from . import __version__, kernels as roles
from .passes import (CROSS_ENTROPY, LAYER, SEQUENCE, SOURCES, BY_POST, PORT, DriverPrinter, LayerNames,
                     NetworkShape, PassArg)

TEMPLATE, FILENAME = "bptt_pass.py", "numba_bptt.py"  # under templates/numba/, and generated/<model>/
FORWARD, BACKWARD, INFERENCE = "bptt_forward", "bptt_backward", "forward"  # the driver's functions
# The backward sweep's own per-layer arrays: {word: what it holds}.
LAYER_WORDS = {
    "back": "dL/dz_t of the layer from W_rec z_t at t+1 (batch, n)",
    "rate_grad": "the rate regulariser's dL/dz_t (n), or None",
}


def _kept(arg) -> str:
    """The step index of an argument that holds every step: u_t and the dynamic entries (at t,
    or t+1 for the backward step's D)."""
    if arg.role == roles.DYNAMIC_ENTRY or (arg.role == roles.BUFFER and arg.of == "u"):
        return "[t]"
    if arg.role == roles.NEXT_ENTRY:
        return "[later]"
    return ""


def _every_step(args: list[PassArg]) -> list[PassArg]:
    """The arguments, those that hold every step described so: (T, batch, ...) arrays."""
    kept = {(roles.DYNAMIC_ENTRY,), (roles.BUFFER, "u")}
    return [replace(a, note=a.note.replace("(batch,", "(T, batch,") + ", every step kept")
            if a.key[0] in (LAYER, PORT) and (a.key[-2:-1] in kept or a.key[-2:] in kept) else a for a in args]


class _Forward(DriverPrinter):
    """``bptt_forward``; or, not keeping, ``forward``: the same steps for inference, which keep
    the readout and the last layer's output of every step and nothing for a backward sweep."""

    def __init__(self, shape: NetworkShape, keep: bool = True):
        super().__init__(shape)
        self.keep = keep
        self.loss = shape.loss if keep else SEQUENCE  # inference computes no loss

    def print(self):
        self.data("x", "the input (T, batch, M)")
        if self.loss == CROSS_ENTROPY:
            self.data("labels", "class labels (batch,)")
        elif self.loss != SEQUENCE:
            self.data("values", "targets (T, batch, K)")
        if self.shape.readout:
            self.data("kappa", "the readout's leak")
            for name, note in (("W_out", "(K, n)"), ("b_out", "(K,)"), ("gain", "(K,) or None"),
                               ("offset", "(K,) or None"), ("drive", "W_out z_t + b_out of one sample (K,): scratch")):
                self.readout(name, note)
        for name, note in (("y", "y_t (batch, K)"), ("ys", "y_t of every step (T, batch, K)"),
                           ("top_z", "the last layer's z_t of every step (T, batch, n)")):
            self.readout(name, note)
        if self.loss != SEQUENCE:
            for name, note in (("dy", "dL/dy_t of the loss alone (T, batch, K)"),
                               ("total", "the loss summed over steps (1,)")):
                self.readout(name, note)
        out = self.out
        self.sizes(ports=False)
        with out.block("for t in range(x.shape[0]):"):
            below = "x[t]"
            for layer in self.layers:
                out(f"# layer {layer.index} ({layer.code.model.name}): I_t = W_in input_t + W_rec z_t-1 + b"
                    + (", u_t = [input_t, z_t-1, 1], kept" if self.keep else ""))
                self.synaptic_input(layer, below, "{j}[t]" if self.keep else None)
                step = layer.call(layer.kernel("neuron_step"), at=_kept if self.keep else None)
                out(step + "  # and its dynamic entries, kept" if self.keep else step)
                self.keep_states(layer)
                if self.keep:
                    out(f"ops.add_column_sums({self.own(layer, 'rate', 'spike counts summed over steps and samples (n)')}, "
                        f"{layer.z})")
                below = layer.z
            out("# the readout, kept with the last layer's output" + (", and a per-step loss's error" if self.keep else ""))
            if self.shape.readout:
                out(f"ops.read(y, {below}, W_out, b_out, gain, offset, kappa, drive)")
            else:
                out(f"ops.copy(y, {below})")
            out("ops.copy(ys[t], y)")
            out(f"ops.copy(top_z[t], {below})")
            if self.loss == CROSS_ENTROPY:
                out("total[0] += ops.cross_entropy(y, labels, dy[t])")
            elif self.loss != SEQUENCE:
                out("total[0] += ops.squared_error(y, values[t], dy[t])")
        args = self.head + [a for layer in self.layers for a in layer.args.values()]
        return (_every_step(args) if self.keep else args), out.lines


class _Backward(DriverPrinter):
    def print(self):
        self.data("kappa", "the readout's leak")
        self.readout("dy", "dL/dy_t of the loss alone (T, batch, K)")
        self.readout("top_z", "the last layer's z_t of every step (T, batch, n)")
        self.readout("filtered", "dbar_t = dL/dy_t + kappa dbar_t+1 (batch, K)")
        if self.shape.readout:
            for name, note in (("W_out", "(K, n)"), ("gain", "(K,) or None"),
                               ("drive_error", "gain dbar_t, the error of W_out z_t + b_out (batch, K): scratch"),
                               ("g_W_out", "dL/dW_out (K, n)"), ("g_b_out", "dL/db_out (K,)")):
                self.readout(name, note)
        out = self.out
        for layer in self.layers:
            layer.z = self.bound(layer, "backward_step", roles.BUFFER, "grad_z")  # gz_t, the sweep's signal
        out("steps, batch = dy.shape[0], dy.shape[1]")
        for layer in self.layers:
            out(f"{layer.n} = {layer.z}.shape[1]")
        with out.block("for t in range(steps - 1, -1, -1):"):
            out("later = min(t + 1, steps - 1)  # the entries at t+1 meet g_t+1, which is zero at the last step")
            out("# dL/dz_t of the last layer through the readout")
            top = self.layers[-1].z
            if self.shape.readout:
                out(f"ops.read_back({top}, filtered, dy[t], top_z[t], W_out, gain, kappa, drive_error, g_W_out, g_b_out)")
            else:
                out(f"ops.read_back({top}, filtered, dy[t], top_z[t], None, None, kappa, None, None, None)")
            for layer in reversed(self.layers):
                self._layer(layer)
        return _every_step(self.head + [a for layer in self.layers for a in layer.args.values()]), out.lines

    def _layer(self, layer: LayerNames) -> None:
        out = self.out
        out(f"# layer {layer.index} ({layer.code.model.name}): gz_t += dL/dz_t through W_rec at t+1 and the regulariser")
        back = self.own(layer, "back", LAYER_WORDS["back"])
        recurrent = any("recurrent" in port.sources for port in layer.shape.ports)
        out(f"ops.add_back({layer.z}, {back if recurrent else 'None'}, {self.own(layer, 'rate_grad', LAYER_WORDS['rate_grad'])})")
        out(layer.call(layer.kernel("backward_step"), at=_kept))
        for j, port in enumerate(layer.shape.ports):
            g_I = self.bound(layer, "backward_step", roles.ADJOINT, port.input)
            gradient = self.own(layer, "grad_T", f"dL/dW of input {port.input}, transposed (pre, n): += u_t^T dL/dI_t",
                                port=j)
            out(f"ops.add_outer({gradient}, {self.u(layer, j)}[t], {g_I})")
        params = layer.kernel("param_gradients")
        if params:
            out(layer.call(params, at=_kept))
            for arg in params.args:
                if arg.role == roles.PARAM_GRADIENT:
                    total = self.own(layer, "pgrad", f"dL/d{arg.of} summed over steps and samples (n)", of=arg.of)
                    out(f"ops.add_column_sums({total}, {layer.bind(arg, None)})")
        if recurrent:
            self._pass_back(layer, "recurrent", back)
        if layer.index > 0:
            self._pass_back(layer, "input", self.layers[layer.index - 1].z)

    def _pass_back(self, layer: LayerNames, source: str, into: str) -> None:
        """into = sum_j dL/dI_j,t W_j over the inputs j that ``source`` drives (its transposed
        synaptic input): dL/dz_t-1 of the layer itself, or dL/dz_t of the one below."""
        first = True
        for j, port in enumerate(layer.shape.ports):
            if source not in port.sources:
                continue
            g_I = self.bound(layer, "backward_step", roles.ADJOINT, port.input)
            word = SOURCES[source]
            weight = self.own(layer, word, f"{word} of input {port.input}", port=j)
            if source in port.sparse:
                rows = [self.own(layer, f"{word}_{what}", f"{word} of input {port.input}: {note}", port=j)
                        for what, note in BY_POST.items()]
                out = f"ops.pass_down_sparse({into}, {g_I}, None, {weight}, {', '.join(rows)}, {not first})"
            else:
                out = f"ops.pass_back({into}, {g_I}, {weight}, {not first})"
            self.out(out)
            first = False


def _printers(shape: NetworkShape) -> dict:
    return {FORWARD: _Forward(shape), BACKWARD: _Backward(shape), INFERENCE: _Forward(shape, keep=False)}


def driver_args(shape: NetworkShape) -> dict:
    """Each function's arguments, in order: {FORWARD: [PassArg], BACKWARD: [...], INFERENCE: [...]}."""
    return {name: printer.print()[0] for name, printer in _printers(shape).items()}


def print_driver(shape: NetworkShape) -> dict:
    """What templates/numba/bptt_pass.py.j2 places."""
    functions = [dict(name=name, args=args, body=body)
                 for name, (args, body) in ((name, printer.print()) for name, printer in _printers(shape).items())]
    return {"version": __version__, "network": shape.describe(), "functions": functions,
            "slots": [(f"layer{i}", layer.code.model.name) for i, layer in enumerate(shape.layers)]}


__all__ = ["BACKWARD", "FILENAME", "FORWARD", "INFERENCE", "TEMPLATE", "driver_args", "print_driver"]
