"""What the benchmarks share: problems, measurements, peer checks, machine facts, report pieces."""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
import time
import tracemalloc
from dataclasses import dataclass, field, replace

import numpy as np

from symgrad import models
from symgrad.analysis import Analysis
from symgrad.plan import TracePlan
from symgrad.runtime import Network, backends, bptt, eprop
from symgrad.runtime.projection import Source

# Input-weight gain that keeps each built-in model firing on 30% input spikes (as in the tests):
# a silent network has zero gradients, and a cosine or a gradient check on it proves nothing.
DRIVE = {"izhikevich": 40.0, "brf": 60.0, "se_adlif": 4.0, "snn_lif": 1.5}


@dataclass(frozen=True)
class Problem:
    """One network and one batch of random input spikes with random labels."""

    model: str = "alif"
    steps: int = 100
    batch: int = 32
    n_in: int = 140
    hidden: int = 256
    n_out: int = 20
    kappa: float = 0.9
    recurrent: bool = True
    dtype: str = "float32"
    rate: float = 0.05  # input spike probability per channel and step
    gain: float = 1.0  # multiplies the initial W_in
    seed: int = 0
    backend: str = backends.DEFAULT

    def network(self, dense: bool = False, fresh: bool = False) -> Network:
        """This problem's network, shared by every caller unless ``fresh``: building one renders
        the model's code (SymPy, a fraction of a second), and the sequence length, input rate
        and data do not change it. Only a fresh network may have its parameters changed."""
        if fresh:
            net = Network(models.builtin(self.model), self.n_in, self.hidden, self.n_out,
                          recurrent=self.recurrent, kappa=self.kappa, seed=self.seed, dtype=self.dtype,
                          dense=dense, backend=self.backend)
            for projection in net.layers[0].projections:  # W_in, or W_in_<input> of each input
                if projection.source is Source.INPUT:
                    net.params[projection.key] *= self.gain
            return net
        return _shared_network(replace(self, steps=0, rate=0.0), dense)

    def data(self):
        rng = np.random.default_rng(self.seed + 1)
        x = (rng.random((self.steps, self.batch, self.n_in)) < self.rate).astype(self.dtype)
        return x, rng.integers(0, self.n_out, self.batch)

    @property
    def n_pre(self) -> int:
        return self.n_in + (self.hidden if self.recurrent else 0)

    def synapse_bytes(self) -> int:
        """Bytes of one (batch, post, pre) array: the unit of per-synapse memory and traffic."""
        return self.batch * self.hidden * self.n_pre * np.dtype(self.dtype).itemsize

    def plan(self, dense: bool = False) -> TracePlan:
        return trace_plan(self.model, dense)

    def predicted_eprop_bytes(self, dense: bool = False) -> int:
        """What TracePlan.memory says e-prop keeps for this layer (per-step loss)."""
        return self.plan(dense).memory(self.batch, self.hidden, self.n_pre,
                                       np.dtype(self.dtype).itemsize, filtered=self.kappa != 0)["total"]

    def but(self, **changes) -> "Problem":
        return replace(self, **changes)


@functools.lru_cache(maxsize=None)
def _shared_network(problem: Problem, dense: bool) -> Network:
    return problem.network(dense, fresh=True)


@functools.lru_cache(maxsize=None)
def trace_plan(model: str, dense: bool) -> TracePlan:
    """The plan of a built-in model, analysed once (SymPy takes a fraction of a second)."""
    return TracePlan(Analysis(models.builtin(model)), dense=dense)


def tiny(model: str, kappa: float, recurrent: bool) -> Problem:
    """An active float64 problem small enough to check gradients in a fraction of a second."""
    return Problem(model=model, steps=25, batch=3, n_in=6, hidden=8, n_out=4, kappa=kappa,
                   recurrent=recurrent, dtype="float64", rate=0.3, gain=2.0 * DRIVE.get(model, 1.0),
                   seed=2)


# -- measurements ----------------------------------------------------------------------------
def best_seconds(fn, repeats: int, warmup: int = 1, budget: float = 0.0) -> float:
    """The fastest call after ``warmup`` untimed ones: the least disturbed run.

    At least ``repeats`` calls, and more while they add up to less than ``budget`` seconds
    (up to 30): on a shared machine a cheap call gets more chances to run undisturbed.
    """
    for _ in range(warmup):
        fn()
    times = []
    while len(times) < repeats or (sum(times) < budget and len(times) < 30):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def traced_peak(fn) -> int:
    """Peak bytes allocated while fn runs, above what was allocated before (numpy reports its
    buffers to tracemalloc, so arrays made beforehand, such as the input, are excluded)."""
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


