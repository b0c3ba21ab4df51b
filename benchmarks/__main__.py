"""python -m benchmarks [--quick] [--out DIR] [--only NAME ...] [--threads N]

Writes to DIR (default bench_out/): results.json (raw figures, machine facts, targets),
results.md (the tables) and one PNG per benchmark. Peers that are not installed are skipped
with the reason printed and recorded.

The benchmark modules are imported only once the thread limits are in the environment: numpy's
OpenBLAS, PyTorch's OpenMP and XLA read them when they load.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

MODULES = {"memory": "memory", "speed": "speed", "alignment": "alignment", "plan": "payoff", "events": "events",
           "mpi": "mpi", "nir": "nir", "trained": "trained", "overhead": "overhead",
           "sparse": "sparse"}
THREADED = ("numpy", "numba", "torch", "jax")


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[2])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: every benchmark in seconds")
    parser.add_argument("--out", type=Path, default=Path("bench_out"), help="output folder (bench_out/)")
    parser.add_argument("--only", nargs="+", choices=list(MODULES), metavar="NAME",
                        help=f"run only these benchmarks ({', '.join(MODULES)})")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for numpy's BLAS, symgrad's e-prop shards, PyTorch and XLA "
                             "(default: theirs)")
    return parser.parse_args(argv)


def limit_threads(n: int):
    """Give every library at most n threads per operation.

    On a machine shared with other work, a library whose every small operation needs all its
    threads scheduled at once waits for the busy cores again and again: PyTorch's eager BPTT
    step went from 1 ms to 110 ms, numpy's per-step products from 0.1 ms to 10 ms. One thread
    each gives figures that say something about the code rather than the neighbours.
    """
    loaded = [name for name in THREADED if name in sys.modules]
    if loaded:
        raise SystemExit(f"--threads must be set before {', '.join(loaded)} is imported; "
                         "run it as python -m benchmarks")
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                     "SYMGRAD_WORKERS"):
        os.environ[variable] = str(n)
    if n == 1:  # XLA has a switch for its Eigen pool, not a count
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()


def main(argv=None) -> dict:
    args = parse(argv)
    if args.threads:
        limit_threads(args.threads)
    from .common import machine

    args.out.mkdir(parents=True, exist_ok=True)
    facts = dict(machine(), threads=args.threads or "library defaults")
    results = {"quick": args.quick, "machine": facts, "benchmarks": {}}
    sections = []
    for name in args.only or list(MODULES):
        module = importlib.import_module(f".{MODULES[name]}", __package__)
        print(f"{name}:")
        start = time.perf_counter()
        section = module.run(args.quick, args.out)
        elapsed = time.perf_counter() - start
        print(f"  ({elapsed:.1f} s)")
        results["benchmarks"][name] = dict(section.as_dict(), seconds=elapsed)
        sections.append(section)
    facts["load_average_end"] = list(os.getloadavg())
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(_markdown(facts, sections, args.quick))
    print(f"wrote {args.out / 'results.md'}")
    return results


def _markdown(facts: dict, sections, quick: bool) -> str:
    header = [
        "# symgrad benchmarks" + (" (quick sizes)" if quick else ""),
        "",
        f"Machine: {facts['cpu']}, {facts['cores']} cores; Python {facts['python']}, numpy {facts['numpy']}, "
        f"jax {facts['jax'] or 'absent'}, torch {facts['torch'] or 'absent'}; threads per operation: "
        f"{facts['threads']}; OPENBLAS_CORETYPE={facts['OPENBLAS_CORETYPE'] or 'unset'}; load average "
        f"(1 min) {facts['load_average'][0]:.2f} at start, {facts['load_average_end'][0]:.2f} at the end.",
        "",
    ]
    if max(facts["load_average"][0], facts["load_average_end"][0]) > facts["cores"]:
        header += ["**The machine was shared with other work (load above its core count): times are "
                   "inflated and noisy; ratios measured close together are the more reliable figures.**", ""]
    header.append("")
    return "\n".join(header) + "\n".join(section.as_markdown() for section in sections)


if __name__ == "__main__":
    main(sys.argv[1:])
