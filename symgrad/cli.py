"""The ``symgrad`` command line.

Exit codes: 0 success, 1 a user error (bad model, input file, data; the message names it),
2 a malformed command line (argparse's convention). User errors never print a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import __version__
from .errors import UserError
from .model import ModelError


def _model(spec: str):
    from . import models

    return models.load(spec)


# -- inspect ---------------------------------------------------------------------------------
def cmd_inspect(args) -> int:
    from . import report
    from .analysis import Analysis
    from .plan import TracePlan

    analysis = Analysis(_model(args.model))
    plan = TracePlan(analysis)
    if args.json:
        print(json.dumps(report.as_json(analysis, plan), indent=2))
    else:
        itemsize = np.dtype(args.dtype).itemsize
        n_pre = args.inputs + (args.hidden if args.recurrent else 0)
        print(report.as_text(analysis, plan, args.batch, args.hidden, n_pre, itemsize))
    return 0


# -- generate --------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    from . import models, render

    names = list(models.BUILTIN) if args.all else args.models
    if not names:
        raise UserError("name at least one model, or pass --all")
    for spec in names:
        for path in render.generate(_model(spec), args.out, backends=args.backend):
            print(path)
    return 0


# -- grads -----------------------------------------------------------------------------------
def cmd_grads(args) -> int:
    from . import arrays
    from .runtime import RULES, Network

    model = _model(args.model)
    given = arrays.read_inputs(args.inputs, model)
    values = {k: v for k, v in given.weights.items()}
    net = Network(model, given.n_in, given.n, given.n_out, recurrent="W_rec" in values,
                  kappa=given.kappa, dtype=args.dtype, backend=args.backend,
                  neuron_params=given.neuron_params)
    net.set_params({k: v for k, v in values.items() if k in net.params})
    result = RULES[args.rule](net, given.x, given.labels, loss="ce")
    out = {"loss": np.asarray(result.loss)}
    out.update({name: np.asarray(_host(result.grads[name])) for name in values})
    arrays.write_npz(args.out, out)
    print(f"loss {result.loss:.6g}; wrote {', '.join(out)} to {args.out}")
    return 0


def _host(array):
    return array.get() if hasattr(array, "get") else array


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symgrad",
        description="Online gradient-based synaptic plasticity generated from SymPy neuron models.")
    parser.add_argument("--version", action="version", version=f"symgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("inspect", help="show a model's Jacobians, their classes and the trace plan")
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.add_argument("--batch", type=int, default=32, help="batch size for the memory figures")
    p.add_argument("--hidden", type=int, default=256, help="neurons per layer for the memory figures")
    p.add_argument("--inputs", type=int, default=140, help="input channels for the memory figures")
    p.add_argument("--no-recurrent", dest="recurrent", action="store_false",
                   help="size the memory figures without a recurrent projection")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("generate", help="write the generated code of models")
    p.add_argument("models", nargs="*", help="built-in names, FILE.py or FILE.py:NAME")
    p.add_argument("--all", action="store_true", help="every built-in model")
    p.add_argument("--out", default="generated", help="output folder (default: generated)")
    p.add_argument("--backend", nargs="+", default=["numpy"], choices=["numpy"],
                   help="backends to generate for")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("grads", help="loss and gradients of one batch, from and to .npz files")
    p.add_argument("model", help="built-in name, FILE.py or FILE.py:NAME")
    p.add_argument("--inputs", required=True, metavar="IN.npz")
    p.add_argument("--out", required=True, metavar="OUT.npz")
    p.add_argument("--rule", choices=["eprop", "bptt"], default="eprop")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--backend", choices=["numpy"], default="numpy")
    p.set_defaults(func=cmd_grads)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ModelError, UserError) as err:
        print(f"symgrad: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into a reader that stopped early, like head
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("symgrad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
