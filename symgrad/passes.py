"""e-prop's whole pass as one compiled call: the driver, printed for a network's shape.

A layer's kernels (``symgrad.kernels``) do one step's work; between them, runtime/eprop.py's loop
computes the synaptic input, the readout, the loss's error and the learning signal in Python.
The driver printed here runs that loop over every step of a segment (a whole pass, or the steps
between two online updates) in one Numba function, calling the layers' kernels and the numerical
helpers of ``symgrad.runtime.fused_ops``. It is printed for a ``NetworkShape``: each layer's model
and which projections drive each input; every size, and what the loss keeps, is an argument
(an array the loss does not need is None, which Numba compiles without the branch).

Each argument is described by a ``PassArg``: its name in the driver and the ``key`` of what the
runtime binds to it (``runtime/fused.py``), never read off the name. A layer's arrays are named
after the kernel arguments that take them (the model's naming table: unique within a layer)
behind the layer's prefix ``l<i>_`` and, for an input's own, the port's ``l<i>p<j>_``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from . import __version__, kernels as roles
from .kernels import Kernel, KernelArg

TEMPLATE, FILENAME = "eprop_pass.py", "numba_eprop.py"  # under templates/numba/, and generated/<model>/
READOUT = "readout"  # a key's first part: the readout's arrays
DATA = "data"  # the batch, its targets and the pass's scalars
LAYER, PORT = "layer", "port"  # a layer's arrays, and one of its inputs'

# The driver's own per-layer arrays, beside those its kernels take: {word: what it holds}.
LAYER_WORDS = {
    "L": "the learning signal L_t (batch, n), or the signal passed down from above",
    "rate": "spike counts summed over steps and samples (n)",
}
# The learnable parameters' sums: {word: what it holds}, one array per parameter.
PARAM_WORDS = {
    "pbar": "the filtered eligibility kappa ebar^p + e^p (batch, n), or None",
    "pgrad": "the gradient sum_b L e^p (n)",
    "psum": "the sequence sum w ebar^p (batch, n), or None",
    "preg": "the regulariser's sum_b e^p (n), or None",
}
# A port's own arrays beside its kernels': the weights of each source, and h for the products.
SOURCES = {"input": "W_in", "recurrent": "W_rec", "bias": "b"}
# A sparse projection's arrays beside its weights (nnz,) in sparse rows: {word: what it holds}.
BY_PRE = {  # the same synapses column by column, for the synaptic input's pass over active inputs
    "by_pre": "its weights, presynaptic column by column (nnz,)",
    "pre_start": "column j's synapses are pre_start[j] .. pre_start[j + 1] - 1 of by_pre (pre + 1,)",
    "post": "each of by_pre's synapses' post neuron (nnz,)",
}
BY_POST = {  # its own sparse rows, for passing a learning signal down through it
    "row_start": "post neuron i's synapses are row_start[i] .. row_start[i + 1] - 1 (n + 1,)",
    "col": "each synapse's presynaptic column (nnz,)",
}


@dataclass(frozen=True)
class PortShape:
    """One input of a layer and the sources that drive it, in u's order."""

    input: str
    sources: tuple  # among "input", "recurrent", "bias"
    sparse: tuple = ()  # the sources whose projection is sparse (stored in sparse rows)

    def wiring(self) -> str:
        """``I <- input (sparse) + recurrent``: what drives the input."""
        return f"{self.input} <- " + " + ".join(s + (" (sparse)" if s in self.sparse else "") for s in self.sources)


@dataclass(frozen=True)
class LayerShape:
    code: object  # the model's render.Generated
    ports: tuple  # PortShape of each input that hears something


# What the loss asks of each step: a cross-entropy's or a squared error's error, or (a loss on the
# whole sequence) only the sequence sums.
CROSS_ENTROPY, SQUARED_ERROR, SEQUENCE = "cross-entropy per step", "squared error per step", "sequence"


