"""Peak memory of one gradient pass against the sequence length T and the layer size N.

e-prop carries its traces forward, so its memory should not depend on T; BPTT stores every
step for the reverse pass, so its memory grows linearly with T. The peak is measured with
tracemalloc, which sees numpy's buffers, over one call of ``eprop``/``bptt`` after a short
warm-up call (so imports and first-call caches are not counted) and excluding the input
array, made beforehand. Beside it: the bytes TracePlan.memory predicts e-prop keeps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symgrad.runtime import bptt, eprop

from .common import Problem, Section, Target, mib, pyplot, table, traced_peak

NAME = "memory"
TITLE = "Memory of one gradient pass"
RULES = {"e-prop": eprop, "BPTT": bptt}
MODELS = ("lif", "alif")
WARMUP = 300


def sizes(quick: bool) -> dict:
    if quick:
        return dict(base=Problem(steps=30, batch=4, n_in=16, hidden=32, n_out=5),
                    steps=[20, 60, 200], hidden=[16, 32])
    return dict(base=Problem(steps=300, batch=8, n_in=40, hidden=64, n_out=10),
                steps=[100, 300, 1000, 3000, 10000], hidden=[32, 64, 128, 256])


def measure(problem: Problem, rule) -> int:
    """Peak of one pass, after a warm-up pass of WARMUP steps: numpy keeps a few kilobytes of
    caches from its first calls (einsum's among them), which are not part of a pass. BPTT's
    every-step arrays, which its compiled pass keeps for the next pass of the same sizes, are
    dropped first: they are part of a pass's peak."""
    from symgrad.runtime import fused_bptt

    net = problem.network()
    warm, labels = problem.but(steps=WARMUP).data()
    rule(net, warm, labels)
    fused_bptt.release()
    x, labels = problem.data()
    with np.errstate(all="ignore"):  # BPTT's gradients may overflow over 10^4 steps: not looked at
        return traced_peak(lambda: rule(net, x, labels))


def run(quick: bool, out: Path) -> Section:
    plan = sizes(quick)
    base = plan["base"]
    rows = []
    for axis, values in (("steps", plan["steps"]), ("hidden", plan["hidden"])):
        for model in MODELS:
            for rule_name, rule in RULES.items():
                for problem in [base.but(model=model, **{axis: value}) for value in values]:
                    peak = measure(problem, rule)
                    rows.append({"axis": axis, "model": model, "rule": rule_name, "steps": problem.steps,
                                 "hidden": problem.hidden, "peak_bytes": peak,
                                 "predicted_trace_bytes": problem.predicted_eprop_bytes()
                                 if rule_name == "e-prop" else None})
                    print(f"  {model:5s} {rule_name:6s} T={problem.steps:6d} N={problem.hidden:4d} "
                          f"peak {mib(peak):>9s} MiB")
    figures = {"problem": vars(base), "rows": rows}
    plot = "memory.png"
    _plot(rows, out / plot)
    return Section(NAME, TITLE, figures, _markdown(base, rows), [plot], _targets(rows))


def _series(rows, axis, model, rule):
    return [r for r in rows if r["axis"] == axis and r["model"] == model and r["rule"] == rule]


def _targets(rows) -> list:
    """e-prop's peak at the longest T within 10% of the shortest, for each model."""
    targets = []
    for model in MODELS:
        series = _series(rows, "steps", model, "e-prop")
        first, last = series[0], series[-1]
        growth = last["peak_bytes"] / first["peak_bytes"] - 1
        targets.append(Target(f"{model} e-prop peak growth from T={first['steps']} to T={last['steps']}",
                              100 * growth, 10.0, "%"))
    return targets


def _markdown(base: Problem, rows) -> str:
    setting = (f"B={base.batch}, M={base.n_in}, K={base.n_out}, recurrent, kappa={base.kappa}, "
               f"{base.dtype}, per-step CE loss")
    parts = []
    for axis, fixed in (("steps", f"N={base.hidden}"), ("hidden", f"T={base.steps}")):
        values = sorted({r[axis] for r in rows if r["axis"] == axis})
        header = ["model", "rule"] + [f"{'T' if axis == 'steps' else 'N'}={v}" for v in values]
        lines = []
        for model in MODELS:
            for rule in RULES:
                series = _series(rows, axis, model, rule)
                lines.append([model, rule] + [mib(r["peak_bytes"]) for r in series])
            lines.append([model, "plan predicts (e-prop)"]
                         + [mib(r["predicted_trace_bytes"]) for r in _series(rows, axis, model, "e-prop")])
        parts.append(f"Peak MiB against {'T' if axis == 'steps' else 'N'} ({fixed}):\n\n" + table(header, lines))
    growth = []
    for model in MODELS:
        series = _series(rows, "steps", model, "BPTT")
        slope = (series[-1]["peak_bytes"] - series[0]["peak_bytes"]) / (series[-1]["steps"] - series[0]["steps"])
        growth.append(f"{model} BPTT grows by {slope / 1024:.1f} KiB per step")
    return (f"{setting}. tracemalloc peak of one pass, input excluded; the plan's prediction counts "
            f"the traces, filtered eligibility, scratch and gradient buffers e-prop allocates.\n\n"
            + "\n\n".join(parts) + "\n\n" + "; ".join(growth) + ".\n")


def _plot(rows, path: Path):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, axis, label in ((axes[0], "steps", "sequence length T"), (axes[1], "hidden", "neurons N")):
        for model in MODELS:
            for rule, style in (("e-prop", "-o"), ("BPTT", "-s")):
                series = _series(rows, axis, model, rule)
                ax.plot([r[axis] for r in series], [r["peak_bytes"] / 2**20 for r in series], style,
                        label=f"{model} {rule}")
            series = _series(rows, axis, model, "e-prop")
            ax.plot([r[axis] for r in series], [r["predicted_trace_bytes"] / 2**20 for r in series], ":",
                    label=f"{model} plan prediction")
        ax.set(xscale="log", yscale="log", xlabel=label, ylabel="peak MiB")
        ax.legend(fontsize=7)
    fig.suptitle("peak memory of one gradient pass")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
