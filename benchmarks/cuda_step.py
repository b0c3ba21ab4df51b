"""Speed of the CUDA backend at the e-prop paper's scale (Bellec et al. 2020, TIMIT-sized layer).

    python -m benchmarks.cuda_step                               # CuPy on the GPU, paper scale
    python -m benchmarks.cuda_step --backend cuda-host --small   # the same code on the CPU, tiny

One recurrent ALIF layer: batch 256, 1024 neurons, 700 inputs (so 1724 presynaptic), 100 steps,
float32, a leaky readout (kappa 0.9, so the eligibility is filtered per synapse). Prints

* ms per e-prop step: the whole step (neuron kernel, the W u products, readout, learning
  signal, fused trace kernel), averaged over a sequence;
* ms per fused synapse_step kernel (the per-synapse traces, e = h . eps, ebar and the
  gradient, in one pass), the bytes it must move per step (each array it reads once, each one
  it updates twice), and the bandwidth achieved, also as a fraction of the device's peak
  (2 x memory clock x bus width, from CuPy's device attributes).

--json PATH also writes the figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from symgrad import models
from symgrad.runtime import Network, cuda, eprop
from symgrad.runtime.kernel_layer import bind
from symgrad.runtime.layer_code import SynapseBuffers

PAPER = dict(batch=256, hidden=1024, inputs=700, steps=100)
SMALL = dict(batch=4, hidden=16, inputs=12, steps=10)


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda_step",
                                     description="Speed of symgrad's CUDA backend.")
    parser.add_argument("--backend", choices=["cupy", "cuda-host"], default="cupy")
    parser.add_argument("--small", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--model", default="alif")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--kappa", type=float, default=0.9)
    parser.add_argument("--repeat", type=int, default=20, help="timed launches of the fused kernel")
    for name, value in PAPER.items():
        parser.add_argument(f"--{name}", type=int, default=None, help=f"default {value} ({SMALL[name]} with --small)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    for name in PAPER:
        if getattr(args, name) is None:
            setattr(args, name, (SMALL if args.small else PAPER)[name])
    return args


class Clock:
    """Wall time of a block, waiting for the GPU before reading the clock."""

    def __init__(self, xp):
        self.sync = xp.cuda.Device().synchronize if xp.__name__ == "cupy" else (lambda: None)

    def __call__(self, work, repeat=1) -> float:
        self.sync()
        start = time.perf_counter()
        for _ in range(repeat):
            work()
        self.sync()
        return (time.perf_counter() - start) / repeat


def peak_bandwidth(xp) -> float | None:
    """Bytes per second the device's memory can move: 2 x clock (kHz) x bus width (bits) / 8."""
    if xp.__name__ != "cupy":
        return None
    attributes = dict(xp.cuda.Device().attributes)
    try:
        attributes.update(xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id))
    except Exception:  # properties are a convenience; the attributes suffice
        pass
    clock = attributes.get("MemoryClockRate") or attributes.get("memoryClockRate")
    width = attributes.get("GlobalMemoryBusWidth") or attributes.get("memoryBusWidth")
    if not clock or not width:
        return None
    return 2.0 * clock * 1e3 * width / 8


def device_name(xp) -> str:
    if xp.__name__ != "cupy":
        import platform

        return f"CPU ({platform.processor() or platform.machine()}), through the host shim"
    name = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def main(argv=None) -> dict:
    args = parse(argv)
    model = models.builtin(args.model)
    n_pre = args.inputs + args.hidden
    net = Network(model, args.inputs, args.hidden, 20, recurrent=True, kappa=args.kappa, seed=0,
                  dtype=args.dtype, backend=args.backend)
    xp, dtype = net.xp, net.dtype
    rng = np.random.default_rng(0)
    x = (rng.random((args.steps, args.batch, args.inputs)) < 0.05).astype(dtype)
    labels = xp.asarray(rng.integers(0, 20, args.batch))
    clock = Clock(xp)
    print(f"{args.model}, backend {args.backend} on {device_name(xp)}: batch {args.batch}, "
          f"{args.hidden} neurons, {args.inputs} inputs ({n_pre} presynaptic), {args.steps} steps, "
          f"{args.dtype}, kappa {args.kappa}")

    # the whole e-prop step (the first, short run compiles the kernels)
    eprop(net, x[:2], labels)
    result = None

    def run():
        nonlocal result
        result = eprop(net, xp.asarray(x), labels)

    seconds = clock(run)
    figures = {"model": args.model, "backend": args.backend, "device": device_name(xp),
               "batch": args.batch, "hidden": args.hidden, "inputs": args.inputs, "steps": args.steps,
               "dtype": args.dtype, "kappa": args.kappa, "spikes": result.spikes[0],
               "ms_per_eprop_step": 1e3 * seconds / args.steps}
    print(f"  e-prop: {figures['ms_per_eprop_step']:.3f} ms per step "
          f"({seconds:.2f} s for {args.steps} steps; {result.spikes[0]:.0f} spikes; loss {result.loss:.4f})")
    del result

    # the fused per-synapse kernel alone, on this layer's shapes
    code, layer = net.layers[0].code, net.layers[0]
    port = code.ports[layer.ports[0].input]
    traces = port.traces(args.batch, args.hidden, n_pre, dtype)
    K = code.fixed_entries(net.neuron_params(layer))
    J = {name: xp.asarray(rng.random((args.batch, args.hidden)).astype(dtype)) for name in code.DYNAMIC}
    u = xp.asarray((rng.random((args.batch, n_pre)) < 0.05).astype(dtype))
    L = xp.asarray(rng.standard_normal((args.batch, args.hidden)).astype(dtype))
    ebar = xp.zeros((args.batch, args.hidden, n_pre), dtype) if args.kappa else None
    grad = xp.zeros((args.hidden, n_pre), dtype)
    values = port.sources(traces, J, K, SynapseBuffers(u=u, grad=grad, product=None, ebar=ebar), L, args.kappa)
    kernel = port.synapse_kernel

    def launch():
        code.kernels.launch(kernel, dtype, args.hidden * n_pre, values)

    launch()  # warm-up
    seconds = clock(launch, args.repeat)
    moved = cuda.traffic(kernel, values)
    figures.update(ms_per_synapse_step=1e3 * seconds, bytes_per_step=moved,
                   bandwidth_bytes_per_s=moved / seconds)
    peak = peak_bandwidth(xp)
    figures["peak_bytes_per_s"] = peak
    figures["fraction_of_peak"] = moved / seconds / peak if peak else None
    line = (f"  fused synapse_step: {1e3 * seconds:.3f} ms per step, moves {_size(moved)} "
            f"({_arrays(kernel, values)}): {_size(moved / seconds)}/s")
    if peak:
        line += f" = {figures['fraction_of_peak']:.1%} of the peak {_size(peak)}/s"
    print(line)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
            out.write("\n")
    return figures


def _size(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


def _arrays(kernel, values) -> str:
    """The arrays that make up the byte count (1% of it or more), largest first."""
    parts = []
    for arg, value in bind(kernel, values):
        if arg.ctype.endswith("*") and value is not None:
            times = 1 if arg.ctype.startswith("const") else 2
            parts.append((value.nbytes * times, f"{arg.name}{' read+written' if times == 2 else ''}"))
    total = sum(size for size, _ in parts)
    return ", ".join(name for size, name in sorted(parts, reverse=True) if size >= 0.01 * total)


if __name__ == "__main__":
    main()