@dataclass(frozen=True)
class NetworkShape:
    """What the driver's text depends on: the layers, their wiring, whether there is a readout,
    and what the loss asks of each step."""

    layers: tuple
    readout: bool
    loss: str  # CROSS_ENTROPY, SQUARED_ERROR or SEQUENCE

    def describe(self) -> list[str]:
        lines = []
        for index, layer in enumerate(self.layers):
            wiring = "; ".join(port.wiring() for port in layer.ports)
            lines.append(f"layer {index}: {layer.code.model.name} ({wiring})")
        lines.append("readout: y_t = kappa y_t-1 + gain (W_out z_t + b_out) + offset" if self.readout
                     else "output: the last layer's spikes")
        lines.append(f"loss: {self.loss}")
        return lines


def default_shape(code) -> NetworkShape:
    """The network ``symgrad train <model>`` builds by default: one recurrent layer wired as the
    model says, a readout, and a loss on the whole sequence (ce_mean)."""
    from .model import sources_of

    ports = []
    for plan in code.plans:
        heard = set(sources_of(code.model.wiring.get(plan.input, ())))
        sources = tuple(s for s in ("input", "recurrent") if s in heard)
        if sources:
            ports.append(PortShape(plan.input, sources))
    return NetworkShape((LayerShape(code, tuple(ports)),), True, SEQUENCE)


@dataclass(frozen=True)
class PassArg:
    name: str
    key: tuple  # what the runtime binds: (DATA, what), (READOUT, what), (LAYER, l, role, of), (PORT, l, j, role, of)
    note: str


class Emitter:
    """Lines of Python at an indentation."""

    def __init__(self):
        self.lines, self.depth = [], 0

    def __call__(self, line: str = ""):
        self.lines.append(("    " * self.depth + line) if line else "")

    @contextlib.contextmanager
    def block(self, head: str):
        """``head`` (an ``if``, ``else`` or ``for``), then the lines written inside, indented."""
        self(head)
        self.depth += 1
        yield
        self.depth -= 1


class LayerNames:
    """One layer's names in the driver, and its kernel calls."""

    def __init__(self, index: int, shape: LayerShape):
        self.index, self.shape, self.code = index, shape, shape.code
        self.slot = f"layer{index}"
        self.n = f"n{index}"
        self.z = ""  # its output's name, once bound
        self.args: dict[tuple, PassArg] = {}

    def name(self, arg: KernelArg, port: int | None) -> str:
        prefix = f"l{self.index}_" if port is None else f"l{self.index}p{port}_"
        return prefix + arg.name

    def word(self, word: str, of: str = "") -> str:
        return f"l{self.index}_{word}" + (f"_{of}" if of else "")

    def port_word(self, port: int, word: str) -> str:
        return f"l{self.index}p{port}_{word}"

    def pre(self, port: int) -> str:
        return f"pre{self.index}_{port}"

    def nnz(self, port: int) -> str:
        return f"nnz{self.index}_{port}"

    @property
    def sparse(self) -> bool:
        """Its synapses are stored in sparse rows (every port's, where any projection is sparse)."""
        return self.code.layout.sparse

    @property
    def rows(self) -> list[str]:
        """The index arrays a walk of a port's rows reads (the layout's, less what only a
        one-thread-per-synapse kernel reads)."""
        layout = self.code.layout
        return [name for name, _ in layout.indices if name not in layout.nest.unread]

    def kernel(self, kind: str, port: int | None = None) -> Kernel | None:
        return self.code.kernel(kind, None if port is None else self.shape.ports[port].input)

    def call(self, kernel: Kernel, port: int | None = None, L: str = "None", step: str = "t",
             weight: str = "1.0", at=None) -> str:
        """``layer<i>.<kernel>(...)``, each argument bound to the driver's array for what it holds;
        ``at(arg)``: where an array holds every step, the index of the step the kernel takes."""
        size = {"sample, neuron": f"batch * {self.n}", "sample, pre": f"batch * {self.pre(port) if port is not None else ''}"}
        counts = {"batch": "batch", "n": self.n, "step": step, "size": size.get(kernel.space, "")}
        if port is not None:
            counts |= {"n_pre": self.pre(port), "nnz": self.nnz(port)}
        values = []
        for arg in kernel.args:
            if arg.role == roles.COUNT:
                values.append(counts[arg.of])
                continue
            if arg.role == roles.SCALAR:
                values.append({"kappa": "kappa", "seq_weight": weight}[arg.of])
                continue
            if arg.role == roles.BUFFER and arg.of == "L":
                values.append(L)
                continue
            flat = arg.array and not kernel.nested and arg.role not in (roles.PARAM, roles.FIXED)  # (n) already
            values.append(self.bind(arg, port) + (at(arg) if at else "") + (".ravel()" if flat else ""))
        return f"{self.slot}.{kernel.name}({', '.join(values)})"

    def bind(self, arg: KernelArg, port: int | None) -> str:
        """The driver's argument for what the kernel argument ``arg`` holds: the port's own for a
        trace, buffer or index array, the layer's for the rest (named after ``arg``, declared once)."""
        per_port = port is not None and arg.role in (roles.TRACE, roles.BUFFER, roles.INDEX)
        name = self.name(arg, port if per_port else None)
        role = roles.DYNAMIC_ENTRY if arg.role == roles.NEXT_ENTRY else arg.role  # the same array, a step on
        key = (PORT, self.index, port, role, arg.of) if per_port else (LAYER, self.index, role, arg.of)
        self.args.setdefault(key, PassArg(name, key, arg.note))
        return name