def copy_bandwidth(megabytes: int, repeats: int = 5) -> float:
    """The machine's memory bandwidth in bytes/s, from a large numpy copy (one read, one write)."""
    src = np.ones(megabytes * 2**20 // 8)
    dst = np.empty_like(src)
    seconds = best_seconds(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / seconds


# -- checking a peer -------------------------------------------------------------------------
def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def neuron_constants(net: Network) -> dict:
    """The ALIF/LIF constants a peer needs, read from the network (so both run the same model)."""
    values = {k: float(v) for k, v in net.neuron_params(net.layers[0]).items()}
    return dict(alpha=values["alpha"], v_th=values["v_th"], rho=values.get("rho", 0.0),
                beta=values.get("beta", 0.0), adaptive="rho" in values, kappa=net.kappa,
                recurrent=net.layers[0].recurrent)


def host_params(net: Network) -> dict:
    """The parameters a peer trains (the neuron constants are not learnable in lif/alif)."""
    return {k: np.asarray(v) for k, v in net.params.items()}


# Between them these cover every branch of a peer: LIF and ALIF, with and without recurrence,
# with and without the filtered eligibility (kappa > 0); each case costs a JAX compilation.
CHECKS = [("alif", 0.8, True), ("lif", 0.0, False)]


def verify_peer(factory, tolerance: float = 1e-8) -> dict:
    """Check a peer's gradients in float64 before it is timed, so that a wrong peer cannot win.

    factory(net) returns an object with ``bptt(x, labels)`` and optionally ``eprop(x, labels)``,
    each giving (loss, grads). BPTT is compared with symgrad's BPTT; e-prop with symgrad's
    BPTT where e-prop is exact (no recurrence) and with symgrad's e-prop (the same
    approximation) where it is not. Returns the largest relative error per rule.
    """
    worst = {}
    for model, kappa, recurrent in CHECKS:
        problem = tiny(model, kappa, recurrent)
        net = problem.network()
        x, labels = problem.data()
        peer = factory(net)
        reference = bptt(net, x, labels)
        assert min(reference.spikes) > 0, "silent check network"
        routes = [("bptt", peer.bptt, reference)]
        if hasattr(peer, "eprop"):
            routes.append(("eprop", peer.eprop, eprop(net, x, labels) if recurrent else reference))
        for rule, method, expected in routes:
            loss, grads = method(x, labels)
            errors = [relative_error(loss, expected.loss)]
            errors += [relative_error(grads[k], expected.grads[k]) for k in expected.grads]
            error = max(errors)
            if not error < tolerance:
                raise AssertionError(f"{rule} peer disagrees with symgrad on {model} "
                                     f"(kappa={kappa}, recurrent={recurrent}): rel. error {error:.2e}")
            worst[rule] = max(worst.get(rule, 0.0), error)
    return worst


# -- the machine -----------------------------------------------------------------------------
def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lines.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """What the figures depend on: CPU, cores, versions, BLAS settings, load when started."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": _version("jax"),
        "torch": _version("torch"),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average": list(os.getloadavg()),
    }


# -- reporting -------------------------------------------------------------------------------
@dataclass
class Target:
    """A figure the project aims for: met when value <= limit (value >= limit if ``higher``)."""

    name: str
    value: float
    limit: float
    unit: str = ""
    higher: bool = False

    @property
    def met(self) -> bool:
        return bool(self.value >= self.limit if self.higher else self.value <= self.limit)

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "limit": self.limit, "met": self.met}

    def line(self) -> str:
        verdict = "met" if self.met else "NOT met"
        bound = ">=" if self.higher else "<="
        return f"- {self.name}: {self.value:.3g}{self.unit} (target {bound} {self.limit:g}{self.unit}): **{verdict}**"


@dataclass
class Section:
    """What one benchmark hands the runner: raw figures, its Markdown, its plots, its targets."""

    name: str
    title: str
    figures: dict
    markdown: str
    plots: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # peer -> reason

    def as_dict(self) -> dict:
        return {"title": self.title, "figures": self.figures, "plots": self.plots,
                "targets": [t.as_dict() for t in self.targets], "skipped": self.skipped}

    def as_markdown(self) -> str:
        parts = [f"## {self.title}", "", self.markdown.strip(), ""]
        if self.targets:
            parts += [t.line() for t in self.targets] + [""]
        parts += [f"- {peer} skipped: {reason}" for peer, reason in self.skipped.items()]
        parts += [f"![{name}]({name})" for name in self.plots]
        return "\n".join(parts).rstrip() + "\n"


def table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.2f}"


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
