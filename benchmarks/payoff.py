"""What the trace plan buys: symgrad's planned traces against every trace kept per synapse.

The same model is generated twice: as planned (presynaptic traces stored as (batch, pre)
filters of the input, per-synapse only what must be), and with ``dense=True``, where every
reachable trace component is a (batch, post, pre) array, as a hand-written e-prop keeps them.
Both give the same gradients (tests/test_gradients.py checks this); the benchmark measures the
peak memory (tracemalloc, as in the memory benchmark), the memory TracePlan.memory predicts
and the time per step of one e-prop pass, with and without a leaky readout.
"""
from __future__ import annotations

from pathlib import Path

from symgrad.runtime import eprop

from .common import DRIVE, Problem, Section, best_seconds, mib, pyplot, table, traced_peak

NAME = "plan"
TITLE = "Trace-plan payoff: planned against all-per-synapse traces"
MODELS = ("lif", "alif", "cuba_lif")
KAPPAS = (0.0, 0.9)


def run(quick: bool, out: Path) -> Section:
    base = (Problem(steps=20, batch=4, n_in=12, hidden=16, n_out=5) if quick
            else Problem(steps=100, batch=16, n_in=100, hidden=128, n_out=10))
    repeats = 1 if quick else 3
    rows = []
    for model in MODELS:
        for kappa in KAPPAS:
            problem = base.but(model=model, kappa=kappa, gain=DRIVE.get(model, 1.0))
            x, labels = problem.data()
            row = {"model": model, "kappa": kappa}
            for variant, dense in (("planned", False), ("dense", True)):
                net = problem.network(dense=dense)
                seconds = best_seconds(lambda: eprop(net, x, labels), repeats)
                plan = problem.plan(dense)
                row[variant] = {"peak_bytes": traced_peak(lambda: eprop(net, x, labels)),
                                "predicted_bytes": problem.predicted_eprop_bytes(dense),
                                "per_synapse": [plan.analysis.names[k] for k in plan.per_synapse],
                                "seconds_per_step": seconds / problem.steps}
            rows.append(row)
            print(f"  {model:8s} kappa={kappa}: planned {mib(row['planned']['peak_bytes'])} MiB "
                  f"{1e3 * row['planned']['seconds_per_step']:.2f} ms/step; dense "
                  f"{mib(row['dense']['peak_bytes'])} MiB {1e3 * row['dense']['seconds_per_step']:.2f} ms/step")
    plot = "plan.png"
    _plot(rows, out / plot)
    return Section(NAME, TITLE, {"problem": vars(base), "rows": rows}, _markdown(base, rows), [plot])


def _markdown(base: Problem, rows: list) -> str:
    lines = []
    for r in rows:
        p, d = r["planned"], r["dense"]
        lines.append([r["model"], r["kappa"], ", ".join(p["per_synapse"]) or "none", ", ".join(d["per_synapse"]),
                      mib(p["peak_bytes"]), mib(d["peak_bytes"]), f"{d['peak_bytes'] / p['peak_bytes']:.1f}x",
                      mib(p["predicted_bytes"]), mib(d["predicted_bytes"]),
                      f"{1e3 * p['seconds_per_step']:.2f}", f"{1e3 * d['seconds_per_step']:.2f}",
                      f"{d['seconds_per_step'] / p['seconds_per_step']:.1f}x"])
    return (f"T={base.steps}, B={base.batch}, M={base.n_in}, N={base.hidden} recurrent, K={base.n_out}, "
            f"{base.dtype}, per-step CE loss. Peak: tracemalloc over one e-prop pass; predicted: "
            f"TracePlan.memory.\n\n"
            + table(["model", "kappa", "per-synapse (planned)", "per-synapse (dense)", "peak MiB planned",
                     "peak MiB dense", "memory saved", "predicted MiB planned", "predicted MiB dense",
                     "ms/step planned", "ms/step dense", "speed-up"], lines) + "\n")


def _plot(rows: list, path: Path):
    plt = pyplot()
    labels = [f"{r['model']}\nkappa={r['kappa']}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, scale, unit in ((axes[0], "peak_bytes", 2**-20, "peak MiB"),
                                 (axes[1], "seconds_per_step", 1e3, "ms per step")):
        for offset, variant in ((-0.2, "planned"), (0.2, "dense")):
            ax.bar([i + offset for i in range(len(rows))], [r[variant][key] * scale for r in rows], 0.4,
                   label=variant)
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        ax.set(ylabel=unit)
        ax.legend()
    fig.suptitle("e-prop with the trace plan against every trace per synapse")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