def driver_args(shape: NetworkShape) -> list[PassArg]:
    """The driver's arguments, in order (what ``print_driver`` declares)."""
    return _Printer(shape).print()[0]


def print_driver(shape: NetworkShape) -> dict:
    """What templates/numba/eprop_pass.py.j2 places."""
    args, body = _Printer(shape).print()
    return {"version": __version__, "network": shape.describe(), "args": args, "body": body,
            "slots": [(f"layer{i}", layer.code.model.name) for i, layer in enumerate(shape.layers)]}


class DriverPrinter:
    """What the drivers' printers share: the layers' names, the arguments declared, and the
    synaptic input of a layer."""

    def __init__(self, shape: NetworkShape):
        self.shape = shape
        self.layers = [LayerNames(i, layer) for i, layer in enumerate(shape.layers)]
        self.out = Emitter()
        self.head: list[PassArg] = []

    def data(self, name: str, note: str, key=None) -> str:
        self.head.append(PassArg(name, key or (DATA, name), note))
        return name

    def readout(self, name: str, note: str) -> str:
        self.head.append(PassArg(name, (READOUT, name), note))
        return name

    def own(self, layer: LayerNames, word: str, note: str, of: str = "", port: int | None = None) -> str:
        """One of the driver's own arrays of ``layer`` (or of its input ``port``): role "pass"."""
        what = (word, of) if of else word
        if port is None:
            name, key = layer.word(word, of), (LAYER, layer.index, "pass", what)
        else:
            name, key = layer.port_word(port, word + (f"_{of}" if of else "")), (PORT, layer.index, port, "pass", what)
        layer.args.setdefault(key, PassArg(name, key, note))
        return name

    def bound(self, layer: LayerNames, kind: str, role: str, of, port: int | None = None) -> str:
        """The driver's name of what the ``kind`` kernel's argument of ``role`` and ``of`` takes."""
        return layer.bind(next(a for a in layer.kernel(kind, port).args if a.role == role and a.of == of), port)

    def u(self, layer: LayerNames, j: int) -> str:
        """The name of u_t of the layer's input j (or, in a driver that keeps every step, of u)."""
        key = (PORT, layer.index, j, roles.BUFFER, "u")
        layer.args.setdefault(key, PassArg(layer.port_word(j, "u"), key, "u_t (batch, pre): presynaptic input"))
        return layer.port_word(j, "u")

    def synaptic_input(self, layer: LayerNames, below: str, u_t: str | None) -> None:
        """I_t = W_in input_t + W_rec z_t-1 + b of each input the neuron step reads, and u_t
        (written into ``u_t``, a name with {j} for the input's index) of each input, where
        ``u_t`` is given."""
        out = self.out
        z = layer.z
        step = layer.kernel("neuron_step")
        currents = {a.of for a in step.args if a.role == roles.CURRENT}
        width = {"input": "m0" if layer.index == 0 else f"n{layer.index - 1}", "recurrent": layer.n}
        for j, port in enumerate(layer.shape.ports):
            u = u_t.format(j=self.u(layer, j)) if u_t else None
            column = ""  # where the part of u being filled starts
            I = self.bound(layer, "neuron_step", roles.CURRENT, port.input) if port.input in currents else None
            for k, source in enumerate(port.sources):
                if source == "bias":
                    if u:
                        out(f"ops.fill_column({u}, {column}, 1.0)")
                    if I:
                        out(f"ops.add_bias({I}, {self.own(layer, 'b', f'b of input {port.input}', port=j)})")
                    continue
                word = SOURCES[source]
                heard = below if source == "input" else z
                end = f"{column} + {width[source]}" if column else width[source]
                if u:
                    out(f"ops.copy_columns({u}, {column or 0}, {heard})")
                if I and source in port.sparse:
                    by_pre = [self.own(layer, f"{word}_{what}", f"{word} of input {port.input}: {note}", port=j)
                              for what, note in BY_PRE.items()]
                    out(f"ops.project_sparse({I}, {heard}, {', '.join(by_pre)}, {k > 0})")
                elif I:
                    weight = self.own(layer, f"{word}_T", f"{word} of input {port.input}, transposed (pre, n)",
                                      port=j)
                    out(f"ops.project({I}, {heard}, {weight}, {k > 0})")
                column = end

    def keep_states(self, layer: LayerNames) -> None:
        """s_t-1 for the next step, from the neuron step's new states (written anew each step)."""
        step = layer.kernel("neuron_step")
        read = {a.of for a in step.args if a.role == roles.STATE}
        for state in layer.code.model.state_names:
            new = self.bound(layer, "neuron_step", roles.NEW_STATE, state)
            old = self.bound(layer, "neuron_step", roles.STATE, state) if state in read else self.own(
                layer, "state", f"{state}_t (batch, n)", of=state)
            self.out(f"ops.copy({old}, {new})")

    def sizes(self, ports: bool = True) -> None:
        """batch, m0, each layer's n<l> and, for the port kernels' calls, each input's
        pre<l>_<j> (and nnz<l>_<j>)."""
        out = self.out
        out("batch, m0 = x.shape[1], x.shape[2]")
        for layer in self.layers:
            layer.z = self.bound(layer, "neuron_step", roles.OUTPUT, "z")
            out(f"{layer.n} = {layer.z}.shape[1]")
            for j, port in enumerate(layer.shape.ports if ports else ()):
                out(f"{layer.pre(j)} = {self.u(layer, j)}.shape[1]")
                if layer.sparse:
                    out(f"{layer.nnz(j)} = {self.bound(layer, 'synapse_step', roles.INDEX, 'col', j)}.shape[0]")


class _Printer(DriverPrinter):
    """e-prop's driver: ``eprop_steps``."""

    def print(self):
        target = {CROSS_ENTROPY: ("labels", "class labels (batch,)"),
                  SQUARED_ERROR: ("values", "targets (T, batch, K)"),
                  SEQUENCE: ("seq_weights", "w_t (T,): step t's weight in the sequence sums")}[self.shape.loss]
        for name, note in (("start", "the first step of this segment"), ("stop", "the step after its last"),
                           ("x", "the input (T, batch, M)"), target, ("kappa", "the readout's leak"),
                           ("crossover", "skip rows at rest below this fraction of active rows")):
            self.data(name, note)
        if self.shape.readout:
            for name, note in (("W_out", "(K, n)"), ("b_out", "(K,)"), ("gain", "(K,) or None"),
                               ("offset", "(K,) or None"), ("feedback", "(K, n): W_out or a fixed random matrix")):
                self.readout(name, note)
        for name, note in (("y", "y_t (batch, K)"), ("y_sum", "sum_t y_t (batch, K)")):
            self.readout(name, note)
        if self.shape.readout:
            self.readout("drive", "W_out z_t + b_out of one sample (K,): scratch")
        if self.shape.loss != SEQUENCE:
            for name, note in (("err", "dL/dy_t (batch, K)"), ("total", "the loss summed over steps (1,)")):
                self.readout(name, note)
        if self.shape.readout:
            for name, note in (("zbar", "kappa zbar + z_t (batch, n)"), ("zbar_sum", "sum_t zbar_t, or None"),
                               ("bbar", "kappa bbar + 1 (1,)"), ("bbar_sum", "sum_t bbar_t (1,)"),
                               ("g_W_out", "dL/dW_out (K, n)"), ("g_b_out", "dL/db_out (K,)")):
                self.readout(name, note)
        self._body()
        args = self.head + [a for layer in self.layers for a in layer.args.values()]
        return args, self.out.lines

    # -- the loop ------------------------------------------------------------------------
    def _body(self):
        out = self.out
        self.sizes()
        # the per-layer "behind" flags: rows left at rest since the last settle
        for layer in self.layers:
            for j, _ in enumerate(layer.shape.ports):
                if layer.kernel("synapse_events", j):
                    out(f"{layer.port_word(j, 'behind')} = False")
        with out.block("for t in range(start, stop):"):
            out("x_t = x[t]")
            below = "x_t"
            for layer in self.layers:
                self._forward(layer, below)
                below = layer.z
            self._readout(below)
            if self.shape.loss == SEQUENCE:  # one layer: e-prop refuses more (eprop.unsupported)
                for layer in self.layers:
                    self._synapses(layer, "None", "seq_weights[t]")
            else:
                for layer in reversed(self.layers):
                    self._synapses(layer, layer.word("L"))
                    if layer.index > 0:
                        self._pass_down(layer)
        out("# bring every row left at rest up to date at the segment's last step")
        for layer in self.layers:
            for j, _ in enumerate(layer.shape.ports):
                settle = layer.kernel("settle", j)
                if settle:
                    with out.block(f"if {layer.port_word(j, 'behind')}:"):
                        out(layer.call(settle, j, step="stop - 1"))

    def _forward(self, layer: LayerNames, below: str):
        out = self.out
        out(f"# layer {layer.index} ({layer.code.model.name}): I_t = W_in input_t + W_rec z_t-1 + b, "
            "u_t = [input_t, z_t-1, 1]")
        self.synaptic_input(layer, below, "{j}")
        z = layer.z
        out(layer.call(layer.kernel("neuron_step")))
        self.keep_states(layer)
        out(f"ops.add_column_sums({self.own(layer, 'rate', LAYER_WORDS['rate'])}, {z})")
        params = layer.kernel("param_traces")
        if params:
            out(layer.call(params))
        for j, _ in enumerate(layer.shape.ports):
            active = layer.kernel("active_rows", j)
            if active:
                skip = layer.port_word(j, "skip")
                events = self.own(layer, "events", "skip rows at rest on this pass", port=j)
                out(f"{skip} = {events} and {layer.call(active, j)} < crossover * batch * {layer.n}")

    def _readout(self, top: str):
        out = self.out
        out("# the readout, and each step's loss: its error, and the learning signal it sends back")
        if self.shape.readout:
            out(f"ops.read(y, {top}, W_out, b_out, gain, offset, kappa, drive)")
            out(f"ops.filter_output(zbar, bbar, zbar_sum, bbar_sum, {top}, kappa)")
        else:
            out(f"ops.copy(y, {top})")
        out("ops.add(y_sum, y)")
        if self.shape.loss == SEQUENCE:
            return
        L = self.own(self.layers[-1], "L", LAYER_WORDS["L"])
        if self.shape.loss == CROSS_ENTROPY:
            out("total[0] += ops.cross_entropy(y, labels, err)")
        else:
            out("total[0] += ops.squared_error(y, values[t], err)")
        if self.shape.readout:
            out("ops.scale_by(err, gain)  # the error of W_out z_t + b_out")
            out("ops.add_readout_gradients(g_W_out, g_b_out, err, zbar, bbar[0])")
            out(f"ops.learning_signal({L}, err, feedback)")
        else:
            out(f"ops.copy({L}, err)")

    def _synapses(self, layer: LayerNames, L: str, weight: str = "1.0"):
        out = self.out
        for j, port in enumerate(layer.shape.ports):
            plan = next(p for p in layer.code.plans if p.input == port.input)
            out(f"# the synapses of input {port.input}: traces, eligibility and the sums it adds to")
            if plan.per_synapse or self.shape.loss == SEQUENCE:
                self._sweep(layer, j, L, weight)
                continue
            ebar = self.bound(layer, "synapse_step", roles.BUFFER, "ebar", j)
            with out.block(f"if {ebar} is None:  # nothing per synapse: matrix products"):
                self._presynaptic(layer, j)
                self._products(layer, j, plan, L)
            with out.block("else:"):
                self._sweep(layer, j, L, weight)
        learnable = layer.code.model.learnable
        if learnable:
            params = layer.kernel("param_traces")
            for p in learnable:
                e = next(a for a in params.args if a.role == roles.PARAM_ELIGIBILITY and a.of == p.name)
                sums = [self.own(layer, word, note, of=p.name) for word, note in PARAM_WORDS.items()]
                out(f"ops.param_sums({layer.name(e, None)}, {L}, kappa, {weight}, {', '.join(sums)})")

    def _sweep(self, layer: LayerNames, j: int, L: str, weight: str = "1.0"):
        """The fused synapse step over every row, or, where the model has rows at rest and few
        rows are awake, the step that skips them (settled before the next full sweep)."""
        out = self.out
        synapse, events = layer.kernel("synapse_step", j), layer.kernel("synapse_events", j)
        if events:
            skip, behind = layer.port_word(j, "skip"), layer.port_word(j, "behind")
            with out.block(f"if {skip}:"):
                out(layer.call(events, j, L, weight=weight))
                out(f"{behind} = True")
            with out.block("else:"):
                with out.block(f"if {behind}:  # the rows left at rest, brought up to date at the last step"):
                    out(layer.call(layer.kernel("settle", j), j, step="t - 1"))
                    out(f"{behind} = False")
                out(layer.call(synapse, j, L, weight=weight))
                out(f"ops.fill({self.bound(layer, 'synapse_events', roles.BUFFER, 'last', j)}, t)  # every row is up to date")
        else:
            out(layer.call(synapse, j, L, weight=weight))
        self._presynaptic(layer, j)

    def _presynaptic(self, layer: LayerNames, j: int):
        presynaptic = layer.kernel("presynaptic_step", j)
        if presynaptic:  # after the synapse step, which reads the traces' previous values
            self.out(layer.call(presynaptic, j))

    def _products(self, layer: LayerNames, port: int, plan, L: str):
        """grad += (L h_k)^T eps_k for each eligible component k, as ModulePort's matrix products
        (in sparse rows, at the synapses)."""
        grad, reg_sum = (self.bound(layer, "synapse_step", roles.BUFFER, name, port) for name in ("grad", "reg_sum"))
        rows = "".join(f", {self.bound(layer, 'synapse_step', roles.INDEX, name, port)}" for name in layer.rows)
        add = "ops.add_products_at" if layer.sparse else "ops.add_products"
        for state, entry in plan.readout:
            eps = self._trace(layer, port, state)
            h = "None" if entry in plan.units else self.own(layer, "h", f"{entry} (batch, n)", of=entry, port=port)
            if L != "None":
                self.out(f"{add}({grad}, {L}, {h}, {eps}{rows})")
            with self.out.block(f"if {reg_sum} is not None:"):
                self.out(f"{add}({reg_sum}, None, {h}, {eps}{rows})")

    def _trace(self, layer: LayerNames, port: int, state: str) -> str:
        kernel = next(k for k in (layer.kernel("presynaptic_step", port), layer.kernel("synapse_step", port))
                      if k and any(a.role == roles.TRACE and a.of == state for a in k.args))
        return self.bound(layer, kernel.kind, roles.TRACE, state, port)

    def _pass_down(self, layer: LayerNames):
        """L dz/dI_p W_in_p of each input hearing the layer below: the signal of that layer."""
        out = self.out
        below = self.own(self.layers[layer.index - 1], "L", LAYER_WORDS["L"])
        first = True
        for j, port in enumerate(layer.shape.ports):
            if "input" not in port.sources:
                continue
            out(layer.call(layer.kernel("input_gain", j), j))
            gain_name = self.bound(layer, "input_gain", roles.BUFFER, "gain", j)
            weight = self.own(layer, "W_in", f"W_in of input {port.input}", port=j)
            if "input" in port.sparse:
                rows = [self.own(layer, f"W_in_{what}", f"W_in of input {port.input}: {note}", port=j)
                        for what, note in BY_POST.items()]
                out(f"ops.pass_down_sparse({below}, {layer.word('L')}, {gain_name}, {weight}, {', '.join(rows)}, "
                    f"{not first})")
            else:
                out(f"ops.pass_down({below}, {layer.word('L')}, {gain_name}, {weight}, {not first})")
            first = False
